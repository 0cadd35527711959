//! Helpers for end-to-end tests: an in-process server on 127.0.0.1:0 and small clients, raw
//! and tungstenite. Every socket has a read timeout so a broken server fails a test instead of
//! hanging it.
#![allow(dead_code)]

pub mod redis_server;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use corecast::{Config, Server};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

/// Shared with the unit tests and loadgen's tests: see the testkit crate. (Not every test file
/// that includes this module uses them, as with the rest of it.)
#[allow(unused_imports)]
pub use testkit::{client_frame, poll_until};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A test configuration: two workers, port 0, no stats logging.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: Some(2),
        pin: false,
        stats_interval: Duration::ZERO,
        ..Config::default()
    }
}

pub fn start(config: Config) -> Server {
    Server::bind(config).expect("server starts")
}

pub type Client = WebSocket<TcpStream>;

/// Connects a tungstenite client to `path`, optionally offering subprotocols.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    connect_with(addr, path, &[]).0
}

pub fn connect_with(
    addr: SocketAddr,
    path: &str,
    protocols: &[&str],
) -> (Client, tungstenite::handshake::client::Response) {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", ")).unwrap(),
        );
    }
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (ws, response) = tungstenite::client::client(request, tcp).expect("handshake");
    (ws, response)
}

/// A plain TCP connection with a read timeout.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends raw bytes and reads the whole answer until the server closes.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tcp(addr);
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// Status code of an HTTP answer.
pub fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Upgrades a raw socket and returns it with the response head.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    raw_upgrade_on(tcp(addr), path)
}

/// Upgrades an already connected socket (one with special options) to `path`.
pub fn raw_upgrade_on(mut s: TcpStream, path: &str) -> (TcpStream, String) {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let head = upgrade_over(&mut s, path);
    (s, head)
}

/// Sends an upgrade request for `path` over `s` (plain or TLS) and reads the response head.
pub fn upgrade_over(s: &mut (impl Read + Write), path: &str) -> String {
    s.write_all(upgrade_request(path, "").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "server closed during handshake"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// One server frame: (first byte, payload). `None` when the server closed the socket.
pub fn read_frame(s: &mut TcpStream) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 2];
    match s.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(Some((h[0], payload)))
}

/// Reads frames until a close frame; returns its status code (None for an empty close).
pub fn read_close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        let (first, payload) = read_frame(s)
            .expect("read")
            .expect("close frame before EOF");
        if first & 0x0f == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// Polls `cond` until it holds; fails the test if `TIMEOUT` passes first.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    assert!(poll_until(TIMEOUT, cond), "timed out waiting for {what}");
}

/// Echo clients spread so that every worker holds at least one, exercised from a background
/// thread that keeps one message in flight on each of them until `finish`. Hostile-input tests
/// start one before the abuse and check it during and after: whichever worker the hostile
/// connection lands on (SO_REUSEPORT decides), a healthy connection shares it.
pub struct Healthy {
    /// Number of clients: tests subtract it from the servers' connection gauges.
    pub clients: usize,
    stop: Arc<AtomicBool>,
    /// Completed rounds (every client echoed once).
    rounds: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Healthy {
    /// Opens /echo clients until every worker of `server` holds one, then starts echoing and
    /// returns once every client has echoed (before the abuse).
    pub fn start(server: &Server) -> Healthy {
        Healthy::start_with(server, |addr| connect(addr, "/echo"))
    }

    /// The same with clients that `connect` opens to /echo (over TLS, say).
    pub fn start_with<S: Read + Write + Send + 'static>(
        server: &Server,
        connect: impl Fn(SocketAddr) -> WebSocket<S>,
    ) -> Healthy {
        let addr = server.local_addr();
        let mut clients: Vec<WebSocket<S>> = Vec::new();
        loop {
            // Four at a time: all on one worker with probability 1/8 per batch with 2 workers.
            clients.extend((0..4).map(|_| connect(addr)));
            let n = clients.len() as u64;
            wait_until("the healthy clients to be counted", || {
                server.stats().iter().map(|c| c.handshakes).sum::<u64>() >= n
            });
            if server.stats().iter().all(|c| c.connections > 0) {
                break;
            }
            assert!(
                clients.len() < 64,
                "the kernel never spread connections over every worker"
            );
        }
        let mut healthy = Healthy::from_clients(clients);
        healthy.assert_echoing("before the abuse");
        healthy
    }

    /// Starts the echo thread over `clients`.
    fn from_clients<S: Read + Write + Send + 'static>(mut clients: Vec<WebSocket<S>>) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let count = clients.len();
        let thread = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (i, ws) in clients.iter_mut().enumerate() {
                        let text = format!("healthy {i} round {round}");
                        echo_text(ws, &text).map_err(|e| format!("client {i}: {e}"))?;
                    }
                    round += 1;
                    rounds.store(round, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })
        };
        Healthy {
            clients: count,
            stop,
            rounds,
            thread: Some(thread),
        }
    }

    /// Waits until every healthy client has echoed twice more (so at least once entirely
    /// after this call); fails if one of them stopped getting echoes.
    pub fn assert_echoing(&mut self, when: &str) {
        let target = self.rounds.load(Ordering::Relaxed) + 2;
        let start = Instant::now();
        while self.rounds.load(Ordering::Relaxed) < target {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let err = self.thread.take().unwrap().join();
                panic!("healthy connection failed {when}: {err:?}");
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "healthy connections stalled {when}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Last check, then stops echoing; returns the number of completed rounds.
    pub fn finish(mut self, when: &str) -> u64 {
        self.assert_echoing(when);
        self.stop.store(true, Ordering::Relaxed);
        let result = self.thread.take().unwrap().join().expect("echo thread");
        if let Err(e) = result {
            panic!("healthy connection failed {when}: {e}");
        }
        self.rounds.load(Ordering::Relaxed)
    }
}

impl Drop for Healthy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `text` and waits for the same text back, skipping the server's keepalive pings.
pub fn echo_text<S: Read + Write>(ws: &mut WebSocket<S>, text: &str) -> Result<(), String> {
    ws.send(Message::text(text)).map_err(|e| e.to_string())?;
    loop {
        match ws.read().map_err(|e| e.to_string())? {
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Text(t) if t.as_str() == text => return Ok(()),
            other => return Err(format!("expected {text:?}, got {other:?}")),
        }
    }
}

/// The next text message, skipping keepalive pings; fails on anything else.
pub fn next_text<S: Read + Write>(member: &mut WebSocket<S>) -> String {
    loop {
        match member.read().expect("read") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sum of one counter over every worker.
pub fn total(server: &Server, counter: impl Fn(&corecast::Counters) -> u64) -> u64 {
    server.stats().iter().map(counter).sum()
}

/// Reads until the server ends the connection (EOF or reset); fails on a read timeout, so a
/// connection the server forgot to close fails the test instead of passing slowly.
pub fn assert_closed_by_server(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{what}: the server did not close the connection")
            }
            Err(_) => return, // reset
        }
    }
}

/// The resident set size of this process (server and test clients), from /proc/self/status.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// Samples `rss_bytes` every few milliseconds in the background and keeps the peak, so a
/// short-lived spike between two explicit checks is not missed.
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssPeak {
    pub fn start() -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        RssPeak {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The peak so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

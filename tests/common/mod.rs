//! Helpers for end-to-end tests: an in-process server on 127.0.0.1:0 and small clients, raw
//! and tungstenite. Every socket has a read timeout so a broken server fails a test instead of
//! hanging it.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use corecast::{Config, Server};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::WebSocket;

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
    let mut s = tcp(addr);
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
    (s, String::from_utf8(head).unwrap())
}

/// Encodes a client frame; `mask` false makes an (illegal) unmasked one.
pub fn client_frame(first_byte: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mask_bit = if mask { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(mask_bit | payload.len() as u8);
    } else if payload.len() <= 65535 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    if mask {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
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

/// Polls `cond` until it holds or the timeout passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

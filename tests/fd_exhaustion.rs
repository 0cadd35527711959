//! Descriptor exhaustion: the `corecast` binary runs in a child process whose RLIMIT_NOFILE is
//! 64 (soft and hard, so the server cannot raise it).
//! * With `--max-connections` far higher, accept fails with EMFILE. Past the limit the server
//!   must not spin, must keep serving the connections it has, must answer the waiting ones at
//!   once (503, with the descriptor it keeps in reserve) rather than leave them hanging, and
//!   must upgrade new ones once descriptors free up.
//! * With the capacity derived from the limit, a flood of upgrades past it gets 503s, each
//!   descriptor released as soon as its answer is written, while `/healthz` keeps answering
//!   and the refusals are logged once a second with a count.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Descriptors the child may hold (soft and hard limit).
const NOFILE: u64 = 64;
/// Connections made to wait in the listen queues once the descriptors are used up.
const WAITING: usize = 6;

/// The server child process; killed (by its own PID) and reaped when dropped, whatever
/// happened in the test.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    /// Its log lines (stderr).
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildServer {
    fn spawn(nofile: u64, max_connections: Option<u64>) -> ChildServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corecast"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CORECAST_") {
                cmd.env_remove(name);
            }
        }
        cmd.args(["--listen", "127.0.0.1:0", "--workers", "2", "--no-pin"])
            .args(["--stats-interval", "0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(max) = max_connections {
            cmd.args(["--max-connections", &max.to_string()]);
        }
        // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
        // which is async-signal-safe, on a struct it owns.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the corecast binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                // Reads (and keeps) the log to the end, so the server never blocks on a pipe.
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { return };
                    if let Some(addr) = listening_addr(&line) {
                        let _ = addr_tx.send(addr);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut server = ChildServer {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        server.addr = addr_rx
            .recv_timeout(TIMEOUT)
            .expect("the server logs its address");
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Descriptor numbers below the limit that are still free. (Counting every open
    /// descriptor would be off: the child inherits some above the limit, such as the build
    /// tool's jobserver pipe, which use up no number below it.)
    fn free_fds(&self) -> usize {
        let used = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/PID/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|&fd| fd < NOFILE)
            .count();
        NOFILE as usize - used
    }

    /// CPU time (user + system) the child has used so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name: state is the 3rd field of the line,
        // utime the 14th and stime the 15th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

/// The address in the "corecast listening addr=..." line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("corecast listening")?..];
    let value = rest
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))?;
    value.parse().ok()
}

fn echo_all(clients: &mut [Client], when: &str) {
    for (i, ws) in clients.iter_mut().enumerate() {
        echo_text(ws, &format!("client {i} {when}"))
            .unwrap_or_else(|e| panic!("client {i} stopped echoing {when}: {e}"));
    }
}

/// Reads an HTTP response head from a raw socket.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("no answer from the server: {other:?} after {head:?}"),
        }
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn out_of_descriptors_the_server_neither_spins_nor_drops_and_recovers() {
    let server = ChildServer::spawn(NOFILE, Some(10_000));
    let addr = server.addr;

    // Use up every descriptor with echo clients: each completed handshake is one accepted
    // socket, so the child's descriptor count tells exactly when the limit is reached.
    let mut clients: Vec<Client> = Vec::new();
    while server.free_fds() > 0 {
        clients.push(connect(addr, "/echo"));
        assert!(
            clients.len() <= NOFILE as usize,
            "descriptors never ran out"
        );
    }
    echo_all(&mut clients, "at the limit");

    // These are queued by the kernel while accept fails with EMFILE: each is accepted with
    // the descriptor kept in reserve, answered at once and closed.
    for i in 0..WAITING {
        let mut s = tcp(addr);
        s.write_all(upgrade_request("/echo", "").as_bytes())
            .unwrap();
        let head = read_head(&mut s);
        assert!(
            head.starts_with("HTTP/1.1 503"),
            "waiting connection {i} got {head:?}"
        );
        let mut body = Vec::new();
        s.read_to_end(&mut body)
            .expect("the server closes after the answer");
    }
    wait_until("the refusals to be logged with a count", || {
        server.logged(&format!("count={WAITING}")) || server.logged("accepts that found no")
    });

    // Saturated: the server must wait for descriptors, not retry accept in a busy loop. This
    // measures spinning, not speed: an idle wait costs next to nothing, a busy loop burns a
    // whole core, and the bound (half a core) sits far from both.
    let cpu_before = server.cpu_time();
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = server.cpu_time() - cpu_before;
    let elapsed = wall.elapsed();
    assert!(
        used < elapsed / 2,
        "the server used {used:?} of CPU in {elapsed:?} while out of descriptors"
    );
    assert_eq!(server.free_fds(), 0);

    // Every existing connection is still served.
    echo_all(&mut clients, "while saturated");

    // Free some descriptors: new connections are accepted and upgraded.
    let freed = WAITING + 2;
    for mut ws in clients.drain(..freed) {
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    }
    wait_until("the descriptors to be free again", || {
        server.free_fds() > WAITING
    });
    for i in 0..WAITING {
        let (mut s, head) = raw_upgrade(addr, "/echo");
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "new connection {i} got {head:?}"
        );
        s.write_all(&client_frame(0x81, b"served again", true))
            .unwrap();
        assert_eq!(
            read_frame(&mut s).unwrap(),
            Some((0x81, b"served again".to_vec()))
        );
    }
    echo_all(&mut clients, "after recovering");
}

/// Answers `GET /healthz` on a fresh connection.
fn healthz(addr: SocketAddr) -> String {
    let mut s = tcp(addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_head(&mut s)
}

#[test]
fn a_flood_past_capacity_gets_503s_while_healthz_answers() {
    let server = ChildServer::spawn(NOFILE, None);
    let addr = server.addr;
    wait_until("the capacity to be logged", || server.logged("capacity="));
    let capacity = server
        .log
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("capacity=")?.parse::<usize>().ok())
        })
        .expect("the capacity is logged");
    assert!(capacity > 0 && capacity < NOFILE as usize);
    let mut clients: Vec<Client> = (0..capacity).map(|_| connect(addr, "/echo")).collect();
    echo_all(&mut clients, "at capacity");

    // Far more upgrades than there are descriptors, all in flight at once, a health probe
    // between every ten.
    const FLOOD: usize = 3 * NOFILE as usize;
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let mut s = tcp(addr);
        s.write_all(upgrade_request("/echo", "").as_bytes())
            .unwrap();
        flood.push(s);
        if i % 10 == 0 {
            let head = healthz(addr);
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "healthz during the flood: {head:?}"
            );
        }
    }
    for (i, s) in flood.iter_mut().enumerate() {
        let head = read_head(s);
        assert!(
            head.starts_with("HTTP/1.1 503"),
            "flood connection {i} got {head:?}"
        );
    }
    echo_all(&mut clients, "after the flood");
    wait_until("the 503s to be logged with a count", || {
        server.logged("upgrades refused with 503")
    });
    let lines = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("upgrades refused with 503"))
        .count();
    assert!(
        lines < FLOOD / 2,
        "{lines} log lines for {FLOOD} refusals: not one per connection"
    );
}

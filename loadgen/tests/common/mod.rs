//! Helpers for loadgen's end-to-end tests: an in-process corecast server on port 0, and the
//! loadgen binary run as a child process with a hard time limit and its JSON report parsed.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corecast::{Config, Server};
use serde_json::Value;

/// What one loadgen run produced.
pub struct Run {
    /// Exit status code (None if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The `--json` report, when one was written.
    pub report: Option<Value>,
}

impl Run {
    /// The report, or a panic showing what the run printed.
    pub fn report(&self) -> &Value {
        self.report.as_ref().unwrap_or_else(|| {
            panic!(
                "no JSON report\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// A numeric field by JSON pointer, e.g. `/messages/sent`.
    pub fn num(&self, pointer: &str) -> u64 {
        let v = self
            .report()
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no {pointer}"));
        v.as_u64()
            .or_else(|| v.as_f64().map(|f| f as u64))
            .expect("a number")
    }

    /// Asserts a numeric field, showing the whole run when it differs.
    #[track_caller]
    pub fn expect(&self, pointer: &str, expected: u64) {
        let actual = self.num(pointer);
        assert_eq!(actual, expected, "{pointer}\n{}", self.dump());
    }

    /// Context for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Time limit of one loadgen run in a test: generous, only there to turn a hang into a failure.
pub const LIMIT: Duration = Duration::from_secs(90);

/// An in-process corecast with two unpinned workers on 127.0.0.1:0.
pub fn corecast() -> Server {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: Some(2),
        pin: false,
        stats_interval: Duration::ZERO,
        ..Config::default()
    };
    Server::bind(config).expect("corecast starts")
}

/// An in-process corecast with one unpinned worker on 127.0.0.1:0 that admits `capacity`
/// connections and answers 503 beyond.
pub fn corecast_with_capacity(capacity: usize) -> Server {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: Some(1),
        pin: false,
        stats_interval: Duration::ZERO,
        max_connections: Some(capacity),
        ..Config::default()
    };
    Server::bind(config).expect("corecast starts")
}

/// A fresh path for a report file.
pub fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `ws://addr/path`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

/// Runs loadgen with the whitespace-separated `command_line` (plus `--json`), killing it after
/// `limit`.
pub fn loadgen(command_line: &str, limit: Duration) -> Run {
    loadgen_args(&command_line.split_whitespace().collect::<Vec<_>>(), limit)
}

/// Runs loadgen with `args` (plus `--json`), killing it after `limit`.
pub fn loadgen_args(args: &[&str], limit: Duration) -> Run {
    let json = temp_file(&format!("report-{}.json", unique()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadgen starts");
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || read_all(&mut out));
    let err = std::thread::spawn(move || read_all(&mut err));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadgen did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                out.join().unwrap(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    let _ = std::fs::remove_file(&json);
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        report,
    }
}

fn read_all(r: &mut impl std::io::Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

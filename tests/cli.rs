//! The `corecast` binary: bad arguments give one line and status 2; SIGTERM shuts down
//! gracefully (1001 to clients, exit 0); a second signal exits at once.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::tls;
use common::*;
use tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_corecast");

#[test]
fn bad_arguments_give_one_line_and_status_2() {
    let cases: &[&[&str]] = &[
        &["--workers", "zero"],
        &["--workers", "0"],
        &["--listen", "not-an-address"],
        &["--idle-timeout", "10 parsecs"],
        &["--read-buffer", "lots"],
        &["--read-buffer", "16"],
        &["--cpus", "3-1"],
        &["--redis", "127.0.0.1:6379"],
        &["--redis", "http://127.0.0.1:6379"],
        &["--redis", "redis://127.0.0.1:6379/not-a-db"],
        &["--redis", "redis://127.0.0.1:6379", "--redis-queue", "0"],
        &["--redis-cluster", "redis://127.0.0.1:7000,nope"],
        &[
            "--redis",
            "redis://127.0.0.1:6379",
            "--redis-cluster",
            "redis://127.0.0.1:7000",
        ],
        &["--no-such-option"],
        &["--log-format", "xml"],
        &["--metrics-listen", "nowhere"],
    ];
    for args in cases {
        let out = Command::new(BIN)
            .args(*args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("corecast: "), "{args:?}: {stderr}");
    }
}

#[test]
fn environment_variables_configure_the_server() {
    for (var, value, named) in [
        ("CORECAST_WORKERS", "nope", "workers"),
        ("CORECAST_REDIS", "redis:/nowhere", "--redis"),
    ] {
        let out = Command::new(BIN).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(named),
            "{var}"
        );
    }
}

/// Starts the binary on a free port and returns it with its address (from the startup line).
fn spawn(extra: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--stats-interval",
            "0",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("startup line").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// The child's stderr, line by line, from a thread that keeps the pipe drained.
fn log_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    let (mut child, addr) = spawn(&[]);
    let mut clients: Vec<Client> = (0..6).map(|_| connect(addr, "/echo")).collect();
    for ws in clients.iter_mut() {
        ws.send(Message::text("hi")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("hi"));
    }
    signal(&child, libc::SIGTERM);
    for mut ws in clients {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        let _ = ws.flush();
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_second_signal_exits_at_once() {
    let (mut child, addr) = spawn(&["--shutdown-timeout", "60s"]);
    // A peer that never answers the close keeps a graceful shutdown waiting.
    let (_silent, _) = raw_upgrade(addr, "/echo");
    signal(&child, libc::SIGINT);
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn json_logs_are_one_object_per_line_and_the_stats_line_waits_for_a_change() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .args(["--log-format", "json", "--stats-interval", "50ms"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = log_lines(&mut child);
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut next = |within: std::time::Duration| -> Option<serde_json::Value> {
        let line = rx.recv_timeout(within).ok()?;
        let object: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(object.is_object(), "{line}");
        assert!(
            object["timestamp"].is_string() && object["level"].is_string(),
            "{line}"
        );
        seen.push(object.clone());
        Some(object)
    };
    let is_stats = |o: &serde_json::Value| o["message"].as_str().unwrap_or("").starts_with("stats");
    let addr: SocketAddr = loop {
        let line = next(TIMEOUT).expect("startup line");
        if let Some(addr) = line["addr"].as_str() {
            break addr.parse().unwrap();
        }
    };
    // Idle for twenty stats intervals: nothing changed, so no stats line.
    let idle_until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while let Some(left) = idle_until.checked_duration_since(std::time::Instant::now()) {
        if let Some(line) = next(left) {
            assert!(!is_stats(&line), "stats line while idle: {line}");
        }
    }
    let mut ws = connect(addr, "/echo");
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    let stats = loop {
        let line = next(TIMEOUT).expect("a stats line after traffic");
        if is_stats(&line) {
            break line;
        }
    };
    assert!(
        stats["message"].as_str().unwrap().contains("conns=1"),
        "{stats}"
    );
    drop(ws);
    signal(&child, libc::SIGTERM);
    while next(TIMEOUT).is_some() {}
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(seen.iter().any(|o| o["message"] == "stopped"), "{seen:?}");
}

#[test]
fn tls_files_that_cannot_be_served_give_one_line_and_status_2() {
    let cert = tls::TestCert::new("cli");
    let other = tls::TestCert::new("cli-other");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (cert_file, key_file) = (path(&cert.files.cert), path(&cert.files.key));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--tls-cert".into(), cert_file.clone()], "--tls-key"),
        (vec!["--tls-key".into(), key_file.clone()], "--tls-cert"),
        (
            vec![
                "--tls-cert".into(),
                "/nonexistent/cert.pem".into(),
                "--tls-key".into(),
                key_file.clone(),
            ],
            "cannot read /nonexistent/cert.pem",
        ),
        (
            vec![
                "--tls-cert".into(),
                key_file.clone(),
                "--tls-key".into(),
                key_file.clone(),
            ],
            "no PEM certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                cert_file.clone(),
                "--tls-key".into(),
                cert_file.clone(),
            ],
            "no PEM private key",
        ),
        (
            vec![
                "--tls-cert".into(),
                cert_file.clone(),
                "--tls-key".into(),
                path(&other.files.key),
            ],
            "do not go together",
        ),
    ];
    for (args, says) in cases {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("corecast: "), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn tls_from_the_environment_and_sighup_reloads_the_certificate() {
    let mut cert = tls::TestCert::new("sighup");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        // Reloads come from the signal only, so the test shows that the signal reloads.
        .args(["--stats-interval", "0", "--tls-watch", "0"])
        .env("CORECAST_TLS_CERT", &cert.files.cert)
        .env("CORECAST_TLS_KEY", &cert.files.key)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = log_lines(&mut child);
    let line_with = |needle: &str| loop {
        let line = rx.recv_timeout(TIMEOUT).expect(needle);
        if line.contains(needle) {
            return line;
        }
    };
    let started = line_with("addr=");
    assert!(started.contains("tls=true"), "{started}");
    let addr: SocketAddr = started.split("addr=").nth(1).unwrap()[..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut old = tls::wss_connect(addr, "/echo", &cert.der);
    echo_text(&mut old, "before").unwrap();
    let new = cert.renew();
    signal(&child, libc::SIGHUP);
    line_with("TLS certificate reloaded");
    let mut fresh = tls::wss_connect(addr, "/echo", &new);
    echo_text(&mut fresh, "after").unwrap();
    echo_text(&mut old, "the old connection continues").unwrap();
    std::fs::write(&cert.files.key, "not a key").unwrap();
    signal(&child, libc::SIGHUP);
    let refused = line_with("not reloaded");
    assert!(refused.contains("key.pem"), "{refused}");
    echo_text(&mut tls::wss_connect(addr, "/echo", &new), "still served").unwrap();
    drop((old, fresh));
    signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

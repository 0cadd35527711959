//! Bad input ends with one line on stderr and exit status 2, never a panic or a usage dump.

mod common;

use std::net::TcpListener;

use common::{corecast, corecast_with_capacity, loadgen_args, url, LIMIT};

fn assert_one_line_exit_2(args: &[&str], expect: &str) {
    let run = loadgen_args(args, LIMIT);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.dump());
    assert!(
        run.stderr.contains(expect),
        "expected {expect:?}\n{}",
        run.dump()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.dump());
}

#[test]
fn unparsable_url() {
    assert_one_line_exit_2(&["--url", "http://127.0.0.1/echo"], "invalid URL");
    assert_one_line_exit_2(&["--url", "wss://127.0.0.1/echo"], "needs --ca FILE");
    assert_one_line_exit_2(
        &["--url", "wss://127.0.0.1/echo", "--ca", "/nonexistent.pem"],
        "--ca /nonexistent.pem",
    );
}

#[test]
fn unreachable_server() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    assert_one_line_exit_2(
        &["--url", &url(addr, "/echo"), "--duration", "1s"],
        "cannot reach",
    );
}

#[test]
fn impossible_combinations_and_bad_values() {
    let server = corecast();
    let echo = url(server.local_addr(), "/echo");
    assert_one_line_exit_2(&["--url", &echo, "--size", "3"], "--size");
    assert_one_line_exit_2(&["--url", &echo, "--size", "15"], "between 16 and");
    assert_one_line_exit_2(
        &["--url", &echo, "--mode", "broadcast"],
        "/broadcast/<room>",
    );
    assert_one_line_exit_2(&["--url", &echo, "--inflight", "4"], "closed loop");
    assert_one_line_exit_2(&["--url", &echo, "--conns", "lots"], "--conns");
    assert_one_line_exit_2(&["--url", &echo, "--duration", "soon"], "--duration");
    assert_one_line_exit_2(&["--url", &echo, "--cpus", "3-1"], "--cpus");
    assert_one_line_exit_2(&["--url", &echo, "--rate", "fast"], "--rate");
    assert_one_line_exit_2(
        &["--url", &echo, "--progress-interval", "often"],
        "--progress-interval",
    );
    assert_one_line_exit_2(
        &["--url", &echo, "--progress-interval", "10ms"],
        "--progress-interval must be 0",
    );
    server.shutdown();
}

#[test]
fn refused_connections_count_against_the_failure_limit() {
    // The server takes one connection and refuses the rest with HTTP 503.
    let server = corecast_with_capacity(1);
    let target = url(server.local_addr(), "/echo");
    let args = [
        "--url",
        &target,
        "--conns",
        "5",
        "--threads",
        "1",
        "--duration",
        "1s",
        "--rate",
        "10",
    ];
    let run = loadgen_args(&args, LIMIT);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(run.report()["failure_limit_hit"], true);
    assert!(run.stdout.contains("--max-failures"), "{}", run.dump());
    let failed = run.report()["connections"]["failed"].as_object().unwrap();
    assert!(failed.keys().all(|k| k == "http 503"), "{failed:?}");

    let mut tolerant = args.to_vec();
    tolerant.extend(["--max-failures", "5"]);
    let run = loadgen_args(&tolerant, LIMIT);
    assert!(run.report()["failure_limit_hit"] == false, "{}", run.dump());
    // Normally exactly one is established; loadgen's reachability probe may briefly hold the
    // server's only slot, so allow none, but every attempt must be accounted for exactly.
    let established = run.num("/connections/established");
    assert!(established <= 1, "{}", run.dump());
    let clean = if established == 1 { 0 } else { 1 };
    assert_eq!(run.code, Some(clean), "{}", run.dump());
    run.expect("/connections/attempted", 5);
    run.expect("/connections/failed/http 503", 5 - established);
    run.expect("/messages/lost", 0);
    server.shutdown();
}

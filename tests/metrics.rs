//! `/metrics` and `/stats.json` against a real server: the numbers move exactly as the traffic
//! did, `--metrics-listen` moves both pages off the public port, and (with `promtool`, run by
//! `.ci/run`) a scrape under traffic passes `promtool check metrics`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// The body of `GET path`, or panics unless the answer is 200.
fn get(addr: SocketAddr, path: &str) -> String {
    let answer = fetch(addr, path);
    assert_eq!(status(&answer), 200, "{path}: {answer}");
    answer.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn fetch(addr: SocketAddr, path: &str) -> String {
    http_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// Sum over every sample of metric `name` (all workers) whose labels include `labels`.
fn sum(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// A metric, the labels its samples must carry, and what it should have moved by.
type Expect = (&'static str, &'static [(&'static str, &'static str)], f64);

/// What a metric moved by between two scrapes.
fn moved(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(after, name, labels) - sum(before, name, labels)
}

fn close_normally(mut ws: Client) {
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    // Read until the server's answer completes the handshake.
    while ws.read().is_ok() {}
}

#[test]
fn metrics_move_exactly_as_echo_and_broadcast_traffic_did() {
    let server = start(config());
    let addr = server.local_addr();
    let before = get(addr, "/metrics");
    assert_eq!(
        sum(&before, "corecast_capacity_connections", &[]),
        server.capacity() as f64
    );

    // Echo: three 5-byte messages.
    let mut echo = connect(addr, "/echo");
    for _ in 0..3 {
        echo.send(Message::text("hello")).unwrap();
        assert_eq!(echo.read().unwrap(), Message::text("hello"));
    }
    // Broadcast: two members, two 4-byte messages from one of them; each member gets both.
    let room = format!("/broadcast/metrics-{}", std::process::id());
    let mut a = connect(addr, &room);
    let mut b = connect(addr, &room);
    wait_until("both members seated", || {
        sum(&get(addr, "/metrics"), "corecast_room_members", &[]) == 2.0
    });
    for text in ["one!", "two!"] {
        a.send(Message::text(text)).unwrap();
    }
    for member in [&mut a, &mut b] {
        assert_eq!(member.read().unwrap(), Message::text("one!"));
        assert_eq!(member.read().unwrap(), Message::text("two!"));
    }
    // A 404, a client closing with 1000 three times, one dropping its socket without a close.
    assert_eq!(status(&fetch(addr, "/nowhere")), 404);
    close_normally(echo);
    close_normally(a);
    close_normally(b);
    drop(connect(addr, "/echo"));

    let expect: &[Expect] = &[
        ("corecast_handshakes_total", &[], 4.0),
        (
            "corecast_messages_received_total",
            &[("endpoint", "echo")],
            3.0,
        ),
        (
            "corecast_received_payload_bytes_total",
            &[("endpoint", "echo")],
            15.0,
        ),
        ("corecast_messages_sent_total", &[("endpoint", "echo")], 3.0),
        (
            "corecast_sent_payload_bytes_total",
            &[("endpoint", "echo")],
            15.0,
        ),
        (
            "corecast_messages_received_total",
            &[("endpoint", "broadcast")],
            2.0,
        ),
        (
            "corecast_received_payload_bytes_total",
            &[("endpoint", "broadcast")],
            8.0,
        ),
        (
            "corecast_messages_sent_total",
            &[("endpoint", "broadcast")],
            4.0,
        ),
        (
            "corecast_sent_payload_bytes_total",
            &[("endpoint", "broadcast")],
            16.0,
        ),
        ("corecast_http_responses_total", &[("status", "404")], 1.0),
        ("corecast_rejected_total", &[], 1.0),
        ("corecast_closes_total", &[("code", "1000")], 3.0),
        ("corecast_closes_total", &[("code", "1006")], 1.0),
        ("corecast_closes_total", &[("code", "1001")], 0.0),
        ("corecast_slow_consumers_total", &[], 0.0),
    ];
    let mut after = String::new();
    let settled = poll_until(TIMEOUT, || {
        after = get(addr, "/metrics");
        sum(&after, "corecast_connections", &[]) == 0.0
            && expect
                .iter()
                .all(|(name, labels, want)| moved(&before, &after, name, labels) == *want)
    });
    let report: Vec<String> = expect
        .iter()
        .map(|(name, labels, want)| {
            let got = moved(&before, &after, name, labels);
            format!("{name}{labels:?}: {got} (want {want})")
        })
        .collect();
    assert!(
        settled,
        "metrics did not follow the traffic:\n{}",
        report.join("\n")
    );
    assert_eq!(
        sum(&after, "corecast_room_members", &[]),
        0.0,
        "members left"
    );
    assert_eq!(
        sum(&after, "corecast_rooms", &[]),
        0.0,
        "empty rooms are gone"
    );
    assert!(
        moved(&before, &after, "corecast_loop_pass_seconds_count", &[]) > 0.0,
        "the workers' loop passes are timed"
    );
    // One series per worker for the per-worker metrics.
    for worker in 0..server.workers() {
        let w = worker.to_string();
        assert!(after.contains(&format!("corecast_accepted_total{{worker=\"{w}\"}}")));
    }
}

#[test]
fn stats_json_reports_totals_for_the_demo_page() {
    let server = start(config());
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..3).map(|_| connect(addr, "/echo")).collect();
    for ws in &mut clients {
        ws.send(Message::binary(vec![7u8; 10])).unwrap();
        ws.read().unwrap();
    }
    let mut stats = serde_json::Value::Null;
    wait_until("published totals", || {
        stats = serde_json::from_str(&get(addr, "/stats.json")).unwrap();
        stats["connections"] == 3 && stats["messages_in"] == 3
    });
    assert_eq!(stats["messages_out"], 3);
    assert_eq!(stats["bytes_in"], 30);
    assert_eq!(stats["workers"], server.workers());
    assert_eq!(stats["capacity"], server.capacity());
}

#[test]
fn metrics_listen_serves_the_pages_there_and_not_on_the_public_port() {
    let mut cfg = config();
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = start(cfg);
    let public = server.local_addr();
    let metrics = server.metrics_addr().expect("a metrics listener");
    assert_ne!(metrics, public);

    assert_eq!(status(&fetch(public, "/metrics")), 404);
    assert_eq!(status(&fetch(public, "/stats.json")), 404);
    assert_eq!(
        status(&fetch(public, "/healthz")),
        200,
        "the rest of the port is unchanged"
    );

    let _ws = connect(public, "/echo");
    wait_until("the connection in the metrics", || {
        sum(&get(metrics, "/metrics"), "corecast_connections", &[]) == 1.0
    });
    let stats: serde_json::Value = serde_json::from_str(&get(metrics, "/stats.json")).unwrap();
    assert_eq!(stats["connections"], 1);
    // The metrics address serves nothing else: no demo page, no WebSocket.
    assert_eq!(status(&fetch(metrics, "/")), 404);
    assert_eq!(status(&fetch(metrics, "/echo")), 404);
    assert_eq!(
        status(&http_exchange(metrics, b"POST /metrics HTTP/1.1\r\n\r\n")),
        405
    );
    assert_eq!(
        status(&http_exchange(metrics, &[b'x'; 9000])),
        431,
        "bounded request"
    );
    drop(server);
    assert!(
        std::net::TcpStream::connect(metrics).is_err(),
        "the metrics listener closes with the server"
    );
}

#[test]
#[ignore = "needs promtool (apt-get install prometheus); run by .ci/run with --ignored"]
fn a_scrape_under_traffic_passes_promtool_check_metrics() {
    let server = start(config());
    let addr = server.local_addr();
    let healthy = Healthy::start(&server);
    let room = format!("/broadcast/promtool-{}", std::process::id());
    let mut member = connect(addr, &room);
    member.send(Message::text("x")).unwrap();
    member.read().unwrap();
    assert_eq!(status(&fetch(addr, "/nowhere")), 404);
    wait_until("traffic in the metrics", || {
        let scrape = get(addr, "/metrics");
        sum(
            &scrape,
            "corecast_messages_sent_total",
            &[("endpoint", "broadcast")],
        ) >= 1.0
            && sum(
                &scrape,
                "corecast_messages_sent_total",
                &[("endpoint", "echo")],
            ) >= 1.0
    });
    let scrape = get(addr, "/metrics");
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool} (apt-get install prometheus): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {complaints}\n{scrape}");
    assert_eq!(complaints.trim(), "", "promtool found problems");
    healthy.finish("after the scrape");
}

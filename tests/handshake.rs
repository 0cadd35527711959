//! The HTTP side against a real server: pages, every 4xx/5xx answer, subprotocols, origins,
//! capacity, and the handshake deadline.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

#[test]
fn index_page_and_health_check() {
    let server = start(config());
    let addr = server.local_addr();
    let page = http_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&page), 200);
    assert!(page.contains("text/html"));
    assert!(page.contains("new WebSocket(base + path"));
    assert!(page.contains("watch(\"echo\", \"/echo\""));
    assert!(page.contains("fetch(\"stats.json\""));
    let health = http_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&health), 200);
    assert!(health.ends_with("\r\n\r\nok\n"));
}

#[test]
fn bad_requests_get_the_right_status() {
    let server = start(config());
    let addr = server.local_addr();
    let cases: Vec<(String, u16)> = vec![
        (upgrade_request("/nowhere", ""), 404),
        (upgrade_request("/echo", "").replacen("GET", "POST", 1), 405),
        (
            upgrade_request("/echo", "")
                .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            426,
        ),
        (upgrade_request("/echo", "").replace(KEY, "tooshort"), 400),
        (
            upgrade_request("/echo", "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            400,
        ),
        (
            upgrade_request("/echo", "").replace("Upgrade: websocket\r\n", ""),
            400,
        ),
        ("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 400),
        (
            "\x16\x03\x01\x02\x00garbage that is not http\r\n\r\n".to_string(),
            400,
        ),
        (
            format!("GET /echo HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)),
            431,
        ),
    ];
    for (request, want) in cases {
        let answer = http_exchange(addr, request.as_bytes());
        assert_eq!(
            status(&answer),
            want,
            "request {:?} got {answer:?}",
            &request[..request.len().min(80)]
        );
        if want == 426 {
            assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"));
        }
    }
}

#[test]
fn subprotocol_negotiation() {
    let server = start(config());
    let addr = server.local_addr();
    let (_, response) = connect_with(addr, "/echo", &[]);
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    let (mut ws, response) = connect_with(addr, "/echo", &["chat", "superchat"]);
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "chat");
    ws.send(tungstenite::Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("hi"));

    let restricted = start(corecast::Config {
        protocols: vec!["superchat".into(), "v2".into()],
        ..config()
    });
    let addr = restricted.local_addr();
    let (_, response) = connect_with(addr, "/echo", &["chat", "v2", "superchat"]);
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "v2");
    // No match: the upgrade succeeds without the header (as browsers expect). The tungstenite
    // client refuses that answer, so read it raw.
    let answer = http_exchange_upgrade(addr, "Sec-WebSocket-Protocol: mqtt\r\n");
    assert_eq!(status(&answer), 101);
    assert!(!answer.contains("Sec-WebSocket-Protocol"));
}

#[test]
fn origin_allow_list_answers_403() {
    let server = start(corecast::Config {
        allowed_origins: vec!["http://good.example".into()],
        ..config()
    });
    let addr = server.local_addr();
    let ok = http_exchange_upgrade(addr, "Origin: http://good.example\r\n");
    assert_eq!(status(&ok), 101);
    let bad = http_exchange(
        addr,
        upgrade_request("/echo", "Origin: http://evil.example\r\n").as_bytes(),
    );
    assert_eq!(status(&bad), 403);
}

/// Reads only the head of an upgrade answer (the socket stays open on success).
fn http_exchange_upgrade(addr: std::net::SocketAddr, headers: &str) -> String {
    let mut s = tcp(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(upgrade_request("/echo", headers).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn over_capacity_gets_503_and_capacity_returns_after_close() {
    let server = start(corecast::Config {
        max_connections: Some(2),
        ..config()
    });
    let addr = server.local_addr();
    let a = connect(addr, "/echo");
    let _b = connect(addr, "/echo");
    let refused = http_exchange(addr, upgrade_request("/echo", "").as_bytes());
    assert_eq!(status(&refused), 503);
    drop(a);
    wait_until("a slot to free up", || {
        status(&http_exchange_upgrade(addr, "")) == 101
    });
}

#[test]
fn silent_connection_is_dropped_at_the_handshake_deadline() {
    let server = start(corecast::Config {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    });
    let addr = server.local_addr();
    let mut silent = tcp(addr);
    let mut partial = tcp(addr);
    partial
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    // EOF (or a reset) instead of the 10 s read timeout.
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
    assert!(matches!(partial.read(&mut buf), Ok(0) | Err(_)));
    wait_until("timeouts to be counted", || {
        server.stats().iter().map(|c| c.timeouts).sum::<u64>() >= 2
    });
    // The server still works.
    let mut ws = connect(addr, "/echo");
    ws.send(tungstenite::Message::text("alive")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("alive"));
}

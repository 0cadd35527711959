//! Hostile input before the upgrade: garbage, oversized heads, a slowloris dribble and
//! malformed upgrades each get their answer (or a close), while healthy connections on every
//! worker keep getting echoes. tests/handshake.rs checks the plain status codes; these cases
//! are the abusive variants of them.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Status code of the answer, 0 when the server closed without one.
fn answer_status(request: &[u8]) -> impl Fn(std::net::SocketAddr) -> u16 + '_ {
    move |addr| status(&http_exchange(addr, request))
}

#[test]
fn garbage_instead_of_http_gets_400_or_a_close() {
    let server = start(config());
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    // A deterministic pseudo-random byte soup, with and without line breaks.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut soup = || {
        (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>()
    };
    let cases: Vec<Vec<u8>> = vec![
        soup(),
        soup().into_iter().filter(|b| *b != b'\n').collect(),
        vec![0u8; 2048],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"GET /echo HTTP/1.1\r\nHost\r\n\r\n".to_vec(),
        b"GET /echo HTTP/1.1\r\nHo st: x\r\n\r\n".to_vec(),
        b"GET /echo HTTP/9.9\r\n\r\n".to_vec(),
        b"GET\x00/echo HTTP/1.1\r\n\r\n".to_vec(),
        // A header value that is not UTF-8 (obs-text, which httparse lets through).
        b"GET /echo HTTP/1.1\r\nUpgrade: web\xffsocket\r\n\r\n".to_vec(),
    ];
    for (i, request) in cases.iter().enumerate() {
        let got = answer_status(request)(addr);
        assert!(
            got == 400 || got == 0,
            "case {i}: expected 400 or a close, got {got}"
        );
        healthy.assert_echoing(&format!("after garbage case {i}"));
    }
    healthy.finish("after all the garbage");
}

#[test]
fn oversized_request_line_and_headers_get_431() {
    let server = start(config());
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    let long_line = format!("GET /echo?{} HTTP/1.1\r\nHost: x\r\n\r\n", "q".repeat(9000));
    let mut many_headers = upgrade_request("/echo", "");
    many_headers.truncate(many_headers.len() - 2);
    for i in 0..100 {
        many_headers.push_str(&format!("X-Filler-{i}: y\r\n"));
    }
    many_headers.push_str("\r\n");
    // A head that never ends: 8 KiB of one header line without a line break.
    let endless = format!("GET /echo HTTP/1.1\r\nX-Endless: {}", "e".repeat(8 * 1024));
    for (name, request) in [
        ("long request line", long_line),
        ("too many headers", many_headers),
        ("endless header", endless),
    ] {
        assert_eq!(answer_status(request.as_bytes())(addr), 431, "{name}");
        healthy.assert_echoing(name);
    }
    healthy.finish("after the oversized heads");
}

#[test]
fn a_client_that_keeps_sending_after_431_still_gets_the_answer() {
    let server = start(config());
    let addr = server.local_addr();
    let healthy = Healthy::start(&server);
    let mut s = tcp(addr);
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            s.write_all(b"GET /echo HTTP/1.1\r\nX-Flood: ").unwrap();
            // 4 MiB: the server answers after 8 KiB, then reads and discards the rest. Stops at
            // the first error (the server may also give up and reset).
            let chunk = vec![b'f'; 64 * 1024];
            for _ in 0..64 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
    };
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), 431, "{answer:?}");
    writer.join().unwrap();
    healthy.finish("after the flooded head");
}

#[test]
fn request_dribbled_one_byte_per_second_hits_the_handshake_deadline() {
    // The deadline counts from the accept, not from the last byte: a byte every second keeps
    // no connection alive past 1.5 s. (Were it reset by each byte, the dribble below would
    // last 150 s and the read would hit its 10 s timeout.)
    let server = start(corecast::Config {
        handshake_timeout: Duration::from_millis(1500),
        ..config()
    });
    let addr = server.local_addr();
    let healthy = Healthy::start(&server);
    let timeouts_before = total(&server, |c| c.timeouts);
    let mut s = tcp(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let mut s = s.try_clone().unwrap();
        let stop = stop.clone();
        let request = upgrade_request("/echo", "").into_bytes();
        std::thread::spawn(move || {
            let mut sent = 0;
            for byte in request {
                if stop.load(Ordering::Relaxed) || s.write_all(&[byte]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            sent
        })
    };
    assert_closed_by_server(&mut s, "dribbled request");
    stop.store(true, Ordering::Relaxed);
    let sent = dribbler.join().unwrap();
    assert!(
        sent < upgrade_request("/echo", "").len(),
        "the request was completed"
    );
    wait_until("the timeout to be counted", || {
        total(&server, |c| c.timeouts) > timeouts_before
    });
    healthy.finish("after the dribble");
}

#[test]
fn malformed_upgrades_get_their_4xx_while_others_echo() {
    let server = start(config());
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    let base = upgrade_request("/echo", "");
    let key_line = format!("Sec-WebSocket-Key: {KEY}\r\n");
    let cases: Vec<(&str, String, u16)> = vec![
        ("empty key", base.replace(KEY, ""), 400),
        // Valid base64, but of 5 bytes rather than 16.
        ("short key", base.replace(KEY, "c2hvcnQ="), 400),
        (
            "non-base64 key",
            base.replace(KEY, "!!!!!!!!!!!!!!!!!!!!!!=="),
            400,
        ),
        ("two keys", upgrade_request("/echo", &key_line), 400),
        (
            "key and version missing",
            base.replace(&key_line, "")
                .replace("Sec-WebSocket-Version: 13\r\n", ""),
            400,
        ),
        (
            "version list 13, 8",
            base.replace("Version: 13", "Version: 13, 8"),
            426,
        ),
        (
            "version 14",
            base.replace("Version: 13", "Version: 14"),
            426,
        ),
        ("version 8", base.replace("Version: 13", "Version: 8"), 426),
        ("PUT", base.replacen("GET", "PUT", 1), 405),
        ("DELETE", base.replacen("GET", "DELETE", 1), 405),
        ("lowercase get", base.replacen("GET", "get", 1), 405),
        (
            "traversal path",
            upgrade_request("/echo/../etc/passwd", ""),
            404,
        ),
        ("nested room", upgrade_request("/broadcast/a/b", ""), 404),
        (
            "room name over 256 bytes",
            upgrade_request(&format!("/broadcast/{}", "r".repeat(300)), ""),
            404,
        ),
        ("asterisk path", upgrade_request("*", ""), 404),
        ("absolute URI", upgrade_request("http://x/nowhere", ""), 404),
    ];
    for (name, request, want) in &cases {
        let answer = http_exchange(addr, request.as_bytes());
        assert_eq!(status(&answer), *want, "{name}: {answer:?}");
        healthy.assert_echoing(name);
    }
    wait_until("every rejection to be counted", || {
        total(&server, |c| c.rejected) == cases.len() as u64
    });
    healthy.finish("after the malformed upgrades");
}

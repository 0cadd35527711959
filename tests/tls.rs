//! TLS end to end (`Config::tls`, `--tls-cert`/`--tls-key`): wss:// echo, rooms across
//! workers, subprotocols, large messages and the close handshake through a rustls client;
//! https:// pages; hostile clients (plain HTTP, garbage, a truncated or dribbled handshake)
//! cut and counted while healthy wss:// clients keep echoing; certificate reload for new
//! connections while old ones continue, and a bad new certificate refused.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::tls::*;
use common::*;
use corecast::Server;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

fn tls_failures(server: &Server) -> u64 {
    total(server, |c| c.tls_failures)
}

/// Healthy /echo clients over wss:// on every worker (see `Healthy`).
fn healthy_wss(server: &Server, cert: &TestCert) -> Healthy {
    let der = cert.der.clone();
    Healthy::start_with(server, move |addr| wss_connect(addr, "/echo", &der))
}

#[test]
fn wss_echoes_text_binary_and_large_messages_then_closes_cleanly() {
    let cert = TestCert::new("echo");
    let server = start(cert.config());
    let addr = server.local_addr();
    for versions in [&[][..], &[&rustls::version::TLS12][..]] {
        let config = client_config(&[&cert.der], versions);
        let (mut ws, _) = wss_connect_with(addr, "/echo", &[], config).expect("wss");
        let session = &ws.get_ref().conn;
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        if versions.is_empty() {
            assert_eq!(
                session.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
        } else {
            assert_eq!(
                session.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_2)
            );
        }
        ws.send(Message::text("hello over TLS")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("hello over TLS"));
        // Four 1 MiB messages before reading any echo: the server's socket fills, so its
        // writes (and the records rustls holds) wait for WRITABLE and resume.
        let big: Vec<Vec<u8>> = (0..4u8)
            .map(|i| (0..1 << 20).map(|j: u32| (j as u8) ^ i).collect())
            .collect();
        for message in &big {
            ws.send(Message::binary(message.clone())).unwrap();
        }
        for message in &big {
            match ws.read().unwrap() {
                Message::Binary(got) => assert!(got[..] == message[..], "1 MiB echo differs"),
                other => panic!("expected a binary echo, got {other:?}"),
            }
        }
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(Some(frame))) => {
                    assert_eq!(frame.code, CloseCode::Normal);
                }
                Ok(other) => panic!("expected the close reply, got {other:?}"),
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("close handshake: {e}"),
            }
        }
    }
    wait_until("both handshakes to be counted", || {
        total(&server, |c| c.tls_handshakes) >= 2
    });
    wait_until("the closes to be counted", || {
        total(&server, |c| c.close_1000) >= 2
    });
    assert_eq!(tls_failures(&server), 0);
}

#[test]
fn wss_rooms_reach_members_on_every_worker_and_subprotocols_are_negotiated() {
    let cert = TestCert::new("rooms");
    let server = start(corecast::Config {
        protocols: vec!["chat".into()],
        ..cert.config()
    });
    let addr = server.local_addr();
    let mut members = Vec::new();
    loop {
        let config = client_config(&[&cert.der], &[]);
        let (ws, response) =
            wss_connect_with(addr, "/broadcast/tls-room", &["v9", "chat"], config).unwrap();
        assert_eq!(
            response.headers().get("Sec-WebSocket-Protocol").unwrap(),
            "chat"
        );
        members.push(ws);
        let n = members.len() as u64;
        wait_until("the members to be counted", || {
            total(&server, |c| c.handshakes) == n
        });
        if members.len() >= 4 && server.stats().iter().all(|c| c.connections > 0) {
            break;
        }
        assert!(members.len() < 64, "the kernel never used both workers");
    }
    for i in 0..10 {
        members[0].send(Message::text(format!("tls {i}"))).unwrap();
    }
    for (n, member) in members.iter_mut().enumerate() {
        for i in 0..10 {
            assert_eq!(next_text(member), format!("tls {i}"), "member {n}");
        }
    }
    let deliveries = 10 * members.len() as u64;
    wait_until("every delivery to be counted", || {
        total(&server, |c| c.broadcast_msgs_out) == deliveries
    });
}

#[test]
fn https_serves_the_page_health_and_metrics() {
    let cert = TestCert::new("https");
    let server = start(cert.config());
    let addr = server.local_addr();
    let health = https_get(addr, "/healthz", &cert.der);
    assert_eq!(status(&health), 200, "{health}");
    let page = https_get(addr, "/", &cert.der);
    assert_eq!(status(&page), 200);
    assert!(page.contains("<html"), "the demo page");
    wait_until("the handshakes to be published", || {
        total(&server, |c| c.tls_handshakes) >= 2
    });
    let metrics = https_get(addr, "/metrics", &cert.der);
    assert_eq!(status(&metrics), 200);
    for family in [
        "corecast_tls_handshakes_total",
        "corecast_tls_failures_total",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_cut_and_counted() {
    let cert = TestCert::new("plain");
    let server = start(cert.config());
    let addr = server.local_addr();
    let mut healthy = healthy_wss(&server, &cert);
    let failures = tls_failures(&server);
    // Plain HTTP: told in plain HTTP that this port speaks TLS, then closed.
    let answer = http_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&answer), 400, "{answer:?}");
    assert!(answer.contains("speaks TLS"), "{answer:?}");
    // A plain WebSocket client gets no upgrade.
    let mut s = tcp(addr);
    s.write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains(" 101 "));
    // Garbage that starts like a handshake record: rustls refuses it (an alert) and the
    // connection closes.
    let mut s = tcp(addr);
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .unwrap();
    assert_closed_by_server(&mut s, "garbage handshake record");
    healthy.assert_echoing("after the garbage");
    wait_until("the three failures to be counted", || {
        tls_failures(&server) >= failures + 3
    });
    healthy.finish("at the end");
}

#[test]
fn a_truncated_handshake_is_cut_and_counted() {
    let cert = TestCert::new("truncated");
    let server = start(cert.config());
    let addr = server.local_addr();
    let healthy = healthy_wss(&server, &cert);
    let failures = tls_failures(&server);
    let hello = client_hello();
    let mut s = tcp(addr);
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed_by_server(&mut s, "half a ClientHello, then EOF");
    wait_until("the failure to be counted", || {
        tls_failures(&server) > failures
    });
    healthy.finish("after the truncated handshake");
}

#[test]
fn a_handshake_dribbled_byte_by_byte_hits_the_handshake_deadline() {
    // As for a dribbled HTTP request: the deadline counts from the accept, so the TLS
    // handshake's bytes count against it too (the dribble below would take over 30 s).
    let cert = TestCert::new("slowloris");
    let server = start(corecast::Config {
        handshake_timeout: Duration::from_millis(1500),
        ..cert.config()
    });
    let addr = server.local_addr();
    let healthy = healthy_wss(&server, &cert);
    let (timeouts, failures) = (total(&server, |c| c.timeouts), tls_failures(&server));
    let hello = client_hello();
    let mut s = tcp(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let mut s = s.try_clone().unwrap();
        let (stop, hello) = (stop.clone(), hello.clone());
        std::thread::spawn(move || {
            let mut sent = 0;
            for byte in hello {
                if stop.load(Ordering::Relaxed) || s.write_all(&[byte]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        })
    };
    assert_closed_by_server(&mut s, "dribbled ClientHello");
    stop.store(true, Ordering::Relaxed);
    assert!(
        dribbler.join().unwrap() < hello.len(),
        "the hello completed"
    );
    wait_until("the timeout and the failure to be counted", || {
        total(&server, |c| c.timeouts) > timeouts && tls_failures(&server) > failures
    });
    healthy.finish("after the dribble");
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_connections_while_old_ones_continue() {
    let mut cert = TestCert::new("reload");
    let server = start(corecast::Config {
        // Reloads here are explicit; the file watch has a test of its own.
        tls_watch: Duration::ZERO,
        ..cert.config()
    });
    let addr = server.local_addr();
    let reloader = server.tls_reloader().expect("a TLS server has a reloader");
    let old = cert.der.clone();
    let mut before = wss_connect(addr, "/echo", &old);
    echo_text(&mut before, "before").unwrap();

    let new = cert.renew();
    // Until the reload, new connections still get the old certificate.
    assert!(wss_connect_with(addr, "/echo", &[], client_config(&[&new], &[])).is_err());
    reloader.reload().expect("the renewed certificate loads");
    let mut after = wss_connect(addr, "/echo", &new);
    echo_text(&mut after, "after").unwrap();
    let refused = wss_connect_with(addr, "/echo", &[], client_config(&[&old], &[]));
    let err = refused.expect_err("the old certificate is no longer served");
    assert!(err.contains("TLS"), "{err}");
    echo_text(&mut before, "the old connection continues").unwrap();

    // A bad certificate is refused and the current one stays.
    std::fs::write(&cert.files.cert, "not a certificate").unwrap();
    let err = reloader.reload().expect_err("garbage is not loaded");
    assert!(err.to_string().contains("cert.pem"), "{err}");
    // A key that does not go with the certificate: the same.
    let other = TestCert::new("reload-other");
    std::fs::copy(&other.files.cert, &cert.files.cert).unwrap();
    let err = reloader
        .reload()
        .expect_err("a mismatched pair is not loaded");
    assert!(err.to_string().contains("do not go together"), "{err}");
    let mut still = wss_connect(addr, "/echo", &new);
    echo_text(&mut still, "still the renewed certificate").unwrap();
    echo_text(&mut before, "and the first connection too").unwrap();
    echo_text(&mut after, "and the second").unwrap();
}

#[test]
fn a_changed_certificate_file_is_picked_up_without_a_signal() {
    let mut cert = TestCert::new("watch");
    let server = start(corecast::Config {
        tls_watch: Duration::from_millis(50),
        ..cert.config()
    });
    let addr = server.local_addr();
    let mut old = wss_connect(addr, "/echo", &cert.der);
    let new = cert.renew();
    wait_until("new connections to get the renewed certificate", || {
        wss_connect_with(addr, "/echo", &[], client_config(&[&new], &[])).is_ok()
    });
    echo_text(&mut old, "the old connection continues").unwrap();
}

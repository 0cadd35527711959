//! Keepalive and shutdown: idle peers are pinged then closed, and a graceful shutdown sends
//! 1001 to every client on every worker.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message;

#[test]
fn silent_peer_is_pinged_then_closed() {
    let server = start(corecast::Config {
        idle_timeout: Duration::from_millis(600),
        ..config()
    });
    let (mut s, _) = raw_upgrade(server.local_addr(), "/echo");
    let (first, _) = read_frame(&mut s).unwrap().expect("a ping");
    assert_eq!(first, 0x89, "expected a ping frame first");
    // We do not answer, so after the rest of the timeout comes a close frame.
    assert_eq!(read_close_code(&mut s), Some(1001));
}

#[test]
fn answering_pings_keeps_a_connection_open() {
    let server = start(corecast::Config {
        idle_timeout: Duration::from_millis(400),
        ..config()
    });
    let mut ws = connect(server.local_addr(), "/echo");
    // tungstenite answers each ping with a pong as it reads; several idle periods pass.
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut pings = 0;
    while pings < 3 {
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
        ws.flush().unwrap();
    }
    ws.send(Message::text("still here")).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Ping(_) => continue,
            msg => break assert_eq!(msg, Message::text("still here")),
        }
    }
}

#[test]
fn graceful_shutdown_sends_1001_to_every_client() {
    let server = start(config());
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..12).map(|_| connect(addr, "/echo")).collect();
    clients.extend((0..12).map(|_| connect(addr, "/broadcast/room")));
    wait_until("both workers to hold clients", || {
        let s = server.stats();
        s.iter().all(|c| c.connections > 0) && s.iter().map(|c| c.handshakes).sum::<u64>() == 24
    });
    let stopping = std::thread::spawn(move || server.shutdown());
    for (i, mut ws) in clients.into_iter().enumerate() {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001, "client {i}")
            }
            other => panic!("client {i}: expected close 1001, got {other:?}"),
        }
        // Complete the handshake (tungstenite queued our reply while reading).
        let _ = ws.flush();
    }
    let total = stopping.join().unwrap();
    assert_eq!(total.handshakes, 24);
    assert_eq!(total.connections, 0);
}

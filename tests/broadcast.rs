//! Rooms end to end: fan-out across workers, isolation between rooms, and slow consumers.

mod common;

use std::time::Duration;

use common::*;
use corecast::Server;
use tungstenite::Message;

/// Opens members of `path` until both workers hold at least one (SO_REUSEPORT decides).
fn members_on_all_workers(server: &Server, path: &str) -> Vec<Client> {
    let mut members = Vec::new();
    loop {
        members.push(connect(server.local_addr(), path));
        if members.len() >= 8 {
            let n = members.len() as u64;
            let spread = || {
                let stats = server.stats();
                stats.iter().map(|c| c.handshakes).sum::<u64>() == n
                    && stats.iter().all(|c| c.connections > 0)
            };
            if poll_until(Duration::from_secs(2), spread) {
                return members;
            }
        }
        assert!(
            members.len() < 200,
            "the kernel never spread connections over both workers"
        );
    }
}

#[test]
fn every_member_on_every_worker_gets_every_message_in_order() {
    let server = start(config());
    assert_eq!(server.workers(), 2);
    let mut members = members_on_all_workers(&server, "/broadcast/everyone");
    for i in 0..20 {
        members[0]
            .send(Message::text(format!("hello {i}")))
            .unwrap();
    }
    members[1].send(Message::binary(vec![1u8, 2, 3])).unwrap();
    for (n, member) in members.iter_mut().enumerate() {
        let mut from_first = Vec::new();
        let mut got_binary = false;
        while from_first.len() < 20 || !got_binary {
            match member.read().unwrap() {
                Message::Text(t) => from_first.push(t.to_string()),
                Message::Binary(b) => {
                    assert_eq!(&b[..], &[1, 2, 3]);
                    got_binary = true;
                }
                other => panic!("member {n}: unexpected {other:?}"),
            }
        }
        let want: Vec<String> = (0..20).map(|i| format!("hello {i}")).collect();
        assert_eq!(from_first, want, "member {n} saw messages out of order");
    }
}

#[test]
fn rooms_are_isolated_and_bare_broadcast_is_the_default_room() {
    let server = start(config());
    let addr = server.local_addr();
    let mut a1 = connect(addr, "/broadcast/a");
    let mut a2 = connect(addr, "/broadcast/a");
    let mut b = connect(addr, "/broadcast/b");
    let mut default1 = connect(addr, "/broadcast");
    let mut default2 = connect(addr, "/broadcast/");
    a1.send(Message::text("for a")).unwrap();
    assert_eq!(a2.read().unwrap(), Message::text("for a"));
    assert_eq!(a1.read().unwrap(), Message::text("for a"));
    default1.send(Message::text("for default")).unwrap();
    assert_eq!(default2.read().unwrap(), Message::text("for default"));
    b.send(Message::text("for b")).unwrap();
    // b's first message is its own: it saw nothing from room a or the default room.
    assert_eq!(b.read().unwrap(), Message::text("for b"));
    // And a2 sees nothing from b or the default room: its next message is a1's next one.
    a1.send(Message::text("again a")).unwrap();
    assert_eq!(a2.read().unwrap(), Message::text("again a"));
}

#[test]
fn slow_consumer_is_closed_with_1008_and_others_keep_receiving() {
    let server = start(corecast::Config {
        max_backlog: 256 * 1024,
        ..config()
    });
    let addr = server.local_addr();
    let mut publisher = connect(addr, "/broadcast/busy");
    let mut fast = connect(addr, "/broadcast/busy");
    let mut slow = connect(addr, "/broadcast/busy");
    // The fast member reports each message it reads, and the publisher waits for that report
    // before sending the next: the fast member can never fall behind, whatever the machine's
    // speed, while the slow one (never reading) must.
    let (seen_tx, seen_rx) = std::sync::mpsc::sync_channel::<Option<u64>>(1);
    let reader = std::thread::spawn(move || loop {
        match fast.read() {
            Ok(Message::Binary(b)) => {
                let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
                if seen_tx.send(Some(seq)).is_err() {
                    return;
                }
            }
            Ok(Message::Close(_)) => return, // the server shutting down at the end of the test
            other => {
                let _ = seen_tx.send(None);
                panic!("fast member got {other:?}");
            }
        }
    });
    let slow_consumers = || server.stats().iter().map(|c| c.slow_consumers).sum::<u64>();
    let mut sent = 0u64;
    // Bounded: 4,000 x 32 KiB = 128 MiB, far beyond what loopback socket buffers hold.
    while sent < 4000 && (sent < 50 || slow_consumers() == 0) {
        let mut payload = vec![0xabu8; 32 * 1024];
        payload[..8].copy_from_slice(&sent.to_be_bytes());
        publisher.send(Message::binary(payload)).unwrap();
        // The publisher is a member too: it reads its own copy, so it never falls behind.
        assert!(matches!(publisher.read().unwrap(), Message::Binary(_)));
        assert_eq!(
            seen_rx.recv().unwrap(),
            Some(sent),
            "fast member lost or reordered a message"
        );
        sent += 1;
    }
    wait_until("the slow consumer to be counted", || slow_consumers() == 1);
    // The fast member is still served after the slow one was cut off.
    publisher.send(Message::binary(vec![0u8; 8])).unwrap();
    assert_eq!(seen_rx.recv().unwrap(), Some(0));
    drop(seen_rx);
    // The slow member finds, after what it was sent before falling behind, a 1008 close.
    let mut received = 0u64;
    let code = loop {
        match slow.read() {
            Ok(Message::Binary(_)) => received += 1,
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            other => panic!("slow consumer got {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(
        received < sent,
        "the slow consumer cannot have received everything"
    );
    drop((publisher, slow));
    server.shutdown();
    reader
        .join()
        .expect("fast member saw only its messages, then the shutdown close");
}

#[test]
fn a_members_message_reaches_it_before_the_close_for_a_violation_right_behind_it() {
    let server = start(config());
    let (mut s, _) = raw_upgrade(server.local_addr(), "/broadcast/strict");
    let mut burst = client_frame(0x81, b"valid first", true);
    burst.extend(client_frame(0x81, b"unmasked", false));
    std::io::Write::write_all(&mut s, &burst).unwrap();
    assert_eq!(
        read_frame(&mut s).unwrap().unwrap(),
        (0x81, b"valid first".to_vec())
    );
    assert_eq!(read_close_code(&mut s), Some(1002));
}

#[test]
fn messages_sent_right_before_a_member_vanishes_are_still_delivered() {
    let server = start(config());
    let addr = server.local_addr();
    let mut listener = connect(addr, "/broadcast/abrupt");
    // Request, a small frame and EOF (no close frame) in one burst: the frame arrives with the
    // request, so the read that parses it goes on to read the EOF and ends the connection in
    // the same pass that published the message.
    for i in 0..20u8 {
        let mut s = tcp(addr);
        let mut bytes = upgrade_request("/broadcast/abrupt", "").into_bytes();
        bytes.extend(client_frame(0x82, &[i; 100], true));
        std::io::Write::write_all(&mut s, &bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(
            listener.read().unwrap(),
            Message::binary(vec![i; 100]),
            "message {i}"
        );
    }
}

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
            if wait_briefly(spread) {
                return members;
            }
        }
        assert!(
            members.len() < 200,
            "the kernel never spread connections over both workers"
        );
    }
}

fn wait_briefly(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
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
    const N: usize = 400;
    let reader = std::thread::spawn(move || {
        for i in 0..N {
            match fast.read().unwrap() {
                Message::Binary(b) => assert_eq!(&b[..8], &(i as u64).to_be_bytes()),
                other => panic!("fast reader got {other:?}"),
            }
        }
    });
    for i in 0..N {
        let mut payload = vec![0xabu8; 32 * 1024];
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        publisher.send(Message::binary(payload)).unwrap();
        // The publisher is a member too: it reads its own copy, so it never falls behind.
        assert!(matches!(publisher.read().unwrap(), Message::Binary(_)));
    }
    reader.join().unwrap();
    wait_until("the slow consumer to be counted", || {
        server.stats().iter().map(|c| c.slow_consumers).sum::<u64>() == 1
    });
    // The slow member finds, after what it was sent before falling behind, a 1008 close.
    let mut received = 0;
    let code = loop {
        match slow.read() {
            Ok(Message::Binary(_)) => received += 1,
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            other => panic!("slow consumer got {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(
        received < N,
        "the slow consumer cannot have received everything"
    );
}

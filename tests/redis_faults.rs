//! The Redis bridge under faults, against a real `redis-server` that the tests start, kill,
//! restart on the same port and freeze: Redis down at start, Redis restarted mid-run, Redis
//! stalled. In every case local delivery goes on, no worker waits, what could not reach the
//! other instances is counted, and the link comes back by itself.
//! Needs `redis-server` on PATH, so `#[ignore]`d here and run by `.ci/run`.

mod common;

use common::redis_server::{free_port, RedisServer};
use common::*;
use corecast::{BridgeStats, Config, Server};
use tungstenite::Message;

const PREFIX: &str = "faults:room:";

fn instance(redis: &RedisServer, tune: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config {
        redis: Some(redis.url()),
        redis_prefix: PREFIX.to_string(),
        ..config()
    };
    tune(&mut config);
    start(config)
}

fn bridge(server: &Server) -> BridgeStats {
    server.bridge_stats().expect("started with --redis")
}

/// The next data message, skipping keepalive pings.
fn next_message(member: &mut Client) -> Message {
    loop {
        match member.read().expect("read") {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

fn wait_subscribed(redis: &RedisServer, room: &str, n: u64) {
    let channel = format!("{PREFIX}{room}");
    wait_until(&format!("{n} subscribers of {channel}"), || {
        redis.numsub(&channel) == n
    });
}

#[test]
#[ignore = "needs redis-server (run by .ci/run)"]
fn redis_down_at_start_serves_locally_then_links_up_when_it_comes() {
    let mut redis = RedisServer::not_started(free_port());
    let (a, b) = (instance(&redis, |_| {}), instance(&redis, |_| {}));
    let mut a1 = connect(a.local_addr(), "/broadcast/r");
    let mut a2 = connect(a.local_addr(), "/broadcast/r");
    let mut b1 = connect(b.local_addr(), "/broadcast/r");
    a1.send(Message::text("local only")).unwrap();
    assert_eq!(next_message(&mut a1), Message::text("local only"));
    assert_eq!(next_message(&mut a2), Message::text("local only"));
    wait_until("the unsendable frame to be counted", || {
        bridge(&a).unlinked == 1
    });
    let stats = bridge(&a);
    assert_eq!((stats.publisher_up, stats.subscriber_up), (0, 0));
    assert_eq!((stats.published, stats.received), (0, 0));

    redis.launch();
    wait_until("both instances linked and subscribed", || {
        [&a, &b].iter().all(|s| bridge(s).publisher_up == 1) && redis.numsub("faults:room:r") == 2
    });
    a1.send(Message::text("linked")).unwrap();
    // B's first message is the one published after the link came up.
    assert_eq!(next_message(&mut b1), Message::text("linked"));
    assert_eq!(next_message(&mut a1), Message::text("linked"));
    assert_eq!(next_message(&mut a2), Message::text("linked"));
    // However many attempts failed, each link came up once (and the log says so once).
    for server in [&a, &b] {
        let stats = bridge(server);
        assert_eq!(
            (stats.publisher_connects, stats.subscriber_connects),
            (1, 1)
        );
    }
}

#[test]
#[ignore = "needs redis-server (run by .ci/run)"]
fn redis_restart_reconnects_resubscribes_and_counts_the_gap() {
    let mut redis = RedisServer::start();
    let (a, b) = (instance(&redis, |_| {}), instance(&redis, |_| {}));
    let mut a1 = connect(a.local_addr(), "/broadcast/r");
    let mut b1 = connect(b.local_addr(), "/broadcast/r");
    wait_subscribed(&redis, "r", 2);
    a1.send(Message::text("before")).unwrap();
    assert_eq!(next_message(&mut b1), Message::text("before"));
    assert_eq!(next_message(&mut a1), Message::text("before"));

    redis.kill();
    wait_until("A's subscriber to see the link go", || {
        bridge(&a).subscriber_up == 0
    });
    const GAP: u64 = 5;
    for i in 0..GAP {
        a1.send(Message::text(format!("gap {i}"))).unwrap();
        // Local delivery does not wait for Redis.
        assert_eq!(next_message(&mut a1), Message::text(format!("gap {i}")));
    }
    wait_until("the gap to be counted as dropped", || {
        bridge(&a).unlinked == GAP
    });

    redis.launch();
    wait_until(
        "both publishers reconnected and both rooms resubscribed",
        || {
            [&a, &b].iter().all(|s| bridge(s).publisher_connects == 2)
                && redis.numsub("faults:room:r") == 2
        },
    );
    a1.send(Message::text("after from a")).unwrap();
    b1.send(Message::text("after from b")).unwrap();
    // Nothing of the gap arrives late, and delivery resumed both ways.
    let mut heard_by_b = [next_message(&mut b1), next_message(&mut b1)];
    heard_by_b.sort_by_key(|m| m.to_string());
    assert_eq!(
        heard_by_b,
        [Message::text("after from a"), Message::text("after from b")]
    );
    let mut heard_by_a = [next_message(&mut a1), next_message(&mut a1)];
    heard_by_a.sort_by_key(|m| m.to_string());
    assert_eq!(heard_by_a, heard_by_b);
    // A publisher counts a frame once Redis has answered, which may be after it was delivered.
    wait_until("both publishes counted", || {
        bridge(&a).published == 2 && bridge(&b).published == 1
    });
    let (sa, sb) = (bridge(&a), bridge(&b));
    assert_eq!(
        (sa.published, sa.unlinked, sa.subscriber_connects),
        (2, GAP, 2)
    );
    assert_eq!(
        (sb.published, sb.received, sb.subscriber_connects),
        (1, 2, 2)
    );
}

#[test]
#[ignore = "needs redis-server (run by .ci/run)"]
fn a_stalled_redis_overflows_the_bounded_queue_without_stalling_anyone() {
    const QUEUE: usize = 64 << 10;
    const SIZE: usize = 16 << 10;
    let redis = RedisServer::start();
    let a = instance(&redis, |c| c.redis_queue = QUEUE);
    let b = instance(&redis, |_| {});
    let mut a1 = connect(a.local_addr(), "/broadcast/r");
    let mut a2 = connect(a.local_addr(), "/broadcast/r");
    let mut b1 = connect(b.local_addr(), "/broadcast/r");
    wait_subscribed(&redis, "r", 2);

    redis.pause();
    let frame = |seq: u64| {
        let mut payload = vec![0u8; SIZE];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        Message::binary(payload)
    };
    // Bounded: 4,000 x 16 KiB is far more than the queue holds.
    let mut sent = 0u64;
    while sent < 4000 && bridge(&a).overflow == 0 {
        a1.send(frame(sent)).unwrap();
        // Both local members get every frame at once: the worker never waits for Redis.
        assert_eq!(next_message(&mut a1), frame(sent));
        assert_eq!(next_message(&mut a2), frame(sent));
        sent += 1;
        assert!(bridge(&a).queued_bytes <= QUEUE as u64);
    }
    let stalled = bridge(&a);
    assert!(stalled.overflow > 0, "the queue never filled");
    assert!(stalled.queued_bytes <= QUEUE as u64);

    redis.resume();
    wait_until("the queue to drain", || bridge(&a).queued_bytes == 0);
    a1.send(Message::text("after")).unwrap();
    assert_eq!(next_message(&mut a1), Message::text("after"));
    // B gets what went through, in order and once each, then the message after the stall.
    let mut last = None;
    let mut got = 0;
    loop {
        match next_message(&mut b1) {
            Message::Binary(b) => {
                let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
                assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
                last = Some(seq);
                got += 1;
            }
            Message::Text(t) if t.as_str() == "after" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every frame is accounted for: published, dropped at the full queue, or (had the stall
    // outlasted the answer timeout) dropped with the link. A publisher counts a frame once Redis
    // has answered, which may be after it was delivered.
    wait_until("every frame accounted for", || {
        let s = bridge(&a);
        s.published + s.overflow + s.unlinked == sent + 1
    });
    let stats = bridge(&a);
    assert_eq!(got, stats.published - 1);
    assert_eq!(bridge(&b).received, stats.published);
}

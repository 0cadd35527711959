//! Rooms across instances through a real `redis-server` (`--redis`): fan-out once to every
//! member on every instance, per-publisher order, and subscriptions that follow membership.
//! Needs `redis-server` on PATH, so `#[ignore]`d here and run by `.ci/run`.

mod common;

use common::redis_server::RedisServer;
use common::*;
use corecast::{Config, Server};
use tungstenite::Message;

const PREFIX: &str = "test:room:";

fn instance(redis: &RedisServer) -> Server {
    start(Config {
        redis: Some(redis.url()),
        redis_prefix: PREFIX.to_string(),
        ..config()
    })
}

/// Waits until `n` instances are subscribed to `room`'s channel.
fn wait_subscribed(redis: &RedisServer, room: &str, n: u64) {
    let channel = format!("{PREFIX}{room}");
    wait_until(&format!("{n} subscribers of {channel}"), || {
        redis.numsub(&channel) == n
    });
}

fn sum(servers: &[&Server], f: impl Fn(&corecast::BridgeStats) -> u64) -> u64 {
    servers.iter().map(|s| f(&s.bridge_stats().unwrap())).sum()
}

#[test]
#[ignore = "needs redis-server (run by .ci/run)"]
fn a_publish_on_one_instance_reaches_every_member_on_every_instance_once() {
    let redis = RedisServer::start();
    let servers = [instance(&redis), instance(&redis), instance(&redis)];
    // Three members per instance, so both workers of each are likely to hold one.
    let mut members: Vec<(usize, Client)> = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        for _ in 0..3 {
            members.push((i, connect(server.local_addr(), "/broadcast/all")));
        }
    }
    // One subscription per instance, however many members and workers it has.
    wait_subscribed(&redis, "all", 3);
    let (a, c) = (0, 6);
    for i in 0..20 {
        members[a].1.send(Message::text(format!("a {i}"))).unwrap();
    }
    members[a].1.send(Message::text("a end")).unwrap();
    let [sa, sb, sc] = &servers;
    // Every instance has handled all 21 frames from Redis (B and C delivered them, A skipped
    // its own echo) before C's marker is published: a duplicate would come before the marker.
    wait_until("the frames heard on redis", || {
        sa.bridge_stats().unwrap().echoes == 21 && sum(&[sb, sc], |s| s.received) == 42
    });
    members[c].1.send(Message::text("c end")).unwrap();
    let mut want: Vec<String> = (0..20).map(|i| format!("a {i}")).collect();
    want.push("a end".into());
    want.push("c end".into());
    for (n, (on, member)) in members.iter_mut().enumerate() {
        let got: Vec<String> = (0..want.len()).map(|_| next_text(member)).collect();
        assert_eq!(got, want, "member {n} on instance {on}");
    }
    // A publisher counts a frame once Redis has answered, which may be after it was delivered.
    wait_until("the publishes counted", || {
        sa.bridge_stats().unwrap().published == 21 && sc.bridge_stats().unwrap().published == 1
    });
    let stats: Vec<_> = servers.iter().map(|s| s.bridge_stats().unwrap()).collect();
    for s in &stats {
        assert_eq!(
            (s.overflow, s.unlinked, s.inbox_full, s.malformed),
            (0, 0, 0, 0)
        );
    }
    // The bridge's counters are in the metrics too.
    let metrics = http_exchange(sa.local_addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        metrics.contains("corecast_bridge_published_total 21\n"),
        "{metrics}"
    );
    assert!(metrics.contains("corecast_bridge_subscriber_up 1\n"));
    // Nothing on a plain broadcast changes without --redis: the test suite's other files.
}

#[test]
#[ignore = "needs redis-server (run by .ci/run)"]
fn each_publishers_order_holds_on_every_instance() {
    let redis = RedisServer::start();
    let servers = [instance(&redis), instance(&redis), instance(&redis)];
    let mut publishers: Vec<Client> = servers[..2]
        .iter()
        .map(|s| connect(s.local_addr(), "/broadcast/order"))
        .collect();
    let mut listeners: Vec<Client> = servers
        .iter()
        .map(|s| connect(s.local_addr(), "/broadcast/order"))
        .collect();
    wait_subscribed(&redis, "order", 3);
    const EACH: usize = 300;
    // Interleaved, and not waiting for anything between sends: the bridge batches and
    // pipelines as it likes, and order must hold anyway.
    for i in 0..EACH {
        for (p, publisher) in publishers.iter_mut().enumerate() {
            publisher.send(Message::text(format!("{p} {i}"))).unwrap();
        }
    }
    let members = publishers.iter_mut().chain(listeners.iter_mut());
    for (n, member) in members.enumerate() {
        let mut next = [0usize; 2];
        while next.iter().sum::<usize>() < 2 * EACH {
            let text = next_text(member);
            let (p, i) = text.split_once(' ').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[p], "member {n}: publisher {p} out of order or lost");
            next[p] += 1;
        }
    }
}

#[test]
#[ignore = "needs redis-server (run by .ci/run)"]
fn joining_and_leaving_drives_subscribe_and_unsubscribe() {
    let redis = RedisServer::start();
    let server = instance(&redis);
    let addr = server.local_addr();
    let pattern = format!("{PREFIX}*");
    assert!(redis.channels(&pattern).is_empty());
    // Several members of "x" (spread over the workers by the kernel) and one of "y".
    let mut x: Vec<Client> = (0..4).map(|_| connect(addr, "/broadcast/x")).collect();
    let y = connect(addr, "/broadcast/y");
    wait_until("both rooms subscribed", || {
        redis.channels(&pattern) == [format!("{PREFIX}x"), format!("{PREFIX}y")]
    });
    assert_eq!(redis.numsub(&format!("{PREFIX}x")), 1);
    drop(y);
    wait_until("y unsubscribed", || {
        redis.channels(&pattern) == [format!("{PREFIX}x")]
    });
    // The last member of x on one worker leaving does not unsubscribe while another remains.
    while x.len() > 1 {
        x.pop().unwrap().close(None).unwrap();
        let open = x.len() as u64;
        wait_until("the member to be gone", || {
            total(&server, |c| c.connections) == open
        });
        assert_eq!(redis.channels(&pattern), [format!("{PREFIX}x")]);
    }
    assert_eq!(server.bridge_stats().unwrap().subscriptions, 1);
    drop(x);
    wait_until("x unsubscribed", || redis.channels(&pattern).is_empty());
    // And a room that comes back is subscribed again.
    let _again = connect(addr, "/broadcast/x");
    wait_until("x subscribed again", || {
        redis.channels(&pattern) == [format!("{PREFIX}x")]
    });
}

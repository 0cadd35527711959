//! Rooms across instances through a local 3-node Redis Cluster (`--redis-cluster`): sharded
//! pub/sub, each room's channel subscribed on the shard that owns it, and every member on
//! every instance getting every message once, in order. Needs `redis-server` and `redis-cli`
//! on PATH, so `#[ignore]`d here and run by `.ci/run`.

mod common;

use common::redis_server::RedisCluster;
use common::*;
use corecast::{Config, Server};
use tungstenite::Message;

const PREFIX: &str = "cluster:room:";

#[test]
#[ignore = "needs redis-server (run by .ci/run)"]
fn rooms_span_instances_through_sharded_pubsub() {
    let cluster = RedisCluster::start(3);
    let servers: Vec<Server> = (0..3)
        .map(|_| {
            start(Config {
                redis_cluster: cluster.urls(),
                redis_prefix: PREFIX.to_string(),
                ..config()
            })
        })
        .collect();
    // Rooms whose channels hash to different shards (checked below).
    let rooms = ["a", "b", "c", "d", "e", "f"];
    // members[room][instance]
    let mut members: Vec<Vec<Client>> = rooms
        .iter()
        .map(|room| {
            servers
                .iter()
                .map(|s| connect(s.local_addr(), &format!("/broadcast/{room}")))
                .collect()
        })
        .collect();
    for room in rooms {
        let channel = format!("{PREFIX}{room}");
        wait_until(&format!("3 sharded subscribers of {channel}"), || {
            cluster.shard_numsub(&channel) == 3
        });
    }
    let mut shards: Vec<usize> = rooms
        .iter()
        .flat_map(|room| cluster.nodes_serving(&format!("{PREFIX}{room}")))
        .collect();
    shards.sort();
    shards.dedup();
    assert!(
        shards.len() > 1,
        "every room on one shard: pick other names"
    );

    const EACH: usize = 10;
    for (r, room) in rooms.iter().enumerate() {
        for i in 0..EACH {
            members[r][0]
                .send(Message::text(format!("{room} {i}")))
                .unwrap();
        }
    }
    let frames = (rooms.len() * EACH) as u64;
    // Everything from instance 0 has been handled everywhere before the markers go out, so a
    // duplicate would come before a marker.
    wait_until("every frame heard on the cluster", || {
        let stats: Vec<_> = servers.iter().map(|s| s.bridge_stats().unwrap()).collect();
        stats[0].echoes == frames && stats[1].received == frames && stats[2].received == frames
    });
    for (r, room) in rooms.iter().enumerate() {
        members[r][2]
            .send(Message::text(format!("{room} end")))
            .unwrap();
    }
    for (r, room) in rooms.iter().enumerate() {
        let mut want: Vec<String> = (0..EACH).map(|i| format!("{room} {i}")).collect();
        want.push(format!("{room} end"));
        for (on, member) in members[r].iter_mut().enumerate() {
            let got: Vec<String> = (0..want.len()).map(|_| next_text(member)).collect();
            assert_eq!(got, want, "room {room}, member on instance {on}");
        }
    }
    for server in &servers {
        let stats = server.bridge_stats().unwrap();
        assert_eq!(stats.subscriptions, rooms.len() as u64);
        assert_eq!(stats.subscriber_up, 3, "one pub/sub connection per shard");
        assert_eq!((stats.overflow, stats.unlinked, stats.malformed), (0, 0, 0));
    }
    // The last members leaving unsubscribe every room on every shard.
    drop(members);
    wait_until("every room unsubscribed", || {
        cluster.shard_channels(&format!("{PREFIX}*")).is_empty()
    });
}

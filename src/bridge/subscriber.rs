//! The subscribing side: pub/sub connections subscribed to the channel of every room this
//! instance has members in (`Interest`), handing each frame another instance published to the
//! workers as `Envelope::Deliver` through their mailboxes, and skipping this instance's own.
//!
//! With one Redis, one connection (SUBSCRIBE) covers every room. With `--redis-cluster`, rooms
//! use sharded pub/sub: each shard's primary gets its own connection and thread (SSUBSCRIBE)
//! for the rooms whose channel hashes to its slots, under a supervisor that reads the shard map
//! (CLUSTER SLOTS) and starts over from a fresh map whenever one of them fails.
//!
//! Connections speak RESP3, so messages and subscription confirmations arrive as push values
//! whatever the command. Each is read with a short timeout so that, between messages, its
//! thread notices changes of `Interest` and shutdown. A new connection starts with nothing
//! subscribed, so after a reconnect every live room is subscribed again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use redis::cluster_routing::Slot;
use redis::{PushKind, Value};

use crate::bridge::connector::{Connector, Role, CONNECT_TIMEOUT};
use crate::bridge::wire::{self, Heard, Origin};
use crate::bridge::Shared;
use crate::fanout::bus::{Envelope, Mailbox};

/// Longest wait for a message before looking at `Interest` and the stop flags again: how late,
/// at most, a new room's subscription goes out.
const POLL: Duration = Duration::from_millis(20);
/// A cluster's shard sessions that ran this long before one failed were working: the pause
/// before the next attempt starts small again.
const STEADY: Duration = Duration::from_secs(5);
/// Longest pause between two attempts at a cluster's shards.
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// Time Redis has to confirm a subscription before the link is taken as broken (a shard that
/// no longer owns the slot answers with an error instead of a confirmation).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// What every subscribing thread needs to hand frames over.
pub struct Deliverer {
    pub shared: Arc<Shared>,
    pub origin: Origin,
    pub prefix: String,
    pub mailboxes: Vec<Mailbox>,
    pub stop: Arc<AtomicBool>,
}

impl Deliverer {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn channel(&self, room: &str) -> String {
        format!("{}{room}", self.prefix)
    }

    /// Hands one message heard on `channel` to every worker with a member of its room.
    fn hand_over(&self, channel: &[u8], payload: &[u8], subscribed: &HashSet<Arc<str>>) {
        let meters = &self.shared.meters;
        let room = std::str::from_utf8(channel)
            .ok()
            .and_then(|c| c.strip_prefix(self.prefix.as_str()));
        // A message for a room unsubscribed a moment ago has no local member left.
        let Some(room) = room.and_then(|room| subscribed.get(room)) else {
            return;
        };
        let frame = match wire::decode(&self.origin, payload) {
            Heard::Foreign(frame) => frame,
            Heard::Echo => {
                meters.echoes.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Heard::Malformed => {
                meters.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        meters.received.fetch_add(1, Ordering::Relaxed);
        self.shared.interest.for_each_worker(room, |worker| {
            let Some(mailbox) = self.mailboxes.get(worker) else {
                return;
            };
            let envelope = Envelope::Deliver {
                room: room.clone(),
                frame: frame.clone(),
            };
            match mailbox.tx.try_send(envelope) {
                Ok(()) => {
                    let _ = mailbox.waker.wake();
                }
                Err(TrySendError::Full(_)) => {
                    meters.inbox_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        });
    }
}

/// Which rooms one connection serves, and with which commands.
#[derive(Clone)]
pub enum Scope {
    /// One Redis: every room, SUBSCRIBE.
    Every,
    /// One shard of a cluster: the rooms whose channel's slot maps to shard `me`, SSUBSCRIBE.
    Shard {
        owners: Arc<HashMap<Slot, usize>>,
        me: usize,
    },
}

impl Scope {
    fn owns(&self, channel: &str) -> bool {
        match self {
            Scope::Every => true,
            Scope::Shard { owners, me } => owners.get(&Slot::for_key(channel)) == Some(me),
        }
    }

    /// `channels` split into the argument lists of (un)subscribe commands: one list for plain
    /// pub/sub; one per slot for sharded pub/sub, which refuses channels of different slots in
    /// one command. Never an empty list: UNSUBSCRIBE without channels means every channel.
    fn groups<'c>(&self, channels: &'c [String]) -> Vec<Vec<&'c String>> {
        if channels.is_empty() {
            return Vec::new();
        }
        match self {
            Scope::Every => vec![channels.iter().collect()],
            Scope::Shard { .. } => {
                let mut by_slot: HashMap<Slot, Vec<&String>> = HashMap::new();
                for channel in channels {
                    by_slot
                        .entry(Slot::for_key(channel))
                        .or_default()
                        .push(channel);
                }
                by_slot.into_values().collect()
            }
        }
    }

    fn commands(&self) -> (&'static str, &'static str) {
        match self {
            Scope::Every => ("SUBSCRIBE", "UNSUBSCRIBE"),
            Scope::Shard { .. } => ("SSUBSCRIBE", "SUNSUBSCRIBE"),
        }
    }
}

/// One pub/sub connection's subscriptions, kept equal to the part of `Interest` in its scope.
struct Session<'a> {
    deliverer: &'a Deliverer,
    scope: &'a Scope,
    /// Rooms subscribed, by name; the `Arc` is reused for deliveries.
    subscribed: HashSet<Arc<str>>,
    /// Channels subscribed but not yet confirmed, with the deadline for it.
    unconfirmed: HashMap<Vec<u8>, Instant>,
    seen: Option<u64>,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let meters = &self.deliverer.shared.meters;
        meters
            .subscriptions
            .fetch_sub(self.subscribed.len() as u64, Ordering::Relaxed);
    }
}

impl<'a> Session<'a> {
    /// Serves one connection until it fails (`Err`) or `stop` is raised (`Ok`).
    fn serve(
        deliverer: &'a Deliverer,
        scope: &'a Scope,
        conn: &mut redis::Connection,
        stop: &AtomicBool,
    ) -> redis::RedisResult<()> {
        conn.set_read_timeout(Some(POLL))?;
        let mut session = Session {
            deliverer,
            scope,
            subscribed: HashSet::new(),
            unconfirmed: HashMap::new(),
            seen: None,
        };
        while !stop.load(Ordering::Relaxed) && !deliverer.stopped() {
            if let Some(wanted) = deliverer.shared.interest.changed_since(&mut session.seen) {
                session.resubscribe(conn, wanted)?;
            }
            match conn.recv_response() {
                Ok(Value::Push { kind, data }) => session.heard(kind, data),
                // Only an error can come as a reply on this connection (to a subscription the
                // node refuses, say MOVED after a resharding): start over.
                Ok(other) => return Err(unexpected(other)),
                Err(e) if e.is_timeout() => session.check_confirmed()?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn heard(&mut self, kind: PushKind, data: Vec<Value>) {
        match (kind, data.as_slice()) {
            (
                PushKind::Message | PushKind::SMessage,
                [Value::BulkString(channel), Value::BulkString(payload)],
            ) => self.deliverer.hand_over(channel, payload, &self.subscribed),
            (PushKind::Subscribe | PushKind::SSubscribe, [Value::BulkString(channel), ..]) => {
                self.unconfirmed.remove(channel);
            }
            _ => {}
        }
    }

    /// Brings the connection's subscriptions to the rooms of `wanted` in scope.
    fn resubscribe(
        &mut self,
        conn: &mut redis::Connection,
        wanted: Vec<Arc<str>>,
    ) -> redis::RedisResult<()> {
        let deliverer = self.deliverer;
        let wanted: HashSet<Arc<str>> = wanted
            .into_iter()
            .filter(|room| self.scope.owns(&deliverer.channel(room)))
            .collect();
        let gone: Vec<String> = self
            .subscribed
            .difference(&wanted)
            .map(|room| deliverer.channel(room))
            .collect();
        let new: Vec<String> = wanted
            .difference(&self.subscribed)
            .map(|room| deliverer.channel(room))
            .collect();
        let (subscribe, unsubscribe) = self.scope.commands();
        for group in self.scope.groups(&gone) {
            redis::cmd(unsubscribe)
                .arg(group)
                .set_no_response(true)
                .exec(conn)?;
        }
        for group in self.scope.groups(&new) {
            redis::cmd(subscribe)
                .arg(group)
                .set_no_response(true)
                .exec(conn)?;
        }
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        for channel in new {
            self.unconfirmed.insert(channel.into_bytes(), deadline);
        }
        for channel in &gone {
            self.unconfirmed.remove(channel.as_bytes());
        }
        let meters = &deliverer.shared.meters;
        meters
            .subscriptions
            .fetch_sub(self.subscribed.len() as u64, Ordering::Relaxed);
        meters
            .subscriptions
            .fetch_add(wanted.len() as u64, Ordering::Relaxed);
        self.subscribed = wanted;
        Ok(())
    }

    fn check_confirmed(&self) -> redis::RedisResult<()> {
        let now = Instant::now();
        match self.unconfirmed.iter().find(|(_, &by)| by <= now) {
            Some((channel, _)) => Err(failure(
                "subscription not confirmed",
                String::from_utf8_lossy(channel).into_owned(),
            )),
            None => Ok(()),
        }
    }
}

fn unexpected(reply: Value) -> redis::RedisError {
    failure("unexpected reply", format!("{reply:?}"))
}

/// An error of ours, as the kind that makes the link start over.
fn failure(what: &'static str, detail: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what, detail))
}

/// Connection settings of `info` speaking RESP3, which the sessions rely on.
pub fn resp3(info: redis::ConnectionInfo) -> redis::ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
}

/// A connector for pub/sub connections to the node at `info`.
fn node_connector(
    info: redis::ConnectionInfo,
    shared: Arc<Shared>,
) -> Connector<redis::Connection> {
    let target = info.addr().to_string();
    Connector::new(Role::Subscriber, target, shared, move || {
        redis::Client::open(info.clone())?.get_connection_with_timeout(CONNECT_TIMEOUT)
    })
}

/// One Redis: a single connection for every room, reconnected until the bridge stops.
pub fn run_single(deliverer: Deliverer, info: redis::ConnectionInfo) {
    let mut connector = node_connector(resp3(info), deliverer.shared.clone());
    let never = AtomicBool::new(false);
    while !deliverer.stopped() {
        let Some(mut conn) = connector.connect() else {
            std::thread::sleep(connector.until_next_try().min(POLL));
            continue;
        };
        if let Err(e) = Session::serve(&deliverer, &Scope::Every, &mut conn, &never) {
            connector.lost(&e);
        }
    }
}

/// A cluster: read the shard map from any seed, run one session per shard primary, and start
/// over when any of them fails, until the bridge stops.
pub fn run_cluster(deliverer: Deliverer, seeds: Vec<redis::ConnectionInfo>) {
    let deliverer = Arc::new(deliverer);
    let target = seeds
        .iter()
        .map(|info| info.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let map_seeds = seeds.clone();
    let mut topology = Connector::new(
        Role::Topology,
        target,
        deliverer.shared.clone(),
        move || shard_map(&map_seeds),
    );
    // Wait before reading the map again after a failure, growing while the failures come
    // quickly (a shard that keeps refusing), so a broken cluster is not hammered.
    let mut pause = POLL;
    while !deliverer.stopped() {
        let Some(shards) = topology.connect() else {
            std::thread::sleep(topology.until_next_try().min(POLL));
            continue;
        };
        let started = Instant::now();
        let Some(error) = serve_shards(&deliverer, &seeds[0], shards) else {
            continue;
        };
        topology.lost(&error);
        pause = if started.elapsed() > STEADY {
            POLL
        } else {
            (pause * 2).min(MAX_PAUSE)
        };
        let until = Instant::now() + pause;
        while !deliverer.stopped() && Instant::now() < until {
            std::thread::sleep(POLL);
        }
    }
}

/// The primaries of a cluster and which slots each owns.
struct Shards {
    primaries: Vec<(String, u16)>,
    owners: Arc<HashMap<Slot, usize>>,
}

/// Reads CLUSTER SLOTS from the first seed that answers.
fn shard_map(seeds: &[redis::ConnectionInfo]) -> redis::RedisResult<Shards> {
    let mut last = None;
    for seed in seeds {
        let reply = redis::Client::open(seed.clone())
            .and_then(|client| client.get_connection_with_timeout(CONNECT_TIMEOUT))
            .and_then(|mut conn| {
                conn.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(&mut conn)
            });
        match reply.and_then(|reply| parse_slots(reply, seed)) {
            Ok(shards) => return Ok(shards),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| failure("no cluster seed", String::new())))
}

/// CLUSTER SLOTS: `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn parse_slots(reply: Value, seed: &redis::ConnectionInfo) -> redis::RedisResult<Shards> {
    let ranges: Vec<Vec<Value>> = redis::from_redis_value(reply)?;
    let mut primaries: Vec<(String, u16)> = Vec::new();
    let mut owners = HashMap::new();
    for range in ranges {
        let [start, end, primary, ..] = range.as_slice() else {
            return Err(unexpected(Value::Array(range)));
        };
        let (start, end): (u16, u16) = (
            redis::from_redis_value_ref(start)?,
            redis::from_redis_value_ref(end)?,
        );
        let node: Vec<Value> = redis::from_redis_value_ref(primary)?;
        let [host, port, ..] = node.as_slice() else {
            return Err(unexpected(Value::Array(node)));
        };
        let mut host: String = redis::from_redis_value_ref(host)?;
        // A node that does not know its own address reports an empty host: the seed's.
        if host.is_empty() {
            if let redis::ConnectionAddr::Tcp(seed_host, _) = seed.addr() {
                host = seed_host.clone();
            }
        }
        let addr = (host, redis::from_redis_value_ref::<u16>(port)?);
        let index = match primaries.iter().position(|p| *p == addr) {
            Some(index) => index,
            None => {
                primaries.push(addr);
                primaries.len() - 1
            }
        };
        for slot in start..=end {
            if let Some(slot) = Slot::new(slot) {
                owners.insert(slot, index);
            }
        }
    }
    if primaries.is_empty() {
        return Err(failure("the cluster has no slots assigned", String::new()));
    }
    Ok(Shards {
        primaries,
        owners: Arc::new(owners),
    })
}

/// Runs one session per primary until one fails (its error) or the bridge stops (`None`).
fn serve_shards(
    deliverer: &Arc<Deliverer>,
    seed: &redis::ConnectionInfo,
    shards: Shards,
) -> Option<redis::RedisError> {
    let end = Arc::new(AtomicBool::new(false));
    let (spawn_failed, failed) = crossbeam_channel::unbounded();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for (me, (host, port)) in shards.primaries.into_iter().enumerate() {
        let info = resp3(
            seed.clone()
                .set_addr(redis::ConnectionAddr::Tcp(host, port)),
        );
        let scope = Scope::Shard {
            owners: shards.owners.clone(),
            me,
        };
        let (deliverer, end, failed_tx) = (deliverer.clone(), end.clone(), spawn_failed.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("corecast-redis-sub{me}"))
            .spawn(move || {
                let info_addr = info.addr().to_string();
                let mut connector = node_connector(info, deliverer.shared.clone());
                let result = match connector.connect() {
                    Some(mut conn) => Session::serve(&deliverer, &scope, &mut conn, &end),
                    None => Err(failure("cannot connect to a shard", info_addr)),
                };
                if let Err(e) = result {
                    connector.lost(&e);
                    let _ = failed_tx.send(e);
                }
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                let _ = spawn_failed.send(redis::RedisError::from(e));
                break;
            }
        }
    }
    drop(spawn_failed);
    let mut error = None;
    while !deliverer.stopped() {
        match failed.recv_timeout(POLL) {
            Ok(e) => {
                error = Some(e);
                break;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    end.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn seed() -> redis::ConnectionInfo {
        redis::IntoConnectionInfo::into_connection_info("redis://10.0.0.9:7000").unwrap()
    }

    #[test]
    fn a_frame_from_another_instance_goes_only_to_workers_with_a_member() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (mailboxes, inboxes): (Vec<Mailbox>, Vec<_>) = (0..3)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::bounded(8);
                let waker = waker.clone();
                (Mailbox { tx, waker }, rx)
            })
            .unzip();
        let deliverer = Deliverer {
            shared: Arc::new(Shared::new(1 << 20)),
            origin: Origin::random(),
            prefix: "p:".into(),
            mailboxes,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let room: Arc<str> = Arc::from("lobby");
        deliverer.shared.interest.opened(&room, 2);
        let subscribed = HashSet::from([room.clone()]);
        let payload = wire::encode(&Origin::random(), b"frame");
        deliverer.hand_over(b"p:lobby", &payload, &subscribed);
        let heard: Vec<usize> = inboxes.iter().map(|rx| rx.len()).collect();
        assert_eq!(heard, [0, 0, 1], "only worker 2 has a member");
        // A member joins on worker 0: served from the next frame on, with no resubscription.
        deliverer.shared.interest.opened(&room, 0);
        deliverer.hand_over(b"p:lobby", &payload, &subscribed);
        let heard: Vec<usize> = inboxes.iter().map(|rx| rx.len()).collect();
        assert_eq!(heard, [1, 0, 2]);
    }

    #[test]
    fn the_shard_map_gives_every_slot_its_primary() {
        let range = |start, end, host: &str, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
                // A replica, which does not serve SSUBSCRIBE for us.
                Value::Array(vec![bulk("h"), Value::Int(1), bulk("id2")]),
            ])
        };
        let reply = Value::Array(vec![
            range(0, 8000, "a", 7001),
            range(8001, 16383, "", 7002),
        ]);
        let shards = parse_slots(reply, &seed()).unwrap();
        // A node without a known host is reached at the seed's.
        assert_eq!(
            shards.primaries,
            [("a".to_string(), 7001), ("10.0.0.9".to_string(), 7002)]
        );
        assert_eq!(shards.owners.len(), 16384);
        assert_eq!(shards.owners[&Slot::new(8000).unwrap()], 0);
        assert_eq!(shards.owners[&Slot::new(8001).unwrap()], 1);
        assert!(parse_slots(Value::Array(vec![]), &seed()).is_err());
        assert!(parse_slots(Value::Int(3), &seed()).is_err());
    }

    #[test]
    fn sharded_subscriptions_go_one_slot_per_command() {
        let channels: Vec<String> = ["p:a", "p:b", "p:{a}x", "p:c"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(Scope::Every.groups(&channels).len(), 1);
        assert!(Scope::Every.groups(&[]).is_empty());
        let owners = Arc::new(HashMap::new());
        let shard = Scope::Shard { owners, me: 0 };
        let groups = shard.groups(&channels);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), channels.len());
        for group in &groups {
            let slot = Slot::for_key(group[0]);
            assert!(group.iter().all(|c| Slot::for_key(c) == slot));
        }
        assert!(shard.groups(&[]).is_empty());
    }
}

//! The Redis bridge (`--redis`): joins this instance's rooms with those of every other
//! instance on the same Redis, so that a message published in a room reaches its members on
//! every instance, once each, in publish order per publisher.
//!
//! One Redis channel per room (`--redis-prefix` + room name), subscribed while any worker has
//! a member of the room. A published frame is delivered locally at once, as without a bridge,
//! and also goes to Redis already encoded, behind a header naming this instance (`wire`);
//! other instances queue those bytes to their members as they are, and this instance skips its
//! own echo.
//!
//! Threads, so that no worker ever waits on Redis:
//! - each worker holds a `Link` (the bus's `Remote`): the frames a pass publishes go to the
//!   publisher as one batch, if the bounded queue (`--redis-queue`, in bytes) has room for
//!   them; otherwise they are dropped and counted. Room changes go to `Interest`.
//! - the `publisher` thread writes the batches to Redis as pipelined PUBLISH commands on one
//!   connection.
//! - the `subscriber` thread holds one pub/sub connection, keeps its subscriptions equal to
//!   `Interest`, and hands what other instances publish to the workers' mailboxes as
//!   `Envelope::Deliver`. On a Redis Cluster (`--redis-cluster`) rooms use sharded pub/sub:
//!   the publisher sends SPUBLISH through the client's cluster connection, and the subscriber
//!   runs one connection per shard primary (see `subscriber`).
//!
//! Faults: both connections are re-established with backoff (`connector`), logging once per
//! change of state; while the publisher's link is down, what workers publish is still
//! delivered locally and is counted as dropped for the other instances. Counters:
//! `BridgeStats`.

mod connector;
mod interest;
mod link;
mod publisher;
mod stats;
mod subscriber;
mod wire;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::RedisUrl;
use crate::fanout::bus::Mailbox;

pub use link::Link;
pub use stats::BridgeStats;

use connector::{Connector, Role, CONNECT_TIMEOUT};
use interest::Interest;
use publisher::{Publisher, Sink};
use redis::IntoConnectionInfo;
use stats::Meters;
use subscriber::Deliverer;
use wire::Origin;

/// Reads the bridge's counters (the metrics endpoint holds one).
#[derive(Debug, Clone)]
pub(crate) struct StatsSource(Arc<Shared>);

impl StatsSource {
    pub fn snapshot(&self) -> BridgeStats {
        self.0.meters.snapshot()
    }
}

/// How long shutdown waits for the bridge threads; one still blocked on Redis then is left to
/// end with the process.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// What the workers' links and the bridge threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    interest: Interest,
    meters: Meters,
    /// Most bytes of frames waiting for the publisher (`--redis-queue`).
    queue_limit: usize,
}

impl Shared {
    fn new(queue_limit: usize) -> Shared {
        Shared {
            interest: Interest::default(),
            meters: Meters::default(),
            queue_limit,
        }
    }
}

/// The Redis the instances meet on.
pub(crate) enum Target<'a> {
    /// One Redis (`--redis`): PUBLISH and SUBSCRIBE.
    Single(&'a RedisUrl),
    /// A Redis Cluster (`--redis-cluster`, seed nodes): sharded pub/sub.
    Cluster(&'a [RedisUrl]),
}

/// Where and how to reach the other instances.
pub(crate) struct Settings<'a> {
    pub target: Target<'a>,
    pub prefix: &'a str,
    pub queue_limit: usize,
}

/// The running bridge: its two threads, and what it shares with the workers' links.
pub(crate) struct Bridge {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Starts the bridge threads and returns one `Link` per worker mailbox. Redis need not be
    /// up: the threads connect (and reconnect) in the background.
    pub fn start(
        settings: Settings<'_>,
        mailboxes: Vec<Mailbox>,
    ) -> io::Result<(Bridge, Vec<Link>)> {
        let invalid = |e: redis::RedisError| io::Error::new(io::ErrorKind::InvalidInput, e);
        let shared = Arc::new(Shared::new(settings.queue_limit));
        let origin = Origin::random();
        let stop = Arc::new(AtomicBool::new(false));
        let (to_publisher, queue) = crossbeam_channel::unbounded();
        let links = (0..mailboxes.len())
            .map(|worker| Link::new(worker, shared.clone(), to_publisher.clone()))
            .collect();
        drop(to_publisher);
        let mut bridge = Bridge {
            shared: shared.clone(),
            stop: stop.clone(),
            threads: Vec::with_capacity(2),
        };
        let deliverer = Deliverer {
            shared: shared.clone(),
            origin,
            prefix: settings.prefix.to_string(),
            mailboxes,
            stop,
        };
        let (publisher, subscriber): (Connector<Sink>, Box<dyn FnOnce() + Send>) =
            match settings.target {
                Target::Single(url) => {
                    let info = url.as_str().into_connection_info().map_err(invalid)?;
                    let client = redis::Client::open(info.clone()).map_err(invalid)?;
                    let target = info.addr().to_string();
                    let publisher =
                        Connector::new(Role::Publisher, target, shared.clone(), move || {
                            client
                                .get_connection_with_timeout(CONNECT_TIMEOUT)
                                .map(Sink::Node)
                        });
                    let subscriber = move || subscriber::run_single(deliverer, info);
                    (publisher, Box::new(subscriber))
                }
                Target::Cluster(seeds) => {
                    let infos = seeds
                        .iter()
                        .map(|url| url.as_str().into_connection_info())
                        .collect::<redis::RedisResult<Vec<_>>>()
                        .map_err(invalid)?;
                    let client = redis::cluster::ClusterClient::builder(infos.clone())
                        .connection_timeout(CONNECT_TIMEOUT)
                        .build()
                        .map_err(invalid)?;
                    let addrs: Vec<String> = infos.iter().map(|i| i.addr().to_string()).collect();
                    let target = format!("cluster {}", addrs.join(","));
                    let publisher =
                        Connector::new(Role::Publisher, target, shared.clone(), move || {
                            client.get_connection().map(|c| Sink::Cluster(Box::new(c)))
                        });
                    let subscriber = move || subscriber::run_cluster(deliverer, infos);
                    (publisher, Box::new(subscriber))
                }
            };
        let publisher = Publisher::new(publisher, shared, origin, settings.prefix.to_string());
        bridge.threads.push(
            std::thread::Builder::new()
                .name("corecast-redis-pub".into())
                .spawn(move || publisher.run(queue))?,
        );
        bridge.threads.push(
            std::thread::Builder::new()
                .name("corecast-redis-sub".into())
                .spawn(subscriber)?,
        );
        tracing::info!(prefix = settings.prefix, instance = %origin, "rooms span instances through redis");
        Ok((bridge, links))
    }

    pub fn stats(&self) -> BridgeStats {
        self.shared.meters.snapshot()
    }

    /// A handle that reads the counters from anywhere, for the metrics.
    pub fn stats_source(&self) -> StatsSource {
        StatsSource(self.shared.clone())
    }
}

impl Drop for Bridge {
    /// Stops the subscriber and waits for both threads, the publisher for a bounded time: it
    /// ends once every worker's link is gone (drop the bridge after the workers), unless it is
    /// waiting on a stalled Redis, which must not hold up shutdown.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + STOP_WAIT;
        for thread in self.threads.drain(..) {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

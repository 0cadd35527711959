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
//!   `Envelope::Deliver`.
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

use connector::{Connector, Role};
use interest::Interest;
use publisher::Publisher;
use stats::Meters;
use subscriber::Subscriber;
use wire::Origin;

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

/// Where and how to reach the other instances.
pub(crate) struct Settings<'a> {
    pub url: &'a RedisUrl,
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
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared::new(settings.queue_limit));
        let origin = Origin::random();
        let stop = Arc::new(AtomicBool::new(false));
        let (to_publisher, queue) = crossbeam_channel::unbounded();
        let links = mailboxes
            .iter()
            .map(|_| Link::new(shared.clone(), to_publisher.clone()))
            .collect();
        drop(to_publisher);
        let mut bridge = Bridge {
            shared: shared.clone(),
            stop: stop.clone(),
            threads: Vec::with_capacity(2),
        };
        let publisher = Publisher::new(
            Connector::new(client.clone(), Role::Publisher, shared.clone()),
            shared.clone(),
            origin,
            settings.prefix.to_string(),
        );
        bridge.threads.push(
            std::thread::Builder::new()
                .name("corecast-redis-pub".into())
                .spawn(move || publisher.run(queue))?,
        );
        let subscriber = Subscriber {
            connector: Connector::new(client, Role::Subscriber, shared.clone()),
            shared,
            origin,
            prefix: settings.prefix.to_string(),
            mailboxes,
            stop,
        };
        bridge.threads.push(
            std::thread::Builder::new()
                .name("corecast-redis-sub".into())
                .spawn(move || subscriber.run())?,
        );
        tracing::info!(redis = %settings.url, prefix = settings.prefix, instance = %origin, "rooms span instances through redis");
        Ok((bridge, links))
    }

    pub fn stats(&self) -> BridgeStats {
        self.shared.meters.snapshot()
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

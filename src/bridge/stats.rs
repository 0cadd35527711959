//! What the bridge did, as shared atomics: the bridge threads and the workers (only when they
//! drop a publish) add to them; `Server::bridge_stats` reads a copy for tests and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! bridge_stats {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// The Redis bridge's counters (`Server::bridge_stats`). `queued_bytes`,
        /// `subscriptions`, `publisher_up` and `subscriber_up` are gauges; everything else only
        /// grows.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct BridgeStats { $($(#[$doc])* pub $name: u64,)* }

        /// The live counters behind `BridgeStats`.
        #[derive(Debug, Default)]
        pub(crate) struct Meters { $(pub $name: AtomicU64,)* }

        impl Meters {
            pub fn snapshot(&self) -> BridgeStats {
                BridgeStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

bridge_stats! {
    /// Frames written to Redis.
    published,
    /// Frames not sent to Redis because the queue to it was full (Redis slow or stalled).
    overflow,
    /// Frames dropped because the link to Redis was down when they were to be sent.
    unlinked,
    /// Frames from other instances heard on Redis.
    received,
    /// Our own frames heard back from Redis (skipped: delivered locally already).
    echoes,
    /// Deliveries to a worker dropped because its inbox was full.
    inbox_full,
    /// Payloads on our channels that were not frames of this layout (ignored).
    malformed,
    /// Bytes of frames waiting to be sent to Redis (a gauge, at most `--redis-queue`).
    queued_bytes,
    /// Room channels subscribed (a gauge).
    subscriptions,
    /// 1 while the publishing connection is up.
    publisher_up,
    /// 1 while the subscribing connection is up.
    subscriber_up,
    /// Times the publishing connection was (re)established.
    publisher_connects,
    /// Times the subscribing connection was (re)established.
    subscriber_connects,
}

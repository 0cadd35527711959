//! What the bridge did, as shared atomics: the bridge threads and the workers (only when they
//! drop a publish) add to them; `Server::bridge_stats` reads a copy for tests and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Fields of `BridgeStats` that are levels, not totals.
const GAUGES: [&str; 4] = [
    "queued_bytes",
    "subscriptions",
    "publisher_up",
    "subscriber_up",
];

macro_rules! bridge_stats {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// The Redis bridge's counters (`Server::bridge_stats`). `queued_bytes`,
        /// `subscriptions`, `publisher_up` and `subscriber_up` are gauges; everything else only
        /// grows.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct BridgeStats { $($(#[doc = $doc])* pub $name: u64,)* }

        impl BridgeStats {
            /// Every field as a metric: (name, help, is a gauge, value).
            pub(crate) fn metrics(&self) -> Vec<(&'static str, &'static str, bool, u64)> {
                vec![$((
                    stringify!($name),
                    concat!($($doc),*).trim_ascii(),
                    GAUGES.contains(&stringify!($name)),
                    self.$name,
                ),)*]
            }
        }

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

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn every_field_is_a_metric_with_help_and_the_gauges_are_marked() {
        let stats = BridgeStats {
            published: 7,
            subscriptions: 2,
            ..BridgeStats::default()
        };
        let metrics = stats.metrics();
        assert!(metrics.iter().all(|(_, help, _, _)| !help.is_empty()));
        assert!(metrics.contains(&("published", "Frames written to Redis.", false, 7)));
        let gauges: Vec<&str> = metrics.iter().filter(|m| m.2).map(|m| m.0).collect();
        assert_eq!(gauges, GAUGES);
    }
}

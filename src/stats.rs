//! Counters: each worker keeps plain integers on its hot path and publishes a copy to shared
//! atomics once per tick, so readers (the stats log line, tests, a future Prometheus endpoint)
//! never touch the per-message path.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// One worker's counters. `connections` and `memory_held` are gauges; everything else
        /// only grows.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters { $($(#[$doc])* pub $name: u64,)* }

        /// The shared copy of one worker's counters.
        #[derive(Debug, Default)]
        pub struct SharedCounters { $($name: AtomicU64,)* }

        impl SharedCounters {
            pub fn publish(&self, c: &Counters) {
                $(self.$name.store(c.$name, Ordering::Relaxed);)*
            }

            pub fn snapshot(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Counters {
            /// Field-wise sum, for totals across workers.
            pub fn add(&mut self, other: &Counters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Open connections (any phase) on this worker.
    connections,
    /// Connections accepted.
    accepted,
    /// Completed WebSocket handshakes.
    handshakes,
    /// Requests answered with 4xx/5xx.
    rejected,
    /// Data messages received.
    msgs_in,
    /// Data messages queued to clients (echoes and broadcast deliveries).
    msgs_out,
    /// Room members closed with 1008 because their backlog was over the limit.
    slow_consumers,
    /// Connections ended by a deadline (handshake, idle, close handshake).
    timeouts,
    /// Connections failed for protocol violations (1002, 1007, 1009).
    protocol_errors,
    /// Connection handlers that panicked (the connection was dropped, the worker went on).
    panics,
    /// Accept calls that failed for lack of descriptors or memory.
    accept_errors,
    /// Times a silent connection released its tungstenite state and buffers.
    rests,
    /// Upgrades answered 503 because the server was at its connection capacity.
    over_capacity,
    /// Connections shed because the worker's share of the memory budget was exhausted.
    sheds,
    /// Bytes this worker's connections hold against its memory budget share (a gauge).
    memory_held,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_snapshot_round_trips_and_sums() {
        let shared = SharedCounters::default();
        let c = Counters {
            connections: 3,
            msgs_in: 10,
            panics: 1,
            ..Counters::default()
        };
        shared.publish(&c);
        assert_eq!(shared.snapshot(), c);
        let mut total = c;
        total.add(&c);
        assert_eq!(total.msgs_in, 20);
        assert_eq!(total.connections, 6);
    }
}

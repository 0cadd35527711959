//! Counters: each worker keeps plain integers on its hot path and publishes a copy to shared
//! atomics once per tick, so readers (the stats log line, tests, the metrics endpoint) never
//! touch the per-message path.
//!
//! Every field of `Counters` is exported as a Prometheus metric without further code: its
//! name is `corecast_<field>` (a counter, `_total` added, unless the field says `: gauge`), its
//! HELP is the field's doc comment, and it is labelled with the worker. A field that is one
//! member of a labelled family says so with `=> family { label = "value" }` (the family's HELP
//! is in `FAMILY_HELP`; `: internal` keeps a field out). To expose a new number: add a
//! documented field here, count it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a counter is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (until the server restarts).
    Counter,
    /// A level that goes up and down.
    Gauge,
    /// Not exported: a total kept for the log line and the library API whose breakdown by
    /// label is exported instead.
    Internal,
}

/// One field of `Counters`, as the exporter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The field's name.
    pub name: &'static str,
    /// Its doc comment (one line per doc line, each with its leading space).
    pub doc: &'static str,
    pub kind: Kind,
    /// The metric family: the field's name unless it is one member of a labelled family.
    pub family: &'static str,
    /// The label that tells this member of its family apart.
    pub label: Option<(&'static str, &'static str)>,
    /// Reads the field.
    pub get: fn(&Counters) -> u64,
}

macro_rules! field_kind {
    () => {
        Kind::Counter
    };
    (gauge) => {
        Kind::Gauge
    };
    (counter) => {
        Kind::Counter
    };
    (internal) => {
        Kind::Internal
    };
}

macro_rules! field_family {
    ($name:ident) => {
        stringify!($name)
    };
    ($name:ident $family:ident) => {
        stringify!($family)
    };
}

macro_rules! field_label {
    () => {
        None
    };
    ($label:ident $value:literal) => {
        Some((stringify!($label), $value))
    };
}

macro_rules! counters {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident $(: $kind:ident)? $(=> $family:ident { $label:ident = $value:literal })?
    ),* $(,)?) => {
        /// One worker's counters. Gauges (`: gauge`) are levels; everything else only grows.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters { $($(#[doc = $doc])* pub $name: u64,)* }

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
            /// Every field, in declaration order, for the exporter.
            pub const FIELDS: &'static [Field] = &[$(Field {
                name: stringify!($name),
                doc: concat!($($doc, "\n",)*),
                kind: field_kind!($($kind)?),
                family: field_family!($name $($family)?),
                label: field_label!($($label $value)?),
                get: |c| c.$name,
            },)*];

            /// Field-wise sum, for totals across workers.
            pub fn add(&mut self, other: &Counters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Open connections (any phase) on this worker.
    connections: gauge,
    /// Connections accepted.
    accepted,
    /// Completed WebSocket handshakes.
    handshakes,
    /// Requests answered with 4xx/5xx.
    rejected,
    /// Data messages received, all endpoints (exported by endpoint as `messages_received`).
    msgs_in: internal,
    /// Data messages queued to clients, all endpoints (exported by endpoint as
    /// `messages_sent`).
    msgs_out: internal,
    /// Data messages received on /echo.
    echo_msgs_in => messages_received { endpoint = "echo" },
    /// Data messages received from room members.
    broadcast_msgs_in => messages_received { endpoint = "broadcast" },
    /// Echoes queued to clients.
    echo_msgs_out => messages_sent { endpoint = "echo" },
    /// Broadcast messages queued to room members (one per member).
    broadcast_msgs_out => messages_sent { endpoint = "broadcast" },
    /// Payload bytes of the data messages received on /echo.
    echo_bytes_in => received_payload_bytes { endpoint = "echo" },
    /// Payload bytes of the data messages received from room members.
    broadcast_bytes_in => received_payload_bytes { endpoint = "broadcast" },
    /// Payload bytes of the echoes queued.
    echo_bytes_out => sent_payload_bytes { endpoint = "echo" },
    /// Payload bytes of the broadcast messages queued (one copy per member).
    broadcast_bytes_out => sent_payload_bytes { endpoint = "broadcast" },
    /// Room members closed with 1008 because their backlog was over the limit.
    slow_consumers,
    /// Times an echo connection stopped being read because its unsent replies passed the
    /// backlog limit.
    backpressure_pauses,
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
    /// TLS handshakes completed (with --tls-cert).
    tls_handshakes,
    /// Connections that ended before their TLS handshake completed: not TLS (plain HTTP,
    /// garbage), a handshake rustls refused, a truncated one, a handshake timeout.
    tls_failures,
    /// Connections shed because the worker's share of the memory budget was exhausted.
    sheds,
    /// Bytes this worker's connections hold against its memory budget share.
    memory_held_bytes: gauge,
    /// Rooms with at least one member on this worker, as of the last tick.
    rooms: gauge,
    /// Room members on this worker, as of the last tick.
    room_members: gauge,
    /// HTTP answers 200 (demo page, health, metrics).
    http_200 => http_responses { status = "200" },
    /// HTTP answers 400 (malformed request or upgrade).
    http_400 => http_responses { status = "400" },
    /// HTTP answers 403 (origin not allowed).
    http_403 => http_responses { status = "403" },
    /// HTTP answers 404.
    http_404 => http_responses { status = "404" },
    /// HTTP answers 405 (not GET).
    http_405 => http_responses { status = "405" },
    /// HTTP answers 426 (unsupported WebSocket version).
    http_426 => http_responses { status = "426" },
    /// HTTP answers 431 (request head too large).
    http_431 => http_responses { status = "431" },
    /// HTTP answers 503 (at capacity).
    http_503 => http_responses { status = "503" },
    /// HTTP answers with any other status.
    http_other => http_responses { status = "other" },
    /// Closing handshakes begun with 1000 (normal).
    close_1000 => closes { code = "1000" },
    /// Closing handshakes begun with 1001 (going away: idle timeout, shutdown, a page closed).
    close_1001 => closes { code = "1001" },
    /// Closing handshakes begun with 1002 (protocol error).
    close_1002 => closes { code = "1002" },
    /// Closing handshakes begun with 1003 (unsupported data).
    close_1003 => closes { code = "1003" },
    /// Close frames without a code.
    close_1005 => closes { code = "1005" },
    /// WebSocket connections that ended without a close frame from either side.
    close_1006 => closes { code = "1006" },
    /// Closing handshakes begun with 1007 (invalid UTF-8).
    close_1007 => closes { code = "1007" },
    /// Closing handshakes begun with 1008 (policy: slow consumer).
    close_1008 => closes { code = "1008" },
    /// Closing handshakes begun with 1009 (message too big).
    close_1009 => closes { code = "1009" },
    /// Closing handshakes begun with 1011 (server error).
    close_1011 => closes { code = "1011" },
    /// Closing handshakes begun with 1013 (try again later: shed at the memory budget).
    close_1013 => closes { code = "1013" },
    /// Closing handshakes begun with any other code (4000-4999 are the application's).
    close_other => closes { code = "other" },
}

/// HELP of the labelled families; a family's members are the fields that name it.
pub const FAMILY_HELP: &[(&str, &str)] = &[
    (
        "messages_received",
        "Data messages received, by endpoint kind.",
    ),
    (
        "messages_sent",
        "Data messages queued to clients, by endpoint kind (a broadcast counts once per member).",
    ),
    (
        "received_payload_bytes",
        "Payload bytes of the data messages received, by endpoint kind.",
    ),
    (
        "sent_payload_bytes",
        "Payload bytes of the data messages queued to clients, by endpoint kind.",
    ),
    (
        "http_responses",
        "HTTP answers other than 101 Switching Protocols, by status.",
    ),
    (
        "closes",
        "WebSocket closes, by the code of the close frame that began the closing handshake \
         (from either side); 1005: a close frame without a code; 1006: no close frame at all.",
    ),
];

impl Counters {
    /// Counts an HTTP answer (not a 101) by its status.
    pub fn count_response(&mut self, status: u16) {
        let field = match status {
            200 => &mut self.http_200,
            400 => &mut self.http_400,
            403 => &mut self.http_403,
            404 => &mut self.http_404,
            405 => &mut self.http_405,
            426 => &mut self.http_426,
            431 => &mut self.http_431,
            503 => &mut self.http_503,
            _ => &mut self.http_other,
        };
        *field += 1;
        if status >= 400 {
            self.rejected += 1;
        }
    }

    /// Counts the close code of a connection's closing handshake (or 1005, 1006).
    pub fn count_close(&mut self, code: u16) {
        let field = match code {
            1000 => &mut self.close_1000,
            1001 => &mut self.close_1001,
            1002 => &mut self.close_1002,
            1003 => &mut self.close_1003,
            1005 => &mut self.close_1005,
            1006 => &mut self.close_1006,
            1007 => &mut self.close_1007,
            1008 => &mut self.close_1008,
            1009 => &mut self.close_1009,
            1011 => &mut self.close_1011,
            1013 => &mut self.close_1013,
            _ => &mut self.close_other,
        };
        *field += 1;
    }
}

/// Buckets of `PassTimes`: bucket `i` holds durations under 2^i µs; the last holds the rest
/// (about 1 s and up).
pub const PASS_BUCKETS: usize = 22;

/// A histogram of loop-pass durations kept by one worker: plain integers in fixed buckets,
/// recorded once per pass and published once per tick like the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassTimes {
    /// Passes per bucket (not cumulative).
    pub buckets: [u64; PASS_BUCKETS],
    /// Sum of all durations, nanoseconds.
    pub sum_ns: u64,
}

impl PassTimes {
    /// Records one pass.
    pub fn record(&mut self, pass: Duration) {
        let nanos = pass.as_nanos().min(u64::MAX as u128) as u64;
        let micros = nanos / 1000;
        // A power-of-two bucket from the bit length: no search, no float.
        let bucket = (u64::BITS - micros.leading_zeros()) as usize;
        self.buckets[bucket.min(PASS_BUCKETS - 1)] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(nanos);
    }

    /// Upper bound of bucket `i`, seconds (infinite for the last).
    pub fn upper_bound(i: usize) -> f64 {
        if i + 1 >= PASS_BUCKETS {
            f64::INFINITY
        } else {
            (1u64 << i) as f64 * 1e-6
        }
    }

    /// Passes recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The shared copy of one worker's `PassTimes`.
#[derive(Debug, Default)]
pub struct SharedPassTimes {
    buckets: [AtomicU64; PASS_BUCKETS],
    sum_ns: AtomicU64,
}

impl SharedPassTimes {
    pub fn publish(&self, h: &PassTimes) {
        for (shared, &n) in self.buckets.iter().zip(&h.buckets) {
            shared.store(n, Ordering::Relaxed);
        }
        self.sum_ns.store(h.sum_ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PassTimes {
        PassTimes {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
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

    #[test]
    fn every_field_is_described_for_the_exporter() {
        let fields = Counters::FIELDS;
        assert_eq!(fields[0].name, "connections");
        assert_eq!(fields[0].kind, Kind::Gauge);
        assert_eq!(fields[1].kind, Kind::Counter);
        for field in fields {
            assert!(!field.doc.trim().is_empty(), "{} has no doc", field.name);
            if field.label.is_some() {
                assert!(
                    FAMILY_HELP.iter().any(|(f, _)| *f == field.family),
                    "family {} has no HELP",
                    field.family
                );
            } else {
                assert_eq!(field.family, field.name);
            }
        }
        let c = Counters {
            close_1008: 7,
            ..Counters::default()
        };
        let f = fields.iter().find(|f| f.name == "close_1008").unwrap();
        assert_eq!(
            (f.family, f.label, (f.get)(&c)),
            ("closes", Some(("code", "1008")), 7)
        );
    }

    #[test]
    fn responses_and_closes_are_counted_by_status_and_code() {
        let mut c = Counters::default();
        c.count_response(200);
        c.count_response(503);
        c.count_response(418);
        assert_eq!(
            (c.http_200, c.http_503, c.http_other, c.rejected),
            (1, 1, 1, 2)
        );
        c.count_close(1000);
        c.count_close(4000);
        assert_eq!((c.close_1000, c.close_other), (1, 1));
    }

    #[test]
    fn pass_times_fall_in_power_of_two_microsecond_buckets() {
        let mut h = PassTimes::default();
        h.record(Duration::from_nanos(999)); // < 1 µs
        h.record(Duration::from_micros(1)); // [1, 2) µs
        h.record(Duration::from_micros(3)); // [2, 4) µs
        h.record(Duration::from_secs(60)); // overflow
        assert_eq!(&h.buckets[..3], &[1, 1, 1]);
        assert_eq!(h.buckets[PASS_BUCKETS - 1], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(PassTimes::upper_bound(0), 1e-6);
        assert_eq!(PassTimes::upper_bound(2), 4e-6);
        assert!(PassTimes::upper_bound(PASS_BUCKETS - 1).is_infinite());
        let shared = SharedPassTimes::default();
        shared.publish(&h);
        assert_eq!(shared.snapshot(), h);
    }
}

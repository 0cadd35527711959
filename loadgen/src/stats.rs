//! What a run measured: counters and histograms, merged across threads and processes.
//!
//! Each worker fills its own `Stats` (no sharing on the hot path); the engine merges the workers'
//! and the sharding parent merges the processes'. Histograms cross process boundaries in
//! HdrHistogram's V2 serialization, base64 encoded inside JSON, so merging is exact.
//! All histograms count microseconds with 3 significant digits.

use std::collections::BTreeMap;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::connection::FailReason;

/// Largest value a histogram holds: one hour in microseconds (larger values are clamped).
const HIST_MAX_US: u64 = 3_600_000_000;

/// A histogram of microseconds, 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static bounds are valid")
}

/// Records `us`, clamped into the histogram's range, so no sample is ever dropped.
pub fn record(hist: &mut Histogram<u64>, us: u64) {
    hist.saturating_record(us.clamp(1, HIST_MAX_US));
}

/// One step of a percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentileStep {
    /// The value (µs) at or below which `quantile` of the samples lie.
    pub value_us: u64,
    /// Fraction of the samples, 0 to 1.
    pub quantile: f64,
    /// Samples at or below `value_us`.
    pub count: u64,
}

/// The percentile distribution of `hist` with HdrHistogram's usual resolution (five steps per
/// halving of the distance to 100%): what `.hgrm` files list and the plot draws.
pub fn percentile_distribution(hist: &Histogram<u64>) -> Vec<PercentileStep> {
    let mut count = 0;
    hist.iter_quantiles(5)
        .map(|v| {
            count += v.count_since_last_iteration();
            PercentileStep {
                value_us: v.value_iterated_to(),
                quantile: v.quantile_iterated_to(),
                count,
            }
        })
        .collect()
}

/// Event counts of a run (or of one worker's part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connection attempts started.
    pub attempted: u64,
    /// Connections that completed the upgrade.
    pub established: u64,
    /// Attempts that failed, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Attempts still connecting or upgrading when the run stopped (failure limit, abort):
    /// neither established nor failed. `attempted = established + failed + abandoned`.
    #[serde(default)]
    pub abandoned: u64,
    /// Established connections that ended before the run did, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Messages written (echo requests, or publishes in broadcast mode).
    pub sent: u64,
    /// Messages due on the schedule that could not be sent (buffer full, connection gone).
    pub unsent: u64,
    /// Distinct messages received back (echo) or distinct deliveries (broadcast).
    pub received: u64,
    /// Messages received a second time.
    pub duplicates: u64,
    /// Messages received out of their sender's order.
    pub out_of_order: u64,
    /// Messages that failed the payload check (length, marker, body, sender, sequence).
    pub corrupt: u64,
    /// Sends whose intended time fell in the measured window.
    pub sent_measured: u64,
    /// Receipts of messages intended in the measured window.
    pub received_measured: u64,
    /// Times a worker blocked in `poll` during the traffic and the drain after it (0 with
    /// `--busy-poll`): each is a sleep and a wakeup, whose cost and lateness are loadgen's.
    #[serde(default)]
    pub traffic_sleeps: u64,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Counters) {
        self.attempted += other.attempted;
        self.established += other.established;
        merge_map(&mut self.failed, &other.failed);
        self.abandoned += other.abandoned;
        merge_map(&mut self.dropped, &other.dropped);
        self.sent += other.sent;
        self.unsent += other.unsent;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.corrupt += other.corrupt;
        self.sent_measured += other.sent_measured;
        self.received_measured += other.received_measured;
        self.traffic_sleeps += other.traffic_sleeps;
    }

    /// Counts a failed connection attempt.
    pub fn fail(&mut self, reason: FailReason) {
        *self.failed.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts an established connection that ended early.
    pub fn drop_conn(&mut self, reason: FailReason) {
        *self.dropped.entry(reason.to_string()).or_default() += 1;
    }

    /// Failed attempts plus dropped connections: what `--max-failures` limits.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.dropped.values().sum::<u64>()
    }
}

fn merge_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Broadcast bookkeeping for one publisher, filled by the publisher (`sent`) and by every
/// receiver (the rest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublisherStats {
    /// The room it publishes to.
    pub room: u32,
    /// Messages it published.
    pub sent: u64,
    /// Distinct deliveries of its messages, summed over receivers.
    pub delivered: u64,
    /// Deliveries received twice.
    pub duplicates: u64,
    /// Deliveries out of its order.
    pub out_of_order: u64,
}

impl PublisherStats {
    fn merge(&mut self, other: &PublisherStats) {
        self.room = other.room;
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
    }
}

/// Everything one worker, process or run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// Event counts.
    pub counters: Counters,
    /// Message latency (receive − intended send), measured window only.
    #[serde(with = "hist_base64")]
    pub latency: Histogram<u64>,
    /// Connect plus upgrade time of established connections.
    #[serde(with = "hist_base64")]
    pub connect: Histogram<u64>,
    /// How late loadgen made each open-loop send relative to its schedule.
    #[serde(with = "hist_base64")]
    pub lag: Histogram<u64>,
    /// Broadcast mode: per publisher (keyed by connection index).
    #[serde(with = "pairs")]
    pub publishers: BTreeMap<u32, PublisherStats>,
    /// Broadcast mode: open connections per room when traffic started.
    #[serde(with = "pairs")]
    pub room_members: BTreeMap<u32, u64>,
    /// Whether the run was aborted (failure limit, or the parent said stop).
    pub aborted: bool,
    /// Nanoseconds from the start of the ramp until every connection had settled, or until
    /// the run stopped attempting connections (failure limit, abort).
    #[serde(default)]
    pub ramp_ns: u64,
    /// The most established connections open at once (summed over workers and processes, whose
    /// ramps rise together): when the server answered 503, about its capacity.
    #[serde(default)]
    pub peak_held: u64,
    /// End of the measured window (CLOCK_MONOTONIC ns, the same clock in every process).
    #[serde(default)]
    pub window_end_ns: u64,
    /// When the last message intended in the measured window arrived (CLOCK_MONOTONIC ns).
    #[serde(default)]
    pub last_measured_ns: u64,
}

impl Stats {
    /// How long after the measured window its last message arrived (0 if within it).
    pub fn late_ns(&self) -> u64 {
        self.last_measured_ns.saturating_sub(self.window_end_ns)
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counters: Counters::default(),
            latency: new_histogram(),
            connect: new_histogram(),
            lag: new_histogram(),
            publishers: BTreeMap::new(),
            room_members: BTreeMap::new(),
            aborted: false,
            ramp_ns: 0,
            peak_held: 0,
            window_end_ns: 0,
            last_measured_ns: 0,
        }
    }
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.counters.merge(&other.counters);
        // Same bounds on both sides, so `add` cannot fail.
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.connect
            .add(&other.connect)
            .expect("same histogram bounds");
        self.lag.add(&other.lag).expect("same histogram bounds");
        for (id, p) in &other.publishers {
            self.publishers.entry(*id).or_default().merge(p);
        }
        for (room, n) in &other.room_members {
            *self.room_members.entry(*room).or_default() += n;
        }
        self.aborted |= other.aborted;
        // Processes ramp in parallel: the run's ramp lasted as long as the slowest one.
        self.ramp_ns = self.ramp_ns.max(other.ramp_ns);
        self.peak_held += other.peak_held;
        self.window_end_ns = self.window_end_ns.max(other.window_end_ns);
        self.last_measured_ns = self.last_measured_ns.max(other.last_measured_ns);
    }
}

/// A periodic snapshot for progress display and coordination (cumulative counters plus the
/// latencies recorded since the previous snapshot).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Cumulative counters so far.
    pub counters: Counters,
    /// Latencies recorded since the previous sample (all of them, warmup included).
    #[serde(with = "hist_base64")]
    pub interval: Histogram<u64>,
    /// Whether every connection of the sampled worker(s) has been attempted and settled.
    pub ramped: bool,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            counters: Counters::default(),
            interval: new_histogram(),
            ramped: false,
        }
    }
}

/// Serde for histograms: V2 serialization, base64 in a JSON string.
pub mod hist_base64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut bytes)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| serde::de::Error::custom(format!("{e:?}")))?;
        // Re-home into our standard bounds so later merges cannot fail.
        let mut hist = new_histogram();
        hist.add(&decoded)
            .map_err(|e| serde::de::Error::custom(format!("{e:?}")))?;
        Ok(hist)
    }
}

/// Maps with number keys as lists of pairs on the wire between processes: JSON object keys are
/// strings, and a shard's report travels inside an internally tagged enum, whose buffered
/// content serde cannot turn back from string keys into numbers.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<u32, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, V>, D::Error> {
        Ok(Vec::<(u32, V)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::default();
        a.counters.sent = 3;
        a.counters.fail(FailReason::Refused);
        record(&mut a.latency, 100);
        a.publishers.insert(
            0,
            PublisherStats {
                room: 1,
                sent: 5,
                ..Default::default()
            },
        );
        let mut b = a.clone();
        b.counters.drop_conn(FailReason::Reset);
        record(&mut b.latency, 0);
        b.room_members.insert(1, 4);
        a.merge(&b);
        assert_eq!(a.counters.sent, 6);
        assert_eq!(a.counters.failed["refused"], 2);
        assert_eq!(a.counters.failures(), 3);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.latency.min(), 1);
        assert_eq!(a.publishers[&0].sent, 10);
        assert_eq!(a.room_members[&1], 4);
    }

    #[test]
    fn survives_json_round_trip_exactly() {
        let mut s = Stats::default();
        for us in [1, 50, 999, 1_000_000, 10_000_000_000] {
            record(&mut s.latency, us);
        }
        record(&mut s.connect, 1234);
        s.counters.received = 5;
        let json = serde_json::to_string(&s).unwrap();
        let back: Stats = serde_json::from_str(&json).unwrap();
        assert_eq!(back.latency, s.latency);
        assert_eq!(back.connect.len(), 1);
        assert_eq!(back.counters, s.counters);
        assert_eq!(back.latency.max(), s.latency.max());
    }
}

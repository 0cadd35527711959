//! The published counters as an operator reads them: `/metrics` in the Prometheus text format
//! (version 0.0.4, encoded by the `prometheus` crate's `TextEncoder`, never by hand) and
//! `/stats.json`, a small summary the demo page polls.
//!
//! Everything here works on a `Snapshot`, plain copies of what the workers published at their
//! last tick, so a scrape reads a few atomics per worker and never touches a worker's loop.
//! Which metrics exist follows from `stats::Counters`: every field is exported (see `stats`),
//! plus the loop-pass histogram and the server's capacity.
//!
//! Why the 0.0.4 text format and not OpenMetrics (`prometheus-client`): OpenMetrics names a
//! counter's family without its `_total` suffix, which the 0.0.4 parsers (`promtool check
//! metrics` among them) read as a sample without HELP or TYPE; every Prometheus-compatible
//! scraper reads 0.0.4.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::TextEncoder;

use crate::stats::{Counters, Field, Kind, PassTimes, FAMILY_HELP, PASS_BUCKETS};

/// Content type of the `/metrics` answer.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Prefix of every metric name.
const PREFIX: &str = "corecast_";

/// One worker's numbers as of its last tick.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerSnapshot {
    pub counters: Counters,
    pub pass_times: PassTimes,
}

/// Every worker's published numbers at the moment of a scrape, and the server-wide figures.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Indexed by worker id.
    pub workers: Vec<WorkerSnapshot>,
    /// Connections admitted before upgrades get 503.
    pub capacity: usize,
    /// The Redis bridge's counters when there is one: (name, help, is a gauge, value).
    pub bridge: Vec<(&'static str, &'static str, bool, u64)>,
}

impl Snapshot {
    /// The Prometheus text exposition of this snapshot.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        // The encoder fails only on a family without samples or with an invalid name, which
        // `families` never builds (every family has one sample per worker, and at least one
        // worker runs); the unit tests check it.
        if let Err(e) = TextEncoder::new().encode_utf8(&self.families(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Totals across workers as a small JSON object (for the demo page).
    pub fn json(&self) -> String {
        let mut total = Counters::default();
        for worker in &self.workers {
            total.add(&worker.counters);
        }
        serde_json::json!({
            "workers": self.workers.len(),
            "capacity": self.capacity,
            "connections": total.connections,
            "handshakes": total.handshakes,
            "messages_in": total.msgs_in,
            "messages_out": total.msgs_out,
            "bytes_in": total.echo_bytes_in + total.broadcast_bytes_in,
            "bytes_out": total.echo_bytes_out + total.broadcast_bytes_out,
            "rooms": total.rooms,
            "room_members": total.room_members,
            "slow_consumers": total.slow_consumers,
            "rejected": total.rejected,
        })
        .to_string()
    }

    /// Every metric family: the counters' fields (grouped into their families), the loop-pass
    /// histogram, the capacity.
    fn families(&self) -> Vec<MetricFamily> {
        let fields = Counters::FIELDS;
        let mut families = Vec::new();
        for (i, first) in fields.iter().enumerate() {
            if fields[..i].iter().any(|f| f.family == first.family) {
                continue; // family already built with its first member
            }
            let (suffix, kind) = match first.kind {
                Kind::Counter => ("_total", MetricType::COUNTER),
                Kind::Gauge => ("", MetricType::GAUGE),
                Kind::Internal => continue,
            };
            let mut samples = Vec::new();
            for (id, worker) in self.workers.iter().enumerate() {
                for member in fields.iter().filter(|f| f.family == first.family) {
                    let mut labels = vec![label("worker", &id.to_string())];
                    labels.extend(member.label.map(|(k, v)| label(k, v)));
                    let mut sample = Metric::from_label(labels);
                    let value = (member.get)(&worker.counters) as f64;
                    match first.kind {
                        Kind::Counter | Kind::Internal => {
                            let mut c = Counter::default();
                            c.set_value(value);
                            sample.set_counter(c);
                        }
                        Kind::Gauge => {
                            let mut g = Gauge::default();
                            g.set_value(value);
                            sample.set_gauge(g);
                        }
                    }
                    samples.push(sample);
                }
            }
            let name = format!("{PREFIX}{}{suffix}", first.family);
            families.push(family(name, &family_help(first), kind, samples));
        }

        let passes = self
            .workers
            .iter()
            .enumerate()
            .map(|(id, worker)| {
                let h = &worker.pass_times;
                let mut cumulative = 0;
                // The last bucket is +Inf, which the encoder writes from the count.
                let buckets = (0..PASS_BUCKETS - 1)
                    .map(|b| {
                        cumulative += h.buckets[b];
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(PassTimes::upper_bound(b));
                        bucket.set_cumulative_count(cumulative);
                        bucket
                    })
                    .collect();
                let mut histogram = Histogram::default();
                histogram.set_sample_count(h.count());
                histogram.set_sample_sum(h.sum_ns as f64 * 1e-9);
                histogram.set_bucket(buckets);
                let mut sample = Metric::from_label(vec![label("worker", &id.to_string())]);
                sample.set_histogram(histogram);
                sample
            })
            .collect();
        families.push(family(
            format!("{PREFIX}loop_pass_seconds"),
            "Time from a worker's poll returning to its next poll: how long its connections \
             wait behind the work of one pass (one pass in eight is timed).",
            MetricType::HISTOGRAM,
            passes,
        ));

        let mut capacity = Gauge::default();
        capacity.set_value(self.capacity as f64);
        families.push(family(
            format!("{PREFIX}capacity_connections"),
            "Connections the server admits (all workers) before answering upgrades with 503.",
            MetricType::GAUGE,
            vec![Metric::from_gauge(capacity)],
        ));

        for &(name, help, gauge, value) in &self.bridge {
            let (suffix, kind, mut sample) = if gauge {
                let mut g = Gauge::default();
                g.set_value(value as f64);
                ("", MetricType::GAUGE, Metric::from_gauge(g))
            } else {
                let mut c = Counter::default();
                c.set_value(value as f64);
                let mut m = Metric::default();
                m.set_counter(c);
                ("_total", MetricType::COUNTER, m)
            };
            sample.set_label(Vec::new());
            families.push(family(
                format!("{PREFIX}bridge_{name}{suffix}"),
                help,
                kind,
                vec![sample],
            ));
        }
        families
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

fn family(name: String, help: &str, kind: MetricType, samples: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name);
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family.set_metric(samples);
    family
}

/// HELP of a family: from `FAMILY_HELP` for labelled ones, else the field's doc comment.
fn family_help(first: &Field) -> String {
    if let Some((_, help)) = FAMILY_HELP.iter().find(|(f, _)| *f == first.family) {
        return (*help).to_string();
    }
    first
        .doc
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut a = WorkerSnapshot::default();
        a.counters.connections = 3;
        a.counters.msgs_in = 5;
        a.counters.echo_msgs_in = 5;
        a.counters.http_503 = 2;
        a.pass_times.record(std::time::Duration::from_micros(3));
        let mut b = WorkerSnapshot::default();
        b.counters.msgs_out = 7;
        b.counters.broadcast_msgs_out = 7;
        Snapshot {
            workers: vec![a, b],
            capacity: 100,
            bridge: Vec::new(),
        }
    }

    #[test]
    fn bridge_counters_are_exported_as_counters_and_gauges() {
        let mut snapshot = snapshot();
        snapshot.bridge = vec![
            ("published", "Frames written to Redis.", false, 21),
            ("subscriptions", "Room channels subscribed.", true, 2),
        ];
        let text = snapshot.prometheus();
        assert!(text.contains("# TYPE corecast_bridge_published_total counter\n"));
        assert!(text.contains("corecast_bridge_published_total 21\n"));
        assert!(text.contains("# TYPE corecast_bridge_subscriptions gauge\n"));
        assert!(text.contains("corecast_bridge_subscriptions 2\n"));
        assert!(!snapshot_without_bridge().contains("bridge"));
    }

    fn snapshot_without_bridge() -> String {
        snapshot().prometheus()
    }

    #[test]
    fn every_counter_field_is_exported_with_its_worker() {
        let text = snapshot().prometheus();
        assert!(text.contains("# TYPE corecast_connections gauge"), "{text}");
        assert!(
            text.contains("corecast_connections{worker=\"0\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("corecast_messages_received_total{worker=\"0\",endpoint=\"echo\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("corecast_messages_sent_total{worker=\"1\",endpoint=\"broadcast\"} 7"),
            "{text}"
        );
        assert!(text.contains("corecast_http_responses_total{worker=\"0\",status=\"503\"} 2"));
        assert!(text.contains("corecast_loop_pass_seconds_count{worker=\"0\"} 1"));
        let bucket = |le: &str, n: u64| {
            format!("corecast_loop_pass_seconds_bucket{{worker=\"0\",le=\"{le}\"}} {n}\n")
        };
        assert!(text.contains(&bucket("0.000002", 0)), "{text}");
        assert!(text.contains(&bucket("0.000004", 1)));
        assert!(text.contains(&bucket("+Inf", 1)));
        assert!(text.contains("corecast_capacity_connections 100"));
        for field in Counters::FIELDS.iter().filter(|f| f.kind != Kind::Internal) {
            assert!(
                text.contains(&format!("corecast_{}", field.family)),
                "{} missing",
                field.name
            );
        }
    }

    #[test]
    fn json_sums_the_workers() {
        let v: serde_json::Value = serde_json::from_str(&snapshot().json()).unwrap();
        assert_eq!(v["connections"], 3);
        assert_eq!(v["messages_in"], 5);
        assert_eq!(v["messages_out"], 7);
        assert_eq!(v["workers"], 2);
        assert_eq!(v["capacity"], 100);
    }
}

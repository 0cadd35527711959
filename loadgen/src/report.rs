//! The end of a run: the printed table, the JSON report, the `.hgrm` file and the exit status.
//!
//! A `Report` is computed once from the plan and the merged stats; the outputs are views of it.
//! Loss is computed here because only the merged view knows it: in echo mode `sent − received`,
//! in broadcast mode each publisher's sends times its room's members minus deliveries.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::connection::FailReason;
use crate::plan::{Load, Mode, Plan};
use crate::stats::{percentile_distribution, Stats};

/// Where a user learns how to give a server more capacity (the README section on it).
pub const CAPACITY_HELP: &str = "README.md#operating-it";

/// Percentiles of one histogram (µs).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |q| h.value_at_quantile(q);
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: h.max(),
        }
    }
}

/// Broadcast mode: one publisher's deliveries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublisherRow {
    pub publisher: u32,
    pub room: u32,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// Connection outcome counts: `attempted = established + failed + abandoned`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnSummary {
    /// Seconds from the first attempt until every connection was established or failed, or
    /// until the run stopped attempting (failure limit, abort).
    pub ramp_s: f64,
    /// Connections established per second of ramp.
    pub connect_rate: f64,
    pub attempted: u64,
    pub established: u64,
    /// Failed attempts, all reasons.
    pub failed_total: u64,
    /// Attempts still connecting or upgrading when the run stopped early.
    pub abandoned: u64,
    /// Established connections still open when the traffic (or the idle hold) ended:
    /// `established` minus `dropped`.
    pub held: u64,
    /// The most established connections open at once.
    pub peak_held: u64,
    pub failed: std::collections::BTreeMap<String, u64>,
    pub dropped: std::collections::BTreeMap<String, u64>,
}

/// Message outcome counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MsgSummary {
    /// Messages sent (publishes in broadcast mode).
    pub sent: u64,
    /// Echo: messages expected back (= sent). Broadcast: deliveries expected.
    pub expected: u64,
    /// Distinct messages (echo) or deliveries (broadcast) received.
    pub received: u64,
    /// Expected but never received.
    pub lost: u64,
    /// Due on the schedule but not sent (buffer full or connection gone).
    pub unsent: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub corrupt: u64,
}

/// Rates over the measured window (per second).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RateSummary {
    /// Scheduled messages per second (None in a closed loop).
    pub offered: Option<f64>,
    /// Messages sent per second.
    pub sent: f64,
    /// Messages (echo) or deliveries (broadcast) of the measured window received per second
    /// of the time they took to arrive: the window plus `late_s`. A server that falls behind
    /// shows here as less than `offered`, however many messages eventually came back.
    pub received: f64,
    /// How long after the end of the measured window its last message arrived.
    pub late_s: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub mode: Mode,
    /// `open` or `closed`.
    pub r#loop: &'static str,
    pub load: Load,
    pub urls: Vec<String>,
    pub conns: u32,
    pub processes: u32,
    pub threads_per_process: usize,
    pub size: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: ConnSummary,
    pub messages: MsgSummary,
    pub rate: RateSummary,
    pub latency_us: Percentiles,
    pub connect_us: Percentiles,
    pub loadgen_lag_us: Percentiles,
    /// `--rate 0`: connections were opened and held for the duration with nothing sent, so
    /// there are no latency figures.
    pub idle: bool,
    /// Whether the workers busy-polled during the traffic (`--busy-poll`).
    pub busy_poll: bool,
    /// Times workers could block in `poll` during the traffic and drain (0 when busy-polling).
    pub traffic_sleeps: u64,
    pub publishers: Vec<PublisherRow>,
    pub failure_limit_hit: bool,
    /// The server answered 503 (at capacity): the one line that says so and what to do.
    pub at_capacity: Option<String>,
    pub aborted: bool,
    /// Nothing lost, unsent, duplicated, reordered or corrupt, and the run completed.
    pub ok: bool,
}

impl Report {
    /// Computes the report of a finished run.
    pub fn new(plan: &Plan, stats: &Stats) -> Report {
        let c = &stats.counters;
        let publishers: Vec<PublisherRow> = stats
            .publishers
            .iter()
            .map(|(&id, p)| {
                let members = stats.room_members.get(&p.room).copied().unwrap_or(0);
                let expected = p.sent * members;
                PublisherRow {
                    publisher: id,
                    room: p.room,
                    sent: p.sent,
                    expected,
                    delivered: p.delivered,
                    missing: expected.saturating_sub(p.delivered),
                    duplicates: p.duplicates,
                    out_of_order: p.out_of_order,
                }
            })
            .collect();
        let expected = match plan.mode {
            Mode::Echo => c.sent,
            Mode::Broadcast => publishers.iter().map(|p| p.expected).sum(),
        };
        let lost = match plan.mode {
            Mode::Echo => c.sent.saturating_sub(c.received),
            Mode::Broadcast => publishers.iter().map(|p| p.missing).sum(),
        };
        let secs = plan.duration.as_secs_f64();
        let failure_limit_hit = c.failures() > plan.max_failures;
        let messages = MsgSummary {
            sent: c.sent,
            expected,
            received: c.received,
            lost,
            unsent: c.unsent,
            duplicates: c.duplicates,
            out_of_order: c.out_of_order,
            corrupt: c.corrupt,
        };
        let held = c
            .established
            .saturating_sub(c.dropped.values().sum::<u64>());
        let refused = c
            .failed
            .get(&FailReason::HttpStatus(503).to_string())
            .copied()
            .unwrap_or(0);
        let clean = messages.lost == 0
            && messages.unsent == 0
            && messages.duplicates == 0
            && messages.out_of_order == 0
            && messages.corrupt == 0;
        Report {
            mode: plan.mode,
            r#loop: match plan.load {
                Load::Open { .. } => "open",
                Load::Closed { .. } => "closed",
            },
            load: plan.load,
            urls: plan.targets.iter().map(|t| t.url.clone()).collect(),
            conns: plan.conns,
            processes: plan.shard_count(),
            threads_per_process: plan.threads,
            size: plan.size,
            duration_s: secs,
            warmup_s: plan.warmup.as_secs_f64(),
            connections: ConnSummary {
                ramp_s: stats.ramp_ns as f64 / 1e9,
                connect_rate: match stats.ramp_ns {
                    0 => 0.0,
                    ns => c.established as f64 / (ns as f64 / 1e9),
                },
                attempted: c.attempted,
                established: c.established,
                failed_total: c.failed.values().sum(),
                abandoned: c.abandoned,
                held,
                peak_held: stats.peak_held,
                failed: c.failed.clone(),
                dropped: c.dropped.clone(),
            },
            rate: RateSummary {
                offered: match plan.load {
                    Load::Open { rate } => Some(rate),
                    Load::Closed { .. } => None,
                },
                sent: c.sent_measured as f64 / secs,
                received: c.received_measured as f64 / (secs + stats.late_ns() as f64 / 1e9),
                late_s: stats.late_ns() as f64 / 1e9,
            },
            messages,
            latency_us: Percentiles::of(&stats.latency),
            connect_us: Percentiles::of(&stats.connect),
            loadgen_lag_us: Percentiles::of(&stats.lag),
            idle: plan.load == (Load::Open { rate: 0.0 }),
            busy_poll: plan.busy_poll,
            traffic_sleeps: c.traffic_sleeps,
            publishers,
            failure_limit_hit,
            at_capacity: (refused > 0).then(|| at_capacity(refused, held, stats.peak_held)),
            aborted: stats.aborted,
            ok: clean && !failure_limit_hit && !stats.aborted && c.established > 0,
        }
    }

    /// Process exit status: 0 when the run is clean, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.ok {
            0
        } else {
            1
        }
    }

    /// What was run, in one line: the table's first line and the plot's title.
    pub fn headline(&self) -> String {
        let load = match self.load {
            Load::Open { .. } if self.idle => "idle (connections held, nothing sent)".to_string(),
            Load::Open { rate } => format!("open loop, {rate:.0} msg/s scheduled"),
            Load::Closed { inflight } => format!("closed loop, {inflight} in flight per sender"),
        };
        format!(
            "loadgen {}, {load}, {} B messages, {} s measured after {} s warmup",
            self.mode, self.size, self.duration_s, self.warmup_s
        )
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let unit = if self.mode == Mode::Broadcast {
            "deliveries"
        } else {
            "msg"
        };
        let _ = writeln!(out, "{}", self.headline());
        let _ = writeln!(
            out,
            "  {} connections over {} URL(s), {} process(es) x {} thread(s)",
            self.conns,
            self.urls.len(),
            self.processes,
            self.threads_per_process
        );
        let c = &self.connections;
        let _ = writeln!(
            out,
            "connections   attempted {}  established {}  failed {}{}  abandoned {}",
            c.attempted,
            c.established,
            c.failed_total,
            reasons(&c.failed),
            c.abandoned
        );
        let _ = writeln!(
            out,
            "              ramp {:.1} s, {:.0} connections/s",
            c.ramp_s, c.connect_rate
        );
        if !c.dropped.is_empty() {
            let dropped = c.dropped.values().sum::<u64>();
            let _ = writeln!(
                out,
                "              dropped during run {dropped}{}",
                reasons(&c.dropped)
            );
        }
        let m = &self.messages;
        let _ = writeln!(
            out,
            "messages      sent {}  expected {}  received {}  lost {}  unsent {}",
            m.sent, m.expected, m.received, m.lost, m.unsent
        );
        let _ = writeln!(
            out,
            "              duplicate {}  out-of-order {}  corrupt {}",
            m.duplicates, m.out_of_order, m.corrupt
        );
        if self.idle {
            let _ = writeln!(
                out,
                "idle          nothing sent (--rate 0): {} of {} established connections held \
                 through the {} s window; no latency figures",
                c.held, c.established, self.duration_s
            );
            self.connect_line(&mut out);
        } else {
            self.rate_and_latency_lines(&mut out, unit);
        }
        if !self.publishers.is_empty() {
            let _ = writeln!(
                out,
                "publisher  room        sent    expected   delivered   missing  dup  ooo"
            );
            for p in self.publishers.iter().take(20) {
                let _ = writeln!(
                    out,
                    "{:>9}  {:>4}  {:>10}  {:>10}  {:>10}  {:>8}  {:>3}  {:>3}",
                    p.publisher,
                    p.room,
                    p.sent,
                    p.expected,
                    p.delivered,
                    p.missing,
                    p.duplicates,
                    p.out_of_order
                );
            }
            if self.publishers.len() > 20 {
                let _ = writeln!(
                    out,
                    "  ... {} more publishers in --json",
                    self.publishers.len() - 20
                );
            }
        }
        let verdict = if self.ok {
            "OK".to_string()
        } else if self.failure_limit_hit {
            "FAILED: failure limit (--max-failures) exceeded".to_string()
        } else if self.aborted {
            "FAILED: run aborted".to_string()
        } else if self.connections.established == 0 {
            "FAILED: no connection established".to_string()
        } else {
            "FAILED: messages lost, unsent, duplicated, reordered or corrupt".to_string()
        };
        if let Some(line) = &self.at_capacity {
            let _ = writeln!(out, "capacity      {line}");
        }
        let _ = writeln!(out, "result        {verdict}");
        out
    }

    /// The rate, latency, connect and loadgen-lag lines of a run that sent messages.
    fn rate_and_latency_lines(&self, out: &mut String, unit: &str) {
        let offered = self
            .rate
            .offered
            .map_or("max (closed loop)".to_string(), |r| format!("{r:.1} msg/s"));
        let _ = writeln!(
            out,
            "rate          offered {offered}  sent {:.1} msg/s  received {:.1} {unit}/s{}",
            self.rate.sent,
            self.rate.received,
            // Worth a mention once it is more than a rounding error of the window.
            if self.rate.late_s * 1000.0 > self.duration_s {
                format!("  (last one {:.2} s late)", self.rate.late_s)
            } else {
                String::new()
            }
        );
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "latency       min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  ({} samples{})",
            format_us(l.min),
            format_us(l.p50),
            format_us(l.p90),
            format_us(l.p99),
            format_us(l.p99_9),
            format_us(l.p99_99),
            format_us(l.max),
            l.count,
            if self.r#loop == "open" { ", from intended send time" } else { "" },
        );
        self.connect_line(out);
        if self.r#loop == "open" {
            let g = &self.loadgen_lag_us;
            let _ = writeln!(
                out,
                "loadgen lag   p50 {}  p99 {}  max {}{}{}",
                format_us(g.p50),
                format_us(g.p99),
                format_us(g.max),
                if self.busy_poll {
                    "  (busy-polling)"
                } else {
                    ""
                },
                if g.p99 > 1_000 {
                    "  (loadgen fell behind its schedule)"
                } else {
                    ""
                }
            );
        }
    }

    /// Connect time (connect + upgrade) percentiles.
    fn connect_line(&self, out: &mut String) {
        let k = &self.connect_us;
        let _ = writeln!(
            out,
            "connect       p50 {}  p99 {}  max {}",
            format_us(k.p50),
            format_us(k.p99),
            format_us(k.max)
        );
    }

    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// The line that says the server is full, how full, and what to do about it.
fn at_capacity(refused: u64, held: u64, peak: u64) -> String {
    let size = match (held, peak) {
        (0, 0) => "none (other clients fill it)".to_string(),
        (h, p) if h == p => format!("{h} connections (about the server's capacity)"),
        (h, p) => format!("{h} connections (at most {p} at once: about the server's capacity)"),
    };
    format!(
        "server full: {refused} attempts answered 503 while loadgen held {size}; \
         raise the server's open-files limit, or run several instances on one port \
         (SO_REUSEPORT): see {CAPACITY_HELP}"
    )
}

fn reasons(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(" ({})", parts.join(", "))
}

/// A microsecond value in a readable unit.
pub fn format_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=999_999 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.3}s", us as f64 / 1e6),
    }
}

/// Writes `hist` (µs) as an HdrHistogram percentile distribution in milliseconds: the text format
/// of `outputPercentileDistribution` that HdrHistogram's plotter reads.
pub fn write_hgrm(hist: &Histogram<u64>, out: &mut dyn Write) -> io::Result<()> {
    const SCALE: f64 = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for step in percentile_distribution(hist) {
        let (q, total) = (step.quantile, step.count);
        let value = step.value_us as f64 / SCALE;
        if q < 1.0 {
            writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
        }
    }
    let (mean, stdev, max) = if hist.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            hist.mean() / SCALE,
            hist.stdev() / SCALE,
            hist.max() as f64 / SCALE,
        )
    };
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        hist.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        hist.distinct_values()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{record, PublisherStats};

    /// The default plan with `conns` connections.
    fn plan(conns: u32) -> Plan {
        Plan {
            conns,
            ..Plan::example()
        }
    }

    /// `conns` connections sending `rate` messages per second for `secs` seconds.
    fn open_loop(conns: u32, rate: f64, secs: u64) -> Plan {
        Plan {
            load: Load::Open { rate },
            duration: Duration::from_secs(secs),
            ..plan(conns)
        }
    }

    #[test]
    fn clean_echo_run_is_ok() {
        let mut s = Stats::default();
        s.counters.attempted = 10;
        s.counters.established = 10;
        s.counters.sent = 100;
        s.counters.received = 100;
        record(&mut s.latency, 250);
        let r = Report::new(&plan(10), &s);
        assert!(r.ok, "{}", r.table());
        assert_eq!(r.exit_code(), 0);
        assert_eq!((r.messages.lost, r.messages.expected), (0, 100));
        assert!(r.table().contains("result        OK"));
    }

    #[test]
    fn late_deliveries_lower_the_received_rate() {
        let p = open_loop(10, 100.0, 10);
        let mut s = Stats::default();
        s.counters.established = 10;
        s.counters.sent = 1000;
        s.counters.received = 1000;
        s.counters.sent_measured = 1000;
        s.counters.received_measured = 1000;
        s.window_end_ns = 50_000_000_000;
        // The last message came 1 ms after the window: nearly the offered rate.
        s.last_measured_ns = s.window_end_ns + 1_000_000;
        let r = Report::new(&p, &s);
        assert!(
            (r.rate.received - 1000.0 / 10.001).abs() < 1e-6,
            "{:?}",
            r.rate
        );
        // A server 10 s behind delivered the same messages in twice the time.
        s.last_measured_ns = s.window_end_ns + 10_000_000_000;
        let r = Report::new(&p, &s);
        assert_eq!(
            (r.rate.sent, r.rate.received, r.rate.late_s),
            (100.0, 50.0, 10.0)
        );
        assert!(
            r.table().contains("(last one 10.00 s late)"),
            "{}",
            r.table()
        );
    }

    #[test]
    fn an_idle_run_reports_held_connections_and_no_latency() {
        let p = open_loop(10, 0.0, 5);
        let mut s = Stats::default();
        s.counters.attempted = 10;
        s.counters.established = 10;
        s.counters.drop_conn(crate::connection::FailReason::Reset);
        let r = Report::new(&p, &s);
        assert!(r.idle, "{r:?}");
        assert_eq!((r.connections.held, r.messages.sent), (9, 0));
        let table = r.table();
        assert!(
            table.contains("9 of 10 established connections held through the 5 s window"),
            "{table}"
        );
        assert!(
            !table.contains("\nlatency ") && !table.contains("\nloadgen lag"),
            "{table}"
        );
        assert!(table.contains("\nconnect ") && table.contains("idle (connections held"));
        assert!(!Report::new(&open_loop(100, 1.0, 30), &s).idle);
    }

    #[test]
    fn loss_and_failure_limit_fail_the_run() {
        let mut s = Stats::default();
        s.counters.established = 10;
        s.counters.sent = 100;
        s.counters.received = 99;
        let r = Report::new(&plan(10), &s);
        assert_eq!((r.messages.lost, r.exit_code()), (1, 1));
        s.counters.received = 100;
        s.counters.fail(crate::connection::FailReason::Refused);
        let tolerant = Plan {
            max_failures: 1,
            ..plan(10)
        };
        let r = Report::new(&tolerant, &s);
        assert!(r.ok);
        let r = Report::new(&plan(10), &s);
        assert!(r.failure_limit_hit && !r.ok);
        assert!(r.table().contains("refused: 1"));
    }

    #[test]
    fn a_full_server_gets_one_line_with_its_size_and_what_to_do() {
        let mut s = Stats::default();
        s.counters.attempted = 20_069;
        s.counters.established = 19_960;
        s.counters.abandoned = 37;
        for _ in 0..72 {
            s.counters
                .fail(crate::connection::FailReason::HttpStatus(503));
        }
        s.peak_held = 19_960;
        s.ramp_ns = 8_000_000_000;
        s.aborted = true;
        let r = Report::new(&plan(50_000), &s);
        let c = &r.connections;
        assert_eq!(c.attempted, c.established + c.failed_total + c.abandoned);
        let table = r.table();
        assert!(
            table.contains(
                "attempted 20069  established 19960  failed 72 (http 503: 72)  abandoned 37\n"
            ),
            "{table}"
        );
        // The ramp figures describe the connections made before the run stopped.
        assert!(table.contains("ramp 8.0 s, 2495 connections/s"), "{table}");
        let line = r.at_capacity.as_deref().unwrap();
        assert_eq!(
            table
                .lines()
                .filter(|l| l.contains("503 while"))
                .collect::<Vec<_>>(),
            [format!("capacity      {line}")]
        );
        assert!(
            line.starts_with(
                "server full: 72 attempts answered 503 while loadgen held 19960 connections \
                 (about the server's capacity); raise the server's open-files limit, or run \
                 several instances on one port (SO_REUSEPORT): see README.md#operating-it"
            ),
            "{line}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["connections"]["abandoned"], 37);
        assert_eq!(json["at_capacity"], line);

        // Connections dropped since the peak, and a server full of other clients.
        s.counters.drop_conn(crate::connection::FailReason::Reset);
        let r = Report::new(&plan(50_000), &s);
        assert!(r.at_capacity.unwrap().contains(
            "held 19959 connections (at most 19960 at once: about the server's capacity)"
        ));
        let mut other = Stats::default();
        other.counters.attempted = 1;
        other
            .counters
            .fail(crate::connection::FailReason::HttpStatus(503));
        let r = Report::new(&plan(1), &other);
        assert!(r.at_capacity.unwrap().contains("loadgen held none"));
        assert_eq!(Report::new(&plan(1), &Stats::default()).at_capacity, None);
    }

    #[test]
    fn broadcast_loss_is_per_publisher_times_room_members() {
        let p = Plan::broadcast_example(5, 1);
        let mut s = Stats::default();
        s.counters.established = 5;
        s.room_members.insert(0, 5);
        s.publishers.insert(
            0,
            PublisherStats {
                room: 0,
                sent: 10,
                delivered: 48,
                ..Default::default()
            },
        );
        let r = Report::new(&p, &s);
        assert_eq!(r.publishers[0].expected, 50);
        assert_eq!(r.messages.lost, 2);
        assert!(!r.ok);
    }

    #[test]
    fn hgrm_has_the_plotter_format() {
        let mut h = crate::stats::new_histogram();
        for us in 1..=1000 {
            record(&mut h, us * 10);
        }
        let mut out = Vec::new();
        write_hgrm(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(first[0], "0.010");
        assert_eq!(first.len(), 4);
        assert!(
            text.contains("#[Max     =       10.007, Total count    =         1000]"),
            "{text}"
        );
        let last_data = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert!(last_data.contains("1.000000000000"), "{last_data}");
    }

    #[test]
    fn formats_units() {
        assert_eq!(format_us(12), "12us");
        assert_eq!(format_us(1_500), "1.50ms");
        assert_eq!(format_us(2_000_000), "2.000s");
    }
}

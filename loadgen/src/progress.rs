//! Live progress: an indicatif bar on a terminal, plain periodic lines otherwise (CI logs).
//!
//! Shows connections established and failed, messages received per second and the p99 latency
//! of the last interval. It reads merged `Sample`s and keeps no other state about the run.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::stats::Sample;

/// Workers send samples this often: plain lines cannot usefully come more often.
pub const MIN_INTERVAL: Duration = crate::sampling::PERIOD;

/// Message rates are computed over windows at least this long.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The progress display of one run.
pub struct Progress {
    /// The bar, on a terminal.
    bar: Option<ProgressBar>,
    /// Connections the run opens.
    conns: u32,
    /// When the display started.
    began: Instant,
    /// When the last plain line was printed.
    last_line: Instant,
    /// Plain lines this often; None prints none.
    every: Option<Duration>,
    /// Plain lines printed so far.
    lines: u64,
    /// Start of the current rate window and the received count then.
    window: (Instant, u64),
    /// Received messages per second over the last full window.
    rate: f64,
    /// p99 of the latest interval with any latency samples (µs).
    p99_us: Option<u64>,
    /// Whether the run has reached its traffic phase.
    ramped: bool,
}

impl Progress {
    /// A display for `conns` connections; a bar when `terminal`, else plain lines on stderr
    /// every `every` (none when zero).
    pub fn new(conns: u32, terminal: bool, every: Duration) -> Progress {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(conns as u64);
            let style =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                    .expect("static template is valid")
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message("connecting");
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            conns,
            began: now,
            last_line: now,
            every: (!every.is_zero()).then_some(every),
            lines: 0,
            window: (now, 0),
            rate: 0.0,
            p99_us: None,
            ramped: false,
        }
    }

    /// Folds in a merged sample and refreshes the display when due.
    pub fn update(&mut self, sample: &Sample) {
        self.update_at(sample, Instant::now());
    }

    fn update_at(&mut self, sample: &Sample, now: Instant) {
        let c = &sample.counters;
        if now.duration_since(self.window.0) >= RATE_WINDOW {
            let secs = now.duration_since(self.window.0).as_secs_f64();
            self.rate = c.received.saturating_sub(self.window.1) as f64 / secs;
            self.window = (now, c.received);
        }
        if !sample.interval.is_empty() {
            self.p99_us = Some(sample.interval.value_at_quantile(0.99));
        }
        self.ramped |= sample.ramped;
        let phase = if self.ramped { "traffic" } else { "ramp" };
        let p99 = self
            .p99_us
            .map_or_else(|| "-".to_string(), crate::report::format_us);
        let failures = c.failures();
        match &self.bar {
            Some(bar) => {
                bar.set_position(c.established);
                bar.set_message(format!(
                    "{phase} | failed {failures} | {:.0} msg/s | p99 {p99}",
                    self.rate
                ));
            }
            None if self
                .every
                .is_some_and(|every| now.duration_since(self.last_line) >= every) =>
            {
                self.last_line = now;
                self.lines += 1;
                eprintln!(
                    "[{:6.1}s] {phase}: {}/{} connections, {failures} failed, sent {}, received {}, \
                     {:.0} msg/s, p99 {p99}",
                    now.duration_since(self.began).as_secs_f64(),
                    c.established,
                    self.conns,
                    c.sent,
                    c.received,
                    self.rate
                );
            }
            None => {}
        }
    }

    /// Removes the bar before the report is printed.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A standalone (unsharded) run is controlled by its display: traffic starts as soon as the
/// ramp is done, and only the failure limit stops it.
impl crate::engine::Control for Progress {
    fn progress(&mut self, sample: &Sample) {
        self.update(sample);
    }

    fn ramp_done(&mut self, sample: &Sample) -> Option<u64> {
        self.update(sample);
        Some(oskit::clock::now_ns() + 10_000_000)
    }

    fn should_stop(&mut self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::record;

    #[test]
    fn tracks_rate_and_p99_without_a_terminal() {
        let mut p = Progress::new(10, false, Duration::from_secs(2));
        let mut s = Sample::default();
        record(&mut s.interval, 1500);
        p.update(&s);
        assert_eq!(p.p99_us.map(|v| v / 10), Some(150));
        p.window.0 -= Duration::from_secs(2);
        s.counters.received = 200;
        s.interval = crate::stats::new_histogram();
        p.update(&s);
        assert!(p.rate > 50.0 && p.rate <= 100.0, "{}", p.rate);
        assert!(p.p99_us.is_some(), "an empty interval keeps the last p99");
        p.finish();
    }

    #[test]
    fn plain_lines_follow_the_interval_and_zero_prints_none() {
        let sample = Sample {
            counters: Default::default(),
            interval: crate::stats::new_histogram(),
            ramped: true,
        };
        for (every_ms, want) in [(500u64, 8u64), (2000, 2), (0, 0)] {
            let mut p = Progress::new(10, false, Duration::from_millis(every_ms));
            let began = p.began;
            // Samples every 250 ms for 4 s, on a simulated clock.
            for tick in 1..=16u64 {
                p.update_at(&sample, began + Duration::from_millis(250 * tick));
            }
            assert_eq!(p.lines, want, "every {every_ms} ms");
        }
    }
}

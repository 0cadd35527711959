//! Progress samples: what a worker tells the engine while it runs.
//!
//! Every `PERIOD` a worker sends its cumulative counters and the latencies recorded since the
//! previous sample. The samples go through a channel, so the worker never waits on the engine
//! and the send/receive path never takes a lock; the engine merges them for the display (or the
//! sharding parent) and checks the failure limit between them.

use std::sync::mpsc::Sender;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::stats::{new_histogram, Counters, Sample};

/// How often a worker sends a sample.
pub const PERIOD: Duration = Duration::from_millis(250);

/// A worker's side of the sample channel.
#[derive(Debug)]
pub struct Sampler {
    /// The worker's global index, which tags its samples.
    worker: usize,
    /// To the engine.
    samples: Sender<(usize, Sample)>,
    /// Latencies recorded since the last sample.
    interval: Histogram<u64>,
    /// When the next sample is due.
    next_ns: u64,
}

impl Sampler {
    /// A sampler for worker `worker` whose first sample is due at `now`.
    pub fn new(worker: usize, samples: Sender<(usize, Sample)>, now: u64) -> Sampler {
        Sampler {
            worker,
            samples,
            interval: new_histogram(),
            next_ns: now,
        }
    }

    /// Where the receive checks record latencies for the next sample.
    pub fn interval_mut(&mut self) -> &mut Histogram<u64> {
        &mut self.interval
    }

    /// When the next sample is due.
    pub fn next_deadline(&self) -> u64 {
        self.next_ns
    }

    /// Sends a sample if one is due at `now`, and schedules the next one a period later.
    pub fn tick(&mut self, now: u64, counters: &Counters, ramped: bool) {
        if now >= self.next_ns {
            self.send(counters, ramped);
            self.next_ns = now + PERIOD.as_nanos() as u64;
        }
    }

    /// Sends a sample now (a phase change or the end of the run); the engine may be gone at
    /// the end, which is not an error.
    pub fn send(&mut self, counters: &Counters, ramped: bool) {
        let sample = Sample {
            counters: counters.clone(),
            interval: std::mem::replace(&mut self.interval, new_histogram()),
            ramped,
        };
        let _ = self.samples.send((self.worker, sample));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::stats::record;

    const MS: u64 = 1_000_000;

    #[test]
    fn samples_come_every_period_with_the_latencies_since_the_last() {
        let (tx, rx) = mpsc::channel();
        let mut s = Sampler::new(3, tx, 1000 * MS);
        let mut counters = Counters::default();
        s.tick(1000 * MS, &counters, false);
        assert_eq!(s.next_deadline(), 1250 * MS);
        record(s.interval_mut(), 40);
        counters.received = 1;
        s.tick(1249 * MS, &counters, false);
        assert!(
            rx.try_recv().unwrap().1.interval.is_empty(),
            "the first one"
        );
        assert!(rx.try_recv().is_err(), "not due yet");
        s.tick(1260 * MS, &counters, true);
        let (worker, sample) = rx.try_recv().unwrap();
        assert_eq!(
            (worker, sample.counters.received, sample.ramped),
            (3, 1, true)
        );
        assert_eq!(sample.interval.len(), 1);
        assert_eq!(s.next_deadline(), 1510 * MS);
        assert!(s.interval_mut().is_empty(), "each latency goes out once");
    }

    #[test]
    fn a_sample_to_a_finished_engine_is_dropped_quietly() {
        let (tx, rx) = mpsc::channel();
        drop(rx);
        Sampler::new(0, tx, 0).send(&Counters::default(), true);
    }
}

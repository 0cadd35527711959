//! Runs one process's share of a run: spawns the pinned workers, coordinates their phases and
//! merges what they measured.
//!
//! The engine owns the process-level decisions: which connections each worker gets, when the
//! failure limit aborts the run, and when traffic starts. The start time is asked of a `Control`,
//! which in a normal run is "right now" and in a child process of a sharded run is whatever the
//! parent broadcasts once every process has ramped, so all shards start on the same instant.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::plan::{Plan, ShardId};
use crate::stats::{Sample, Stats};
use crate::worker::{Shared, Worker, WorkerError, WorkerSpec};

/// How the engine talks to whoever runs it: a progress display, or the sharding parent.
pub trait Control {
    /// A merged sample of all workers, about four times a second.
    fn progress(&mut self, sample: &Sample);

    /// Every worker finished its ramp (`sample` says how it went). Returns the traffic start time
    /// (CLOCK_MONOTONIC ns), or None to abort.
    fn ramp_done(&mut self, sample: &Sample) -> Option<u64>;

    /// Whether to stop the run early (checked between samples).
    fn should_stop(&mut self) -> bool;
}

/// Why a process could not run its share.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("failed to start worker thread: {0}")]
    Spawn(std::io::Error),
    #[error("a worker thread panicked")]
    Panicked,
}

/// The global connection indices owned by worker `global` of `of` workers: every `of`-th one,
/// so publishers, rooms and source addresses spread evenly over workers and shards.
pub fn conns_of_worker(conns: u32, global: usize, of: usize) -> Vec<u32> {
    (global as u32..conns).step_by(of).collect()
}

/// Runs this process's workers through the whole run and returns their merged stats.
pub fn run_process(
    plan: Arc<Plan>,
    shard: ShardId,
    control: &mut dyn Control,
) -> Result<Stats, EngineError> {
    let threads = plan.threads;
    let of = threads * shard.count as usize;
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel::<(usize, Sample)>();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let global = shard.index as usize * threads + t;
        let core = (!plan.cores.is_empty()).then(|| plan.cores[global % plan.cores.len()]);
        let spec = WorkerSpec {
            index: global,
            of,
            core,
            conn_ids: conns_of_worker(plan.conns, global, of),
        };
        let worker = Worker::new(Arc::clone(&plan), spec, Arc::clone(&shared), tx.clone())?;
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{global}"))
            .spawn(move || worker.run())
            .map_err(EngineError::Spawn)?;
        handles.push((global, handle));
    }
    drop(tx);

    // Latest cumulative sample per worker, and latencies not yet reported.
    let mut latest: Vec<Sample> = (0..threads).map(|_| Sample::default()).collect();
    let mut pending = Sample::default();
    let mut started = false;
    let first = shard.index as usize * threads;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(first_sample) => {
                // Take whatever else arrived too, then report once.
                for (global, sample) in std::iter::once(first_sample).chain(rx.try_iter()) {
                    let _ = pending.interval.add(&sample.interval);
                    latest[global - first] = sample;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let mut total = Sample::default();
        for s in &latest {
            total.counters.merge(&s.counters);
        }
        total.interval = std::mem::replace(&mut pending.interval, crate::stats::new_histogram());
        total.ramped = latest.iter().all(|s| s.ramped);
        control.progress(&total);
        if total.counters.failures() > plan.max_failures || control.should_stop() {
            shared.abort.store(true, Ordering::Release);
        }
        if !started && shared.ramped.load(Ordering::Acquire) == threads {
            started = true;
            match control.ramp_done(&total) {
                Some(start) => shared.start_ns.store(start.max(1), Ordering::Release),
                None => shared.abort.store(true, Ordering::Release),
            }
        }
    }

    let mut merged = Stats::default();
    for (_, handle) in handles {
        let stats = handle.join().map_err(|_| EngineError::Panicked)?;
        merged.merge(&stats);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_partition_the_connections() {
        let of = 6;
        let mut all: Vec<u32> = (0..of).flat_map(|g| conns_of_worker(1000, g, of)).collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(conns_of_worker(10, 1, 4), vec![1, 5, 9]);
        assert!(conns_of_worker(2, 3, 4).is_empty());
    }
}

//! Sharded runs: when one process cannot hold enough sockets, loadgen re-executes itself as
//! child processes, each running a slice of the connections, and merges their results.
//!
//! Protocol, one line per message:
//! - child → parent on stdout: JSON `ChildMsg` (`progress`, `ready`, `report`);
//! - parent → child on stdin: `start <ns>` once every child is ready, or `stop`.
//!
//! All children start traffic at the same CLOCK_MONOTONIC instant, so the merged schedule is the
//! one a single process would have run. A child whose stdin closes (parent gone) stops. Stats
//! travel with histograms in HdrHistogram V2 serialization (see `stats`), so the merged
//! percentiles are exact.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::{self, Control, EngineError};
use crate::plan::{Plan, ShardId};
use crate::progress::Progress;
use crate::stats::{new_histogram, Sample, Stats};
use oskit::clock::now_ns;

/// Children send progress at most this often.
const CHILD_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Delay between the start broadcast and the common start instant, so every child has it.
const START_DELAY_NS: u64 = 100_000_000;

/// A line from a child.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum ChildMsg {
    /// Merged sample of the child's workers.
    Progress { sample: Sample },
    /// The child finished its ramp.
    Ready { sample: Sample },
    /// The child's final stats.
    Report { stats: Box<Stats> },
}

/// What went wrong with a sharded run.
#[derive(Debug, Error)]
pub enum ShardError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot start shard process: {0}")]
    Spawn(io::Error),
    #[error("shard {index} ended without a report ({status})")]
    Child { index: u32, status: String },
    #[error("talking to the parent process: {0}")]
    Io(#[from] io::Error),
}

/// A command from the parent.
enum ParentCmd {
    /// Start traffic at this CLOCK_MONOTONIC instant.
    Start(u64),
    /// Stop now.
    Stop,
}

/// The control of a child process: reports to the parent, takes the start time from it.
struct ChildControl {
    /// The pipe to the parent.
    out: io::Stdout,
    /// Parsed lines from the parent (stdin), or disconnection when it is gone.
    commands: Receiver<ParentCmd>,
    /// When progress was last sent (rate limit).
    last_progress: Instant,
    /// Latencies not yet sent.
    pending: Sample,
    /// Whether the parent said stop (or went away).
    stopped: bool,
}

impl ChildControl {
    fn send(&mut self, msg: &ChildMsg) {
        let line = serde_json::to_string(msg).expect("stats serialize");
        let mut out = self.out.lock();
        // A parent that went away is noticed through stdin; nothing to do here.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    fn poll_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(ParentCmd::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stopped = true;
                    return;
                }
                // A start outside ramp_done cannot happen; ignore it.
                Ok(ParentCmd::Start(_)) => {}
                Err(TryRecvError::Empty) => return,
            }
        }
    }
}

impl Control for ChildControl {
    fn progress(&mut self, sample: &Sample) {
        let _ = self.pending.interval.add(&sample.interval);
        if self.last_progress.elapsed() >= CHILD_PROGRESS_EVERY {
            self.last_progress = Instant::now();
            let interval = std::mem::replace(&mut self.pending.interval, new_histogram());
            let sample = Sample {
                counters: sample.counters.clone(),
                interval,
                ..*sample
            };
            self.send(&ChildMsg::Progress { sample });
        }
    }

    fn ramp_done(&mut self, sample: &Sample) -> Option<u64> {
        self.send(&ChildMsg::Ready {
            sample: sample.clone(),
        });
        match self.commands.recv() {
            Ok(ParentCmd::Start(at)) => Some(at),
            Ok(ParentCmd::Stop) | Err(_) => {
                self.stopped = true;
                None
            }
        }
    }

    fn should_stop(&mut self) -> bool {
        self.poll_commands();
        self.stopped
    }
}

/// Runs this process as shard `shard` of a sharded run, talking to the parent on stdin/stdout.
pub fn run_child(plan: Arc<Plan>, shard: ShardId) -> Result<(), ShardError> {
    let (tx, commands) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let cmd = match line.split_once(' ') {
                Some(("start", at)) => at
                    .trim()
                    .parse()
                    .map(ParentCmd::Start)
                    .unwrap_or(ParentCmd::Stop),
                _ => ParentCmd::Stop,
            };
            if tx.send(cmd).is_err() {
                return;
            }
        }
        // Dropping `tx` tells the engine the parent is gone.
    });
    let mut control = ChildControl {
        out: io::stdout(),
        commands,
        last_progress: Instant::now(),
        pending: Sample::default(),
        stopped: false,
    };
    let stats = engine::run_process(plan, shard, &mut control)?;
    control.send(&ChildMsg::Report {
        stats: Box::new(stats),
    });
    Ok(())
}

/// What the parent hears from its children's stdout readers.
enum Heard {
    Msg(Box<ChildMsg>),
    /// The child's stdout closed (it exited); `Some` when a line could not be parsed.
    End(Option<String>),
}

/// One child as the parent sees it.
struct Shard {
    /// The process, waited for at the end.
    child: Child,
    /// Where `start`/`stop` go; dropped when the child ends.
    stdin: Option<ChildStdin>,
    /// Its latest cumulative counters.
    latest: Sample,
    /// Whether it finished its ramp.
    ready: bool,
    /// Its final stats, once sent.
    report: Option<Stats>,
    /// Whether its stdout closed.
    ended: bool,
}

impl Shard {
    fn tell(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }
}

/// Runs the plan over `plan.shard_count()` child processes and merges their stats.
pub fn run_parent(plan: &Plan, progress: &mut Progress) -> Result<Stats, ShardError> {
    let count = plan.shard_count();
    let exe = std::env::current_exe().map_err(ShardError::Spawn)?;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let (tx, rx) = mpsc::channel::<(usize, Heard)>();
    let mut shards = Vec::with_capacity(count as usize);
    for index in 0..count {
        let mut child = Command::new(&exe)
            .args(&args)
            .arg("--shard")
            .arg(format!("{index}/{count}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(ShardError::Spawn)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            let i = index as usize;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let heard = match serde_json::from_str::<ChildMsg>(&line) {
                    Ok(msg) => Heard::Msg(Box::new(msg)),
                    Err(e) => Heard::End(Some(format!("unreadable line from shard {i}: {e}"))),
                };
                if tx.send((i, heard)).is_err() {
                    return;
                }
            }
            let _ = tx.send((i, Heard::End(None)));
        });
        let stdin = child.stdin.take();
        shards.push(Shard {
            child,
            stdin,
            latest: Sample::default(),
            ready: false,
            report: None,
            ended: false,
        });
    }
    drop(tx);

    let mut started = false;
    let mut stopped = false;
    let mut pending = new_histogram();
    while !shards.iter().all(|s| s.ended) {
        let heard = rx.recv_timeout(Duration::from_millis(100));
        let heard = heard.map(|(i, h)| match h {
            Heard::Msg(msg) => (i, Ok(*msg)),
            Heard::End(problem) => (i, Err(problem)),
        });
        match heard {
            Ok((i, Ok(ChildMsg::Progress { sample }))) => {
                let _ = pending.add(&sample.interval);
                shards[i].latest = sample;
            }
            Ok((i, Ok(ChildMsg::Ready { sample }))) => {
                let _ = pending.add(&sample.interval);
                shards[i].latest = sample;
                shards[i].ready = true;
            }
            Ok((i, Ok(ChildMsg::Report { stats }))) => shards[i].report = Some(*stats),
            Ok((i, Err(problem))) => {
                if let Some(problem) = problem {
                    eprintln!("loadgen: {problem}");
                }
                shards[i].ended = true;
                shards[i].stdin = None;
                if shards[i].report.is_none() && !stopped {
                    // A shard died: the run cannot be exact any more.
                    stopped = true;
                    shards.iter_mut().for_each(|s| s.tell("stop"));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let mut total = Sample::default();
        for s in &shards {
            total.counters.merge(&s.latest.counters);
        }
        total.interval = std::mem::replace(&mut pending, new_histogram());
        total.ramped = shards.iter().all(|s| s.ready);
        progress.update(&total);
        if !stopped && total.counters.failures() > plan.max_failures {
            stopped = true;
            shards.iter_mut().for_each(|s| s.tell("stop"));
        }
        if !started && !stopped && shards.iter().all(|s| s.ready) {
            started = true;
            let line = format!("start {}", now_ns() + START_DELAY_NS);
            shards.iter_mut().for_each(|s| s.tell(&line));
        }
    }

    let mut merged = Stats::default();
    for (index, shard) in shards.iter_mut().enumerate() {
        shard.stdin = None;
        let status = shard.child.wait().map_err(ShardError::Spawn)?;
        match shard.report.take() {
            Some(stats) if status.success() => merged.merge(&stats),
            _ => {
                return Err(ShardError::Child {
                    index: index as u32,
                    status: status.to_string(),
                })
            }
        }
    }
    merged.aborted |= stopped;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::PublisherStats;

    #[test]
    fn a_broadcast_report_crosses_from_child_to_parent() {
        let mut stats = Stats::default();
        stats.publishers.insert(
            7,
            PublisherStats {
                room: 2,
                sent: 120,
                delivered: 6_000_000,
                ..PublisherStats::default()
            },
        );
        stats.room_members.insert(2, 50_000);
        let line = serde_json::to_string(&ChildMsg::Report {
            stats: Box::new(stats),
        })
        .unwrap();
        let ChildMsg::Report { stats: back } = serde_json::from_str(&line).unwrap() else {
            panic!("not a report: {line}");
        };
        assert_eq!(back.publishers[&7].delivered, 6_000_000);
        assert_eq!(back.publishers[&7].room, 2);
        assert_eq!(back.room_members[&2], 50_000);
    }
}

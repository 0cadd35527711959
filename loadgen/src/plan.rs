//! The run plan: a validated, complete description of one run, which everything below the
//! command line takes and never re-checks.
//!
//! `cli` builds a `Plan` from the command line (parse, don't validate); the engine, workers,
//! sharding and report only read it. Keeping the plan apart from the clap definitions is what
//! lets those modules depend on the run's description without depending on the command line
//! (which itself needs them: the progress display, for one).

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::target::Target;

/// What traffic looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every connection sends; the server echoes each message back to its sender.
    Echo,
    /// Publishers send to a room; every member of the room receives every message.
    Broadcast,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Echo => "echo",
            Mode::Broadcast => "broadcast",
        })
    }
}

/// How sends are paced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Load {
    /// Fixed schedule, independent of replies: `rate` messages per second in total.
    Open { rate: f64 },
    /// Each sender keeps `inflight` messages outstanding and sends on every reply.
    Closed { inflight: u32 },
}

/// Which process of a sharded run this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardId {
    /// This process's index, from 0.
    pub index: u32,
    /// How many processes share the run.
    pub count: u32,
}

impl ShardId {
    /// The only shard of an unsharded run.
    pub const SOLE: ShardId = ShardId { index: 0, count: 1 };
}

impl FromStr for ShardId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected INDEX/COUNT, got {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.parse().map_err(|_| bad())?;
        let count: u32 = n.parse().map_err(|_| bad())?;
        if index >= count {
            return Err(bad());
        }
        Ok(ShardId { index, count })
    }
}

/// A validated run description.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Resolved targets; connection `i` uses `targets[i % len]`.
    pub targets: Vec<Target>,
    /// Room of each target in broadcast mode: the index of the first target with the same URL.
    pub rooms: Vec<u32>,
    /// Connections in the whole run (all shards).
    pub conns: u32,
    /// Worker threads per process.
    pub threads: usize,
    /// Cores worker threads are pinned to, round-robin; empty means unpinned.
    pub cores: Vec<usize>,
    /// Connection attempts per second in the whole run.
    pub connect_rate: f64,
    /// Deadline for connect plus upgrade.
    pub connect_timeout: Duration,
    /// Failures tolerated before aborting.
    pub max_failures: u64,
    /// Source addresses bound round-robin by connection index; empty lets the OS choose.
    pub source_ips: Vec<IpAddr>,
    /// Bytes per message.
    pub size: usize,
    /// Measured traffic time.
    pub duration: Duration,
    /// Unmeasured traffic time before `duration`.
    pub warmup: Duration,
    /// Pacing.
    pub load: Load,
    /// Echo or broadcast.
    pub mode: Mode,
    /// Connections `0..publishers` publish (broadcast mode); all connections send in echo mode.
    pub publishers: u32,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Where to write the latency distribution.
    pub hgrm: Option<PathBuf>,
    /// Where to write the latency percentile plot (SVG).
    pub plot: Option<PathBuf>,
    /// Wait for in-flight replies after the traffic.
    pub drain_timeout: Duration,
    /// Plain progress lines this often (zero: none).
    pub progress_interval: Duration,
    /// Never sleep during the traffic (`--busy-poll`).
    pub busy_poll: bool,
    /// Most connections one process holds; more means sharding.
    pub per_process: u32,
    /// Set in child processes of a sharded run.
    pub shard: Option<ShardId>,
    /// The TLS client configuration for `wss://` targets (`--ca`, `--insecure`); `None` when
    /// every target is `ws://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Plan {
    /// Processes the run needs: one unless the connections exceed one process's share.
    pub fn shard_count(&self) -> u32 {
        self.conns.div_ceil(self.per_process)
    }

    /// Whether connection `id` sends messages.
    pub fn is_sender(&self, id: u32) -> bool {
        match self.mode {
            Mode::Echo => true,
            Mode::Broadcast => id < self.publishers,
        }
    }

    /// Number of sending connections in the whole run.
    pub fn senders(&self) -> u32 {
        match self.mode {
            Mode::Echo => self.conns,
            Mode::Broadcast => self.publishers,
        }
    }

    /// The target index of connection `id`.
    pub fn target_of(&self, id: u32) -> usize {
        id as usize % self.targets.len()
    }

    /// The source address connection `id` binds to, if any.
    pub fn source_of(&self, id: u32) -> Option<IpAddr> {
        match self.source_ips.len() {
            0 => None,
            n => Some(self.source_ips[id as usize % n]),
        }
    }

    /// The plan of the default command line (one worker, no sharding), built without the
    /// command line, so unit tests of the modules below `cli` need not depend on it. Tests
    /// change the fields they care about.
    #[cfg(test)]
    pub(crate) fn example() -> Plan {
        Plan {
            targets: vec![Target::parse("ws://127.0.0.1:9998/echo").expect("a valid URL")],
            rooms: vec![0],
            conns: 100,
            threads: 1,
            cores: Vec::new(),
            connect_rate: 5000.0,
            connect_timeout: Duration::from_secs(10),
            max_failures: 0,
            source_ips: Vec::new(),
            size: 64,
            duration: Duration::from_secs(30),
            warmup: Duration::ZERO,
            load: Load::Open { rate: 1000.0 },
            mode: Mode::Echo,
            publishers: 0,
            json: None,
            hgrm: None,
            plot: None,
            drain_timeout: Duration::from_secs(5),
            progress_interval: Duration::from_secs(2),
            busy_poll: false,
            per_process: u32::MAX,
            shard: None,
            tls: None,
        }
    }

    /// `example` turned into a broadcast run: `publishers` of `conns` connections publishing to
    /// one room.
    #[cfg(test)]
    pub(crate) fn broadcast_example(conns: u32, publishers: u32) -> Plan {
        let room = Target::parse("ws://127.0.0.1:9998/broadcast/r").expect("a valid URL");
        Plan {
            targets: vec![room],
            conns,
            mode: Mode::Broadcast,
            publishers,
            ..Plan::example()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_everyone_in_echo_and_the_first_publishers_in_broadcast() {
        let echo = Plan::example();
        assert_eq!(echo.senders(), 100);
        assert!(echo.is_sender(0) && echo.is_sender(99));
        let broadcast = Plan::broadcast_example(10, 3);
        assert_eq!(broadcast.senders(), 3);
        assert!(broadcast.is_sender(2) && !broadcast.is_sender(3));
    }

    #[test]
    fn connections_spread_round_robin_over_targets_and_sources() {
        let mut p = Plan::example();
        p.targets
            .push(Target::parse("ws://127.0.0.1:9999/echo").unwrap());
        assert_eq!((p.target_of(0), p.target_of(1), p.target_of(2)), (0, 1, 0));
        assert_eq!(p.source_of(1), None);
        p.source_ips = vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()];
        assert_eq!(p.source_of(3), Some("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn shards_cover_the_connections() {
        let mut p = Plan::example();
        assert_eq!(p.shard_count(), 1);
        p.conns = 1000;
        p.per_process = 300;
        assert_eq!(p.shard_count(), 4);
    }

    #[test]
    fn shard_ids() {
        assert_eq!("1/3".parse::<ShardId>(), Ok(ShardId { index: 1, count: 3 }));
        assert!("3/3".parse::<ShardId>().is_err());
        assert!("x".parse::<ShardId>().is_err());
    }
}

//! The command line, and its validation into the `Plan` that the rest of loadgen trusts.
//!
//! `Args` is what clap parses; `Args::into_plan` turns it into a `Plan` or one `CliError` line
//! (unparsable URL, impossible combination, ...). Everything downstream takes a `Plan` and never
//! re-checks input, and no module below this one imports it: the messages here name flags,
//! which only the command line knows. Resolving defaults that depend on the machine (threads,
//! cores, source addresses, connections per process) also happens here, so a run is fully
//! described by its `Plan`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use oskit::cpu::{self as affinity, CpuList};
use oskit::units::parse_duration;
use thiserror::Error;

use crate::payload::HEADER_LEN;
use crate::plan::{Load, Mode, Plan, ShardId};
use crate::sources::{self, SourceError};
use crate::target::{Target, TargetError};

/// Descriptors a process keeps for itself (poll, timers, pipes, std streams) beyond its sockets.
const FD_RESERVE: u64 = 100;

/// Largest `--size` accepted (tungstenite's default frame limit is 16 MiB).
const MAX_SIZE: usize = 16 << 20;

/// Load generator for corecast: many WebSocket connections, a fixed send schedule, honest
/// latency histograms.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Args {
    /// WebSocket URL, ws:// or wss:// (TLS: needs --ca or --insecure). Repeat to spread
    /// connections round-robin across several.
    #[arg(
        long = "url",
        value_name = "URL",
        default_value = "ws://127.0.0.1:9998/echo"
    )]
    pub urls: Vec<String>,

    /// Number of connections to open and hold for the whole run.
    #[arg(long, default_value_t = 100)]
    pub conns: u32,

    /// Worker threads, each pinned to one core with its own event loop [default: allowed cores].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Cores to pin worker threads to, e.g. `2,3` or `0-1` [default: the allowed CPU set].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<CpuList>,

    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,

    /// Time allowed for TCP connect plus WebSocket upgrade of one connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Failed or dropped connections tolerated; one more aborts the run.
    #[arg(long, default_value_t = 0)]
    pub max_failures: u64,

    /// Source addresses to bind, round-robin, comma separated [default: for a loopback target,
    /// as many of 127.0.0.1, 127.0.0.2, ... as the connection count needs].
    #[arg(long, value_name = "IPS", value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,

    /// Payload bytes per message (at least 16: sender, sequence number and send time).
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Traffic time after the ramp (and after the warmup), e.g. `30s`, `500ms`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Traffic time before `--duration` whose latencies are left out of the histograms.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Total messages per second across all connections (publishes in broadcast mode), `max`
    /// for a closed loop with `--inflight` messages outstanding per connection, or `0` to hold
    /// the connections idle for `--duration` without sending anything (the report then says
    /// `idle` and counts the connections held instead of latency).
    #[arg(long, default_value = "1000", conflicts_with = "rate_per_conn")]
    pub rate: RateArg,

    /// Messages per second per sending connection, instead of `--rate`.
    #[arg(long, value_name = "RATE")]
    pub rate_per_conn: Option<f64>,

    /// Closed loop (`--rate max`): messages outstanding per sending connection.
    #[arg(long, default_value_t = 1)]
    pub inflight: u32,

    /// `echo`: every connection sends and checks its echoes. `broadcast`: `--publishers`
    /// connections publish to their room (`/broadcast/<room>` URLs) and all receive.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,

    /// Broadcast mode: how many connections publish (the first ones, spread over the URLs).
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,

    /// Write the whole report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the latency percentile distribution (HdrHistogram .hgrm, milliseconds) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,

    /// Write a latency percentile plot (self-contained SVG: latency against percentile on a
    /// log scale of 1/(1-p), as HdrHistogram plots it) to FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// After the traffic, how long to wait for replies still in flight before counting them lost.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// How often a progress line is printed when the output is not a terminal (at least 250ms,
    /// the workers' sampling period; `0` prints none).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub progress_interval: Duration,

    /// During the traffic, poll without ever sleeping: every send leaves on its scheduled
    /// instant and every reply is seen at once, with no timer or wakeup cost per message, at
    /// the price of keeping each worker's core fully busy. For latency and CPU-per-message
    /// measurements with loadgen on cores of its own.
    #[arg(long)]
    pub busy_poll: bool,

    /// For wss:// URLs: trust the certificates in this PEM file (the server's self-signed
    /// certificate, or the CA that issued it).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// For wss:// URLs: accept any server certificate (signatures are still checked). For
    /// benchmarks on a private machine, never for anything that matters.
    #[arg(long)]
    pub insecure: bool,

    /// Most connections one process may hold [default: open-files limit minus a reserve].
    #[arg(long, hide = true)]
    pub max_conns_per_process: Option<u32>,

    /// Internal: this process is shard `INDEX/COUNT` of a sharded run.
    #[arg(long, hide = true, value_name = "INDEX/COUNT")]
    pub shard: Option<ShardId>,
}

/// `--rate`: a number of messages per second (0: idle), or `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateArg {
    /// Messages per second across all sending connections.
    PerSecond(f64),
    /// Closed loop: as fast as replies allow.
    Max,
}

impl FromStr for RateArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(RateArg::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r >= 0.0 && r.is_finite() => Ok(RateArg::PerSecond(r)),
            _ => Err(format!("expected a number >= 0 or `max`, got {s:?}")),
        }
    }
}

/// Why the command line cannot be run.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Sources(#[from] SourceError),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Invalid(msg.into())
}

impl Args {
    /// Validates the command line into a plan; `nofile` is this process's open-files limit
    /// after raising it.
    pub fn into_plan(self, nofile: u64) -> Result<Plan, CliError> {
        let targets = self
            .urls
            .iter()
            .map(|u| Target::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        let rooms = targets
            .iter()
            .map(|t| targets.iter().position(|o| o.url == t.url).unwrap_or(0) as u32)
            .collect();
        if self.conns == 0 {
            return Err(invalid("--conns must be at least 1"));
        }
        let tls = if targets.iter().any(|t| t.tls) {
            Some(crate::tls::client_config(self.ca.as_deref(), self.insecure).map_err(invalid)?)
        } else {
            None
        };
        if self.size < HEADER_LEN || self.size > MAX_SIZE {
            return Err(invalid(format!(
                "--size must be between {HEADER_LEN} and {MAX_SIZE} bytes (got {})",
                self.size
            )));
        }
        if !self.progress_interval.is_zero()
            && self.progress_interval < crate::progress::MIN_INTERVAL
        {
            return Err(invalid(format!(
                "--progress-interval must be 0 (no lines) or at least 250ms (got {:?})",
                self.progress_interval
            )));
        }
        if !(self.connect_rate > 0.0 && self.connect_rate.is_finite()) {
            return Err(invalid("--connect-rate must be a positive number"));
        }
        if self.connect_timeout.is_zero() || self.duration.is_zero() {
            return Err(invalid(
                "--connect-timeout and --duration must be greater than zero",
            ));
        }
        let threads = match self.threads {
            Some(0) => return Err(invalid("--threads must be at least 1")),
            Some(n) => n,
            None => affinity::default_threads(self.cpus.as_ref()),
        };
        let cores = affinity::available_cores(self.cpus.as_ref());
        if self.cpus.is_some() && cores.is_empty() {
            return Err(invalid("--cpus names no core"));
        }
        let publishers = match self.mode {
            Mode::Echo => 0,
            Mode::Broadcast => {
                if self.publishers == 0 || self.publishers > self.conns {
                    return Err(invalid(format!(
                        "--publishers must be between 1 and --conns ({})",
                        self.conns
                    )));
                }
                self.publishers
            }
        };
        for t in &targets {
            let is_room = t.path.starts_with("/broadcast/") && t.path.len() > "/broadcast/".len();
            if self.mode == Mode::Broadcast && !is_room {
                return Err(invalid(format!(
                    "--mode broadcast needs /broadcast/<room> URLs, got {}",
                    t.url
                )));
            }
            if self.mode == Mode::Echo && t.path.starts_with("/broadcast/") {
                return Err(invalid(format!(
                    "{} is a broadcast room: use --mode broadcast",
                    t.url
                )));
            }
        }
        let senders = if self.mode == Mode::Echo {
            self.conns
        } else {
            publishers
        };
        let load = match (self.rate, self.rate_per_conn) {
            (_, Some(r)) if r > 0.0 && r.is_finite() => Load::Open {
                rate: r * senders as f64,
            },
            (_, Some(_)) => return Err(invalid("--rate-per-conn must be a positive number")),
            (RateArg::PerSecond(rate), None) => Load::Open { rate },
            (RateArg::Max, None) if self.inflight == 0 => {
                return Err(invalid("--inflight must be at least 1"))
            }
            (RateArg::Max, None) => Load::Closed {
                inflight: self.inflight,
            },
        };
        if self.inflight != 1 && matches!(load, Load::Open { .. }) {
            return Err(invalid(
                "--inflight applies only to a closed loop (--rate max)",
            ));
        }
        let fd_room = nofile.saturating_sub(FD_RESERVE).min(u32::MAX as u64) as u32;
        let per_process = self.max_conns_per_process.unwrap_or(u32::MAX).min(fd_room);
        if per_process == 0 {
            return Err(invalid(format!(
                "open-files limit {nofile} leaves no room for sockets"
            )));
        }
        let source_ips = sources::choose(&targets, self.conns, self.source_ips)?;
        Ok(Plan {
            targets,
            rooms,
            conns: self.conns,
            threads,
            cores,
            connect_rate: self.connect_rate,
            connect_timeout: self.connect_timeout,
            max_failures: self.max_failures,
            source_ips,
            size: self.size,
            duration: self.duration,
            warmup: self.warmup,
            load,
            mode: self.mode,
            publishers,
            json: self.json,
            hgrm: self.hgrm,
            plot: self.plot,
            drain_timeout: self.drain_timeout,
            progress_interval: self.progress_interval,
            busy_poll: self.busy_poll,
            per_process,
            shard: self.shard,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &[&str]) -> Result<Plan, CliError> {
        let argv = std::iter::once("loadgen").chain(extra.iter().copied());
        Args::try_parse_from(argv)
            .expect("clap accepts")
            .into_plan(20_000)
    }

    fn error(extra: &[&str]) -> String {
        plan(extra).unwrap_err().to_string()
    }

    #[test]
    fn progress_interval_parses_durations_and_zero_turns_lines_off() {
        assert_eq!(plan(&[]).unwrap().progress_interval, Duration::from_secs(2));
        let every = |v: &str| plan(&["--progress-interval", v]).unwrap().progress_interval;
        assert_eq!(every("500ms"), Duration::from_millis(500));
        assert_eq!(every("1m"), Duration::from_secs(60));
        assert_eq!(every("3"), Duration::from_secs(3));
        assert_eq!(every("0"), Duration::ZERO);
        assert!(error(&["--progress-interval", "100ms"]).contains("at least 250ms"));
        assert!(Args::try_parse_from(["loadgen", "--progress-interval", "-1s"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--progress-interval", "often"]).is_err());
    }

    #[test]
    fn defaults_are_an_open_loop_echo_and_the_example_plan() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.targets[0].url, "ws://127.0.0.1:9998/echo");
        assert_eq!(p.load, Load::Open { rate: 1000.0 });
        assert_eq!((p.conns, p.size, p.mode), (100, 64, Mode::Echo));
        assert_eq!(p.duration, Duration::from_secs(30));
        assert!(p.source_ips.is_empty());
        assert_eq!(p.shard_count(), 1);
        assert!(p.threads >= 1);
        // Unit tests below `cli` use `Plan::example` for this plan: it must stay the same,
        // apart from what depends on the machine.
        let example = Plan::example();
        let p = Plan {
            threads: example.threads,
            cores: example.cores.clone(),
            per_process: example.per_process,
            ..p
        };
        assert_eq!(format!("{p:?}"), format!("{example:?}"));
    }

    #[test]
    fn rate_forms() {
        assert_eq!(
            plan(&["--rate", "max"]).unwrap().load,
            Load::Closed { inflight: 1 }
        );
        let p = plan(&["--rate", "max", "--inflight", "4"]).unwrap();
        assert_eq!(p.load, Load::Closed { inflight: 4 });
        let p = plan(&["--conns", "10", "--rate-per-conn", "2"]).unwrap();
        assert_eq!(p.load, Load::Open { rate: 20.0 });
        assert!(error(&["--inflight", "3"]).contains("closed loop"));
        assert_eq!(
            plan(&["--rate", "0"]).unwrap().load,
            Load::Open { rate: 0.0 }
        );
        assert!(Args::try_parse_from(["loadgen", "--rate", "-1"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--rate", "NaN"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--rate", "1", "--rate-per-conn", "1"]).is_err());
    }

    #[test]
    fn fifty_thousand_loopback_connections_get_several_sources_and_three_shards() {
        let p = plan(&["--conns", "50000"]).unwrap();
        let ips: Vec<String> = p.source_ips.iter().map(|i| i.to_string()).collect();
        assert!(
            ips.len() >= 2 && ips[0] == "127.0.0.1" && ips[1] == "127.0.0.2",
            "{ips:?}"
        );
        assert_eq!(p.shard_count(), 3);
        assert_eq!(p.source_of(1), Some("127.0.0.2".parse().unwrap()));
        let p = plan(&["--conns", "1000", "--max-conns-per-process", "300"]).unwrap();
        assert_eq!(p.shard_count(), 4);
    }

    #[test]
    fn broadcast_needs_rooms_and_sane_publishers() {
        let room = "ws://127.0.0.1:9998/broadcast/r";
        let p = plan(&["--mode", "broadcast", "--url", room, "--publishers", "3"]).unwrap();
        assert_eq!(p.senders(), 3);
        assert!(p.is_sender(2) && !p.is_sender(3));
        assert!(error(&["--mode", "broadcast"]).contains("/broadcast/<room>"));
        assert!(error(&["--url", room]).contains("--mode broadcast"));
        assert!(
            error(&["--mode", "broadcast", "--url", room, "--publishers", "0"])
                .contains("--publishers")
        );
    }

    #[test]
    fn bad_input_is_one_clear_error() {
        assert!(error(&["--url", "http://x"]).contains("invalid URL"));
        assert!(error(&["--size", "8"]).contains("--size"));
        assert!(error(&["--conns", "0"]).contains("--conns"));
        assert!(error(&["--threads", "0"]).contains("--threads"));
        let many = error(&["--conns", "60000", "--source-ips", "127.0.0.1"]);
        assert!(many.contains("source addresses"), "{many}");
        for e in [error(&["--url", "http://x"]), many] {
            assert_eq!(e.lines().count(), 1);
        }
    }
}

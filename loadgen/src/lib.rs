//! loadgen: drives many WebSocket connections against a server and reports honest latency.
//!
//! Layout, each module with one job, from the command line down; a module imports only modules
//! listed after it (no import cycles):
//! - `cli`: the command line and its validation into a [`plan::Plan`] (parse, don't validate).
//! - `shard`: splits a run over child processes when one process cannot hold enough sockets.
//! - `progress`: the live progress bar or periodic lines.
//! - `engine`: runs the workers of one process through ramp, traffic, drain and close.
//! - `worker`: one pinned thread with its own mio loop driving its share of the connections
//!   through the phases of a run; the decisions are made by the next four.
//! - `ramp`: when each connection is attempted, and which attempts timed out.
//! - `pacing`: which connection sends next and when (open-loop slots or closed-loop refills).
//! - `receive`: the check of every message received (payload, sender, order) and its latency
//!   from the intended send time.
//! - `sampling`: the progress samples a worker sends the engine.
//! - `plot`: the latency percentile plot (SVG), one line per run.
//! - `report`: the final table, JSON, `.hgrm` file and exit status.
//! - `stats`: counters and histograms, merging, and their wire form between processes.
//! - `plan`: the validated description of a run that every module below `cli` reads.
//! - `sources`: the local addresses connections bind to, so a large run has ports enough.
//! - `connection`: one socket through connect, upgrade and WebSocket traffic.
//! - `inbound`: received server frames taken in place, the rest fed to tungstenite.
//! - `handshake`: the HTTP upgrade request and response check, without I/O.
//! - `tls`: for `wss://` targets, the rustls client configuration (`--ca`, `--insecure`) and
//!   the non-blocking record I/O under a connection's socket.
//! - `target`: `ws://` and `wss://` URLs parsed and resolved.
//! - `payload`: the bytes of every message and the check of every message received.
//! - `sequence`: per-sender order bookkeeping (missing, duplicate, reordered).
//! - `schedule`: fixed-rate slot times for sends and connection attempts (the open loop).
//! - `timer`: a timerfd that wakes a worker at a precise deadline.
//!
//! Public are the modules the binary (`main.rs`) and the integration tests use; the rest is
//! private to the crate.

pub mod cli;
pub mod connection;
pub mod engine;
mod handshake;
mod inbound;
mod pacing;
pub mod payload;
pub mod plan;
pub mod plot;
pub mod progress;
mod ramp;
mod receive;
pub mod report;
mod sampling;
mod schedule;
mod sequence;
pub mod shard;
mod sources;
mod stats;
mod target;
mod timer;
mod tls;
mod worker;

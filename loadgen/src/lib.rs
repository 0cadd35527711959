//! loadgen: drives many WebSocket connections against a server and reports honest latency.
//!
//! Layout, each module with one job:
//! - `cli`: the command line and its validation into a [`plan::Plan`] (parse, don't validate).
//! - `plan`: the validated description of a run that every module below `cli` reads.
//! - `target`: `ws://` URLs parsed and resolved.
//! - `sources`: the local addresses connections bind to, so a large run has ports enough.
//! - `payload`: the bytes of every message and the check of every message received.
//! - `sequence`: per-sender order bookkeeping (missing, duplicate, reordered).
//! - `schedule`: fixed-rate slot times for sends and connection attempts (the open loop).
//! - `timer`: a timerfd that wakes a worker at a precise deadline.
//! - `handshake`: the HTTP upgrade request and response check, without I/O.
//! - `connection`: one socket through connect, upgrade and WebSocket traffic.
//! - `worker`: one pinned thread with its own mio loop driving its share of the connections.
//! - `stats`: counters and histograms, merging, and their wire form between processes.
//! - `engine`: runs the workers of one process through ramp, traffic, drain and close.
//! - `shard`: splits a run over child processes when one process cannot hold enough sockets.
//! - `progress`: the live progress bar or periodic lines.
//! - `report`: the final table, JSON, `.hgrm` file and exit status.

pub mod cli;
pub mod connection;
pub mod engine;
pub mod handshake;
pub mod payload;
pub mod plan;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod sequence;
pub mod shard;
pub mod sources;
pub mod stats;
pub mod target;
pub mod timer;
pub mod worker;

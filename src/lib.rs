//! corecast: a thread-per-core WebSocket (RFC 6455) echo and broadcast server built to hold
//! many long-lived connections on few cores.
//!
//! The public API is what an embedding program calls: [`Server`] (bind, stats, shutdown),
//! [`Config`], [`RedisUrl`], [`TlsFiles`], [`Counters`], [`BridgeStats`], [`Stopper`],
//! [`TlsReloader`], [`Error`] and [`CpuList`]. Everything else is private.
//!
//! Layout, top down; each layer uses only layers listed after it (`tests/layers.rs` checks):
//! - `runtime`: the threads. `server` starts the pinned workers, wires their inboxes together
//!   and stops them; `worker` is one thread's mio loop (its SO_REUSEPORT `listener`, its
//!   connections in a `Slab` keyed by token, the tick, corked flushes); `metrics_listener` is
//!   the optional thread that serves `/metrics` on its own address.
//! - `bridge`: rooms across instances through Redis (`--redis`, or sharded pub/sub on a Redis
//!   Cluster with `--redis-cluster`): each worker's `link` queues what a pass publishes, a
//!   `publisher` thread pipelines it to Redis, `subscriber` threads follow the rooms with local
//!   members and feed other instances' frames into the workers' inboxes. Nothing in it runs on
//!   a worker's thread but the link, which never blocks.
//! - `fanout`: `rooms` (who is in which room on one worker) and `bus` (frames between
//!   workers, the seam for a bridge between instances). It never sees a socket.
//! - `tls`: TLS between the socket and the HTTP/WebSocket layers (`--tls-cert`): `certs`
//!   (the PEM files as a rustls configuration, swapped whole on reload) and `session` (a rustls
//!   session over a non-blocking socket, as the `Socket` a connection runs over).
//! - `connection`: one connection's state machine, HTTP request to closed socket, over its
//!   `stream` (reads, read-ahead, `read_skip`) and `outbox` (ordered output, one `writev`). It
//!   registers itself with the poller; it is generic over its `socket`, so unit tests drive it
//!   over an in-memory one.
//! - `admission`: the connection count against capacity, and the 503 for upgrades beyond it.
//! - `budget`: each worker's share of `--memory-limit` and what its connections hold.
//! - `protocol`: the wire, without I/O: `http` (requests, upgrade decisions, answers), `frame`
//!   (server frames, encoded once and shared), `boundary` (where client frames end).
//! - `metrics`: what the workers published, as `/metrics` (Prometheus text, encoded by
//!   prometheus-client) and `/stats.json`; served by `runtime::metrics_listener` or by the
//!   connections on the public port.
//! - `stats`: each worker's counters and loop-pass histogram, plain integers published once
//!   per tick.
//! - `config`: every setting, with the embedded defaults.
//! - `error`: what can stop a server from starting.
//!
//! The binary adds `cli` (the command line into a `Config`) and `main` (logging, signals).
//! OS helpers shared with loadgen (CPU pinning, open-files limit, timerfd, clock, units) are
//! in the `oskit` crate.
//!
//! ```no_run
//! let mut config = corecast::Config::default();
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! let server = corecast::Server::bind(config).expect("bind");
//! println!("ws://{}/echo", server.local_addr());
//! server.shutdown();
//! ```

mod admission;
mod bridge;
mod budget;
mod config;
mod connection;
mod error;
mod fanout;
mod metrics;
mod protocol;
mod runtime;
mod stats;
mod tls;

pub use bridge::BridgeStats;
pub use config::{Config, RedisUrl, TlsFiles};
pub use error::Error;
pub use oskit::cpu::CpuList;
pub use runtime::server::{Server, Stopper, TlsReloader};
pub use stats::Counters;

/// Internals that the micro-benchmarks and the parser property test exercise directly. Not a
/// stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::connection::outbox::Outbox;
    /// A message with exactly this payload makes the handler panic (fault-injection builds).
    #[cfg(feature = "fault-injection")]
    pub use crate::connection::PANIC_TRIGGER;
    pub use crate::protocol::{frame, http};
}

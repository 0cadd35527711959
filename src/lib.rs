//! corecast: a thread-per-core WebSocket (RFC 6455) echo and broadcast server built to hold
//! many long-lived connections on few cores.
//!
//! Layout, one job per module:
//! * `server`: starts workers (one per core, pinned), wires them together, stops them.
//! * `worker`: one thread's event loop: `mio::Poll`, its SO_REUSEPORT listener, its
//!   connections in a `Slab` (key = token), timers, corked flushes.
//! * `connection`: one connection's state machine, HTTP request to closed socket.
//! * `http`: request parsing, upgrade validation, subprotocol choice, response bytes.
//! * `stream` / `outbox`: the byte stream under tungstenite and the ordered outbound queue.
//! * `frame`: server frame encoding (encode once, share with every recipient).
//! * `boundary`: follows client frame boundaries, so idle connections can drop tungstenite.
//! * `broadcast`: room membership and the cross-worker bus.
//! * `timer`: the worker's periodic tick (a timerfd), so the loop sleeps without a timeout.
//! * `listener`, `affinity`, `rlimit`: sockets, cores, descriptor limits.
//! * `config`, `cli`, `stats`, `error`: settings, command line, counters, startup errors.
//!
//! ```no_run
//! let mut config = corecast::Config::default();
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! let server = corecast::Server::bind(config).expect("bind");
//! println!("ws://{}/echo", server.local_addr());
//! server.shutdown();
//! ```

mod admission;
mod config;
mod connection;
mod error;
mod fanout;
mod protocol;
mod runtime;
mod stats;

pub use config::Config;
pub use error::Error;
pub use oskit::cpu::CpuList;
pub use runtime::server::{Server, Stopper};
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

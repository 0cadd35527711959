//! corecast: a thread-per-core WebSocket server.
pub mod affinity;
pub mod rlimit;

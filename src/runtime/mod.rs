//! The threads: starting and stopping the server, each worker's event loop, its listener,
//! and admission against the connection capacity; the optional metrics listener.

pub(crate) mod event_log;
pub(crate) mod listener;
pub(crate) mod metrics_listener;
pub(crate) mod server;
pub(crate) mod worker;

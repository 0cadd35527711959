//! The threads: starting and stopping the server, each worker's event loop, its listener,
//! and admission against the connection capacity; the optional metrics listener; the
//! transport (plain TCP or TLS) the workers' connections run over.

pub(crate) mod event_log;
pub(crate) mod listener;
pub(crate) mod metrics_listener;
pub(crate) mod server;
pub(crate) mod transport;
pub(crate) mod worker;

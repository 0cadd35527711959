//! The threads: starting and stopping the server, each worker's event loop, its listener,
//! and admission against the connection capacity.

pub(crate) mod event_log;
pub(crate) mod listener;
pub(crate) mod server;
pub(crate) mod worker;

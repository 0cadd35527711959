//! Errors from starting a server. Errors caused by a peer never surface here: they end that
//! connection and are counted.

use std::io;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot create an event loop: {0}")]
    Poll(io::Error),
    #[error("cannot start a worker thread: {0}")]
    Spawn(io::Error),
    #[error("cannot start the redis bridge: {0}")]
    Bridge(io::Error),
    #[error("TLS certificate: {0}")]
    Tls(String),
}

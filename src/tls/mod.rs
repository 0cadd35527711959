//! TLS (`--tls-cert`, `--tls-key`): the layer between the TCP socket and the HTTP/WebSocket
//! layers, so the same connection state machine serves wss:// and https://.
//!
//! * `certs`: the PEM files as a rustls `ServerConfig`, shared by the workers and swapped
//!   whole on reload (SIGHUP or a change to the files); a bad new certificate is refused and
//!   the old one stays.
//! * `session`: `TlsSocket`, a rustls session over a non-blocking TCP socket that implements
//!   the connection's `Socket`, driven by the worker's own loop (no thread, no blocking call).
//! * `scratch`: the worker's buffers where records are read, decrypted and encrypted.
//! * `held`: what a session must keep between calls, in buffers freed once empty, so an idle
//!   TLS connection keeps no buffer at all.
//!
//! The worker's `Acceptor` wraps each accepted socket with the configuration current at that
//! moment; an established connection keeps the one it started with. Everything here happens
//! at accept time or inside a connection's own reads and writes: nothing is shared per
//! message, and broadcast frames are still encoded once above this layer (encryption is per
//! connection by nature).

pub(crate) mod certs;
mod held;
mod scratch;
pub(crate) mod session;

use std::sync::Arc;

use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

pub use certs::{CertError, Certs};
pub use session::{TlsSocket, TlsTally};

/// One worker's source of TLS sessions: the configuration it last saw and its counts.
#[derive(Debug)]
pub struct Acceptor {
    certs: Arc<Certs>,
    /// The configuration of `generation`, so an accept costs one atomic load, not a lock.
    config: Arc<ServerConfig>,
    generation: u64,
    tally: Arc<TlsTally>,
}

impl Acceptor {
    pub fn new(certs: Arc<Certs>) -> Acceptor {
        Acceptor {
            config: certs.current(),
            generation: certs.generation(),
            certs,
            tally: Arc::default(),
        }
    }

    /// Starts a TLS session on an accepted socket with the current certificate; the
    /// handshake proceeds as the connection reads.
    pub fn accept(&mut self, tcp: TcpStream) -> Result<TlsSocket, rustls::Error> {
        let generation = self.certs.generation();
        if generation != self.generation {
            self.config = self.certs.current();
            self.generation = generation;
        }
        let session = UnbufferedServerConnection::new(self.config.clone())?;
        Ok(TlsSocket::new(tcp, session, self.tally.clone()))
    }

    /// This worker's TLS counts so far.
    pub fn tally(&self) -> &TlsTally {
        &self.tally
    }
}

//! What a worker's connections run over: plain TCP, or TLS over TCP (`--tls-cert`).
//!
//! The worker is generic over its transport and the server starts every worker with the
//! same one, so a plain server runs exactly the code it ran before TLS existed (the
//! transport's hooks compile away) and a TLS server pays for TLS without a branch per call.

use mio::net::TcpStream;

use crate::connection::socket::Socket;
use crate::connection::{self, Env};
use crate::stats::Counters;
use crate::tls::{Acceptor, TlsSocket};

/// A connection transport the worker can create from an accepted TCP socket.
pub(crate) trait Transport: Socket + Sized + 'static {
    /// What a worker needs to wrap accepted sockets (nothing for plain TCP; the current
    /// certificate for TLS). Made on the main thread, moved into the worker's.
    type Acceptor: Send + 'static;

    /// Wraps an accepted socket; `None` drops it.
    fn wrap(tcp: TcpStream, acceptor: &mut Self::Acceptor) -> Option<Self>;

    /// Answers a socket accepted with no descriptor to spare, then drops it.
    fn refuse_now(tcp: TcpStream, env: &mut Env);

    /// Copies counts the transport keeps apart (TLS) into the worker's counters.
    fn tally(acceptor: &Self::Acceptor, counters: &mut Counters);
}

impl Transport for TcpStream {
    type Acceptor = ();

    #[inline]
    fn wrap(tcp: TcpStream, _: &mut ()) -> Option<TcpStream> {
        Some(tcp)
    }

    fn refuse_now(tcp: TcpStream, env: &mut Env) {
        connection::refuse_now(tcp, env);
    }

    fn tally(_: &(), _: &mut Counters) {}
}

impl Transport for TlsSocket {
    type Acceptor = Acceptor;

    fn wrap(tcp: TcpStream, acceptor: &mut Acceptor) -> Option<TlsSocket> {
        match acceptor.accept(tcp) {
            Ok(socket) => Some(socket),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a TLS session");
                None
            }
        }
    }

    /// An answer would need a TLS handshake, which a descriptor-starved worker cannot wait
    /// for: the socket just closes (the client sees a failed handshake, as it would a 503).
    fn refuse_now(tcp: TcpStream, env: &mut Env) {
        env.counters.over_capacity += 1;
        drop(tcp);
    }

    fn tally(acceptor: &Acceptor, counters: &mut Counters) {
        use std::sync::atomic::Ordering::Relaxed;
        let tally = acceptor.tally();
        counters.tls_handshakes = tally.handshakes.load(Relaxed);
        counters.tls_failures = tally.failures.load(Relaxed);
    }
}

//! A TLS session over a non-blocking TCP socket, as the `Socket` a connection runs over: the
//! HTTP and WebSocket layers above read and write plaintext and never learn that TLS is there.
//!
//! `TlsSocket` drives rustls' unbuffered `UnbufferedServerConnection` inside the worker's
//! loop, with no thread and no blocking call of its own, and owns every buffer the session
//! uses, so an idle connection keeps none:
//! * Received bytes are read into the worker's scratch buffer (`scratch`), where rustls
//!   decrypts each record in place; the plaintext is copied into the caller's buffer. Only
//!   what cannot be handed on now is kept by the connection (`Held`, freed once empty): the
//!   start of a record still arriving, a handshake message being assembled, records behind a
//!   caller's buffer that filled, and plaintext that did not fit it.
//! * Written plaintext is encrypted into the worker's other scratch buffer and written to the
//!   socket at once; only records the socket refuses are kept, and written first next time.
//!
//! What a connection holds in these buffers is charged to the worker's memory budget with its
//! other buffers (`Socket::held_bytes`); the connection's rest (`Connection::rest`) has nothing
//! to release here, as they are already gone when empty. What an idle TLS connection keeps is
//! rustls' session, which it needs while it lives: its state and keys, 3.2 KB of heap with the
//! 1,088-byte box (about 4.2 KB of server RSS per idle connection in `benches/tls.py`, against
//! 8.2 KB with the buffered session, whose 4 KiB receive buffer could not be freed). rustls
//! also allocates a record's plaintext as it decrypts and a record as it encrypts (0.23 has no
//! in-place path for application data), freed within the call: the only allocations of a wss
//! echo.
//!
//! The rules that keep it honest under edge-triggered readiness:
//! * A read goes on until the caller's buffer is full or the TCP socket has given all it had
//!   (`WouldBlock`, EOF, or a short socket read once the caller has bytes), so a short read
//!   means what it means on plain TCP: the socket is drained and no plaintext waits in the
//!   session, and `ReadSkip` may trust it. Plaintext or records left behind mean the caller's
//!   buffer was filled, so it reads again.
//! * Records rustls wants to send while reading (handshake flights, alerts, session tickets)
//!   are written at once; what the socket does not take is held, `holds_output` says so, and
//!   the connection flushes (`write_held`) and registers WRITABLE as it does for its own
//!   output, so a handshake can never stall behind a full socket.
//! * `write` encrypts `SEND_LIMIT` bytes of plaintext at a time and goes on while the socket
//!   takes every record, and reports `WouldBlock` only when the TCP socket did (while records
//!   are held it first writes those, and takes nothing new until they are gone), so WRITABLE
//!   interest is registered only when an edge will come and at most one step's records are
//!   ever held.
//! * A peer's TCP EOF without `close_notify` reads as EOF: WebSocket has its own close
//!   handshake, so truncation is no attack here, and many clients never send the alert.
//! * Handshake messages are bounded by rustls (64 KiB) and by the scratch buffer they are
//!   assembled in; a peer that sends no TLS at all (plain HTTP, say) is answered in plain
//!   HTTP before anything reaches rustls.
//!
//! A connection that ends before its TLS handshake completes (garbage, plain HTTP, a bad or
//! truncated ClientHello, a timeout) is counted in the worker's `TlsTally`; an established
//! one ends with `close_notify`. rustls' states are handled in `drive`, for reads, writes and
//! the closing alert alike; this module keeps the socket and the rules above.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::server::UnbufferedServerConnection;

use super::held::Held;
use super::scratch::{self, MAX_RECORD};
use crate::connection::socket::Socket;
use drive::{send_held, Broken, Goal, Sink, Stop};

mod drive;

/// The first byte of a TLS handshake record; anything else before the ClientHello is not TLS.
const HANDSHAKE_RECORD: u8 = 0x16;

/// What a client that speaks plain HTTP to the TLS port is told before the socket closes.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 45\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// or wss://\n";

/// One worker's TLS counts, kept by its sockets and folded into its `Counters` at each tick
/// (atomics only to be shareable; one thread uses them, so they are never contended).
#[derive(Debug, Default)]
pub struct TlsTally {
    /// TLS handshakes completed.
    pub handshakes: AtomicU64,
    /// Connections that ended before their TLS handshake completed.
    pub failures: AtomicU64,
}

/// A TCP socket carrying one TLS session.
pub struct TlsSocket {
    tcp: TcpStream,
    /// Boxed: the session is over a kilobyte inline and moves with the connection's phases.
    tls: Box<UnbufferedServerConnection>,
    tally: Arc<TlsTally>,
    /// Received bytes rustls has not discarded, exactly as it left them (a handshake message
    /// being assembled is located by its offsets in them).
    incoming: Held,
    /// Decrypted plaintext the caller's buffer had no room for.
    plaintext: Held,
    /// Records for the peer that the socket has not taken.
    outgoing: Held,
    /// An error met after plaintext was returned, for the next read to report.
    failed: Option<io::Error>,
    /// The handshake completed (and was counted).
    established: bool,
    /// The first byte from the peer was checked to be a TLS handshake record.
    first_byte_checked: bool,
    /// The peer sent `close_notify` or TCP EOF: reads return what is left, then EOF.
    ended: bool,
    /// `close_notify` was queued.
    closed: bool,
    /// The session failed: nothing more is sent but the alert saying why.
    broken: bool,
}

impl fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSocket")
            .field("tcp", &self.tcp)
            .field("established", &self.established)
            .field("incoming", &self.incoming.len())
            .field("plaintext", &self.plaintext.len())
            .field("outgoing", &self.outgoing.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl TlsSocket {
    pub fn new(tcp: TcpStream, tls: UnbufferedServerConnection, tally: Arc<TlsTally>) -> TlsSocket {
        TlsSocket {
            tcp,
            tls: Box::new(tls),
            tally,
            incoming: Held::default(),
            plaintext: Held::default(),
            outgoing: Held::default(),
            failed: None,
            established: false,
            first_byte_checked: false,
            ended: false,
            closed: false,
            broken: false,
        }
    }

    /// Heap bytes this session keeps in buffers of its own (0 when nothing is pending).
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.plaintext.capacity() + self.outgoing.capacity()
    }

    /// Before anything reaches rustls: a peer whose first byte cannot begin a TLS handshake
    /// (plain HTTP to the TLS port, say) is told so in plain HTTP and cut off.
    fn check_first_byte(&mut self) -> io::Result<()> {
        let mut first = [0u8; 1];
        match self.tcp.peek(&mut first) {
            Ok(0) => Ok(()), // EOF: the read reports it as usual
            Ok(_) if first[0] == HANDSHAKE_RECORD => {
                self.first_byte_checked = true;
                Ok(())
            }
            Ok(_) => {
                // Read what came (closing with unread input would reset the answer away),
                // answer, and end the connection.
                let mut scratch = [0u8; 4096];
                for _ in 0..16 {
                    if !matches!(self.tcp.read(&mut scratch), Ok(n) if n > 0) {
                        break;
                    }
                }
                let _ = self.tcp.write(PLAIN_HTTP_ANSWER);
                let _ = self.tcp.shutdown(Shutdown::Write);
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not TLS: the first byte is not a handshake record",
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads records into the receive scratch and hands their plaintext to `buf` (already
    /// `filled` this far), until it is full or the socket has given all it had.
    fn read_records(
        &mut self,
        scratch: &mut [u8],
        buf: &mut [u8],
        filled: usize,
    ) -> io::Result<usize> {
        // What rustls left last time goes first, at the front, as it was.
        let mut len = self.incoming.len();
        scratch[..len].copy_from_slice(self.incoming.bytes());
        self.incoming.clear();
        let mut start = 0;
        let mut sink = Sink { buf, filled };
        let mut socket_drained = false;
        // Bytes rustls has not been shown since it last asked for more (what it kept may hold
        // whole records, if the caller's buffer filled).
        let mut unseen = len > 0;
        let result = loop {
            if unseen {
                let (used, stop) = self.drive(&mut scratch[start..len], &mut sink, Goal::Read);
                start += used;
                match stop {
                    Ok(Stop::Input) => unseen = false,
                    Ok(_) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
            // A short socket read means drained, as on plain TCP, when the caller gets bytes
            // (its short read says so in turn). With nothing for it, read on until the socket
            // says `WouldBlock` or EOF: an EOF that came with the last bytes has no edge of its
            // own to come.
            if self.ended || (socket_drained && sink.filled > 0) {
                break Ok(());
            }
            if start == len {
                (start, len) = (0, 0);
            } else if scratch.len() - len < MAX_RECORD {
                // Room for another record at least: what is kept moves to the front.
                scratch.copy_within(start..len, 0);
                (start, len) = (0, len - start);
            }
            let room = scratch.len() - len;
            if room == 0 {
                break Err(Broken::HandshakeTooLarge);
            }
            // About what the caller can take, so little is left over for the connection.
            let want = room.min((sink.buf.len() - sink.filled).max(MAX_RECORD));
            match self.tcp.read(&mut scratch[len..len + want]) {
                Ok(0) => self.ended = true, // with or without close_notify: see the module doc
                Ok(n) => {
                    len += n;
                    socket_drained = n < want;
                    unseen = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(Broken::Io(e)),
            }
        };
        if !self.ended {
            // After EOF or close_notify nothing more is processed: nothing to keep.
            self.incoming.extend(&scratch[start..len]);
        }
        let filled = sink.filled;
        match result {
            Ok(()) if filled > 0 || self.ended => Ok(filled),
            Ok(()) => Err(io::ErrorKind::WouldBlock.into()),
            // The error comes with the next call, after these bytes are handled.
            Err(e) if filled > 0 => {
                self.failed = Some(e.into());
                Ok(filled)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.first_byte_checked {
            self.check_first_byte()?;
        }
        let filled = self.plaintext.take(buf);
        if filled == buf.len() {
            return Ok(filled);
        }
        if let Some(e) = self.failed.take() {
            if filled == 0 {
                return Err(e);
            }
            self.failed = Some(e);
            return Ok(filled);
        }
        if self.ended {
            return Ok(filled);
        }
        scratch::with_recv(|scratch| self.read_records(scratch, buf, filled))
    }
}

impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        // Held records go first, and nothing is added behind them: the socket just refused.
        if !send_held(&mut self.tcp, &mut self.outgoing)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let stop =
            scratch::with_send(|stage, out| self.drive_kept(Goal::Seal { bufs, stage, out }))?;
        match stop {
            Stop::Done(taken) => Ok(taken),
            // Before the handshake completes, which no caller writes before (answers follow
            // requests).
            Stop::Input | Stop::Full => Err(io::Error::other("TLS session accepts no data yet")),
            Stop::PeerClosed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Writes the records held; `WouldBlock` when the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        if send_held(&mut self.tcp, &mut self.outgoing)? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl Source for TlsSocket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.tcp.register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.tcp.reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp.deregister(registry)
    }
}

impl Socket for TlsSocket {
    /// `close_notify`, then FIN. The alert is best effort: the socket was flushed before this
    /// is called, so it fits unless the peer stopped reading, and then it would not be read.
    fn shutdown_write(&mut self) -> io::Result<()> {
        if self.established && !self.closed && !self.broken {
            let _ = self.drive_kept(Goal::CloseNotify);
        }
        self.tcp.shutdown(Shutdown::Write)
    }

    fn holds_output(&self) -> bool {
        !self.outgoing.is_empty()
    }

    fn write_held(&mut self) -> io::Result<bool> {
        send_held(&mut self.tcp, &mut self.outgoing)
    }

    fn held_bytes(&self) -> usize {
        self.buffered_capacity()
    }
}

impl Drop for TlsSocket {
    /// Counts a connection that never completed its handshake; ends an established session
    /// with `close_notify` (one best-effort write), so clients that insist on a clean TLS
    /// close see one after a completed WebSocket close handshake too.
    fn drop(&mut self) {
        if !self.established {
            self.tally.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !self.closed && !self.broken {
            let _ = self.drive_kept(Goal::CloseNotify);
        }
    }
}

#[cfg(test)]
mod tests;

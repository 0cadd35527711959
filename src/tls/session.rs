//! A TLS session over a non-blocking TCP socket, as the `Socket` a connection runs over: the
//! HTTP and WebSocket layers above read and write plaintext and never learn that TLS is there.
//!
//! `TlsSocket` drives rustls' buffered `ServerConnection` inside the worker's loop, with no
//! thread and no blocking call of its own. The rules that keep it honest under edge-triggered
//! readiness:
//! * A read goes on until the caller's buffer is full or the TCP socket says `WouldBlock` (or
//!   EOF), so a short read means what it means on plain TCP: the socket is drained, and
//!   `ReadSkip` may trust it. rustls reads at most a few KiB of records per `read_tls`.
//! * Records rustls wants to send while reading (handshake flights, alerts, key updates) are
//!   written at once; what the socket does not take stays in rustls, `holds_output` says so,
//!   and the connection flushes (`write_held`) and registers WRITABLE as it does for its own
//!   output, so a handshake can never stall behind a full socket.
//! * `write` hands plaintext to rustls (bounded by `SEND_LIMIT`), which encrypts it into
//!   records at once, and writes records to the socket; it reports `WouldBlock` only when the
//!   TCP socket did, so WRITABLE interest is registered only when an edge will come.
//! * A peer's TCP EOF without `close_notify` reads as EOF: WebSocket has its own close
//!   handshake, so truncation is no attack here, and many clients never send the alert.
//!
//! A connection that ends before its TLS handshake completes (garbage, plain HTTP, a bad or
//! truncated ClientHello, a timeout) is counted in the worker's `TlsTally`.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;

use crate::connection::socket::Socket;

/// Encrypted bytes rustls may hold for one connection beyond what the socket took: the
/// connection's own `Outbox` is the backlog that counts; this only bounds the second copy.
const SEND_LIMIT: usize = 32 * 1024;

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
#[derive(Debug)]
pub struct TlsSocket {
    tcp: TcpStream,
    /// Boxed: the session is over a kilobyte inline and moves with the connection's phases.
    tls: Box<ServerConnection>,
    tally: Arc<TlsTally>,
    /// The handshake completed (and was counted).
    established: bool,
    /// The first byte from the peer was checked to be a TLS handshake record.
    first_byte_checked: bool,
}

impl TlsSocket {
    pub fn new(tcp: TcpStream, mut tls: ServerConnection, tally: Arc<TlsTally>) -> TlsSocket {
        tls.set_buffer_limit(Some(SEND_LIMIT));
        TlsSocket {
            tcp,
            tls: Box::new(tls),
            tally,
            established: false,
            first_byte_checked: false,
        }
    }

    /// Writes records rustls holds until it holds none (true) or the socket is full (false).
    fn send_records(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Before anything reaches rustls: a peer whose first byte cannot begin a TLS handshake
    /// (plain HTTP to the TLS port, say) is told so in plain HTTP and cut off.
    fn check_first_byte(&mut self) -> io::Result<()> {
        let mut first = [0u8; 1];
        match self.tcp.peek(&mut first) {
            Ok(0) => Ok(()), // EOF: rustls reports it as usual
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

    /// Reads records from the socket into rustls and processes them; `Ok(false)` at EOF.
    fn receive_records(&mut self) -> io::Result<bool> {
        let open = loop {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => break false,
                Ok(_) => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if let Err(e) = self.tls.process_new_packets() {
            // rustls queued an alert saying why: best effort, the connection ends anyway.
            let _ = self.send_records();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if !self.established && !self.tls.is_handshaking() {
            self.established = true;
            self.tally.handshakes.fetch_add(1, Ordering::Relaxed);
        }
        // Handshake flights and alerts go out now; what the socket does not take is written
        // when the connection flushes (`holds_output`).
        self.send_records()?;
        Ok(open)
    }
}

impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.first_byte_checked {
            self.check_first_byte()?;
        }
        let mut filled = 0;
        loop {
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(0) if filled < buf.len() => return Ok(filled), // close_notify: EOF
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // TCP EOF without close_notify: an EOF all the same (see the module doc).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                // The error comes again on the next call, after these bytes are handled.
                Err(_) if filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
            }
            match self.receive_records() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Twice at most: a full rustls buffer is drained into the socket once, then there is
        // room (or the socket is full and we say so).
        for _ in 0..2 {
            let taken = self.tls.writer().write_vectored(bufs)?;
            if taken > 0 {
                // Records the socket does not take now stay in rustls: `holds_output`.
                self.send_records()?;
                return Ok(taken);
            }
            if bufs.iter().all(|b| b.is_empty()) {
                return Ok(0);
            }
            if !self.send_records()? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        // rustls took nothing into an empty buffer: only before the handshake completes,
        // which no caller writes before (answers follow requests).
        Err(io::Error::other("TLS session accepts no data yet"))
    }

    /// Writes the records rustls holds; `WouldBlock` when the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        if self.send_records()? {
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
        if self.established {
            self.tls.send_close_notify();
            let _ = self.send_records();
        }
        self.tcp.shutdown(Shutdown::Write)
    }

    fn holds_output(&self) -> bool {
        self.tls.wants_write()
    }

    fn write_held(&mut self) -> io::Result<bool> {
        self.send_records()
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
        self.tls.send_close_notify(); // nothing if already sent
        let _ = self.tls.write_tls(&mut self.tcp);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream as StdTcpStream};
    use std::sync::mpsc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};

    use super::*;

    /// A server configuration and a client configuration that trusts it.
    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Repeats `step` (retrying on WouldBlock after a short pause) until it returns Some.
    fn until<T>(mut step: impl FnMut() -> io::Result<Option<T>>) -> T {
        for _ in 0..10_000 {
            match step() {
                Ok(Some(done)) => return done,
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("no progress");
    }

    /// Records the socket does not take stay in the session, `holds_output` says so, and
    /// `write_held` sends them once the peer reads: nothing written is lost or stuck.
    #[test]
    fn records_a_full_socket_refuses_are_held_and_written_later() {
        let (server_config, client_config) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, wait) = mpsc::channel::<usize>();
        let client = std::thread::spawn(move || {
            let tcp = StdTcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let session = ClientConnection::new(client_config, name).unwrap();
            let mut stream = StreamOwned::new(session, tcp);
            stream.write_all(b"hello").unwrap();
            // Read nothing until the server has filled its socket, then everything.
            let expected = wait.recv().unwrap();
            let mut got = vec![0u8; expected];
            stream.read_exact(&mut got).unwrap();
            got
        });
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        // A small, fixed send buffer, so the socket fills after a few records.
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(8 * 1024)
            .unwrap();
        let tally = Arc::new(TlsTally::default());
        let session = ServerConnection::new(server_config).unwrap();
        let mut socket = TlsSocket::new(TcpStream::from_std(tcp), session, tally.clone());
        let mut hello = [0u8; 5];
        until(|| socket.read(&mut hello).map(|n| (n == 5).then_some(())));
        assert_eq!(&hello, b"hello");
        assert_eq!(tally.handshakes.load(Ordering::Relaxed), 1);

        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut written = 0;
        loop {
            match socket.write(&data[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(written < data.len(), "the socket never filled");
        }
        assert!(socket.holds_output(), "a full socket leaves records held");
        assert!(!socket.write_held().unwrap(), "and cannot take them yet");
        go.send(written).unwrap();
        until(|| socket.write_held().map(|done| done.then_some(())));
        assert!(!socket.holds_output(), "everything went out");
        assert!(client.join().unwrap() == data[..written], "bytes differ");
        drop(socket);
        assert_eq!(tally.failures.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_plain_http_answer_is_well_formed() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
    }

    #[test]
    fn a_connection_that_never_completes_its_handshake_counts_as_a_failure() {
        let (server_config, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let tally = Arc::new(TlsTally::default());
        let session = ServerConnection::new(server_config).unwrap();
        let mut socket = TlsSocket::new(TcpStream::from_std(tcp), session, tally.clone());
        // A handshake record announcing a 11 MB handshake message: refused at once.
        peer.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
            .unwrap();
        let mut buf = [0u8; 64];
        let err = until(|| match socket.read(&mut buf) {
            Ok(n) => panic!("read {n} bytes of garbage"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Ok(Some(e)),
        });
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(socket);
        assert_eq!(tally.failures.load(Ordering::Relaxed), 1);
        assert_eq!(tally.handshakes.load(Ordering::Relaxed), 0);
    }
}

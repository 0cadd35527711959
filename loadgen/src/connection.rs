//! One client connection: non-blocking TCP connect, HTTP upgrade, then WebSocket traffic:
//! received frames are taken in place from the worker's receive buffer (`inbound`), and
//! tungstenite sends, and parses only the frames the in-place path leaves to it.
//!
//! A `Connection` owns its socket and nothing else. The worker tells it that its socket is ready
//! (`drive`) or that a message is due (`send`); it answers with what happened (`Step`) and hands
//! every received message to a callback. It never measures, schedules or touches another
//! connection.
//!
//! Invariants the worker relies on:
//! - The socket is registered once for READABLE | WRITABLE (edge-triggered) when created, so
//!   `drive` always reads until `WouldBlock` and always flushes: a readiness edge is never lost.
//! - A `send` that meets `WouldBlock` has queued the message in tungstenite's out buffer; it is
//!   flushed on a later WRITABLE edge and must not be sent again.
//! - Per-connection memory is small: the upgrade request lives only while upgrading, the
//!   socket is read into the worker's receive buffer, and tungstenite gets an unbuffered writer
//!   and a read buffer that fits one message of the run (at least 1 KiB, at most 64 KiB), used
//!   only for the frames it is fed (pings, closes, fragments: `inbound`).
//! - A read that returned less than it asked for drained the socket: until the next readiness
//!   event, no read is made that could only return WouldBlock.
//! - Every message of one socket read is stamped with one arrival time, read right after it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use rustls::ClientConnection;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Bytes, Message, WebSocket};

use crate::handshake::{HandshakeError, Upgrade};
use crate::inbound::{Fed, Feed, Inbound};
use crate::tls;
use oskit::clock::now_ns;

/// Smallest and largest read buffer of a WebSocket (tungstenite reads at most this much per
/// call and zero-fills it first, so it is sized to the run's messages).
const READ_BUFFER_MIN: usize = 1024;
const READ_BUFFER_MAX: usize = 64 * 1024;

/// Bytes read per socket read: the size of a worker's receive buffer.
pub const RECV_BUFFER: usize = 64 * 1024;

/// The socket under the upgrade and tungstenite, skipping the read that can only return
/// WouldBlock; for `wss://`, with a TLS session between it and them (see `tls`). Once open,
/// tungstenite writes through it but reads only what `inbound` feeds it.
#[derive(Debug)]
pub struct Sock {
    tcp: TcpStream,
    /// Frames for tungstenite to parse.
    feed: Feed,
    /// The last read returned less than asked: nothing more is queued until the next edge.
    drained: bool,
    /// The TLS session of a `wss://` connection (boxed: a few KiB, absent for `ws://`).
    tls: Option<Box<ClientConnection>>,
    /// tungstenite may hold output: a write met an error (WouldBlock: what was not written
    /// waits in its out buffer), or it was fed frames since the last flush (pongs and close
    /// replies are queued by its reads), or a TLS session may hold records. While false, a
    /// flush could only write nothing.
    unflushed: bool,
}

impl Fed for Sock {
    fn feed(&mut self) -> &mut Feed {
        self.unflushed = true;
        &mut self.feed
    }
}

impl Sock {
    /// Reads the socket (through TLS for `wss://`), skipping the read that could only return
    /// WouldBlock after a short one, until the next readiness edge (`drained` is reset).
    fn read_edge(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = match &mut self.tls {
            None => self.tcp.read(buf)?,
            Some(session) => tls::read(session, &mut self.tcp, buf)?,
        };
        self.drained = n > 0 && n < buf.len();
        Ok(n)
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.feed.read(buf)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = match &mut self.tls {
            None => self.tcp.write(buf),
            Some(session) => tls::write(session, &mut self.tcp, buf),
        };
        // A TLS session may keep records the socket did not take even when the write succeeds.
        self.unflushed |= result.is_err() || self.tls.is_some();
        result
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let result = match &mut self.tls {
            None => self.tcp.write_vectored(bufs),
            Some(session) => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                tls::write(session, &mut self.tcp, first)
            }
        };
        self.unflushed |= result.is_err() || self.tls.is_some();
        result
    }

    /// Also writes the records a TLS session holds; `WouldBlock` while the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => self.tcp.flush(),
            Some(session) => match tls::send_records(session, &mut self.tcp)? {
                true => Ok(()),
                false => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }
}

/// Why a connection attempt failed or an established connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Error)]
pub enum FailReason {
    #[error("refused")]
    Refused,
    #[error("timeout")]
    Timeout,
    #[error("http {0}")]
    HttpStatus(u16),
    #[error("bad upgrade response")]
    BadUpgrade,
    #[error("reset")]
    Reset,
    #[error("address unavailable")]
    AddrUnavailable,
    #[error("open files limit")]
    FdLimit,
    #[error("closed by server")]
    ClosedByServer,
    #[error("protocol error")]
    Protocol,
    #[error("send buffer full")]
    Backpressure,
    /// The TLS session failed: an untrusted certificate, a refused handshake, a bad record.
    #[error("TLS error")]
    Tls,
    #[error("other I/O error")]
    Other,
}

impl FailReason {
    /// Classifies an I/O error from connect, read or write.
    pub fn from_io(err: &io::Error) -> FailReason {
        match err.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => return FailReason::FdLimit,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => {
                return FailReason::AddrUnavailable
            }
            _ => {}
        }
        match err.kind() {
            io::ErrorKind::ConnectionRefused => FailReason::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FailReason::Reset,
            io::ErrorKind::TimedOut => FailReason::Timeout,
            io::ErrorKind::UnexpectedEof => FailReason::ClosedByServer,
            // Only the TLS layer reports InvalidData (a kernel socket never does).
            io::ErrorKind::InvalidData => FailReason::Tls,
            _ => FailReason::Other,
        }
    }

    fn from_ws(err: &tungstenite::Error) -> FailReason {
        use tungstenite::error::ProtocolError;
        match err {
            tungstenite::Error::Io(e) => FailReason::from_io(e),
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                FailReason::ClosedByServer
            }
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                FailReason::Reset
            }
            _ => FailReason::Protocol,
        }
    }

    fn from_handshake(err: &HandshakeError) -> FailReason {
        match err {
            HandshakeError::Status(code) => FailReason::HttpStatus(*code),
            _ => FailReason::BadUpgrade,
        }
    }
}

/// What a call to `drive` changed, as far as the worker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Still connecting or upgrading, or open with nothing new to report.
    Pending,
    /// The upgrade just completed; the connection can send.
    Opened,
    /// The connection is over (failed, or closed by either side); drop it.
    Finished(Option<FailReason>),
}

/// Why `send` did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("connection is not open")]
    NotOpen,
    #[error("write buffer full")]
    Full,
    #[error("connection failed: {0}")]
    Failed(FailReason),
}

/// The protocol state of a connection. Each state owns the socket in the form it needs.
#[derive(Debug)]
enum State {
    /// TCP connect in flight; the first WRITABLE edge tells whether it worked.
    Connecting {
        /// The socket, with its TLS session for `wss://`.
        stream: Sock,
        /// The upgrade request to write once connected.
        upgrade: Box<Upgrade>,
    },
    /// Writing the upgrade request and reading the response.
    Upgrading {
        /// The socket (over TLS, the handshake runs under the request's write and the
        /// response's read).
        stream: Sock,
        /// The request and the accept key to check.
        upgrade: Box<Upgrade>,
        /// Request bytes already written.
        written: usize,
        /// Response bytes read so far.
        response: Vec<u8>,
    },
    /// Upgraded: frames are taken in place, tungstenite sends and parses the rest.
    Open(WebSocket<Sock>, Inbound),
    /// We sent a Close frame and wait for the server to finish the closing handshake.
    Closing(WebSocket<Sock>, Inbound),
    /// Nothing left; the socket is closed.
    Done,
}

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    /// Its protocol state and socket.
    state: State,
    /// Bound of tungstenite's out buffer once open (bytes): what may queue behind a slow peer.
    out_limit: u32,
    /// tungstenite's read buffer once open (bytes).
    read_buffer: u32,
}

/// Opens a non-blocking socket to `addr`, bound to `source` when given, and starts connecting.
///
/// With a source address, IP_BIND_ADDRESS_NO_PORT makes the kernel choose the port at connect
/// time from the full (source, destination) tuple, so each source IP gives a whole ephemeral
/// port range per destination instead of sharing one pool across all destinations.
pub fn open_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        if ip.is_ipv4() {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt reads one c_int from a valid pointer; the fd is ours.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

impl Connection {
    /// Wraps a connecting socket; `host`, `path` and `nonce` make the upgrade request; `tls`
    /// is the session of a `wss://` connection.
    /// `message_size` sizes the out buffer bound: at least 256 KiB, and always room for a few
    /// messages, so a slow server shows as latency first and as unsent messages only when it
    /// falls far behind.
    pub fn new(
        stream: TcpStream,
        host: &str,
        path: &str,
        nonce: u64,
        message_size: usize,
        tls: Option<ClientConnection>,
    ) -> Connection {
        let stream = Sock {
            tcp: stream,
            feed: Feed::default(),
            drained: false,
            tls: tls.map(Box::new),
            unflushed: false,
        };
        let upgrade = Box::new(Upgrade::new(host, path, nonce));
        let out_limit = (message_size + 16)
            .saturating_mul(4)
            .clamp(256 * 1024, u32::MAX as usize);
        // A client frame header is at most 14 bytes; a server's at most 10.
        let read_buffer = (message_size + 14).clamp(READ_BUFFER_MIN, READ_BUFFER_MAX);
        Connection {
            state: State::Connecting { stream, upgrade },
            out_limit: out_limit as u32,
            read_buffer: read_buffer as u32,
        }
    }

    /// The socket, for registering with the worker's poll.
    pub fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.state {
            State::Connecting { stream: s, .. } | State::Upgrading { stream: s, .. } => {
                Some(&mut s.tcp)
            }
            State::Open(ws, _) | State::Closing(ws, _) => Some(&mut ws.get_mut().tcp),
            State::Done => None,
        }
    }

    /// Whether the upgrade has completed and the connection was not closed since.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(..))
    }

    /// Whether the connection has not yet finished connecting and upgrading.
    pub fn is_establishing(&self) -> bool {
        matches!(
            self.state,
            State::Connecting { .. } | State::Upgrading { .. }
        )
    }

    /// Advances the connection after a readiness event, reading through `recv` (the worker's
    /// receive buffer, any size); every received message goes to `on_message` (its payload
    /// bytes and the time of the socket read that brought its last byte).
    pub fn drive(&mut self, recv: &mut [u8], on_message: &mut impl FnMut(&[u8], u64)) -> Step {
        if let State::Open(ws, _) | State::Closing(ws, _) = &mut self.state {
            // A readiness event: the socket may hold new bytes.
            ws.get_mut().drained = false;
        }
        match self.advance(recv, on_message) {
            Ok(step) => step,
            Err(reason) => {
                self.state = State::Done;
                Step::Finished(Some(reason))
            }
        }
    }

    fn advance(
        &mut self,
        recv: &mut [u8],
        on_message: &mut impl FnMut(&[u8], u64),
    ) -> Result<Step, FailReason> {
        // Until the connection is open; then the common case below, which serves an open
        // connection without moving its state (a WebSocket is a large value) out and back.
        let mut opened = false;
        while !matches!(self.state, State::Open(..)) {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Connecting { stream, upgrade } => {
                    let tcp = &stream.tcp;
                    if let Some(err) = tcp.take_error().map_err(|e| FailReason::from_io(&e))? {
                        return Err(FailReason::from_io(&err));
                    }
                    match tcp.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            self.state = State::Connecting { stream, upgrade };
                            return Ok(Step::Pending);
                        }
                        Err(e) => return Err(FailReason::from_io(&e)),
                    }
                    self.state = State::Upgrading {
                        stream,
                        upgrade,
                        written: 0,
                        response: Vec::new(),
                    };
                }
                State::Upgrading {
                    mut stream,
                    upgrade,
                    mut written,
                    mut response,
                } => match upgrade_io(&mut stream, &upgrade, &mut written, &mut response)? {
                    Some(head) => {
                        let leftover = response.split_off(head);
                        let config = WebSocketConfig::default()
                            .read_buffer_size(self.read_buffer as usize)
                            .write_buffer_size(0)
                            .max_write_buffer_size(self.out_limit as usize);
                        stream.drained = false;
                        stream.unflushed = stream.tls.is_some();
                        let ws = WebSocket::from_raw_socket(stream, Role::Client, Some(config));
                        self.state = State::Open(ws, Inbound::with_leftover(leftover));
                        opened = true;
                    }
                    None => {
                        self.state = State::Upgrading {
                            stream,
                            upgrade,
                            written,
                            response,
                        };
                        return Ok(Step::Pending);
                    }
                },
                State::Open(..) => unreachable!("the loop ends at Open"),
                State::Closing(mut ws, mut inbound) => {
                    let result = read_all(&mut ws, &mut inbound, recv, &mut |_, _| {});
                    return match result.and_then(|()| flush(&mut ws)) {
                        Ok(()) => {
                            self.state = State::Closing(ws, inbound);
                            Ok(Step::Pending)
                        }
                        // Any end of a connection we are closing is the end we wanted.
                        Err(_) => Ok(Step::Finished(None)),
                    };
                }
                State::Done => return Ok(Step::Finished(None)),
            }
        }
        let State::Open(ws, inbound) = &mut self.state else {
            unreachable!("the loop ends at Open")
        };
        read_all(ws, inbound, recv, on_message)?;
        if ws.get_ref().unflushed {
            flush(ws)?;
        }
        Ok(if opened { Step::Opened } else { Step::Pending })
    }

    /// Queues `payload` as one binary message and tries to write it out. tungstenite copies it
    /// into its out buffer and drops it before this returns (which lets `payload::Encoder`
    /// reuse its storage).
    pub fn send(&mut self, payload: Bytes) -> Result<(), SendError> {
        let State::Open(ws, _) = &mut self.state else {
            return Err(SendError::NotOpen);
        };
        let result = match ws.write(Message::Binary(payload)) {
            Ok(()) => flush(ws),
            Err(tungstenite::Error::WriteBufferFull(_)) => return Err(SendError::Full),
            // WouldBlock: the message is queued (tungstenite issue #281); never resend it.
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(FailReason::from_ws(&e)),
        };
        result.map_err(|reason| {
            self.state = State::Done;
            SendError::Failed(reason)
        })
    }

    /// Starts the closing handshake; later `drive` calls finish it. Returns true when the
    /// connection is already completely closed (nothing to wait for).
    pub fn begin_close(&mut self) -> bool {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Open(mut ws, inbound) => match ws.close(None) {
                Ok(()) => {
                    self.state = State::Closing(ws, inbound);
                    false
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.state = State::Closing(ws, inbound);
                    false
                }
                Err(_) => true,
            },
            State::Closing(ws, inbound) => {
                self.state = State::Closing(ws, inbound);
                false
            }
            _ => true,
        }
    }
}

/// Writes the rest of the request, then reads until the response is complete or the socket
/// would block. Returns the response head length once complete.
fn upgrade_io(
    stream: &mut Sock,
    upgrade: &Upgrade,
    written: &mut usize,
    response: &mut Vec<u8>,
) -> Result<Option<usize>, FailReason> {
    // A readiness event: the socket may hold new bytes, and TLS records held back by a full
    // socket may go out now.
    stream.drained = false;
    match stream.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(FailReason::from_io(&e)),
    }
    while *written < upgrade.request.len() {
        match stream.write(&upgrade.request[*written..]) {
            Ok(0) => return Err(FailReason::ClosedByServer),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FailReason::from_io(&e)),
        }
    }
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read_edge(&mut chunk) {
            Ok(0) => return Err(FailReason::ClosedByServer),
            Ok(n) => {
                response.extend_from_slice(&chunk[..n]);
                let parsed = upgrade.parse_response(response);
                if let Some(head) = parsed.map_err(|e| FailReason::from_handshake(&e))? {
                    return Ok(Some(head));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FailReason::from_io(&e)),
        }
    }
}

/// Reads the socket into `recv` until it would block, handing data messages to `on_message`
/// with the time of the read that completed them.
fn read_all(
    ws: &mut WebSocket<Sock>,
    inbound: &mut Inbound,
    recv: &mut [u8],
    on_message: &mut impl FnMut(&[u8], u64),
) -> Result<(), FailReason> {
    let fail = |e: tungstenite::Error| FailReason::from_ws(&e);
    if inbound.has_tail() {
        // The upgrade leftover (or a partial frame): whatever is complete in it is due now.
        let now = now_ns();
        inbound
            .take(&[], ws, &mut |m| on_message(m, now))
            .map_err(fail)?;
    }
    loop {
        let n = match ws.get_mut().read_edge(recv) {
            Ok(0) => {
                let now = now_ns();
                return inbound.end(ws, &mut |m| on_message(m, now)).map_err(fail);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FailReason::from_io(&e)),
        };
        let now = now_ns();
        inbound
            .take(&recv[..n], ws, &mut |m| on_message(m, now))
            .map_err(fail)?;
    }
}

/// Flushes queued output; WouldBlock leaves it queued for the next WRITABLE edge.
fn flush(ws: &mut WebSocket<Sock>) -> Result<(), FailReason> {
    // Set again by a write that fails (WouldBlock included).
    ws.get_mut().unflushed = false;
    match ws.flush() {
        Ok(()) => Ok(()),
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(FailReason::from_ws(&e)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    use super::*;

    /// A blocking echo peer on its own thread: accepts one connection and echoes until close.
    fn echo_peer() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut ws = tungstenite::accept(stream).unwrap();
            while let Ok(msg) = ws.read() {
                if msg.is_binary() || msg.is_text() {
                    ws.send(msg).unwrap();
                }
            }
        });
        addr
    }

    fn drive_until(
        poll: &mut Poll,
        conn: &mut Connection,
        got: &mut Vec<Vec<u8>>,
        mut done: impl FnMut(Step, &Vec<Vec<u8>>) -> bool,
    ) -> Step {
        let mut events = Events::with_capacity(8);
        let mut recv = vec![0u8; 100];
        for _ in 0..200 {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            let step = conn.drive(&mut recv, &mut |m, _| got.push(m.to_vec()));
            if done(step, got) {
                return step;
            }
        }
        panic!("connection did not reach the expected state");
    }

    #[test]
    fn connects_upgrades_and_echoes() {
        let addr = echo_peer();
        let mut poll = Poll::new().unwrap();
        let stream = open_socket(addr, None).unwrap();
        let mut conn = Connection::new(stream, &addr.to_string(), "/echo", 1, 100, None);
        let interest = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(conn.stream_mut().unwrap(), Token(0), interest)
            .unwrap();
        let mut got = Vec::new();
        drive_until(&mut poll, &mut conn, &mut got, |s, _| s == Step::Opened);
        assert!(conn.is_open());
        for i in 0..10u8 {
            conn.send(vec![i; 100].into()).unwrap();
        }
        drive_until(&mut poll, &mut conn, &mut got, |_, g| g.len() == 10);
        assert_eq!(got[9], vec![9u8; 100]);
        assert!(!conn.begin_close());
        let end = drive_until(&mut poll, &mut conn, &mut got, |s, _| s != Step::Pending);
        assert_eq!(end, Step::Finished(None));
        assert_eq!(conn.send(vec![1].into()), Err(SendError::NotOpen));
    }

    #[test]
    fn refused_and_bad_status_are_classified() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut poll = Poll::new().unwrap();
        let mut conn = Connection::new(open_socket(addr, None).unwrap(), "h", "/", 1, 64, None);
        let interest = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(conn.stream_mut().unwrap(), Token(0), interest)
            .unwrap();
        let step = drive_until(&mut poll, &mut conn, &mut Vec::new(), |s, _| {
            s != Step::Pending
        });
        assert_eq!(step, Step::Finished(Some(FailReason::Refused)));

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(200));
        });
        let mut conn = Connection::new(open_socket(addr, None).unwrap(), "h", "/", 1, 64, None);
        poll.registry()
            .register(conn.stream_mut().unwrap(), Token(1), interest)
            .unwrap();
        let step = drive_until(&mut poll, &mut conn, &mut Vec::new(), |s, _| {
            s != Step::Pending
        });
        assert_eq!(step, Step::Finished(Some(FailReason::HttpStatus(404))));
    }

    #[test]
    fn binds_to_a_second_loopback_address() {
        let addr = echo_peer();
        let stream = open_socket(addr, Some("127.0.0.2".parse().unwrap())).unwrap();
        let mut poll = Poll::new().unwrap();
        let mut conn = Connection::new(stream, "h", "/", 3, 64, None);
        let interest = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(conn.stream_mut().unwrap(), Token(0), interest)
            .unwrap();
        drive_until(&mut poll, &mut conn, &mut Vec::new(), |s, _| {
            s == Step::Opened
        });
        let local = conn.stream_mut().unwrap().local_addr().unwrap();
        assert_eq!(local.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
    }
}

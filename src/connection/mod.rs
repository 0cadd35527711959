//! One client connection: the state machine from the first HTTP byte to the closed socket.
//!
//! ```text
//!            101                silent, nothing buffered
//!   Http ──────────▶ Open ◀──────────────────────────────▶ Idle
//!    │                │        next input (or our close)     │
//!    │                │ close handshake / protocol error     │
//!    │                ▼                                      │
//!    └─ other ──▶ Draining ──▶ dropped ◀── EOF, reset ───────┘
//!       answers
//! ```
//! * `Http`: reading the request head (bounded, with a deadline).
//! * `Open`: a tungstenite `WebSocket` over our `Stream`. Server-initiated closes (idle,
//!   shutdown, slow consumer) stay in `Open` with a deadline until the peer answers.
//! * `Idle`: open, silent, and with nothing inside tungstenite: only the socket and its outbox
//!   are kept; the next input rebuilds the `WebSocket`.
//! * `Draining`: the last bytes (an HTTP answer, a close frame) go out, then FIN; input is read
//!   and discarded until the peer closes, so our final bytes are not destroyed by a reset.
//!
//! The connection never touches the event loop: it reports what it needs (`Step`,
//! `FlushOutcome`) and the worker registers interest, joins rooms and fans out.

pub(crate) mod outbox;
pub(crate) mod stream;

use std::io::{self, Read};
use std::mem;
use std::sync::Arc;

use bytes::Bytes;
use mio::net::TcpStream;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::protocol::frame::{self, OpCode};
use crate::protocol::http::{self, Decision, Endpoint};
use crate::stats::Counters;
use outbox::{Flushed, Outbox};
use stream::{read_message, Stream};

/// Messages read from one connection per call, so one busy peer cannot starve the others.
const READ_BUDGET: usize = 64;
/// Echo payloads up to this size are copied into the coalescing buffer (one write for many small
/// echoes); larger ones are queued as they came from tungstenite, without a copy, where the
/// copy would cost more than an extra iovec.
const ECHO_COPY_LIMIT: usize = 2 * 1024;
/// No deadline.
const NEVER: u64 = u64::MAX;
/// A message with exactly this payload makes the handler panic, in builds with the
/// `fault-injection` feature only: it proves that a panic costs one connection, not a worker.
#[cfg(feature = "fault-injection")]
pub const PANIC_TRIGGER: &[u8] = b"corecast:panic";

/// The limits a connection enforces, derived once from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub ws: WebSocketConfig,
    pub policy: http::Policy,
    pub max_backlog: usize,
    pub handshake_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub close_timeout_ms: u64,
    /// Silence after which an open connection releases its tungstenite state (see
    /// `Phase::Idle`); 0 never.
    pub rest_after_ms: u64,
}

/// Where a room member sits in its room's member list (kept by the worker's `Rooms`).
#[derive(Debug, Clone)]
pub struct Membership {
    pub room: Arc<str>,
    pub index: usize,
}

/// What the worker supplies to a connection while it handles an event.
pub struct Ctx<'a> {
    /// Worker clock, milliseconds.
    pub now: u64,
    pub limits: &'a Limits,
    /// Messages to fan out, filled by room members, drained by the worker.
    pub publish: &'a mut Vec<(Arc<str>, Bytes)>,
    pub counters: &'a mut Counters,
}

/// What reading left the connection wanting.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing more to read until the next readiness event.
    Idle,
    /// Input may remain (budget used up, or just upgraded): read again this loop.
    Again,
    /// The handshake completed: join `Endpoint`, then read again.
    Upgraded(Endpoint),
    /// Drop the connection now.
    Close,
}

/// What a flush left the connection wanting; `None` from `flush` means drop it.
#[derive(Debug, PartialEq, Eq)]
pub struct FlushOutcome {
    /// The socket is full: register WRITABLE.
    pub blocked: bool,
    /// Echo backpressure ended: read again (input may be waiting with no new event).
    pub resume_read: bool,
}

/// Result of handing a broadcast frame to a member.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// Not open (closing or draining): nothing queued.
    Skipped,
    /// Backlog over the limit: the member is being closed with 1008.
    SlowConsumer,
}

enum Phase {
    /// Reading the HTTP request head.
    Http {
        stream: Stream,
        buf: Vec<u8>,
        /// Accepted beyond `--max-connections`: answered 503.
        over_capacity: bool,
    },
    /// WebSocket traffic (including a close we started and are waiting to see answered).
    Open(Box<WebSocket<Stream>>),
    /// An open WebSocket with nothing buffered (every byte read was a complete frame, no
    /// fragmented message open) that has been silent for a while: tungstenite's state and
    /// buffers are dropped and only the socket and its outbox remain. The next input recreates
    /// them; broadcast frames and pings are queued without them.
    Idle(Stream),
    /// Final bytes going out. With `linger`, then FIN and wait for the peer's EOF, because
    /// closing a socket with unread input resets it and can destroy our last bytes in flight.
    /// Without (a completed close handshake: the peer sends nothing more), drop once written.
    Draining {
        stream: Stream,
        fin_sent: bool,
        linger: bool,
    },
    /// Only during transitions.
    Gone,
}

pub struct Connection {
    phase: Phase,
    /// Worker clock of the last byte received: drives the idle ping and idle close.
    last_seen: u64,
    /// A ping went out during the current silence.
    pinged: bool,
    /// When the current phase expires (handshake, close handshake, draining).
    deadline: u64,
    /// Set for broadcast connections once joined; `None` on /echo.
    pub member: Option<Membership>,
    /// Echo replies are backed up: stop reading until they drain.
    read_paused: bool,
    /// Already on the worker's flush list this pass.
    pub dirty: bool,
    /// WRITABLE interest is registered.
    pub writable: bool,
    /// Counts towards `--max-connections`.
    pub counted: bool,
}

impl Connection {
    pub fn new(tcp: TcpStream, now: u64, limits: &Limits, over_capacity: bool) -> Connection {
        Connection {
            phase: Phase::Http {
                stream: Stream::new(tcp),
                buf: Vec::new(),
                over_capacity,
            },
            last_seen: now,
            pinged: false,
            deadline: now.saturating_add(limits.handshake_timeout_ms),
            member: None,
            read_paused: false,
            dirty: false,
            writable: false,
            counted: !over_capacity,
        }
    }

    fn stream_mut(&mut self) -> Option<&mut Stream> {
        match &mut self.phase {
            Phase::Http { stream, .. } | Phase::Draining { stream, .. } | Phase::Idle(stream) => {
                Some(stream)
            }
            Phase::Open(ws) => Some(ws.get_mut()),
            Phase::Gone => None,
        }
    }

    /// The socket, for (re)registration with the poller.
    pub fn socket(&mut self) -> Option<&mut TcpStream> {
        self.stream_mut().map(|s| &mut s.tcp)
    }

    /// Output is queued.
    pub fn has_output(&mut self) -> bool {
        self.stream_mut().is_some_and(|s| !s.out.is_empty())
    }

    /// Holds tungstenite state and buffers (open and not idle).
    pub fn holds_parser(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    pub fn is_open(&self) -> bool {
        match &self.phase {
            Phase::Open(ws) => ws.can_write(),
            Phase::Idle(_) => true,
            _ => false,
        }
    }

    /// Reads what the socket has (within the budget) and acts on it.
    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let before = match self.stream_mut() {
            Some(stream) => {
                stream.drained = false;
                stream.bytes_in
            }
            None => 0,
        };
        let step = match self.phase {
            Phase::Http { .. } => self.read_http(ctx),
            Phase::Open(_) => self.read_ws(ctx),
            Phase::Idle(_) => {
                self.wake(ctx.limits);
                self.read_ws(ctx)
            }
            Phase::Draining { .. } => self.read_discard(),
            Phase::Gone => Step::Close,
        };
        if self.stream_mut().is_some_and(|s| s.bytes_in != before) {
            self.last_seen = ctx.now;
            self.pinged = false;
        }
        step
    }

    fn read_http(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let Phase::Http { stream, buf, .. } = &mut self.phase else {
            return Step::Close;
        };
        let mut chunk = [0u8; 2048];
        let parsed = loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Step::Close,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Step::Close,
            }
            match http::parse_request(buf) {
                Ok(None) => continue,
                Ok(Some(done)) => break Ok(done),
                Err(e) => break Err(e),
            }
        };
        let Phase::Http {
            stream,
            buf,
            over_capacity,
        } = mem::replace(&mut self.phase, Phase::Gone)
        else {
            unreachable!("phase checked above")
        };
        let decision = match &parsed {
            Ok((head, _)) => http::decide(head, &ctx.limits.policy),
            Err(e) => Decision::Respond(e.response()),
        };
        match decision {
            Decision::Upgrade { .. } if over_capacity => self.respond(
                stream,
                http::Response::reject(503, "server at capacity"),
                ctx,
            ),
            Decision::Upgrade { endpoint, response } => {
                let consumed = parsed.map(|(_, n)| n).unwrap_or(buf.len());
                let mut stream = stream;
                stream.out.push_shared(response.bytes, false);
                stream.framed = true;
                let leftover = &buf[consumed..];
                stream.boundary.feed(leftover);
                self.phase = if leftover.is_empty() {
                    // Nothing to parse yet: tungstenite's buffers wait for the first frame.
                    Phase::Idle(stream)
                } else {
                    let ws = WebSocket::from_partially_read(
                        stream,
                        leftover.to_vec(),
                        Role::Server,
                        Some(ctx.limits.ws),
                    );
                    Phase::Open(Box::new(ws))
                };
                self.deadline = NEVER;
                ctx.counters.handshakes += 1;
                Step::Upgraded(endpoint)
            }
            Decision::Respond(response) => self.respond(stream, response, ctx),
        }
    }

    fn respond(&mut self, mut stream: Stream, response: http::Response, ctx: &mut Ctx<'_>) -> Step {
        if response.status >= 400 {
            ctx.counters.rejected += 1;
        }
        stream.out.push_shared(response.bytes, false);
        self.enter_draining(stream, true, ctx.now, ctx.limits);
        Step::Idle
    }

    fn enter_draining(&mut self, stream: Stream, linger: bool, now: u64, limits: &Limits) {
        self.phase = Phase::Draining {
            stream,
            fin_sent: false,
            linger,
        };
        self.deadline = now.saturating_add(limits.close_timeout_ms);
        self.read_paused = false;
    }

    fn read_ws(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let Phase::Open(ws) = &mut self.phase else {
            return Step::Close;
        };
        let mut budget = READ_BUDGET;
        let result = loop {
            if self.read_paused {
                break Ok(Step::Idle);
            }
            if budget == 0 {
                break Ok(Step::Again);
            }
            budget -= 1;
            let (opcode, payload) = match read_message(ws) {
                Ok(Message::Text(text)) => (OpCode::Text, Bytes::from(text)),
                Ok(Message::Binary(data)) => (OpCode::Binary, data),
                // Pongs to pings and replies to closes are queued by tungstenite itself. They
                // count towards the backlog like echoes: a client flooding pings without reading
                // would otherwise have us queue pongs without bound.
                Ok(_) => {
                    if ws.get_ref().out.pending() > ctx.limits.max_backlog {
                        self.read_paused = true;
                    }
                    // No skip test here: after a close, the next `read` is what reports the
                    // end of the handshake.
                    continue;
                }
                Err(e) => break Err(e),
            };
            ctx.counters.msgs_in += 1;
            #[cfg(feature = "fault-injection")]
            if payload.as_ref() == PANIC_TRIGGER {
                panic!("fault injection: panic trigger received");
            }
            if !ws.can_write() {
                continue; // we are closing: messages still in flight are dropped
            }
            match &self.member {
                Some(m) => {
                    let frame = frame::encode(opcode, &payload);
                    // The sender's own copy is queued here, in order with whatever this read
                    // does next (a close for a protocol error right behind it, say); the worker
                    // delivers to the other members.
                    match offer(&mut ws.get_mut().out, &frame, ctx.limits) {
                        Delivery::SlowConsumer => {
                            ctx.counters.slow_consumers += 1;
                            self.deadline = close_ws(ws, 1008, SLOW_CONSUMER, ctx.now, ctx.limits);
                        }
                        _ => ctx.counters.msgs_out += 1,
                    }
                    ctx.publish.push((m.room.clone(), frame));
                }
                None => {
                    let out = &mut ws.get_mut().out;
                    if payload.len() <= ECHO_COPY_LIMIT {
                        out.push_frame(opcode, &payload);
                    } else {
                        out.push_frame_shared(opcode, payload);
                    }
                    ctx.counters.msgs_out += 1;
                    if out.pending() > ctx.limits.max_backlog {
                        self.read_paused = true;
                    }
                }
            }
            if ws.get_ref().nothing_to_parse() {
                break Ok(Step::Idle);
            }
        };
        let result = result.and_then(|step| ws.flush().map(|()| step));
        match result {
            Ok(step) => step,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                // Pongs may have been queued by this read.
                match ws.flush() {
                    Ok(()) => Step::Idle,
                    Err(e) => self.on_ws_error(e, ctx),
                }
            }
            Err(e) => self.on_ws_error(e, ctx),
        }
    }

    /// Maps a tungstenite error to the end of the connection: the right close code for
    /// protocol violations, a plain drain for a completed close handshake, a drop otherwise.
    fn on_ws_error(&mut self, err: WsError, ctx: &mut Ctx<'_>) -> Step {
        let (code, reason) = match &err {
            WsError::ConnectionClosed => (None, ""),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return Step::Close,
            WsError::Protocol(_) => (Some(1002), "protocol error"),
            WsError::Utf8(_) => (Some(1007), "invalid UTF-8"),
            WsError::Capacity(_) => (Some(1009), "message too big"),
            _ => return Step::Close,
        };
        let Phase::Open(ws) = mem::replace(&mut self.phase, Phase::Gone) else {
            return Step::Close;
        };
        let can_write = ws.can_write();
        let mut stream = ws.into_inner();
        if let Some(code) = code {
            ctx.counters.protocol_errors += 1;
            tracing::debug!(code, %err, "failing connection");
            if can_write {
                stream.out.push_shared(frame::close(code, reason), false);
            }
        }
        if code.is_none() && stream.out.is_empty() {
            return Step::Close; // handshake complete and nothing left to send
        }
        self.enter_draining(stream, code.is_some(), ctx.now, ctx.limits);
        Step::Idle
    }

    fn read_discard(&mut self) -> Step {
        let Phase::Draining { stream, .. } = &mut self.phase else {
            return Step::Close;
        };
        let mut scratch = [0u8; 1024];
        loop {
            match stream.read(&mut scratch) {
                Ok(0) => return Step::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }

    /// Writes queued output. `None`: the connection is finished or broken, drop it.
    pub fn flush(&mut self, limits: &Limits) -> Option<FlushOutcome> {
        let stream = self.stream_mut()?;
        let flushed = stream.flush_out().ok()?;
        let pending = stream.out.pending();
        if let Phase::Draining {
            stream,
            fin_sent,
            linger,
        } = &mut self.phase
        {
            if flushed == Flushed::All && !*linger {
                return None;
            }
            if flushed == Flushed::All && !*fin_sent {
                *fin_sent = true;
                if stream.tcp.shutdown(std::net::Shutdown::Write).is_err() {
                    return None;
                }
            }
        }
        let resume_read = self.read_paused && pending <= limits.max_backlog / 2;
        if resume_read {
            self.read_paused = false;
        }
        Some(FlushOutcome {
            blocked: flushed == Flushed::Blocked,
            resume_read,
        })
    }

    /// Starts a close handshake from our side. Returns false when the connection should simply
    /// be dropped (it never became a WebSocket).
    pub fn start_close(
        &mut self,
        code: u16,
        reason: &'static str,
        now: u64,
        limits: &Limits,
    ) -> bool {
        self.wake(limits);
        match &mut self.phase {
            Phase::Open(ws) => {
                if ws.can_write() {
                    self.deadline = close_ws(ws, code, reason, now, limits);
                }
                true
            }
            Phase::Draining { .. } => true,
            Phase::Http { .. } | Phase::Idle(_) | Phase::Gone => false,
        }
    }

    /// Recreates tungstenite's state for an idle connection. A fresh `WebSocket` is exactly
    /// what an idle one was: active, nothing buffered, no message in progress.
    fn wake(&mut self, limits: &Limits) {
        if let Phase::Idle(_) = self.phase {
            let Phase::Idle(stream) = mem::replace(&mut self.phase, Phase::Gone) else {
                unreachable!("matched just above")
            };
            let ws = WebSocket::from_raw_socket(stream, Role::Server, Some(limits.ws));
            self.phase = Phase::Open(Box::new(ws));
        }
    }

    /// Drops tungstenite's state when it holds nothing (see `Phase::Idle`). Returns true when
    /// the connection went idle.
    fn rest(&mut self, now: u64, limits: &Limits) -> bool {
        let Phase::Open(ws) = &self.phase else {
            return false;
        };
        let quiet =
            limits.rest_after_ms > 0 && now.saturating_sub(self.last_seen) >= limits.rest_after_ms;
        let stream = ws.get_ref();
        if !quiet
            || self.read_paused
            || !ws.can_write()
            || !stream.boundary.at_rest()
            || !stream.nothing_read_ahead()
        {
            return false;
        }
        let Phase::Open(ws) = mem::replace(&mut self.phase, Phase::Gone) else {
            unreachable!("matched just above")
        };
        let mut stream = ws.into_inner();
        stream.release_buffers();
        self.phase = Phase::Idle(stream);
        true
    }

    /// Hands a pre-encoded broadcast frame to this member.
    pub fn deliver(&mut self, frame: &Bytes, now: u64, limits: &Limits) -> Delivery {
        let out = match &mut self.phase {
            Phase::Open(ws) if ws.can_write() => &mut ws.get_mut().out,
            Phase::Idle(stream) => &mut stream.out,
            _ => return Delivery::Skipped,
        };
        let delivery = offer(out, frame, limits);
        if delivery == Delivery::SlowConsumer {
            self.start_close(1008, SLOW_CONSUMER, now, limits);
        }
        delivery
    }

    /// Timer check, run once per tick. Returns false when the connection must be dropped.
    /// Output it queues (a ping, a close frame) is flushed by the caller.
    pub fn tick(&mut self, now: u64, limits: &Limits, counters: &mut Counters) -> bool {
        if now >= self.deadline {
            counters.timeouts += 1;
            return false;
        }
        if self.rest(now, limits) {
            counters.rests += 1;
        }
        let idle = limits.idle_timeout_ms;
        if idle == 0 || !self.is_open() {
            return true;
        }
        let silent = now.saturating_sub(self.last_seen);
        if silent >= idle {
            counters.timeouts += 1;
            self.start_close(1001, "idle timeout", now, limits);
        } else if silent >= idle / 2 && !self.pinged {
            self.pinged = true;
            if let Some(stream) = self.stream_mut() {
                stream
                    .out
                    .push_shared(frame::encode(OpCode::Ping, b"corecast"), false);
            }
        }
        true
    }
}

const SLOW_CONSUMER: &str = "slow consumer";

/// Queues a broadcast frame for a member, unless the member's backlog is already over the
/// limit: then its unsent broadcast frames are dropped and the caller closes it with 1008.
fn offer(out: &mut Outbox, frame: &Bytes, limits: &Limits) -> Delivery {
    if out.pending() > limits.max_backlog {
        out.discard_droppable();
        return Delivery::SlowConsumer;
    }
    out.push_shared(frame.clone(), true);
    Delivery::Queued
}

/// Sends our close frame; returns the deadline for the peer's answer.
fn close_ws(
    ws: &mut WebSocket<Stream>,
    code: u16,
    reason: &'static str,
    now: u64,
    limits: &Limits,
) -> u64 {
    let close = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    // Writes into our outbox, which never blocks; an error only says it was already closing.
    let _ = ws.close(Some(close));
    now.saturating_add(limits.close_timeout_ms)
}

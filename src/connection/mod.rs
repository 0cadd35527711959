//! One client connection: the state machine from the first HTTP byte to the closed socket, and
//! the byte stream and outbound queue under it.
//!
//! ```text
//!            101          any other frame, a partial frame, our close
//!   Http ──────────▶ Ready ──────────────────────────────────▶ Open
//!    │                 │   ◀──────────────────────────────────  │
//!    │                 │       tungstenite holds nothing again   │ close handshake,
//!    │                 │                                         │ protocol error
//!    └─ other ─────────┼──────────────▶ Draining ◀───────────────┘
//!       answers        └─ EOF, reset ──▶ dropped ◀── FIN seen / deadline
//! ```
//! * `Http`: reading the request head (bounded, with a deadline).
//! * `Ready`: open, at a frame boundary, with nothing inside tungstenite: only the socket and
//!   its outbox are kept. Input is read into the worker's receive buffer, and complete text
//!   and binary messages (nearly all traffic) are taken from there in place
//!   (`protocol::inbound`): unmasked, checked and echoed or published without passing through
//!   per-connection buffers. The first byte of anything else goes to tungstenite, in `Open`.
//! * `Open`: a tungstenite `WebSocket` over our `Stream`: fragments, control frames, partial
//!   frames, protocol errors and the close handshake. Once it holds nothing (every frame it was
//!   given complete and returned) the connection drops it and is `Ready` again.
//!   Server-initiated closes (idle, shutdown, slow consumer) stay in `Open` with a deadline
//!   until the peer answers.
//! * `Draining`: the last bytes (an HTTP answer, a close frame) go out, then FIN; input is read
//!   and discarded until the peer closes, so our final bytes are not destroyed by a reset.
//!
//! A connection that stays silent for `rest_after` also gives back its spare buffer capacity
//! (`rest`).
//!
//! The connection owns its registration with the poller: it knows whether its socket is full,
//! so it computes its own interest and re-registers itself (READABLE always, WRITABLE only
//! while output waits for room). The worker never looks inside; it calls a method and acts on
//! what comes back (`Step`, `Flush`, `Output`): read again, flush now or at the end of the
//! pass, join a room, drop. Room membership itself belongs to the worker's `Rooms`; the
//! connection only knows that its messages are published rather than echoed.
//!
//! Submodules, bottom up: `socket` (the transport trait), `outbox` (the ordered outbound
//! queue), `read_skip` (when a tungstenite read can be skipped), `stream` (the `Read + Write`
//! tungstenite runs over), `in_place` (reading in `Ready`, echoes written from the receive
//! buffer).

mod in_place;
pub(crate) mod outbox;
mod read_skip;
pub(crate) mod socket;
mod stream;

use std::io::{self, IoSlice, Read};
use std::mem;

use bytes::Bytes;
use mio::{Interest, Registry, Token};
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::admission::{self, Seat};
use crate::budget::Budget;
use crate::config::Config;
use crate::protocol::frame::{self, OpCode};
use crate::protocol::http::{self, Decision, Endpoint, StatsPage};
use crate::stats::Counters;
use outbox::Flushed;
use socket::Socket;
use stream::{read_message, Stream};

/// Messages tungstenite reads from one connection per call, so one busy peer cannot starve the
/// others (frames taken in place are bounded by the read quota instead).
const READ_BUDGET: usize = 64;
/// Size of each worker's receive buffer: one socket read in `Ready`. Larger than any socket
/// read of small messages, small enough to stay in cache.
pub(crate) const RECV_BUFFER: usize = 64 * 1024;
/// Echo payloads up to this size are copied into the coalescing buffer (one write for many small
/// echoes); larger ones are queued as they came from tungstenite, without a copy, where the
/// copy would cost more than an extra iovec.
const ECHO_COPY_LIMIT: usize = 2 * 1024;
/// No deadline.
const NEVER: u64 = u64::MAX;
const SLOW_CONSUMER: &str = "slow consumer";
/// Time a connection accepted over capacity gets to send its request.
const SEATLESS_HANDSHAKE_MS: u64 = 2000;
/// A shed connection whose own unsent output is larger than this is dropped at once rather
/// than sent a close frame behind it.
const SHED_KEEP_OUTPUT: usize = 64 * 1024;
/// A message with exactly this payload makes the handler panic, in builds with the
/// `fault-injection` feature only: it proves that a panic costs one connection, not a worker.
#[cfg(feature = "fault-injection")]
pub const PANIC_TRIGGER: &[u8] = b"corecast:panic";

/// The limits a connection enforces, derived once from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub ws: WebSocketConfig,
    pub policy: http::Policy,
    pub max_backlog: usize,
    pub handshake_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub close_timeout_ms: u64,
    /// Silence after which an open connection releases its spare buffers (see `rest`); 0
    /// never.
    pub rest_after_ms: u64,
    /// Complete messages are taken in place in `Ready` (see `protocol::inbound`). Always on in
    /// the server; off, tungstenite parses every byte, which is the reference the differential
    /// test holds the fast path to.
    pub in_place: bool,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let ws = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer)
            // Our stream takes every write into its outbox, so tungstenite's own buffer only
            // ever holds one control frame.
            .write_buffer_size(0)
            .max_write_buffer_size(64 * 1024)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        Limits {
            ws,
            policy: http::Policy {
                protocols: config.protocols.clone(),
                allowed_origins: config.allowed_origins.clone(),
            },
            max_backlog: config.max_backlog,
            handshake_timeout_ms: config.handshake_timeout.as_millis() as u64,
            idle_timeout_ms: config.idle_timeout.as_millis() as u64,
            close_timeout_ms: config.close_timeout.as_millis() as u64,
            rest_after_ms: config.rest_after.as_millis() as u64,
            in_place: true,
        }
    }
}

/// What the worker lends a connection while it handles an event. Owned by the worker, apart
/// from its connections and rooms, so a connection can be handed it while the worker walks
/// those.
pub(crate) struct Env {
    /// Worker clock, milliseconds.
    pub now: u64,
    pub limits: Limits,
    /// The worker's poller, for a connection's own (re)registration.
    pub registry: Registry,
    pub counters: Counters,
    /// The worker's share of the memory budget, charged with what each connection holds.
    pub budget: Budget,
    /// Frames published by a room member during the call, for the worker to fan out to the
    /// rest of the room; the member has queued its own copy.
    pub published: Vec<Bytes>,
    /// Writes the stats pages (`/metrics`, `/stats.json`) on this port; `None` when they are
    /// served only on their own listener (then this port answers them 404).
    pub stats_pages: Option<StatsPages>,
    /// The worker's receive buffer (`RECV_BUFFER` bytes): `Ready` connections read into it and
    /// parse in place, so no connection keeps a read buffer of its own.
    pub recv: Vec<u8>,
}

impl Env {
    /// The answer for a stats page on this port.
    fn stats_page(&self, page: StatsPage) -> http::Response {
        match &self.stats_pages {
            Some(StatsPages(write)) => write(page),
            None => http::Response::reject(404, "not found"),
        }
    }

    /// The answer to an upgrade that came without a seat, counted.
    fn refuse_upgrade(&mut self) -> http::Response {
        self.counters.over_capacity += 1;
        admission::over_capacity()
    }
}

/// Writes a stats page from what the workers published (the worker supplies it: only it can
/// reach the published copies).
pub(crate) struct StatsPages(pub Box<dyn Fn(StatsPage) -> http::Response>);

/// What reading left the connection wanting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing more to read until the next readiness event.
    Idle,
    /// Input may remain (budget used up): read again this pass.
    Again,
    /// The handshake completed for `Endpoint`: join its room if it names one, then read again
    /// (bytes may have come behind the request).
    Upgraded(Endpoint),
    /// Drop the connection now.
    Close,
}

/// What a flush left the connection wanting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Written, or waiting for WRITABLE (registered by the connection itself).
    Done,
    /// Echo backpressure ended: read again, as input may be waiting with no new event coming.
    ReadAgain,
    /// Finished or broken: drop it.
    Close,
}

/// When queued output should be written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Nothing to write, or already on the flush list.
    Nothing,
    /// Write now: a reply (echo, HTTP) reaches its client while the worker reads the others.
    Now,
    /// At the end of the pass, so what other members publish in the same pass shares the write.
    EndOfPass,
}

/// Result of handing a broadcast frame to a member.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Queued,
    /// Not open (closing or draining): nothing queued.
    Skipped,
    /// Backlog over the limit: the member is being closed with 1008.
    SlowConsumer,
}

enum Phase<S> {
    /// Reading the HTTP request head.
    Http { stream: Stream<S>, buf: Vec<u8> },
    /// An open WebSocket at a frame boundary with nothing buffered: only the socket and its
    /// outbox. Complete messages are read in place; broadcast frames and pings are queued here.
    Ready(Stream<S>),
    /// tungstenite parses: anything but complete text and binary messages, or a close we
    /// started and are waiting to see answered.
    Open(Box<WebSocket<Stream<S>>>),
    /// Final bytes going out. With `linger`, then FIN and wait for the peer's EOF, because
    /// closing a socket with unread input resets it and can destroy our last bytes in flight.
    /// Without (a completed close handshake: the peer sends nothing more), drop once written.
    Draining {
        stream: Stream<S>,
        fin_sent: bool,
        linger: bool,
    },
    /// Only during transitions.
    Gone,
}

pub(crate) struct Connection<S = mio::net::TcpStream> {
    phase: Phase<S>,
    /// Worker clock of the last byte received: drives the idle ping and idle close.
    last_seen: u64,
    /// A ping went out during the current silence.
    pinged: bool,
    /// When the current phase expires (handshake, close handshake, draining).
    deadline: u64,
    /// Upgraded on a room endpoint: messages are published to the room, not echoed.
    publishes: bool,
    /// Echo replies are backed up: stop reading until they drain.
    read_paused: bool,
    /// On the worker's flush list this pass.
    flush_listed: bool,
    /// Spare buffers were released during the current silence (see `rest`).
    rested: bool,
    /// WRITABLE interest is registered (the socket was full at the last flush).
    write_interest: bool,
    /// Its share of the server's capacity; `None` when accepted over capacity (upgrades are
    /// answered 503).
    seat: Option<Seat>,
    /// Bytes charged to the worker's memory budget for this connection (see `held`).
    accounted: usize,
}

impl<S: Socket> Connection<S> {
    /// A newly accepted connection, registered for READABLE under `token`.
    pub fn accept(
        mut socket: S,
        token: Token,
        seat: Option<Seat>,
        env: &Env,
    ) -> Result<Connection<S>, (io::Error, Option<Seat>)> {
        if let Err(e) = env
            .registry
            .register(&mut socket, token, Interest::READABLE)
        {
            return Err((e, seat));
        }
        // Without a seat the connection holds a descriptor from the reserve: it gets less time.
        let handshake_ms = match seat {
            Some(_) => env.limits.handshake_timeout_ms,
            None => env.limits.handshake_timeout_ms.min(SEATLESS_HANDSHAKE_MS),
        };
        // Registration reports data that is already waiting, so no read is needed here.
        Ok(Connection {
            phase: Phase::Http {
                stream: Stream::new(socket),
                buf: Vec::new(),
            },
            last_seen: env.now,
            pinged: false,
            deadline: env.now.saturating_add(handshake_ms),
            publishes: false,
            read_paused: false,
            flush_listed: false,
            rested: false,
            write_interest: false,
            seat,
            accounted: 0,
        })
    }

    /// Ends the connection (dropping the socket closes it and takes it off the poller): gives
    /// back what it had charged to the budget and hands back its seat for
    /// `Admission::release`.
    pub fn finish(self, env: &mut Env) -> Option<Seat> {
        env.budget.charge(self.accounted, 0);
        self.seat
    }

    /// Bytes this peer makes us hold (see `budget`): an unfinished request head, the message
    /// it is in the middle of sending, read-ahead, and its own unsent output.
    fn held(&self) -> usize {
        match &self.phase {
            Phase::Http { stream, buf } => buf.capacity() + stream.held(),
            Phase::Open(ws) => ws.get_ref().held(),
            Phase::Ready(stream) | Phase::Draining { stream, .. } => stream.held(),
            Phase::Gone => 0,
        }
    }

    /// Brings the budget up to date with what the connection holds now.
    fn account(&mut self, env: &mut Env) {
        let held = self.held();
        env.budget.charge(self.accounted, held);
        self.accounted = held;
    }

    /// What the connection holds, as last charged to the budget.
    pub fn charged(&self) -> usize {
        self.accounted
    }

    /// Frees what this connection holds because the worker's budget share is exhausted: the
    /// parser and the message in progress go, broadcast frames not yet started are dropped,
    /// and the peer is told with close 1013 (try again later) while the connection drains.
    /// Returns false when it must simply be dropped: it never became a WebSocket, or its own
    /// unsent output is large (a peer that does not read would never take the close frame).
    pub fn shed(&mut self, env: &mut Env) -> bool {
        let (mut stream, can_write) = match mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Open(ws) => {
                let can_write = ws.can_write();
                (ws.into_inner(), can_write)
            }
            Phase::Ready(stream) => (stream, true),
            other => {
                self.phase = other;
                return false;
            }
        };
        stream.out_mut().discard_droppable();
        if stream.out().owned() > SHED_KEEP_OUTPUT {
            self.phase = Phase::Ready(stream);
            return false;
        }
        if can_write {
            env.counters.count_close(1013);
            stream
                .out_mut()
                .push_shared(frame::close(1013, "memory budget reached"), false);
        }
        self.enter_draining(stream, true, env.now, &env.limits);
        self.account(env);
        true
    }

    fn stream_mut(&mut self) -> Option<&mut Stream<S>> {
        match &mut self.phase {
            Phase::Http { stream, .. } | Phase::Draining { stream, .. } | Phase::Ready(stream) => {
                Some(stream)
            }
            Phase::Open(ws) => Some(ws.get_mut()),
            Phase::Gone => None,
        }
    }

    fn has_output(&mut self) -> bool {
        self.stream_mut().is_some_and(|s| s.has_output())
    }

    /// A WebSocket that is ending without a close frame from either side (reset, EOF, error):
    /// the worker counts it as close code 1006, the code a browser reports for it.
    pub fn ends_without_close(&self) -> bool {
        match &self.phase {
            Phase::Ready(_) => true,
            Phase::Open(ws) => ws.can_write() && self.deadline == NEVER,
            _ => false,
        }
    }

    /// Holds tungstenite state and buffers (open and not idle).
    pub fn holds_parser(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    fn is_open(&self) -> bool {
        match &self.phase {
            Phase::Open(ws) => ws.can_write(),
            Phase::Ready(_) => true,
            _ => false,
        }
    }

    /// Output is queued and the connection is not on the flush list yet: the caller puts it
    /// there (for the end of the pass).
    pub fn claim_flush(&mut self) -> bool {
        if self.flush_listed || !self.has_output() {
            return false;
        }
        self.flush_listed = true;
        true
    }

    /// When to write what a read queued.
    pub fn output_after_read(&mut self) -> Output {
        if self.publishes {
            if self.claim_flush() {
                Output::EndOfPass
            } else {
                Output::Nothing
            }
        } else if self.has_output() {
            // Everything this connection had to say in this event is queued, so this is still
            // one write per connection per event.
            Output::Now
        } else {
            Output::Nothing
        }
    }

    /// Reads what the socket has (within the read budget) and acts on it.
    pub fn on_readable(&mut self, env: &mut Env) -> Step {
        let step = self.read(env);
        self.account(env);
        step
    }

    fn read(&mut self, env: &mut Env) -> Step {
        let before = match self.stream_mut() {
            Some(stream) => {
                stream.readiness();
                stream.bytes_in()
            }
            None => 0,
        };
        let step = match self.phase {
            Phase::Http { .. } => self.read_http(env),
            Phase::Open(_) => self.read_ws(env),
            Phase::Ready(_) if env.limits.in_place => self.read_in_place(env),
            Phase::Ready(_) => {
                self.wake(&env.limits);
                self.read_ws(env)
            }
            Phase::Draining { .. } => self.read_discard(),
            Phase::Gone => Step::Close,
        };
        if env.limits.in_place {
            self.settle();
        }
        if self.stream_mut().is_some_and(|s| s.bytes_in() != before) {
            self.last_seen = env.now;
            self.pinged = false;
            self.rested = false;
        }
        step
    }

    /// What every text or binary message comes to, however it was read: echoed to its sender
    /// or published to the room. `shared` is the payload as a buffer of its own when it has
    /// one (from tungstenite), so a large echo can be queued without a copy.
    fn on_message(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        shared: Option<&Bytes>,
        env: &mut Env,
    ) {
        self.count_in(payload, env);
        if !self.is_open() {
            return; // we are closing: messages still in flight are dropped
        }
        if self.publishes {
            let frame = frame::encode(opcode, payload);
            // The sender's own copy is queued here, in order with whatever this read does
            // next (a close for a protocol error right behind it, say), through the same
            // path as every other member's; the worker delivers to the rest of the room.
            self.deliver(&frame, env);
            env.published.push(frame);
            return;
        }
        let Some(stream) = self.stream_mut() else {
            return;
        };
        let out = stream.out_mut();
        count_echo(payload.len(), env);
        match shared {
            Some(bytes) if payload.len() > ECHO_COPY_LIMIT => {
                out.push_frame_shared(opcode, bytes.clone())
            }
            _ => out.push_frame(opcode, payload),
        }
        if out.pending() > env.limits.max_backlog {
            self.read_paused = true;
            env.counters.backpressure_pauses += 1;
        }
    }

    /// Counts a message received (and, in fault-injection builds, panics on the trigger).
    fn count_in(&self, payload: &[u8], env: &mut Env) {
        env.counters.msgs_in += 1;
        // By endpoint too: plain adds behind a branch that always goes the same way for a
        // given connection.
        if self.publishes {
            env.counters.broadcast_msgs_in += 1;
            env.counters.broadcast_bytes_in += payload.len() as u64;
        } else {
            env.counters.echo_msgs_in += 1;
            env.counters.echo_bytes_in += payload.len() as u64;
        }
        #[cfg(feature = "fault-injection")]
        if payload == PANIC_TRIGGER {
            panic!("fault injection: panic trigger received");
        }
    }

    /// Drops tungstenite once it holds nothing a fresh one would not: open, no close under way,
    /// every frame it was given complete and returned. The connection is `Ready` again.
    fn settle(&mut self) {
        let Phase::Open(ws) = &self.phase else {
            return;
        };
        if self.deadline != NEVER || self.read_paused || !ws.can_write() || !ws.get_ref().settled()
        {
            return;
        }
        let Phase::Open(ws) = mem::replace(&mut self.phase, Phase::Gone) else {
            unreachable!("matched just above")
        };
        self.phase = Phase::Ready(ws.into_inner());
    }

    fn read_http(&mut self, env: &mut Env) -> Step {
        let Phase::Http { stream, buf } = &mut self.phase else {
            return Step::Close;
        };
        let mut chunk = [0u8; 2048];
        let parsed = loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Step::Close,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return waiting(stream),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Step::Close,
            }
            match http::parse_request(buf) {
                Ok(None) => continue,
                Ok(Some(done)) => break Ok(done),
                Err(e) => break Err(e),
            }
        };
        let Phase::Http { mut stream, buf } = mem::replace(&mut self.phase, Phase::Gone) else {
            unreachable!("phase checked above")
        };
        let decision = match &parsed {
            Ok((head, _)) => http::decide(head, &env.limits.policy),
            Err(e) => Decision::Respond(e.response()),
        };
        match decision {
            Decision::Upgrade { .. } if self.seat.is_none() => {
                // Over capacity, the descriptor is what is scarce: the answer goes out and the
                // socket closes without waiting for the peer (nothing more is expected from it
                // before a 101, so closing does not reset the answer away).
                let response = env.refuse_upgrade();
                self.respond(stream, response, false, env)
            }
            Decision::Upgrade { endpoint, response } => {
                let consumed = parsed.map(|(_, n)| n).unwrap_or(buf.len());
                send_first(&mut stream, response.bytes);
                let leftover = &buf[consumed..];
                stream.start_frames(leftover);
                self.phase = if leftover.is_empty() {
                    // Nothing to parse yet: tungstenite's buffers wait for the first frame.
                    Phase::Ready(stream)
                } else {
                    let ws = WebSocket::from_partially_read(
                        stream,
                        leftover.to_vec(),
                        Role::Server,
                        Some(env.limits.ws),
                    );
                    Phase::Open(Box::new(ws))
                };
                self.deadline = NEVER;
                self.publishes = matches!(endpoint, Endpoint::Room(_));
                env.counters.handshakes += 1;
                Step::Upgraded(endpoint)
            }
            Decision::Respond(response) => self.respond(stream, response, true, env),
            Decision::Stats(page) => {
                let response = env.stats_page(page);
                self.respond(stream, response, true, env)
            }
        }
    }

    /// Queues an HTTP answer and drains: with `linger`, waiting for the peer's EOF after FIN.
    fn respond(
        &mut self,
        mut stream: Stream<S>,
        response: http::Response,
        linger: bool,
        env: &mut Env,
    ) -> Step {
        env.counters.count_response(response.status);
        stream.out_mut().push_shared(response.bytes, false);
        self.enter_draining(stream, linger, env.now, &env.limits);
        Step::Idle
    }

    fn enter_draining(&mut self, mut stream: Stream<S>, linger: bool, now: u64, limits: &Limits) {
        stream.stop_frames();
        self.phase = Phase::Draining {
            stream,
            fin_sent: false,
            linger,
        };
        self.deadline = now.saturating_add(limits.close_timeout_ms);
        self.read_paused = false;
    }

    fn read_ws(&mut self, env: &mut Env) -> Step {
        let mut budget = READ_BUDGET;
        let result = loop {
            if self.read_paused {
                break Ok(Step::Idle);
            }
            if budget == 0 {
                break Ok(Step::Again);
            }
            budget -= 1;
            let Phase::Open(ws) = &mut self.phase else {
                return Step::Close;
            };
            let (opcode, payload) = match read_message(ws) {
                Ok(Message::Text(text)) => (OpCode::Text, Bytes::from(text)),
                Ok(Message::Binary(data)) => (OpCode::Binary, data),
                // Pongs to pings and replies to closes are queued by tungstenite itself. They
                // count towards the backlog like echoes: a client flooding pings without reading
                // would otherwise have us queue pongs without bound.
                Ok(other) => {
                    // A close from the peer that begins the closing handshake (ours, when we
                    // began it, was counted as it went out).
                    if let Message::Close(frame) = &other {
                        if self.deadline == NEVER {
                            env.counters
                                .count_close(frame.as_ref().map_or(1005, |f| f.code.into()));
                        }
                    }
                    if ws.get_ref().out().pending() > env.limits.max_backlog {
                        self.read_paused = true;
                        env.counters.backpressure_pauses += 1;
                    }
                    // No skip test here: after a close, the next `read` is what reports the
                    // end of the handshake.
                    continue;
                }
                Err(e) => break Err(e),
            };
            self.on_message(opcode, &payload, Some(&payload), env);
            if let Phase::Open(ws) = &self.phase {
                if ws.get_ref().nothing_to_parse() {
                    break Ok(Step::Idle);
                }
            }
        };
        let Phase::Open(ws) = &mut self.phase else {
            return Step::Close;
        };
        let result = result.and_then(|step| ws.flush().map(|()| step));
        match result {
            Ok(step) => step,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                // Pongs may have been queued by this read.
                match ws.flush() {
                    Ok(()) => waiting(ws.get_ref()),
                    Err(e) => self.on_ws_error(e, env),
                }
            }
            Err(e) => self.on_ws_error(e, env),
        }
    }

    /// Maps a tungstenite error to the end of the connection: the right close code for
    /// protocol violations, a plain drain for a completed close handshake, a drop otherwise.
    fn on_ws_error(&mut self, err: WsError, env: &mut Env) -> Step {
        let (code, reason) = match &err {
            WsError::ConnectionClosed => (None, ""),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                // tungstenite has marked the socket terminated, so `ends_without_close` will
                // not see it: count the missing close here, unless we had begun one.
                if self.deadline == NEVER {
                    env.counters.count_close(1006);
                }
                return Step::Close;
            }
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
            env.counters.protocol_errors += 1;
            tracing::debug!(code, %err, "failing connection");
            if can_write {
                env.counters.count_close(code);
                stream
                    .out_mut()
                    .push_shared(frame::close(code, reason), false);
            }
        }
        if code.is_none() && !stream.has_output() {
            return Step::Close; // handshake complete and nothing left to send
        }
        self.enter_draining(stream, code.is_some(), env.now, &env.limits);
        Step::Idle
    }

    fn read_discard(&mut self) -> Step {
        let Phase::Draining { stream, .. } = &mut self.phase else {
            return Step::Close;
        };
        let mut scratch = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut scratch) {
                Ok(0) => return Step::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return waiting(stream),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }

    /// Writes queued output and keeps the registration in step: WRITABLE while the socket is
    /// full, READABLE only once it has room again.
    pub fn flush(&mut self, token: Token, env: &mut Env) -> Flush {
        let flush = self.write_out(token, env);
        self.account(env);
        flush
    }

    fn write_out(&mut self, token: Token, env: &mut Env) -> Flush {
        self.flush_listed = false;
        let Some(stream) = self.stream_mut() else {
            return Flush::Close;
        };
        let Ok(flushed) = stream.flush_out() else {
            return Flush::Close;
        };
        let pending = stream.out().pending();
        if let Phase::Draining {
            stream,
            fin_sent,
            linger,
        } = &mut self.phase
        {
            if flushed == Flushed::All && !*linger {
                return Flush::Close;
            }
            if flushed == Flushed::All && !*fin_sent {
                *fin_sent = true;
                if stream.shutdown_write().is_err() {
                    return Flush::Close;
                }
            }
        }
        let blocked = flushed == Flushed::Blocked;
        if blocked != self.write_interest {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let Some(stream) = self.stream_mut() else {
                return Flush::Close;
            };
            if env
                .registry
                .reregister(stream.socket_mut(), token, interest)
                .is_err()
            {
                return Flush::Close;
            }
            self.write_interest = blocked;
        }
        if self.read_paused && pending <= env.limits.max_backlog / 2 {
            self.read_paused = false;
            return Flush::ReadAgain;
        }
        Flush::Done
    }

    /// Starts a close handshake from our side. Returns false when the connection should simply
    /// be dropped (it never became a WebSocket).
    pub fn start_close(&mut self, code: u16, reason: &'static str, env: &mut Env) -> bool {
        self.close_with(code, reason, env)
    }

    fn close_with(&mut self, code: u16, reason: &'static str, env: &mut Env) -> bool {
        let (now, limits) = (env.now, &env.limits);
        self.wake(limits);
        match &mut self.phase {
            Phase::Open(ws) => {
                if ws.can_write() {
                    env.counters.count_close(code);
                    self.deadline = close_ws(ws, code, reason, now, limits);
                }
                true
            }
            Phase::Draining { .. } => true,
            Phase::Http { .. } | Phase::Ready(_) | Phase::Gone => false,
        }
    }

    /// Recreates tungstenite's state for an idle connection. A fresh `WebSocket` is exactly
    /// what an idle one was: active, nothing buffered, no message in progress.
    fn wake(&mut self, limits: &Limits) {
        if let Phase::Ready(_) = self.phase {
            let Phase::Ready(stream) = mem::replace(&mut self.phase, Phase::Gone) else {
                unreachable!("matched just above")
            };
            let ws = WebSocket::from_raw_socket(stream, Role::Server, Some(limits.ws));
            self.phase = Phase::Open(Box::new(ws));
        }
    }

    /// Gives back spare buffer capacity (read-ahead, an empty outbox's tail) once per silence
    /// of `rest_after`, dropping tungstenite's state first if it is still there and holds
    /// nothing. Returns true when it rested.
    fn rest(&mut self, now: u64, limits: &Limits) -> bool {
        let quiet =
            limits.rest_after_ms > 0 && now.saturating_sub(self.last_seen) >= limits.rest_after_ms;
        if !quiet || self.rested || self.read_paused {
            return false;
        }
        // The same test as after every read: a close under way or a half-read frame keeps
        // tungstenite, and then nothing is released.
        self.settle();
        let Phase::Ready(stream) = &mut self.phase else {
            return false;
        };
        stream.release_buffers();
        self.rested = true;
        true
    }

    /// Hands a pre-encoded broadcast frame to this member: the one path for every member of a
    /// room, the sender's own copy included. A member whose backlog is already over the limit
    /// is a slow consumer: its unsent broadcast frames are dropped and it is closed with 1008.
    pub fn deliver(&mut self, frame: &Bytes, env: &mut Env) -> Delivery {
        let out = match &mut self.phase {
            Phase::Open(ws) if ws.can_write() => ws.get_mut().out_mut(),
            Phase::Ready(stream) => stream.out_mut(),
            _ => return Delivery::Skipped,
        };
        if out.pending() > env.limits.max_backlog {
            out.discard_droppable();
            env.counters.slow_consumers += 1;
            self.close_with(1008, SLOW_CONSUMER, env);
            return Delivery::SlowConsumer;
        }
        env.counters.msgs_out += 1;
        env.counters.broadcast_msgs_out += 1;
        env.counters.broadcast_bytes_out += frame::payload_len(frame) as u64;
        out.push_shared(frame.clone(), true);
        Delivery::Queued
    }

    /// Timer check, run once per tick. Returns false when the connection must be dropped.
    /// Output it queues (a ping, a close frame) is flushed by the caller.
    pub fn tick(&mut self, env: &mut Env) -> bool {
        let alive = self.check_timers(env);
        self.account(env);
        alive
    }

    fn check_timers(&mut self, env: &mut Env) -> bool {
        let now = env.now;
        if now >= self.deadline {
            env.counters.timeouts += 1;
            return false;
        }
        if self.rest(now, &env.limits) {
            env.counters.rests += 1;
        }
        let idle = env.limits.idle_timeout_ms;
        if idle == 0 || !self.is_open() {
            return true;
        }
        let silent = now.saturating_sub(self.last_seen);
        if silent >= idle {
            env.counters.timeouts += 1;
            self.close_with(1001, "idle timeout", env);
        } else if silent >= idle / 2 && !self.pinged {
            self.pinged = true;
            if let Some(stream) = self.stream_mut() {
                stream
                    .out_mut()
                    .push_shared(frame::encode(OpCode::Ping, b"corecast"), false);
            }
        }
        true
    }
}

/// Answers a connection accepted with no descriptor to spare and closes it at once, so a
/// flood past the open-files limit gets answers instead of waiting in the accept queue: a
/// request that already arrived (it usually has, while the connection waited) is answered as
/// usual when it needs no connection state (`/healthz`, the page, errors), and an upgrade
/// with 503. Reading the request first lets the close be a FIN rather than a reset that could
/// destroy the answer.
pub(crate) fn refuse_now<S: Socket>(mut socket: S, env: &mut Env) {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match socket.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let response = match http::parse_request(&buf[..len]) {
        Ok(Some((head, _))) => match http::decide(&head, &env.limits.policy) {
            Decision::Respond(response) => response,
            Decision::Stats(page) => env.stats_page(page),
            Decision::Upgrade { .. } => env.refuse_upgrade(),
        },
        // Incomplete or unreadable: there is no waiting for the rest.
        _ => env.refuse_upgrade(),
    };
    env.counters.count_response(response.status);
    // A fresh socket's send buffer takes a short answer whole; if not, the peer gets less.
    let _ = socket.write(&response.bytes);
    let _ = socket.shutdown_write();
}

/// Writes a connection's first bytes (the 101) straight to the socket, whose empty send buffer
/// takes them whole; only what it refuses (everything, on an error, which the next flush then
/// reports) is queued. Queued, they left the outbox's chunk queue (160 bytes) allocated until
/// the connection rested a second later: during a ramp of new connections that is thousands
/// of them at once, heap that stays resident once freed, as nothing trims the heap after a
/// ramp of connections that never woke tungstenite (issue #15).
fn send_first<S: Socket>(stream: &mut Stream<S>, bytes: Bytes) {
    let written = match stream.write_direct(&[IoSlice::new(&bytes)]) {
        Ok(n) => n.min(bytes.len()),
        Err(_) => 0,
    };
    stream.out_mut().push_shared(bytes.slice(written..), false);
}

/// Counts an echo sent (queued or written).
fn count_echo(len: usize, env: &mut Env) {
    env.counters.msgs_out += 1;
    env.counters.echo_msgs_out += 1;
    env.counters.echo_bytes_out += len as u64;
}

/// What a read that ended in `WouldBlock` leaves: nothing until the next readiness event, or,
/// when it stopped at the read quota, another turn this pass.
fn waiting<S: Socket>(stream: &Stream<S>) -> Step {
    if stream.quota_used() {
        Step::Again
    } else {
        Step::Idle
    }
}

/// Sends our close frame; returns the deadline for the peer's answer.
fn close_ws<S: Socket>(
    ws: &mut WebSocket<Stream<S>>,
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

#[cfg(test)]
mod tests;

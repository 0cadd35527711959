//! One worker: a thread pinned to a core that owns a `mio::Poll`, a listener, its connections
//! (a `Slab`, whose key is the mio `Token`), its share of the rooms, and its inbox.
//!
//! Rules the loop lives by:
//! * Readiness is edge-triggered: after an event, an operation is repeated until `WouldBlock`.
//!   Whenever we stop early (read budget, echo backpressure, accept batch), the connection or
//!   listener goes on a list that the next pass retries, because no new event will come.
//! * Output is corked: handling events only queues bytes; each connection with output is
//!   flushed once at the end of the pass (one `writev`). WRITABLE interest is registered only
//!   while a socket is full.
//! * Nothing blocks and nothing is shared on the per-message path: other workers are reached
//!   only through `Bus`. The only shared state is admission (touched on accept and close) and
//!   the counters published once per tick.
//! * The worker never looks inside a connection: it calls a method and acts on the returned
//!   outcome. Connections register themselves; `Rooms` owns membership; `close` is the one
//!   exit, used by every path that ends a connection.
//! * Timers are a sweep once per tick: O(1) per connection, no syscall per connection.
//! * A panic while handling a connection's input drops that connection and is counted; the
//!   worker and its other connections go on.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use oskit::timerfd::Ticker;
use slab::Slab;

use crate::admission::Admission;
use crate::budget::Budget;
use crate::connection::{Connection, Env, Flush, Limits, Output, StatsPages, Step, RECV_BUFFER};
use crate::fanout::bus::{Bus, Envelope};
use crate::fanout::rooms::Rooms;
use crate::protocol::http::Endpoint;
use crate::runtime::event_log::EventLog;
use crate::runtime::metrics_listener;
use crate::runtime::server::MAP_LARGE_ALLOCATIONS;
use crate::runtime::transport::Transport;
use crate::stats::{Counters, PassTimes, SharedCounters, SharedPassTimes};

/// Token of the worker's listener.
pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the worker's inbox waker.
pub(crate) const WAKER: Token = Token(usize::MAX - 2);
/// Token of the worker's tick timer.
const TICK: Token = Token(usize::MAX - 3);
/// One loop pass in this many is timed for the pass-duration histogram.
const PASS_SAMPLE: u64 = 8;
/// Accepts per pass before other work gets a turn.
const ACCEPT_BATCH: usize = 256;
/// Inbox messages handled per pass.
const INBOX_BATCH: usize = 4096;
/// Retry delay after accept failed for lack of descriptors.
const ACCEPT_RETRY_MS: u64 = 100;

/// State shared by all workers, none of it on the per-message path.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Connections held against the server's capacity, across all workers.
    pub admission: Admission,
    /// Each worker's published counters, indexed by worker id.
    pub stats: Vec<SharedCounters>,
    /// Each worker's published loop-pass histogram, indexed by worker id.
    pub pass_times: Vec<SharedPassTimes>,
    /// Connections admitted before upgrades get 503 (for the metrics).
    pub capacity: usize,
    /// The public port answers `/metrics` and `/stats.json` (no separate metrics listener).
    pub public_stats: bool,
    /// The Redis bridge's counters, once it is started (for the metrics).
    pub bridge: std::sync::OnceLock<crate::bridge::StatsSource>,
}

/// Everything a worker thread is started with.
pub(crate) struct WorkerSetup {
    pub id: usize,
    pub core: Option<usize>,
    pub poll: Poll,
    pub listener: TcpListener,
    pub bus: Bus,
    pub limits: Limits,
    /// This worker's share of the memory budget, in bytes.
    pub memory_share: usize,
    pub shared: Arc<Shared>,
    pub shutdown_timeout: Duration,
}

/// A worker whose connections run over `T`: plain TCP, or TLS (see `transport`).
pub(crate) struct Worker<T: Transport = mio::net::TcpStream> {
    id: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Connection<T>>,
    /// Wraps each accepted socket in the transport.
    acceptor: T::Acceptor,
    rooms: Rooms,
    bus: Bus,
    /// The clock, limits, counters and registry lent to connections.
    env: Env,
    shared: Arc<Shared>,
    /// Connections with output queued this pass.
    flush_list: Vec<usize>,
    /// Connections to read again next pass (input may remain without a new event).
    read_list: Vec<usize>,
    /// An empty list kept for swapping with `flush_list` / `read_list`, so walking a list while
    /// handlers add to the next one costs no allocation per pass.
    spare: Vec<usize>,
    inbox: Vec<Envelope>,
    inbox_more: bool,
    start: Instant,
    tick_ms: u64,
    next_tick: u64,
    /// Fires every `tick_ms`, so the loop can sleep without a timeout.
    ticker: Ticker,
    /// When to try accepting again after stopping early (batch limit or EMFILE).
    accept_at: Option<u64>,
    accept_error_logged: bool,
    shutdown_timeout: Duration,
    shutdown_deadline: Option<u64>,
    /// Most connections holding tungstenite state at a tick since the last heap trim.
    parsing_high: usize,
    /// Budget charges given back since the last heap trim.
    released: usize,
    /// Repeated events, logged once per second with a count.
    event_log: EventLog,
    /// A descriptor held in reserve so that, out of descriptors, a waiting connection can
    /// still be accepted and answered rather than left in the queue.
    spare_fd: Option<std::fs::File>,
    /// Durations of a sample of this worker's loop passes, published with the counters.
    pass_times: PassTimes,
    /// Passes so far, to time one in `PASS_SAMPLE`.
    passes: u64,
}

impl<T: Transport> Worker<T> {
    /// A worker whose `acceptor` wraps accepted sockets in its transport (TLS sessions with
    /// the current certificate, or nothing for plain TCP).
    pub fn new(setup: WorkerSetup, acceptor: T::Acceptor) -> io::Result<Worker<T>> {
        let WorkerSetup {
            id,
            core,
            poll,
            mut listener,
            bus,
            limits,
            memory_share,
            shared,
            shutdown_timeout,
        } = setup;
        if let Some(core) = core {
            if !oskit::cpu::pin_current_thread(core) {
                tracing::warn!(
                    worker = id,
                    core,
                    "could not pin worker to core; running unpinned"
                );
            }
        }
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let tick_ms = tick_interval(&limits);
        let mut ticker = Ticker::new(Duration::from_millis(tick_ms))?;
        poll.registry()
            .register(&mut ticker, TICK, Interest::READABLE)?;
        let stats_pages = shared.public_stats.then(|| {
            let shared = shared.clone();
            StatsPages(Box::new(move |page| metrics_listener::page(&shared, page)))
        });
        let env = Env {
            now: 0,
            limits,
            registry: poll.registry().try_clone()?,
            counters: Counters::default(),
            budget: Budget::new(memory_share),
            published: Vec::new(),
            stats_pages,
            recv: vec![0; RECV_BUFFER],
        };
        Ok(Worker {
            id,
            poll,
            listener: Some(listener),
            conns: Slab::with_capacity(first_slab_slots::<Connection<T>>()),
            acceptor,
            rooms: Rooms::default(),
            bus,
            env,
            shared,
            flush_list: Vec::new(),
            read_list: Vec::new(),
            spare: Vec::new(),
            inbox: Vec::new(),
            inbox_more: false,
            start: Instant::now(),
            tick_ms,
            next_tick: tick_ms,
            ticker,
            accept_at: None,
            accept_error_logged: false,
            shutdown_timeout,
            shutdown_deadline: None,
            parsing_high: 0,
            released: 0,
            event_log: EventLog::default(),
            spare_fd: Some(std::fs::File::open("/dev/null")?),
            pass_times: PassTimes::default(),
            passes: 0,
        })
    }

    /// Runs the loop until shutdown completes; returns the final counters.
    pub fn run(mut self) -> Counters {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.id, error = %e, "poll failed; worker stopping");
                    break;
                }
            }
            let woke = Instant::now();
            self.env.now = woke.duration_since(self.start).as_millis() as u64;
            let mut ticked = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    TICK => ticked = self.ticker.acknowledge() > 0,
                    WAKER => self.inbox_more = true,
                    Token(key) => {
                        if event.is_writable() {
                            self.flush(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key);
                        }
                    }
                }
            }
            if self.accept_at.is_some_and(|at| self.env.now >= at) {
                self.accept_at = None;
                self.accept();
            }
            if self.inbox_more {
                self.handle_inbox();
            }
            let batch = take_batch(&mut self.read_list, &mut self.spare);
            for &key in &batch {
                self.read(key);
            }
            self.spare = recycle(batch);
            self.flush_all();
            self.bus.end_pass();
            // The ticker may fire a hair before `next_tick` by our millisecond clock; its event
            // is the tick all the same, or the sweep would wait a whole further interval.
            if ticked || self.env.now >= self.next_tick {
                self.tick();
            }
            // A clock read costs about as much as a tenth of an echo in user space, and at low
            // rates a pass is one message: time a sample of the passes, not every one.
            self.passes += 1;
            if self.passes.is_multiple_of(PASS_SAMPLE) {
                self.pass_times.record(woke.elapsed());
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || self.env.now >= deadline {
                    break;
                }
            }
        }
        let dropped = self.conns.len();
        if dropped > 0 {
            tracing::warn!(
                worker = self.id,
                dropped,
                "shutdown timeout: dropping connections"
            );
        }
        for key in self.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.close(key);
        }
        self.publish_counters();
        self.env.counters
    }

    /// How long `poll` may sleep: not at all with work pending, briefly for the rare waits the
    /// ticker does not cover, else until an event (the ticker guarantees one per tick).
    fn poll_timeout(&self) -> Option<Duration> {
        let now = self.env.now;
        if !self.read_list.is_empty()
            || self.inbox_more
            || self.accept_at.is_some_and(|at| at <= now)
        {
            return Some(Duration::ZERO);
        }
        if self.bus.has_overflow() {
            return Some(Duration::from_millis(1));
        }
        self.accept_at
            .map(|at| Duration::from_millis(at.saturating_sub(now)))
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((tcp, _)) => {
                    if self.accept_error_logged {
                        self.accept_error_logged = false;
                        tracing::info!(worker = self.id, "accepting connections again");
                    }
                    self.admit(tcp);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    self.env.counters.accept_errors += 1;
                    if self.refuse_with_spare() {
                        continue;
                    }
                    // Without a free descriptor the pending connection stays queued and the
                    // edge-triggered listener will not fire again: retry on a timer, not a spin.
                    if !self.accept_error_logged {
                        self.accept_error_logged = true;
                        tracing::warn!(worker = self.id, error = %e, "accept failed; retrying every {ACCEPT_RETRY_MS} ms");
                    }
                    self.accept_at = Some(self.env.now + ACCEPT_RETRY_MS);
                    return;
                }
                Err(e) => tracing::debug!(worker = self.id, error = %e, "accept error"),
            }
        }
        self.accept_at = Some(self.env.now);
    }

    /// Out of descriptors: frees the one kept in reserve for this, accepts the next waiting
    /// connection with it, answers at once (`Transport::refuse_now`) and takes the spare
    /// back. False when there is no spare or nothing was accepted.
    fn refuse_with_spare(&mut self) -> bool {
        let (Some(listener), Some(spare)) = (&self.listener, self.spare_fd.take()) else {
            return false;
        };
        drop(spare);
        let accepted = listener.accept();
        let refused = match accepted {
            Ok((tcp, _)) => {
                T::refuse_now(tcp, &mut self.env);
                true
            }
            Err(_) => false,
        };
        // Another worker may take the freed descriptor first; then the spare is reopened at a
        // later tick.
        self.keep_spare();
        refused
    }

    /// Takes the reserve descriptor back if it was lost to another worker.
    fn keep_spare(&mut self) {
        if self.spare_fd.is_none() && self.listener.is_some() {
            self.spare_fd = std::fs::File::open("/dev/null").ok();
        }
    }

    fn admit(&mut self, tcp: mio::net::TcpStream) {
        let _ = tcp.set_nodelay(true);
        let Some(socket) = T::wrap(tcp, &mut self.acceptor) else {
            return;
        };
        let seat = self.shared.admission.admit();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= TICK.0 {
            if let Some(seat) = seat {
                self.shared.admission.release(seat);
            }
            return;
        }
        match Connection::accept(socket, Token(key), seat, &self.env) {
            Ok(conn) => {
                entry.insert(conn);
                self.env.counters.accepted += 1;
                self.env.counters.connections += 1;
            }
            Err((_, Some(seat))) => self.shared.admission.release(seat),
            Err((_, None)) => {}
        }
    }

    fn read(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let env = &mut self.env;
        let step = match catch_unwind(AssertUnwindSafe(|| conn.on_readable(env))) {
            Ok(step) => step,
            Err(_) => {
                self.env.counters.panics += 1;
                tracing::error!(
                    worker = self.id,
                    "connection handler panicked; connection dropped"
                );
                self.env.published.clear();
                Step::Close
            }
        };
        match step {
            Step::Idle => {}
            Step::Again => self.read_list.push(key),
            Step::Upgraded(endpoint) => {
                if let Endpoint::Room(name) = endpoint {
                    let changed = self.rooms.join(key, &name);
                    self.bus.rooms_changed(changed);
                }
                self.read_list.push(key);
            }
            Step::Close => {
                // What it published before going away still goes out.
                self.fan_out_published(key);
                self.close(key);
                return;
            }
        }
        self.fan_out_published(key);
        if self.env.budget.over() {
            self.shed();
            if !self.conns.contains(key) {
                return;
            }
        }
        match self.conns[key].output_after_read() {
            Output::Nothing => {}
            Output::Now => self.flush(key),
            Output::EndOfPass => self.flush_list.push(key),
        }
    }

    /// Fans out what `sender` just published: to the other local members now (the sender has
    /// queued its own copy), to other workers via the bus.
    fn fan_out_published(&mut self, sender: usize) {
        if self.env.published.is_empty() {
            return;
        }
        let mut published = std::mem::take(&mut self.env.published);
        match self.rooms.room_of(sender).cloned() {
            Some(room) => {
                for frame in published.drain(..) {
                    self.deliver_local(&room, &frame, Some(sender));
                    self.bus.publish(&room, &frame);
                }
            }
            None => published.clear(),
        }
        self.env.published = published;
    }

    fn deliver_local(&mut self, room: &str, frame: &Bytes, except: Option<usize>) {
        for &key in self.rooms.members(room) {
            if Some(key) == except {
                continue;
            }
            let conn = &mut self.conns[key];
            conn.deliver(frame, &mut self.env);
            if conn.claim_flush() {
                self.flush_list.push(key);
            }
        }
    }

    fn handle_inbox(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.inbox_more = self.bus.drain_inbox(INBOX_BATCH, &mut inbox);
        for envelope in inbox.drain(..) {
            match envelope {
                Envelope::Deliver { room, frame } => self.deliver_local(&room, &frame, None),
                Envelope::Shutdown => self.begin_shutdown(),
            }
        }
        self.inbox = inbox;
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.listener = None;
        self.accept_at = None;
        self.shutdown_deadline = Some(self.env.now + self.shutdown_timeout.as_millis() as u64);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            if conn.start_close(1001, "server shutting down", &mut self.env) {
                if conn.claim_flush() {
                    self.flush_list.push(key);
                }
            } else {
                self.close(key);
            }
        }
    }

    fn flush_all(&mut self) {
        let batch = take_batch(&mut self.flush_list, &mut self.spare);
        for &key in &batch {
            self.flush(key);
        }
        self.spare = recycle(batch);
    }

    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.flush(Token(key), &mut self.env) {
            Flush::Done => {}
            Flush::ReadAgain => self.read_list.push(key),
            Flush::Close => self.close(key),
        }
    }

    /// The one way a connection leaves: out of its room, its seat back, its socket closed.
    fn close(&mut self, key: usize) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        let changed = self.rooms.leave(key);
        self.bus.rooms_changed(changed);
        if conn.ends_without_close() {
            self.env.counters.count_close(1006);
        }
        // Dropping the socket closes it, which also removes it from the poller.
        if let Some(seat) = conn.finish(&mut self.env) {
            self.shared.admission.release(seat);
        }
        self.env.counters.connections -= 1;
        if self.accept_error_logged && self.listener.is_some() {
            self.accept_at = Some(self.env.now);
        }
    }

    /// The worker's connections hold more than its budget share: sheds those holding the most
    /// until they are back under the low-water mark (see `budget`).
    fn shed(&mut self) {
        let mut heaviest: Vec<(usize, usize)> = self
            .conns
            .iter()
            .map(|(key, conn)| (conn.charged(), key))
            .filter(|&(held, _)| held > 0)
            .collect();
        heaviest.sort_unstable_by(|a, b| b.cmp(a));
        let low_water = self.env.budget.low_water();
        for (_, key) in heaviest {
            if self.env.budget.held() <= low_water {
                break;
            }
            self.env.counters.sheds += 1;
            if self.conns[key].shed(&mut self.env) {
                self.flush(key);
            } else {
                self.close(key);
            }
        }
    }

    fn tick(&mut self) {
        self.keep_spare();
        let mut expired = Vec::new();
        let mut parsing = 0;
        for (key, conn) in self.conns.iter_mut() {
            if !conn.tick(&mut self.env) {
                expired.push(key);
                continue;
            }
            if conn.claim_flush() {
                self.flush_list.push(key);
            }
            parsing += usize::from(conn.holds_parser());
        }
        for key in expired {
            self.close(key);
        }
        self.trim_after_quiet(parsing);
        self.env.counters.rooms = self.rooms.len() as u64;
        self.env.counters.room_members = self.rooms.member_count() as u64;
        self.flush_all();
        self.publish_counters();
        self.event_log
            .report(self.id, self.env.now, &self.env.counters);
        self.next_tick = self.env.now + self.tick_ms;
    }

    /// Hands freed heap pages back to the OS once many connections have gone idle since the
    /// busiest tick (after a ramp, say), so idle connections cost what they hold now. Under
    /// steady traffic connections wake and rest at the same pace, the count stays level and
    /// the allocator keeps its free buffers for reuse: no trim.
    /// Large buffers are mapped on their own and go back to the OS when freed (see
    /// `Server::bind`); this covers the smaller ones that come from the heap, counting what
    /// the budget saw released as well.
    fn trim_after_quiet(&mut self, parsing: usize) {
        self.released += self.env.budget.take_released();
        let rested =
            self.parsing_high.saturating_sub(parsing) * self.env.limits.ws.read_buffer_size;
        if rested + self.released >= RELEASE_TRIM_BYTES {
            oskit::memory::release_free_memory();
            self.parsing_high = parsing;
            self.released = 0;
        } else {
            self.parsing_high = self.parsing_high.max(parsing);
        }
    }

    fn publish_counters(&mut self) {
        T::tally(&self.acceptor, &mut self.env.counters);
        self.env.counters.memory_held_bytes = self.env.budget.held() as u64;
        self.shared.stats[self.id].publish(&self.env.counters);
        self.shared.pass_times[self.id].publish(&self.pass_times);
    }
}

/// Bytes released (parser buffers of connections gone idle, budget charges given back) after
/// which free heap pages go back to the OS.
const RELEASE_TRIM_BYTES: usize = 4 << 20;

/// Slots the connection slab starts with: enough that its first allocation is mapped on its
/// own (see `Server::bind`), like every larger one it grows into. Grown from empty, its early
/// doublings (up to a quarter of a megabyte) came from the heap and were freed there, pages
/// that stay resident until a heap trim, and nothing trims the heap after a ramp of
/// connections that never woke tungstenite (issue #15). The mapping costs no memory until
/// connections fill it.
fn first_slab_slots<C>() -> usize {
    MAP_LARGE_ALLOCATIONS.div_ceil(std::mem::size_of::<C>().max(1))
}

/// Takes the entries of `list` for processing, leaving the spare's capacity in its place.
fn take_batch(list: &mut Vec<usize>, spare: &mut Vec<usize>) -> Vec<usize> {
    std::mem::replace(list, std::mem::take(spare))
}

/// Empties a processed batch so it can serve as the next spare.
fn recycle(mut batch: Vec<usize>) -> Vec<usize> {
    batch.clear();
    batch
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Tick period: a quarter of the shortest timeout, between 5 ms and 1 s, so deadlines fire
/// within 25% of their nominal value without sweeping needlessly often.
fn tick_interval(limits: &Limits) -> u64 {
    let mut shortest = limits.handshake_timeout_ms.min(limits.close_timeout_ms);
    if limits.rest_after_ms > 0 {
        shortest = shortest.min(limits.rest_after_ms * 4);
    }
    if limits.idle_timeout_ms > 0 {
        shortest = shortest.min(limits.idle_timeout_ms / 2);
    }
    (shortest / 4).clamp(5, 1000)
}

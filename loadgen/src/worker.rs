//! One worker thread: its own mio loop driving its share of the connections through the phases
//! of a run.
//!
//! Phases: `Ramp` (open connections on the connect schedule) → `Ready` (all settled; wait for
//! the common start time) → `Traffic` (send on the schedule or closed loop, check every reply) →
//! `Drain` (stop sending, wait for replies in flight) → `Closing` (closing handshakes) → done.
//! The engine coordinates workers only through `Shared` atomics and a channel of `Sample`s, so
//! the hot path never takes a lock.
//!
//! Loop invariant: every pass ends by arming the timer at the earliest deadline the current phase
//! has (next send, next connect, a connect timeout, the phase's end, the next progress sample),
//! so the loop sleeps in `poll` exactly until there is something to do.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::connection::{open_socket, Connection, FailReason, SendError, Step};
use crate::payload::{self, Encoder, Header};
use crate::plan::{Load, Mode, Plan};
use crate::schedule::Schedule;
use crate::sequence::SeqTracker;
use crate::stats::{new_histogram, record, Sample, Stats};
use crate::timer::Timer;
use oskit::clock::{micros_between, now_ns};

/// Token of the worker's timer; connection tokens are slab keys, far below it.
const TIMER: Token = Token(usize::MAX - 1);

/// How often a worker sends a progress sample.
const SAMPLE_EVERY_NS: u64 = 250_000_000;

/// Longest a worker sleeps without looking at the shared flags.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Most scheduled actions taken in one loop pass before socket events are served again.
const BATCH: usize = 1024;

/// Broadcast drain: the run is over once no delivery arrived for this long after the traffic.
const QUIET_NS: u64 = 500_000_000;

/// How long closing handshakes may take before the sockets are simply dropped.
const CLOSE_GRACE_NS: u64 = 1_000_000_000;

/// Coordination state shared by the engine and all workers of one process.
#[derive(Debug, Default)]
pub struct Shared {
    /// Traffic start time (CLOCK_MONOTONIC ns); 0 until the engine sets it.
    pub start_ns: AtomicU64,
    /// Set to stop the run early: workers skip straight to closing.
    pub abort: AtomicBool,
    /// Workers that finished their ramp.
    pub ramped: AtomicUsize,
}

/// What a worker is given.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Global worker index (across shards): offsets this worker's schedules.
    pub index: usize,
    /// Global worker count.
    pub of: usize,
    /// Core to pin to, if any.
    pub core: Option<usize>,
    /// Global indices of the connections this worker owns.
    pub conn_ids: Vec<u32>,
}

/// Why a worker could not run at all.
#[derive(Debug, thiserror::Error)]
#[error("worker setup failed: {0}")]
pub struct WorkerError(#[from] io::Error);

/// The phases of a run, as seen by one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Opening connections on the connect schedule.
    Ramp,
    /// All connections settled; waiting for the common start time.
    Ready,
    /// Sending and receiving.
    Traffic,
    /// Not sending; waiting for replies still in flight until `until`.
    Drain { until: u64 },
    /// Closing handshakes until `until`.
    Closing { until: u64 },
    /// Finished.
    Done,
}

/// One connection and the bookkeeping the worker keeps for it.
#[derive(Debug)]
struct Conn {
    /// Global connection index: identifies it in payloads.
    id: u32,
    /// When its connect started (ns), for the timeout and the connect time.
    started_ns: u64,
    /// The socket and protocol state.
    conn: Connection,
    /// Messages it has sent: the next sequence number.
    sent: u64,
    /// Closed loop: messages sent and not yet come back.
    inflight: u32,
    /// Echo mode: arrivals of its own messages.
    echo: SeqTracker,
    /// Broadcast mode: arrivals per publisher, sorted by publisher index.
    heard: Vec<(u32, SeqTracker)>,
}

/// The receive side of the worker: everything a message callback touches, borrowed apart from
/// the connection the callback runs inside.
struct Receiver<'a> {
    /// Mode and message size, to check payloads.
    plan: &'a Plan,
    /// Where counters and the latency histogram go.
    stats: &'a mut Stats,
    /// Latencies for the next progress sample.
    interval: &'a mut Histogram<u64>,
    /// Messages intended before this are warmup: counted, not in the histogram.
    measure_from: u64,
    /// Updated on every arrival (broadcast drain).
    last_delivery_ns: &'a mut u64,
}

/// A worker thread's state.
pub struct Worker {
    /// The run.
    plan: Arc<Plan>,
    /// This worker's index, core and connections.
    spec: WorkerSpec,
    /// Start time and abort flag from the engine; ramp-done count to it.
    shared: Arc<Shared>,
    /// Progress samples to the engine, tagged with `spec.index`.
    samples: Sender<(usize, Sample)>,
    /// This thread's event loop.
    poll: Poll,
    /// Wakes `poll` at the next deadline.
    timer: Timer,
    /// Connections by token.
    conns: Slab<Conn>,
    /// What this worker measured.
    stats: Stats,
    /// Latencies since the last sample.
    interval: Histogram<u64>,
    /// Where in the run this worker is.
    phase: Phase,
    /// Connection attempts, paced.
    connects: Schedule,
    /// Next entry of `spec.conn_ids` to connect.
    next_conn: usize,
    /// Connections still establishing: (slab key, id, started), oldest first.
    pending: VecDeque<(usize, u32, u64)>,
    /// Open-loop sends, paced (set when traffic starts).
    sends: Option<Schedule>,
    /// Slab keys of open sending connections, for round-robin.
    senders: Vec<usize>,
    /// Round-robin cursor into `senders`.
    cursor: usize,
    /// This worker's first send slot (the common start plus its offset).
    start_ns: u64,
    /// First measured instant (common to all workers).
    measure_from: u64,
    /// End of this worker's send window.
    end_ns: u64,
    /// Last time a message arrived (broadcast drain).
    last_delivery_ns: u64,
    /// Own messages sent by live connections and not yet back (echo drain).
    outstanding: u64,
    /// When the next sample is due.
    next_sample_ns: u64,
    /// Builds outgoing messages without an allocation per message.
    encoder: Encoder,
}

impl Worker {
    /// Prepares a worker; call `run` on its own thread.
    pub fn new(
        plan: Arc<Plan>,
        spec: WorkerSpec,
        shared: Arc<Shared>,
        samples: Sender<(usize, Sample)>,
    ) -> Result<Worker, WorkerError> {
        let poll = Poll::new()?;
        let mut timer = Timer::new()?;
        poll.registry()
            .register(timer.source(), TIMER, Interest::READABLE)?;
        let now = now_ns();
        let rate = plan.connect_rate * spec.conn_ids.len() as f64 / plan.conns as f64;
        let offset = (1e9 / plan.connect_rate * spec.index as f64) as u64;
        let connects = Schedule::new(now + offset, rate, u64::MAX, spec.conn_ids.len() as u64);
        Ok(Worker {
            conns: Slab::with_capacity(spec.conn_ids.len()),
            plan,
            spec,
            shared,
            samples,
            poll,
            timer,
            stats: Stats::default(),
            interval: new_histogram(),
            phase: Phase::Ramp,
            connects,
            next_conn: 0,
            pending: VecDeque::new(),
            sends: None,
            senders: Vec::new(),
            cursor: 0,
            start_ns: 0,
            measure_from: 0,
            end_ns: 0,
            last_delivery_ns: 0,
            outstanding: 0,
            next_sample_ns: now,
            encoder: Encoder::default(),
        })
    }

    /// Runs every phase to the end and returns what this worker measured.
    pub fn run(mut self) -> Stats {
        if let Some(core) = self.spec.core {
            oskit::cpu::pin_current_thread(core);
        }
        let mut events = Events::with_capacity(1024);
        while self.phase != Phase::Done {
            let now = now_ns();
            self.tick(now);
            if self.phase == Phase::Done {
                break;
            }
            let deadline = self.next_deadline(now);
            let in_traffic = matches!(self.phase, Phase::Traffic | Phase::Drain { .. });
            let wait = if deadline <= now || (in_traffic && self.plan.busy_poll) {
                Some(Duration::ZERO)
            } else {
                if in_traffic {
                    self.stats.counters.traffic_sleeps += 1;
                }
                // The timer wakes us on time; the timeout only bounds how stale flags get.
                let _ = self.timer.arm_at(deadline);
                Some(MAX_SLEEP)
            };
            if let Err(e) = self.poll.poll(&mut events, wait) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.stats.aborted = true;
                    self.phase = Phase::Done;
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    TIMER => self.timer.acknowledge(),
                    Token(key) => self.on_ready(key),
                }
            }
        }
        self.send_sample(true);
        self.stats
    }

    /// Phase transitions and everything scheduled up to `now`.
    fn tick(&mut self, now: u64) {
        if self.shared.abort.load(Ordering::Relaxed)
            && !matches!(self.phase, Phase::Closing { .. } | Phase::Done)
        {
            self.stats.aborted = true;
            self.begin_closing(now);
        }
        match self.phase {
            Phase::Ramp => {
                self.connect_due(now);
                self.expire_connects(now);
                if self.next_conn == self.spec.conn_ids.len() && self.pending.is_empty() {
                    self.phase = Phase::Ready;
                    self.send_sample(true);
                    self.shared.ramped.fetch_add(1, Ordering::AcqRel);
                }
            }
            Phase::Ready => {
                let start = self.shared.start_ns.load(Ordering::Acquire);
                if start != 0 && now >= start {
                    self.start_traffic(start);
                }
            }
            Phase::Traffic => {
                if now >= self.start_ns {
                    self.send_due(now);
                }
                // A late wake-up still sends every slot of the window before the traffic ends.
                let slots_left = self.sends.as_ref().is_some_and(|s| s.peek().is_some());
                if now >= self.end_ns && !slots_left {
                    self.phase = Phase::Drain {
                        until: now + self.plan.drain_timeout.as_nanos() as u64,
                    };
                    self.last_delivery_ns = self.last_delivery_ns.max(now);
                }
            }
            Phase::Drain { until } => {
                let settled = match self.plan.mode {
                    Mode::Echo => self.outstanding == 0,
                    Mode::Broadcast => now >= self.last_delivery_ns + QUIET_NS,
                };
                if settled || now >= until {
                    self.begin_closing(now);
                }
            }
            Phase::Closing { until } => {
                if self.conns.is_empty() || now >= until {
                    self.conns.clear();
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        if now >= self.next_sample_ns {
            self.send_sample(false);
            self.next_sample_ns = now + SAMPLE_EVERY_NS;
        }
    }

    /// The earliest instant the current phase needs the loop awake.
    fn next_deadline(&self, now: u64) -> u64 {
        let mut at = self.next_sample_ns;
        let timeout = self.plan.connect_timeout.as_nanos() as u64;
        match self.phase {
            Phase::Ramp => {
                if let Some(t) = self.connects.peek() {
                    at = at.min(t);
                }
                if let Some(&(_, _, started)) = self.pending.front() {
                    at = at.min(started + timeout);
                }
            }
            Phase::Ready => match self.shared.start_ns.load(Ordering::Acquire) {
                0 => at = at.min(now + 2_000_000),
                start => at = at.min(start),
            },
            Phase::Traffic => {
                // Closed loop: replies wake the loop; only the end of the traffic is timed.
                at = at.min(self.end_ns);
                if let Some(t) = self.sends.as_ref().and_then(Schedule::peek) {
                    at = at.min(t);
                }
            }
            Phase::Drain { until } => {
                at = at.min(until);
                if self.plan.mode == Mode::Broadcast {
                    at = at.min(self.last_delivery_ns + QUIET_NS);
                }
            }
            Phase::Closing { until } => at = at.min(until),
            Phase::Done => at = now,
        }
        at
    }

    fn connect_due(&mut self, now: u64) {
        for _ in 0..BATCH {
            if self.connects.pop_due(now).is_none() {
                return;
            }
            let id = self.spec.conn_ids[self.next_conn];
            self.next_conn += 1;
            self.start_connection(id, now);
        }
    }

    fn start_connection(&mut self, id: u32, now: u64) {
        self.stats.counters.attempted += 1;
        let target = &self.plan.targets[self.plan.target_of(id)];
        let stream = match open_socket(target.addr, self.plan.source_of(id)) {
            Ok(s) => s,
            Err(e) => {
                self.stats.counters.fail(FailReason::from_io(&e));
                return;
            }
        };
        let nonce = ((id as u64) << 32) ^ now;
        let conn = Connection::new(stream, &target.host, &target.path, nonce, self.plan.size);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let conn = entry.insert(Conn {
            id,
            started_ns: now,
            conn,
            sent: 0,
            inflight: 0,
            echo: SeqTracker::default(),
            heard: Vec::new(),
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered = match conn.conn.stream_mut() {
            Some(stream) => self.poll.registry().register(stream, Token(key), interest),
            None => Err(io::Error::other("socket missing")),
        };
        if let Err(e) = registered {
            self.conns.remove(key);
            self.stats.counters.fail(FailReason::from_io(&e));
            return;
        }
        self.pending.push_back((key, id, now));
    }

    /// Fails connections that have been establishing longer than the connect timeout.
    fn expire_connects(&mut self, now: u64) {
        let timeout = self.plan.connect_timeout.as_nanos() as u64;
        while let Some(&(key, id, started)) = self.pending.front() {
            let live = self
                .conns
                .get(key)
                .is_some_and(|c| c.id == id && c.conn.is_establishing());
            if live && started + timeout > now {
                return;
            }
            self.pending.pop_front();
            if live {
                self.conns.remove(key);
                self.stats.counters.fail(FailReason::Timeout);
            }
        }
    }

    fn start_traffic(&mut self, start: u64) {
        let plan = Arc::clone(&self.plan);
        // Open loop: this worker's share of the rate, its slots shifted by a fraction of a
        // period so the workers' sends interleave instead of all firing at `start`. The whole
        // window shifts with them, so every worker still gets exactly rate × time slots.
        let mine = self
            .spec
            .conn_ids
            .iter()
            .filter(|&&id| plan.is_sender(id))
            .count();
        let (rate, offset) = match plan.load {
            // `--rate 0` (idle): no slots, no offset (a zero rate has no period to divide).
            Load::Open { rate } if mine > 0 && rate > 0.0 => {
                let rate = rate * mine as f64 / plan.senders() as f64;
                let offset = 1e9 / rate * self.spec.index as f64 / self.spec.of as f64;
                (rate, offset as u64)
            }
            _ => (0.0, 0),
        };
        self.start_ns = start + offset;
        // The measured window is common to all workers (offsets are shorter than a period, so
        // each worker's first measured slot still falls in it): a receiver judges messages of
        // publishers on other workers by the same instant.
        self.measure_from = start + plan.warmup.as_nanos() as u64;
        self.end_ns = self.start_ns + (plan.warmup + plan.duration).as_nanos() as u64;
        self.stats.window_end_ns = self.end_ns;
        self.phase = Phase::Traffic;
        self.senders = self
            .conns
            .iter()
            .filter(|(_, c)| c.conn.is_open() && plan.is_sender(c.id))
            .map(|(k, _)| k)
            .collect();
        if plan.mode == Mode::Broadcast {
            for (_, c) in self.conns.iter().filter(|(_, c)| c.conn.is_open()) {
                let room = plan.rooms[plan.target_of(c.id)];
                *self.stats.room_members.entry(room).or_default() += 1;
            }
            for (_, c) in self.conns.iter().filter(|(_, c)| plan.is_sender(c.id)) {
                let room = plan.rooms[plan.target_of(c.id)];
                self.stats.publishers.entry(c.id).or_default().room = room;
            }
        }
        match plan.load {
            Load::Open { .. } => {
                self.sends = Some(Schedule::new(self.start_ns, rate, self.end_ns, u64::MAX));
            }
            Load::Closed { inflight } => {
                // The first window goes out at the start; replies trigger the rest.
                let now = now_ns().max(start);
                for key in self.senders.clone() {
                    for _ in 0..inflight {
                        self.send_from(key, now);
                    }
                }
            }
        }
    }

    /// Open loop: takes every slot that is due and sends it from the next sender in turn.
    fn send_due(&mut self, now: u64) {
        let Some(sends) = self.sends.as_mut() else {
            return;
        };
        let mut due = Vec::new();
        while due.len() < BATCH {
            match sends.pop_due(now) {
                Some(at) => due.push(at),
                None => break,
            }
        }
        for intended in due {
            record(&mut self.stats.lag, micros_between(intended, now));
            match self.next_sender() {
                Some(key) => self.send_from(key, intended),
                None => self.stats.counters.unsent += 1,
            }
        }
    }

    /// The next open sender, round-robin; closed ones are dropped from the rotation.
    fn next_sender(&mut self) -> Option<usize> {
        while !self.senders.is_empty() {
            self.cursor %= self.senders.len();
            let key = self.senders[self.cursor];
            if self.conns.get(key).is_some_and(|c| c.conn.is_open()) {
                self.cursor += 1;
                return Some(key);
            }
            self.senders.swap_remove(self.cursor);
        }
        None
    }

    /// Sends the next message of connection `key`, stamped with `intended`.
    fn send_from(&mut self, key: usize, intended: u64) {
        let size = self.plan.size;
        let Some(c) = self.conns.get_mut(key) else {
            self.stats.counters.unsent += 1;
            return;
        };
        let header = Header {
            sender: c.id,
            seq: c.sent,
            intended_ns: intended,
        };
        match c.conn.send(self.encoder.message(header, size)) {
            Ok(()) => {
                c.sent += 1;
                c.inflight += 1;
                self.outstanding += 1;
                self.stats.counters.sent += 1;
                if intended >= self.measure_from {
                    self.stats.counters.sent_measured += 1;
                }
                if self.plan.mode == Mode::Broadcast {
                    self.stats.publishers.entry(c.id).or_default().sent += 1;
                }
            }
            Err(SendError::Full) | Err(SendError::NotOpen) => self.stats.counters.unsent += 1,
            Err(SendError::Failed(reason)) => {
                self.stats.counters.unsent += 1;
                self.finish(key, Some(reason));
            }
        }
    }

    /// A socket event for connection `key`.
    fn on_ready(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let was_establishing = c.conn.is_establishing();
        let mut rx = Receiver {
            plan: &self.plan,
            stats: &mut self.stats,
            interval: &mut self.interval,
            measure_from: self.measure_from,
            last_delivery_ns: &mut self.last_delivery_ns,
        };
        let (id, sent, echo, heard) = (c.id, c.sent, &mut c.echo, &mut c.heard);
        let mut replies = 0u32;
        let step = c.conn.drive(&mut |bytes| {
            if rx.on_message(id, sent, echo, heard, bytes) {
                replies += 1;
            }
        });
        let replies = replies.min(c.inflight);
        c.inflight -= replies;
        self.outstanding -= replies as u64;
        match step {
            Step::Pending => {}
            Step::Opened => {
                self.stats.counters.established += 1;
                record(
                    &mut self.stats.connect,
                    micros_between(c.started_ns, now_ns()),
                );
            }
            Step::Finished(reason) => {
                if was_establishing {
                    self.stats
                        .counters
                        .fail(reason.unwrap_or(FailReason::ClosedByServer));
                    self.conns.remove(key);
                } else {
                    self.finish(key, reason);
                }
                return;
            }
        }
        // Closed loop: every own message that came back frees a slot for the next one.
        if replies > 0
            && self.phase == Phase::Traffic
            && matches!(self.plan.load, Load::Closed { .. })
        {
            let now = now_ns();
            if now < self.end_ns {
                for _ in 0..replies {
                    self.send_from(key, now);
                }
            }
        }
    }

    /// Removes connection `key`; a reason outside the closing phase counts as a drop.
    fn finish(&mut self, key: usize, reason: Option<FailReason>) {
        let Some(c) = self.conns.try_remove(key) else {
            return;
        };
        self.outstanding -= c.inflight as u64;
        if !matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
            self.stats
                .counters
                .drop_conn(reason.unwrap_or(FailReason::ClosedByServer));
        }
    }

    fn begin_closing(&mut self, now: u64) {
        self.phase = Phase::Closing {
            until: now + CLOSE_GRACE_NS,
        };
        self.pending.clear();
        self.conns.retain(|_, c| !c.conn.begin_close());
    }

    fn send_sample(&mut self, ramped_now: bool) {
        let interval = std::mem::replace(&mut self.interval, new_histogram());
        let ramped = ramped_now || !matches!(self.phase, Phase::Ramp);
        let sample = Sample {
            counters: self.stats.counters.clone(),
            interval,
            ramped,
        };
        let _ = self.samples.send((self.spec.index, sample));
    }
}

impl Receiver<'_> {
    /// Checks and records one received message; returns true when it is one of the receiving
    /// connection's own messages coming back (which frees a closed-loop slot).
    fn on_message(
        &mut self,
        id: u32,
        sent: u64,
        echo: &mut SeqTracker,
        heard: &mut Vec<(u32, SeqTracker)>,
        bytes: &[u8],
    ) -> bool {
        // Read the clock per message: one `drive` may read for a while, and a message that
        // arrived during it must not be timed against an earlier instant.
        let now = now_ns();
        *self.last_delivery_ns = now;
        let counters = &mut self.stats.counters;
        let Ok(header) = payload::decode(bytes, self.plan.size) else {
            counters.corrupt += 1;
            return false;
        };
        let arrival = match self.plan.mode {
            Mode::Echo => {
                let seq = echo.widen(header.seq as u32);
                if header.sender != id || seq >= sent {
                    counters.corrupt += 1;
                    return false;
                }
                echo.observe(seq)
            }
            Mode::Broadcast => {
                if !self.plan.is_sender(header.sender) {
                    counters.corrupt += 1;
                    return false;
                }
                let at = match heard.binary_search_by_key(&header.sender, |(p, _)| *p) {
                    Ok(at) => at,
                    Err(at) => {
                        heard.insert(at, (header.sender, SeqTracker::default()));
                        at
                    }
                };
                let tracker = &mut heard[at].1;
                let arrival = tracker.observe(tracker.widen(header.seq as u32));
                let publisher = self.stats.publishers.entry(header.sender).or_default();
                publisher.delivered += arrival.is_new() as u64;
                publisher.duplicates += !arrival.is_new() as u64;
                publisher.out_of_order += arrival.is_out_of_order() as u64;
                arrival
            }
        };
        let counters = &mut self.stats.counters;
        if !arrival.is_new() {
            counters.duplicates += 1;
            return false;
        }
        counters.received += 1;
        counters.out_of_order += arrival.is_out_of_order() as u64;
        let latency = micros_between(header.intended_ns, now);
        record(self.interval, latency);
        if header.intended_ns >= self.measure_from {
            counters.received_measured += 1;
            record(&mut self.stats.latency, latency);
            self.stats.last_measured_ns = self.stats.last_measured_ns.max(now);
        }
        header.sender == id
    }
}

//! One worker thread: its own mio loop driving its share of the connections through the phases
//! of a run.
//!
//! Phases: `Ramp` (open connections on the connect schedule) → `Ready` (all settled; wait for
//! the common start time) → `Traffic` (send on the schedule or closed loop, check every reply) →
//! `Drain` (stop sending, wait for replies in flight) → `Closing` (closing handshakes) → done.
//! The engine coordinates workers only through `Shared` atomics and a channel of `Sample`s, so
//! the hot path never takes a lock.
//!
//! The worker owns the loop, the sockets and the phase; the decisions are its parts': `Ramp`
//! (when to attempt a connection, which attempts timed out), `Pacing` (who sends next and when),
//! `Receiver` (is a received message right, and how late) and `Sampler` (progress samples).
//!
//! Loop invariant: every pass ends by arming the timer at the earliest deadline the current phase
//! has (next send, next connect, a connect timeout, the phase's end, the next progress sample),
//! so the loop sleeps in `poll` exactly until there is something to do.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::connection::{open_socket, Connection, FailReason, SendError, Step, RECV_BUFFER};
use crate::pacing::Pacing;
use crate::payload::{Encoder, Header};
use crate::plan::{Mode, Plan};
use crate::ramp::Ramp;
use crate::receive::{Heard, Receiver, Tallies};
use crate::sampling::Sampler;
use crate::stats::{record, Sample, Stats};
use crate::timer::Timer;
use oskit::clock::{micros_between, now_ns};

/// Token of the worker's timer; connection tokens are slab keys, far below it.
const TIMER: Token = Token(usize::MAX - 1);

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
    /// When its connect started (ns), for the connect time.
    started_ns: u64,
    /// The socket and protocol state.
    conn: Connection,
    /// Messages it has sent: the next sequence number.
    sent: u64,
    /// Own messages sent and not yet come back.
    inflight: u32,
    /// Order bookkeeping of what it received.
    heard: Heard,
}

/// A worker thread's state.
pub struct Worker {
    /// The run.
    plan: Arc<Plan>,
    /// This worker's global index and the global worker count.
    index: (usize, usize),
    /// Core to pin to, if any.
    core: Option<usize>,
    /// Start time and abort flag from the engine; ramp-done count to it.
    shared: Arc<Shared>,
    /// This thread's event loop.
    poll: Poll,
    /// Wakes `poll` at the next deadline.
    timer: Timer,
    /// Connections by token.
    conns: Slab<Conn>,
    /// What this worker measured.
    stats: Stats,
    /// Where in the run this worker is.
    phase: Phase,
    /// Connection attempts and their timeouts.
    ramp: Ramp,
    /// When the ramp began (ns): the ramp figures count from here.
    ramp_began: u64,
    /// Who sends next and when (set when the traffic starts).
    pacing: Pacing,
    /// First measured instant (common to all workers).
    measure_from: u64,
    /// Last time a message arrived (broadcast drain).
    last_delivery_ns: u64,
    /// Own messages sent by live connections and not yet back (echo drain).
    outstanding: u64,
    /// Progress samples to the engine.
    sampler: Sampler,
    /// Builds outgoing messages without an allocation per message.
    encoder: Encoder,
    /// Every socket read of this worker lands here; complete messages are checked in place.
    recv: Vec<u8>,
    /// Per-publisher delivery counts, folded into `stats` when the run ends.
    tallies: Tallies,
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
        Ok(Worker {
            conns: Slab::with_capacity(spec.conn_ids.len()),
            ramp: Ramp::new(&plan, spec.index, spec.conn_ids, now),
            ramp_began: now,
            plan,
            index: (spec.index, spec.of),
            core: spec.core,
            shared,
            poll,
            timer,
            stats: Stats::default(),
            phase: Phase::Ramp,
            pacing: Pacing::default(),
            measure_from: 0,
            last_delivery_ns: 0,
            outstanding: 0,
            sampler: Sampler::new(spec.index, samples, now),
            encoder: Encoder::default(),
            recv: vec![0; RECV_BUFFER],
            tallies: Tallies::default(),
        })
    }

    /// Runs every phase to the end and returns what this worker measured.
    pub fn run(mut self) -> Stats {
        if let Some(core) = self.core {
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
                    self.end_ramp(now_ns());
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
        self.abandon_attempts();
        self.tallies.fold_into(&mut self.stats);
        self.sampler.send(&self.stats.counters, true);
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
                if self.ramp.is_done() {
                    self.end_ramp(now);
                    self.phase = Phase::Ready;
                    self.sampler.send(&self.stats.counters, true);
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
                self.send_due(now);
                if self.pacing.is_over(now) {
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
        let ramped = self.phase != Phase::Ramp;
        self.sampler.tick(now, &self.stats.counters, ramped);
    }

    /// The earliest instant the current phase needs the loop awake.
    fn next_deadline(&self, now: u64) -> u64 {
        let at = self.sampler.next_deadline();
        match self.phase {
            Phase::Ramp => self.ramp.next_deadline().map_or(at, |t| at.min(t)),
            Phase::Ready => match self.shared.start_ns.load(Ordering::Acquire) {
                0 => at.min(now + 2_000_000),
                start => at.min(start),
            },
            Phase::Traffic => at.min(self.pacing.next_deadline()),
            Phase::Drain { until } if self.plan.mode == Mode::Broadcast => {
                at.min(until).min(self.last_delivery_ns + QUIET_NS)
            }
            Phase::Drain { until } | Phase::Closing { until } => at.min(until),
            Phase::Done => now,
        }
    }

    /// Starts every connection attempt due at `now` (at most a batch).
    fn connect_due(&mut self, now: u64) {
        for _ in 0..BATCH {
            let Some(id) = self.ramp.due(now) else {
                return;
            };
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
        let session = match (&self.plan.tls, target.tls) {
            (Some(config), true) => match crate::tls::session(config, &target.server_name) {
                Ok(session) => Some(session),
                Err(e) => {
                    self.stats.counters.fail(FailReason::from_io(&e));
                    return;
                }
            },
            _ => None,
        };
        let nonce = ((id as u64) << 32) ^ now;
        let conn = Connection::new(
            stream,
            &target.host,
            &target.path,
            nonce,
            self.plan.size,
            session,
        );
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let conn = entry.insert(Conn {
            id,
            started_ns: now,
            conn,
            sent: 0,
            inflight: 0,
            heard: Heard::default(),
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
        self.ramp.started(key, id, now);
    }

    /// Fails connections that have been establishing longer than the connect timeout.
    fn expire_connects(&mut self, now: u64) {
        let establishing = |conns: &Slab<Conn>, key: usize, id: u32| {
            conns
                .get(key)
                .is_some_and(|c| c.id == id && c.conn.is_establishing())
        };
        while let Some(key) = self
            .ramp
            .timed_out(now, |key, id| establishing(&self.conns, key, id))
        {
            self.conns.remove(key);
            self.stats.counters.fail(FailReason::Timeout);
        }
    }

    fn start_traffic(&mut self, start: u64) {
        let plan = Arc::clone(&self.plan);
        let mine = self
            .ramp
            .ids()
            .iter()
            .filter(|&&id| plan.is_sender(id))
            .count();
        let senders = self
            .conns
            .iter()
            .filter(|(_, c)| c.conn.is_open() && plan.is_sender(c.id))
            .map(|(k, _)| k)
            .collect();
        self.pacing = Pacing::new(&plan, self.index, mine, start, senders);
        // The measured window is common to all workers (offsets are shorter than a period, so
        // each worker's first measured slot still falls in it): a receiver judges messages of
        // publishers on other workers by the same instant.
        self.measure_from = start + plan.warmup.as_nanos() as u64;
        self.stats.window_end_ns = self.pacing.end_ns();
        self.phase = Phase::Traffic;
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
        if self.pacing.is_closed_loop() {
            // The first window goes out at the start; replies trigger the rest.
            let now = now_ns().max(start);
            let (senders, window) = self.pacing.first_window();
            // A copy, once per run: sending needs the worker, pacing included, mutably.
            let senders: Vec<usize> = senders.into();
            for key in senders {
                for _ in 0..window {
                    self.send_from(key, now);
                }
            }
        }
    }

    /// Open loop: takes every slot that is due and sends it from the next sender in turn.
    fn send_due(&mut self, now: u64) {
        for _ in 0..BATCH {
            let Some(intended) = self.pacing.next_slot(now) else {
                return;
            };
            record(&mut self.stats.lag, micros_between(intended, now));
            let conns = &self.conns;
            let is_open = |key: usize| conns.get(key).is_some_and(|c| c.conn.is_open());
            match self.pacing.next_sender(is_open) {
                Some(key) => self.send_from(key, intended),
                None => self.stats.counters.unsent += 1,
            }
        }
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
        let mut rx = Receiver::new(
            &self.plan,
            &mut self.stats,
            &mut self.tallies,
            self.sampler.interval_mut(),
            self.measure_from,
            &mut self.last_delivery_ns,
        );
        let (id, sent, heard) = (c.id, c.sent, &mut c.heard);
        let mut replies = 0u32;
        let step = c.conn.drive(&mut self.recv, &mut |bytes, now| {
            if rx.on_message(id, sent, heard, bytes, now) {
                replies += 1;
            }
        });
        let replies = replies.min(c.inflight);
        c.inflight -= replies;
        self.outstanding -= replies as u64;
        match step {
            Step::Pending => {}
            Step::Opened => {
                let counters = &mut self.stats.counters;
                counters.established += 1;
                let held = counters.established - counters.dropped.values().sum::<u64>();
                self.stats.peak_held = self.stats.peak_held.max(held);
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
        if replies > 0 && self.phase == Phase::Traffic && self.pacing.is_closed_loop() {
            let (inflight, now) = (c.inflight, now_ns());
            for _ in 0..self.pacing.refill(replies, inflight, now) {
                self.send_from(key, now);
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
        self.end_ramp(now);
        self.phase = Phase::Closing {
            until: now + CLOSE_GRACE_NS,
        };
        self.ramp.abandon();
        self.abandon_attempts();
        self.conns.retain(|_, c| !c.conn.begin_close());
    }

    /// Records how long the ramp took if it is ending now: all settled, or stopped early (then
    /// the connections made so far were made in this time).
    fn end_ramp(&mut self, now: u64) {
        if self.phase == Phase::Ramp {
            self.stats.ramp_ns = now.saturating_sub(self.ramp_began);
        }
    }

    /// Drops the attempts still connecting or upgrading and counts them as abandoned, so every
    /// attempt ends up established, failed or abandoned.
    fn abandon_attempts(&mut self) {
        let before = self.conns.len();
        self.conns.retain(|_, c| !c.conn.is_establishing());
        self.stats.counters.abandoned += (before - self.conns.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;
    use crate::target::Target;

    /// A run stopped in the middle of its ramp: connections to a full server (503), and to a
    /// listener that never answers the upgrade, still establishing when the run stops.
    #[test]
    fn every_attempt_is_established_failed_or_abandoned() {
        let config = corecast::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: Some(1),
            pin: false,
            stats_interval: Duration::ZERO,
            max_connections: Some(2),
            ..corecast::Config::default()
        };
        let server = corecast::Server::bind(config).unwrap();
        // Connections complete in the kernel's backlog; nothing ever answers their upgrade.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = |addr| Target::parse(&format!("ws://{addr}/echo")).unwrap();
        // Even connections go to the server (2 upgraded, 2 refused), odd ones to the silence.
        let plan = Arc::new(Plan {
            targets: vec![
                target(server.local_addr()),
                target(silent.local_addr().unwrap()),
            ],
            rooms: vec![0, 1],
            conns: 8,
            connect_rate: 1e6,
            connect_timeout: Duration::from_secs(600),
            ..Plan::example()
        });
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let spec = WorkerSpec {
            index: 0,
            of: 1,
            core: None,
            conn_ids: (0..8).collect(),
        };
        let worker = Worker::new(plan, spec, Arc::clone(&shared), tx).unwrap();
        let thread = std::thread::spawn(move || worker.run());

        // Stop the run once the server's answers are in, as the failure limit would.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (_, sample) = rx.recv_timeout(wait).expect("the server answers in time");
            let c = &sample.counters;
            if c.established == 2 && c.failed.values().sum::<u64>() == 2 {
                break;
            }
        }
        shared.abort.store(true, Ordering::Release);
        let stats = thread.join().unwrap();

        let c = &stats.counters;
        let failed: u64 = c.failed.values().sum();
        assert_eq!(c.attempted, c.established + failed + c.abandoned, "{c:?}");
        assert_eq!(
            (c.attempted, c.established, c.abandoned),
            (8, 2, 4),
            "{c:?}"
        );
        assert_eq!(c.failed.get("http 503"), Some(&2), "{c:?}");
        assert!(stats.aborted);
        // The ramp ended when the run stopped, and it made two connections at most at once.
        assert!(stats.ramp_ns > 0, "{stats:?}");
        assert_eq!(stats.peak_held, 2);
        server.shutdown();
    }
}

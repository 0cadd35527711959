//! Receive checks: every message a connection receives is validated and timed.
//!
//! A message must decode (length, header, filler), come from a sender it may come from (echo:
//! the receiving connection itself, with a sequence number it has sent; broadcast: a
//! publisher), and be new to its (receiver, sender) sequence tracker. What passes is counted
//! once, its order checked, and its latency recorded from the time the schedule *intended* it to
//! leave, so a stalled server or a late loadgen shows in the figures instead of hiding in them
//! (coordinated omission). Latencies of messages intended before the measured window (warmup)
//! go to the progress display only.

use hdrhistogram::Histogram;

use crate::payload;
use crate::plan::{Mode, Plan};
use crate::sequence::SeqTracker;
use crate::stats::{record, Stats};
use oskit::clock::micros_between;

/// What one connection has heard so far: per-sender order bookkeeping.
#[derive(Debug, Default)]
pub struct Heard {
    /// Echo mode: arrivals of its own messages.
    echo: SeqTracker,
    /// Broadcast mode: arrivals per publisher, sorted by publisher index.
    publishers: Vec<(u32, SeqTracker)>,
}

/// Broadcast mode: a worker's per-publisher delivery counts, indexed by publisher (publishers
/// are connections `0..plan.publishers`), so a delivery costs an index instead of a map lookup.
/// `fold_into` moves them into `Stats::publishers`.
#[derive(Debug, Default)]
pub struct Tallies(Vec<Tally>);

/// Deliveries of one publisher's messages.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
}

impl Tallies {
    /// Adds every count to `stats.publishers` and starts again from zero.
    pub fn fold_into(&mut self, stats: &mut Stats) {
        for (id, t) in self.0.iter().enumerate() {
            if t.delivered + t.duplicates + t.out_of_order == 0 {
                continue;
            }
            let publisher = stats.publishers.entry(id as u32).or_default();
            publisher.delivered += t.delivered;
            publisher.duplicates += t.duplicates;
            publisher.out_of_order += t.out_of_order;
        }
        self.0.clear();
    }

    fn of(&mut self, publisher: u32) -> &mut Tally {
        let at = publisher as usize;
        if at >= self.0.len() {
            self.0.resize(at + 1, Tally::default());
        }
        &mut self.0[at]
    }
}

/// The receive side of a worker: everything a message check touches, borrowed apart from the
/// connection whose `drive` delivers the messages.
pub struct Receiver<'a> {
    /// Mode and message size, to check payloads.
    plan: &'a Plan,
    /// Where counters and the latency histogram go.
    stats: &'a mut Stats,
    /// Per-publisher counts (broadcast), folded into `stats` at the end of the run.
    tallies: &'a mut Tallies,
    /// Latencies for the next progress sample.
    interval: &'a mut Histogram<u64>,
    /// Messages intended before this are warmup: counted, not in the histogram.
    measure_from: u64,
    /// Set to the arrival time of every message (the broadcast drain waits for quiet).
    last_delivery_ns: &'a mut u64,
}

impl<'a> Receiver<'a> {
    /// A receiver recording into `stats` and `interval`, measuring messages intended from
    /// `measure_from` on.
    pub fn new(
        plan: &'a Plan,
        stats: &'a mut Stats,
        tallies: &'a mut Tallies,
        interval: &'a mut Histogram<u64>,
        measure_from: u64,
        last_delivery_ns: &'a mut u64,
    ) -> Receiver<'a> {
        Receiver {
            plan,
            stats,
            tallies,
            interval,
            measure_from,
            last_delivery_ns,
        }
    }

    /// Checks and records message `bytes`, received at `now` by connection `id`, which has
    /// sent `sent` messages; returns true when it is one of `id`'s own messages coming back
    /// (which frees a closed-loop slot).
    ///
    /// `now` is the time of the socket read that brought the message's last byte (read once
    /// per read: every message of one read arrived at that instant, and a later read of the
    /// same `drive` gets a later time, so no message is timed against an earlier instant).
    pub fn on_message(
        &mut self,
        id: u32,
        sent: u64,
        heard: &mut Heard,
        bytes: &[u8],
        now: u64,
    ) -> bool {
        *self.last_delivery_ns = now;
        let counters = &mut self.stats.counters;
        let Ok(header) = payload::decode(bytes, self.plan.size) else {
            counters.corrupt += 1;
            return false;
        };
        let arrival = match self.plan.mode {
            Mode::Echo => {
                let seq = heard.echo.widen(header.seq as u32);
                if header.sender != id || seq >= sent {
                    counters.corrupt += 1;
                    return false;
                }
                heard.echo.observe(seq)
            }
            Mode::Broadcast => {
                if !self.plan.is_sender(header.sender) {
                    counters.corrupt += 1;
                    return false;
                }
                let publishers = &mut heard.publishers;
                let at = match publishers.binary_search_by_key(&header.sender, |(p, _)| *p) {
                    Ok(at) => at,
                    Err(at) => {
                        publishers.insert(at, (header.sender, SeqTracker::default()));
                        at
                    }
                };
                let tracker = &mut publishers[at].1;
                let arrival = tracker.observe(tracker.widen(header.seq as u32));
                let publisher = self.tallies.of(header.sender);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{encode, Header};
    use crate::stats::new_histogram;

    const MS: u64 = 1_000_000;

    /// Message `seq` of `sender`, intended at `intended_ms`, in the plan's size.
    fn message(plan: &Plan, sender: u32, seq: u64, intended_ms: u64) -> Vec<u8> {
        let header = Header {
            sender,
            seq,
            intended_ns: intended_ms * MS,
        };
        encode(header, plan.size)
    }

    /// A connection's view: what it was sent back, checked against `plan` with the measured
    /// window from `measure_from_ms`.
    struct Harness {
        plan: Plan,
        stats: Stats,
        tallies: Tallies,
        interval: Histogram<u64>,
        measure_from: u64,
        last_delivery_ns: u64,
        heard: Heard,
    }

    impl Harness {
        fn new(plan: Plan, measure_from_ms: u64) -> Harness {
            Harness {
                plan,
                stats: Stats::default(),
                tallies: Tallies::default(),
                interval: new_histogram(),
                measure_from: measure_from_ms * MS,
                last_delivery_ns: 0,
                heard: Heard::default(),
            }
        }

        /// Connection `id`, having sent `sent`, receives `bytes` at `now_ms`.
        fn receive(&mut self, id: u32, sent: u64, bytes: &[u8], now_ms: u64) -> bool {
            let mut rx = Receiver::new(
                &self.plan,
                &mut self.stats,
                &mut self.tallies,
                &mut self.interval,
                self.measure_from,
                &mut self.last_delivery_ns,
            );
            let own = rx.on_message(id, sent, &mut self.heard, bytes, now_ms * MS);
            self.tallies.fold_into(&mut self.stats);
            own
        }

        /// Connection 4, having sent 10, gets its own message `seq` back at `now_ms`.
        fn echo(&mut self, seq: u64, now_ms: u64) -> bool {
            let bytes = message(&self.plan, 4, seq, 100);
            self.receive(4, 10, &bytes, now_ms)
        }

        /// (received, duplicates, out of order, corrupt).
        fn counts(&self) -> (u64, u64, u64, u64) {
            let c = &self.stats.counters;
            (c.received, c.duplicates, c.out_of_order, c.corrupt)
        }
    }

    fn echo() -> Harness {
        Harness::new(Plan::example(), 0)
    }

    #[test]
    fn a_correct_echo_counts_once_and_frees_a_slot() {
        let mut h = echo();
        assert!(h.echo(0, 101));
        assert!(h.echo(1, 101));
        assert_eq!(h.counts(), (2, 0, 0, 0));
        assert_eq!(h.stats.counters.received_measured, 2);
        assert_eq!(h.last_delivery_ns, 101 * MS);
    }

    #[test]
    fn latency_is_timed_from_the_intended_send_time() {
        let mut h = echo();
        // Intended at 100 ms, arrived at 103 ms: 3 ms, however late it actually left.
        h.echo(0, 103);
        let latency = &h.stats.latency;
        assert_eq!(latency.len(), 1);
        assert!(latency.equivalent(latency.max(), 3000), "{}", latency.max());
        assert_eq!(h.interval.len(), 1, "the progress display sees it too");
        assert_eq!(h.stats.last_measured_ns, 103 * MS);
    }

    #[test]
    fn warmup_messages_are_counted_but_not_in_the_histogram() {
        let mut h = Harness::new(Plan::example(), 200);
        assert!(h.echo(0, 250), "intended at 100 ms, before the window");
        assert_eq!(h.counts(), (1, 0, 0, 0));
        assert_eq!(h.stats.counters.received_measured, 0);
        assert!(h.stats.latency.is_empty());
        assert_eq!(h.interval.len(), 1);
    }

    #[test]
    fn a_corrupted_payload_is_flagged_and_not_counted() {
        let mut h = echo();
        let mut bytes = message(&h.plan, 4, 0, 100);
        *bytes.last_mut().unwrap() ^= 1;
        assert!(!h.receive(4, 10, &bytes, 101));
        let short = &message(&h.plan, 4, 1, 100)[..20];
        assert!(!h.receive(4, 10, short, 101));
        assert_eq!(h.counts(), (0, 0, 0, 2));
        assert!(h.stats.latency.is_empty());
        // The corrupted message did not use up its sequence number.
        assert!(h.echo(0, 101));
    }

    #[test]
    fn an_echo_of_another_connection_or_never_sent_is_corrupt() {
        let mut h = echo();
        let theirs = message(&h.plan, 5, 0, 100);
        assert!(!h.receive(4, 10, &theirs, 101));
        assert!(!h.echo(10, 101), "connection 4 sent only 0..10");
        assert_eq!(h.counts(), (0, 0, 0, 2));
    }

    #[test]
    fn a_duplicate_is_flagged_and_counted_once() {
        let mut h = echo();
        assert!(h.echo(0, 101));
        assert!(!h.echo(0, 102), "a duplicate frees no slot");
        assert_eq!(h.counts(), (1, 1, 0, 0));
        assert_eq!(h.stats.latency.len(), 1);
    }

    #[test]
    fn reordered_messages_are_counted_and_flagged() {
        let mut h = echo();
        h.echo(0, 101);
        h.echo(2, 101);
        h.echo(1, 101);
        h.echo(3, 101);
        // 2 came ahead of 1, and 1 late: both out of order, all four received once.
        assert_eq!(h.counts(), (4, 0, 2, 0));
    }

    #[test]
    fn a_missing_message_is_not_received_and_breaks_the_order() {
        let mut h = echo();
        for seq in [0, 1, 3, 4] {
            h.echo(seq, 101);
        }
        // Message 2 never came: 4 of the 5 sent are received (the report counts one lost),
        // and 3 arriving in its place is out of order.
        assert_eq!(h.counts(), (4, 0, 1, 0));
        assert_eq!(h.heard.echo.next(), 5);
    }

    #[test]
    fn broadcast_deliveries_are_checked_per_publisher() {
        let mut h = Harness::new(Plan::broadcast_example(10, 2), 0);
        let from = |h: &Harness, publisher, seq| message(&h.plan, publisher, seq, 100);
        // Connection 7 (a member) hears publishers 0 and 1 interleaved, and both publish seq 0:
        // each publisher has its own order.
        for (publisher, seq) in [(1, 0), (0, 0), (0, 1), (1, 1), (0, 1)] {
            let bytes = from(&h, publisher, seq);
            assert!(!h.receive(7, 0, &bytes, 101), "not its own messages");
        }
        assert_eq!(h.counts(), (4, 1, 0, 0));
        let p0 = &h.stats.publishers[&0];
        assert_eq!((p0.delivered, p0.duplicates), (2, 1));
        assert_eq!(h.stats.publishers[&1].delivered, 2);
        // Connection 2 does not publish: a message claiming to be from it is corrupt.
        let stray = from(&h, 2, 0);
        assert!(!h.receive(7, 0, &stray, 101));
        assert_eq!(h.stats.counters.corrupt, 1);
        // A publisher hearing its own publish gets its slot back.
        let mut publisher = Harness::new(Plan::broadcast_example(10, 2), 0);
        let own = from(&publisher, 1, 0);
        assert!(publisher.receive(1, 1, &own, 101));
    }
}

//! Pacing: which of a worker's connections sends next, and when.
//!
//! Open loop: the worker's share of `--rate` on a fixed schedule that never waits for replies,
//! each slot going to the next open sender round-robin. Its slots are shifted by a fraction of a
//! period so the workers' sends interleave instead of all firing at the common start; the whole
//! window shifts with them, so every worker still gets exactly rate × time slots. Closed loop:
//! each sender starts with `--inflight` messages and sends one more for each of its own that
//! comes back, so it never has more than `--inflight` outstanding. Pacing does no I/O: the worker
//! asks it whom to send from and sends.

use crate::plan::{Load, Plan};
use crate::schedule::Schedule;

/// A worker's send decisions during the traffic.
#[derive(Debug, Default)]
pub struct Pacing {
    /// Open loop: this worker's send slots. None in a closed loop or before the traffic.
    slots: Option<Schedule>,
    /// Closed loop: messages each sender keeps outstanding (0 in an open loop).
    inflight: u32,
    /// Slab keys of the sending connections that were open when the traffic started.
    senders: Vec<usize>,
    /// Round-robin cursor into `senders`.
    cursor: usize,
    /// This worker's first send slot: the common start plus its offset.
    start_ns: u64,
    /// End of this worker's send window.
    end_ns: u64,
}

impl Pacing {
    /// The pacing of worker `worker` of `workers` (global indices), which owns `mine` of the
    /// run's senders, for traffic starting at `start`; `senders` are the slab keys of its open
    /// senders.
    pub fn new(
        plan: &Plan,
        (worker, workers): (usize, usize),
        mine: usize,
        start: u64,
        senders: Vec<usize>,
    ) -> Pacing {
        let (rate, offset) = match plan.load {
            // `--rate 0` (idle): no slots, no offset (a zero rate has no period to divide).
            Load::Open { rate } if mine > 0 && rate > 0.0 => {
                let rate = rate * mine as f64 / plan.senders() as f64;
                let offset = 1e9 / rate * worker as f64 / workers as f64;
                (rate, offset as u64)
            }
            _ => (0.0, 0),
        };
        let start_ns = start + offset;
        let end_ns = start_ns + (plan.warmup + plan.duration).as_nanos() as u64;
        let (slots, inflight) = match plan.load {
            Load::Open { .. } => (Some(Schedule::new(start_ns, rate, end_ns, u64::MAX)), 0),
            Load::Closed { inflight } => (None, inflight),
        };
        Pacing {
            slots,
            inflight,
            senders,
            cursor: 0,
            start_ns,
            end_ns,
        }
    }

    /// The end of this worker's send window.
    pub fn end_ns(&self) -> u64 {
        self.end_ns
    }

    /// Whether replies trigger the sends (a closed loop).
    pub fn is_closed_loop(&self) -> bool {
        self.slots.is_none()
    }

    /// Open loop: the intended time of the next slot due at `now`. Take them until None: a
    /// late caller gets every slot it missed, each with its own time.
    pub fn next_slot(&mut self, now: u64) -> Option<u64> {
        if now < self.start_ns {
            return None;
        }
        self.slots.as_mut()?.pop_due(now)
    }

    /// The next sender in turn that is still open (`is_open(key)`); closed ones leave the
    /// rotation for good.
    pub fn next_sender(&mut self, is_open: impl Fn(usize) -> bool) -> Option<usize> {
        while !self.senders.is_empty() {
            self.cursor %= self.senders.len();
            let key = self.senders[self.cursor];
            if is_open(key) {
                self.cursor += 1;
                return Some(key);
            }
            self.senders.swap_remove(self.cursor);
        }
        None
    }

    /// Closed loop: the senders and how many messages each sends when the traffic starts.
    pub fn first_window(&self) -> (&[usize], u32) {
        (&self.senders, self.inflight)
    }

    /// Closed loop: how many messages a sender sends at `now` after `replies` of its own came
    /// back, leaving `inflight` outstanding: one per reply, never past the in-flight limit, and
    /// none once the send window is over.
    pub fn refill(&self, replies: u32, inflight: u32, now: u64) -> u32 {
        if now >= self.end_ns {
            return 0;
        }
        replies.min(self.inflight.saturating_sub(inflight))
    }

    /// Whether the send window is over and every slot in it was taken (a late wake-up still
    /// sends every slot of the window before the traffic ends).
    pub fn is_over(&self, now: u64) -> bool {
        let slots_left = self.slots.as_ref().is_some_and(|s| s.peek().is_some());
        now >= self.end_ns && !slots_left
    }

    /// When pacing next needs the worker awake: the next slot, or the end of the window (a
    /// closed loop is woken by replies).
    pub fn next_deadline(&self) -> u64 {
        match self.slots.as_ref().and_then(Schedule::peek) {
            Some(slot) => slot.min(self.end_ns),
            None => self.end_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: u64 = 1_000_000;

    /// `conns` echo connections sending `load` for 1 s.
    fn plan(conns: u32, load: Load) -> Plan {
        Plan {
            conns,
            load,
            duration: Duration::from_secs(1),
            ..Plan::example()
        }
    }

    /// Every slot due at `now`, and the sender each goes to (`usize::MAX`: none open).
    fn take(p: &mut Pacing, now: u64, is_open: impl Fn(usize) -> bool) -> Vec<(u64, usize)> {
        std::iter::from_fn(|| {
            let at = p.next_slot(now)?;
            Some((at, p.next_sender(&is_open).unwrap_or(usize::MAX)))
        })
        .collect()
    }

    #[test]
    fn open_loop_sends_at_the_slot_times_from_each_sender_in_turn() {
        // One worker, 3 senders, 1,000 messages per second: a slot every millisecond.
        let mut p = Pacing::new(
            &plan(3, Load::Open { rate: 1000.0 }),
            (0, 1),
            3,
            10 * MS,
            vec![7, 8, 9],
        );
        assert!(!p.is_closed_loop());
        assert_eq!(p.next_slot(10 * MS - 1), None);
        let sent = take(&mut p, 14 * MS, |_| true);
        assert_eq!(
            sent,
            [(10, 7), (11, 8), (12, 9), (13, 7), (14, 8)].map(|(t, k)| (t * MS, k))
        );
        assert_eq!(p.next_deadline(), 15 * MS);
    }

    #[test]
    fn a_closed_sender_leaves_the_rotation() {
        let mut p = Pacing::new(
            &plan(3, Load::Open { rate: 1000.0 }),
            (0, 1),
            3,
            0,
            vec![7, 8, 9],
        );
        let sent = take(&mut p, 3 * MS, |key| key != 8);
        let senders: Vec<usize> = sent.iter().map(|&(_, k)| k).collect();
        assert_eq!(senders, [7, 9, 7, 9]);
        // With nobody open, slots still come due (and count as unsent).
        assert_eq!(
            take(&mut p, 5 * MS, |_| false),
            [(4 * MS, usize::MAX), (5 * MS, usize::MAX)]
        );
    }

    #[test]
    fn the_window_holds_exactly_the_workers_share_of_the_slots() {
        // Two workers sharing 1,000 messages per second, each with 2 of the 4 senders: 500/s
        // each, the second one's slots half a period (1 ms) behind the first's.
        let plan = plan(4, Load::Open { rate: 1000.0 });
        let mut first = Pacing::new(&plan, (0, 2), 2, 0, vec![0, 1]);
        let mut second = Pacing::new(&plan, (1, 2), 2, 0, vec![0, 1]);
        assert_eq!(first.next_slot(0), Some(0));
        assert_eq!(second.next_slot(MS - 1), None);
        assert_eq!(second.next_slot(MS), Some(MS));
        assert_eq!(
            second.end_ns(),
            1000 * MS + MS,
            "the window shifts with the slots"
        );
        assert_eq!(second.next_slot(2 * MS), None);
        assert_eq!(second.next_slot(3 * MS), Some(3 * MS));
        assert!(
            !first.is_over(first.end_ns()),
            "slots of the window are left"
        );
        assert_eq!(take(&mut first, u64::MAX, |_| true).len(), 499);
        assert!(first.is_over(first.end_ns()));
        assert!(!first.is_over(first.end_ns() - 1));
    }

    #[test]
    fn an_idle_run_has_no_slots_and_no_offset() {
        let mut p = Pacing::new(&plan(3, Load::Open { rate: 0.0 }), (1, 2), 3, 0, vec![0]);
        assert_eq!(p.end_ns(), 1000 * MS, "no offset");
        assert_eq!(p.next_slot(u64::MAX), None);
        assert_eq!(p.next_deadline(), p.end_ns());
    }

    #[test]
    fn closed_loop_sends_a_window_then_one_per_reply_within_the_limit() {
        let mut p = Pacing::new(
            &plan(2, Load::Closed { inflight: 4 }),
            (0, 1),
            2,
            0,
            vec![3, 5],
        );
        assert!(p.is_closed_loop());
        assert_eq!(p.first_window(), (&[3, 5][..], 4));
        assert_eq!(p.next_slot(u64::MAX), None, "no schedule");
        // All four out, one back: one more.
        assert_eq!(p.refill(1, 3, MS), 1);
        // Three back at once: three more.
        assert_eq!(p.refill(3, 1, MS), 3);
        // Never past the limit, whatever the replies claim.
        assert_eq!(p.refill(3, 2, MS), 2);
        assert_eq!(p.refill(1, 4, MS), 0);
        // Replies after the send window send nothing.
        assert_eq!(p.refill(1, 3, p.end_ns()), 0);
        assert_eq!(p.next_deadline(), p.end_ns());
    }
}

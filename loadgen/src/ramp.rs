//! The ramp: when each of a worker's connections is attempted, and which attempts have taken
//! longer than the connect timeout.
//!
//! Attempts follow a fixed schedule, the worker's share of `--connect-rate`, shifted by the
//! worker's index so the workers' attempts interleave rather than arrive at the server in bursts.
//! Timeouts are judged oldest first, so the pending queue is only ever examined at its front.
//! The ramp does no I/O: the worker opens the sockets it names and answers which are still
//! establishing.

use std::collections::VecDeque;

use crate::plan::Plan;
use crate::schedule::Schedule;

/// One attempt still (as far as the ramp knows) establishing.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// The worker's slab key of the connection.
    key: usize,
    /// Its global index: a slab key may be reused by a later attempt.
    id: u32,
    /// When it started (ns).
    started_ns: u64,
}

/// A worker's connection attempts, paced and timed.
#[derive(Debug)]
pub struct Ramp {
    /// Global indices of the connections to open, in order.
    ids: Vec<u32>,
    /// Attempt times.
    schedule: Schedule,
    /// Next entry of `ids` to attempt.
    next: usize,
    /// Attempts not yet known to have settled, oldest first.
    pending: VecDeque<Attempt>,
    /// How long connect plus upgrade may take (ns).
    timeout_ns: u64,
}

impl Ramp {
    /// The ramp of worker `worker` (global index), which owns connections `ids`, from `now`.
    pub fn new(plan: &Plan, worker: usize, ids: Vec<u32>, now: u64) -> Ramp {
        let rate = plan.connect_rate * ids.len() as f64 / plan.conns as f64;
        let offset = (1e9 / plan.connect_rate * worker as f64) as u64;
        let schedule = Schedule::new(now + offset, rate, u64::MAX, ids.len() as u64);
        Ramp {
            ids,
            schedule,
            next: 0,
            pending: VecDeque::new(),
            timeout_ns: plan.connect_timeout.as_nanos() as u64,
        }
    }

    /// The global indices of the connections this worker owns.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The next connection whose attempt is due at `now`, if any.
    pub fn due(&mut self, now: u64) -> Option<u32> {
        self.schedule.pop_due(now)?;
        let id = self.ids[self.next];
        self.next += 1;
        Some(id)
    }

    /// Connection `id`, in slab entry `key`, started establishing at `now`.
    pub fn started(&mut self, key: usize, id: u32, now: u64) {
        self.pending.push_back(Attempt {
            key,
            id,
            started_ns: now,
        });
    }

    /// The slab key of the next attempt that is still establishing (`establishing(key, id)`)
    /// past the timeout at `now`; attempts that settled meanwhile are forgotten on the way.
    pub fn timed_out(
        &mut self,
        now: u64,
        establishing: impl Fn(usize, u32) -> bool,
    ) -> Option<usize> {
        while let Some(&attempt) = self.pending.front() {
            let live = establishing(attempt.key, attempt.id);
            if live && attempt.started_ns + self.timeout_ns > now {
                return None;
            }
            self.pending.pop_front();
            if live {
                return Some(attempt.key);
            }
        }
        None
    }

    /// Whether every attempt was made and has settled (or timed out).
    pub fn is_done(&self) -> bool {
        self.next == self.ids.len() && self.pending.is_empty()
    }

    /// When the ramp next needs the worker awake: the next attempt or the oldest timeout.
    pub fn next_deadline(&self) -> Option<u64> {
        let timeout = self.pending.front().map(|a| a.started_ns + self.timeout_ns);
        match (self.schedule.peek(), timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets the attempts in flight: the run is closing and they are closed with the rest.
    pub fn abandon(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The only worker, owning `ids`, at 1,000 attempts per second with a 1 s timeout.
    fn ramp(ids: Vec<u32>) -> Ramp {
        let plan = Plan {
            conns: ids.len() as u32,
            connect_rate: 1000.0,
            connect_timeout: Duration::from_secs(1),
            ..Plan::example()
        };
        Ramp::new(&plan, 0, ids, 0)
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn attempts_follow_the_connect_schedule_in_order() {
        let mut r = ramp(vec![3, 7, 11, 15]);
        assert_eq!(r.due(0), Some(3));
        assert_eq!(r.due(0), None, "the next attempt is 1 ms later");
        assert_eq!(r.next_deadline(), Some(MS));
        // Waking late makes every attempt that came due meanwhile.
        assert_eq!(r.due(3 * MS), Some(7));
        assert_eq!(r.due(3 * MS), Some(11));
        assert_eq!(r.due(3 * MS), Some(15));
        assert_eq!(r.due(u64::MAX), None, "one attempt per connection");
    }

    #[test]
    fn a_worker_share_is_offset_by_its_index() {
        let plan = Plan {
            conns: 4,
            connect_rate: 1000.0,
            ..Plan::example()
        };
        // Two workers with two connections each: 500/s each, the second 1 ms behind.
        let mut second = Ramp::new(&plan, 1, vec![1, 3], 0);
        assert_eq!(second.due(MS - 1), None);
        assert_eq!(second.due(MS), Some(1));
        assert_eq!(second.due(2 * MS), None);
        assert_eq!(second.due(3 * MS), Some(3));
    }

    #[test]
    fn only_attempts_still_establishing_past_the_timeout_time_out() {
        let mut r = ramp(vec![0, 1, 2]);
        for (key, at) in [(10, 0), (11, MS), (12, 2 * MS)] {
            let id = r.due(at).unwrap();
            r.started(key, id, at);
        }
        let all_establishing = |_: usize, _: u32| true;
        assert_eq!(r.timed_out(1000 * MS - 1, all_establishing), None);
        assert_eq!(r.next_deadline(), Some(1000 * MS));
        assert_eq!(r.timed_out(1000 * MS, all_establishing), Some(10));
        assert_eq!(r.timed_out(1000 * MS, all_establishing), None);
        // Key 11 opened, key 12 is establishing: only 12 times out, and 11 does not hold it up.
        let only_12 = |key: usize, _: u32| key == 12;
        assert_eq!(r.timed_out(1002 * MS, only_12), Some(12));
        assert_eq!(r.timed_out(u64::MAX, all_establishing), None);
    }

    #[test]
    fn a_reused_key_is_not_mistaken_for_the_old_attempt() {
        let mut r = ramp(vec![0, 1]);
        r.started(5, 0, 0);
        // Connection 0 failed and key 5 now holds connection 1, which started later.
        let holds_1 = |key: usize, id: u32| key == 5 && id == 1;
        assert_eq!(r.timed_out(2000 * MS, holds_1), None);
        r.started(5, 1, 10 * MS);
        assert_eq!(r.timed_out(1009 * MS, holds_1), None);
        assert_eq!(r.timed_out(1010 * MS, holds_1), Some(5));
    }

    #[test]
    fn done_once_every_attempt_was_made_and_settled() {
        let mut r = ramp(vec![0, 1]);
        assert!(!r.is_done());
        r.due(0);
        r.started(0, 0, 0);
        r.due(MS);
        assert!(!r.is_done(), "an attempt is pending");
        r.abandon();
        assert!(r.is_done());
        assert_eq!(r.next_deadline(), None);
    }
}

//! Fixed-rate schedules: when each message (or connection attempt) is meant to happen.
//!
//! Slot `k` is due at `start + k / rate`, computed from `k` rather than by adding intervals, so no
//! error accumulates. The schedule never looks at replies: that is what makes the load open-loop.
//! A caller that wakes late takes every slot that came due meanwhile, each stamped with its own
//! intended time, and the difference to "now" is loadgen's own lag.

/// A sequence of evenly spaced instants, optionally bounded by a count and an end time.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Intended time of slot 0 (CLOCK_MONOTONIC ns).
    start_ns: u64,
    /// Nanoseconds between slots.
    period_ns: f64,
    /// Index of the next slot to hand out.
    next: u64,
    /// No slot at or after this time is handed out (enforced through `limit`).
    end_ns: u64,
    /// No more than this many slots are handed out.
    limit: u64,
}

impl Schedule {
    /// `rate` slots per second from `start_ns`; a rate of zero yields no slots.
    ///
    /// A window `[start, end)` holds exactly `ceil((end − start) × rate)` slots: the count is
    /// fixed here rather than by comparing float slot times with `end` one by one, so a run of
    /// 2 s at 500/s sends 1000 messages, never 999 or 1001 through rounding.
    pub fn new(start_ns: u64, rate: f64, end_ns: u64, limit: u64) -> Self {
        if !(rate > 0.0 && rate.is_finite()) {
            return Schedule {
                start_ns,
                period_ns: f64::MAX,
                next: 0,
                end_ns,
                limit: 0,
            };
        }
        let period_ns = 1e9 / rate;
        let window = end_ns.saturating_sub(start_ns) as f64;
        let in_window = (window / period_ns - 1e-6).ceil().max(0.0);
        let limit = if in_window < u64::MAX as f64 {
            limit.min(in_window as u64)
        } else {
            limit
        };
        Schedule {
            start_ns,
            period_ns,
            next: 0,
            end_ns,
            limit,
        }
    }

    /// Intended time of the next slot, or None when the schedule is exhausted.
    pub fn peek(&self) -> Option<u64> {
        if self.next >= self.limit {
            return None;
        }
        let at = self.start_ns as f64 + self.next as f64 * self.period_ns;
        Some((at as u64).min(self.end_ns))
    }

    /// Takes the next slot if it is due at `now_ns`, returning its intended time.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<u64> {
        let at = self.peek()?;
        if at > now_ns {
            return None;
        }
        self.next += 1;
        Some(at)
    }

    /// How many slots were handed out.
    #[cfg(test)]
    pub fn taken(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_from_start() {
        let mut s = Schedule::new(1_000, 1_000.0, u64::MAX, u64::MAX);
        assert_eq!(s.pop_due(999), None);
        assert_eq!(s.pop_due(1_000), Some(1_000));
        assert_eq!(s.pop_due(1_000), None);
        assert_eq!(s.peek(), Some(1_001_000));
    }

    #[test]
    fn late_caller_gets_every_missed_slot_with_its_own_time() {
        let mut s = Schedule::new(0, 10.0, u64::MAX, u64::MAX);
        let due: Vec<u64> = std::iter::from_fn(|| s.pop_due(350_000_000)).collect();
        assert_eq!(due, vec![0, 100_000_000, 200_000_000, 300_000_000]);
    }

    #[test]
    fn bounded_by_end_and_limit() {
        let mut s = Schedule::new(0, 10.0, 250_000_000, u64::MAX);
        assert_eq!(std::iter::from_fn(|| s.pop_due(u64::MAX)).count(), 3);
        let mut s = Schedule::new(0, 10.0, u64::MAX, 2);
        assert_eq!(std::iter::from_fn(|| s.pop_due(u64::MAX)).count(), 2);
        assert_eq!(s.taken(), 2);
    }

    #[test]
    fn window_holds_exactly_rate_times_length() {
        for (rate, secs, expect) in [(500.0, 2, 1000), (5000.0 / 6.0, 30, 25_000), (3.0, 1, 3)] {
            let start = 123_456_789;
            let end = start + secs * 1_000_000_000;
            let mut s = Schedule::new(start, rate, end, u64::MAX);
            assert_eq!(
                std::iter::from_fn(|| s.pop_due(u64::MAX)).count(),
                expect,
                "{rate}"
            );
        }
        let mut s = Schedule::new(0, 2.5, 1_000_000_000, u64::MAX);
        assert_eq!(
            std::iter::from_fn(|| s.pop_due(u64::MAX)).count(),
            3,
            "ceil(2.5)"
        );
    }

    #[test]
    fn zero_rate_yields_nothing() {
        let mut s = Schedule::new(0, 0.0, u64::MAX, u64::MAX);
        assert_eq!(s.pop_due(u64::MAX), None);
    }

    #[test]
    fn no_drift_over_many_slots() {
        let mut s = Schedule::new(0, 3.0, u64::MAX, u64::MAX);
        let mut last = 0;
        for _ in 0..3_000_001 {
            last = s.pop_due(u64::MAX).unwrap();
        }
        assert!((last as i64 - 1_000_000_000_000_000i64).abs() < 1_000);
    }
}

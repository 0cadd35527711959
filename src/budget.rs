//! The memory budget: what peers make the server hold, bounded.
//!
//! Every byte a peer can make us buffer is charged here: the data message it is in the middle
//! of sending (every fragment so far), bytes read ahead of the parser, an unfinished HTTP
//! request head, and the replies queued for it that it has not read. Broadcast frames are
//! shared by every member they are queued to and bounded per member by `--max-backlog`, so
//! they are not charged per member.
//!
//! `--memory-limit` is split into equal shares, one per worker, so a worker accounts with
//! plain integers and no shared state: SO_REUSEPORT spreads connections evenly, so equal
//! shares fit. A connection reports what it holds after each event; when a worker's
//! connections hold more than its share, the worker sheds the ones holding the most until they
//! are back under three quarters of it (`Worker::shed`). A connection that holds little is
//! only ever shed if the little that many such connections hold adds up to the whole share.
//! A share must fit one largest message and one full backlog (checked at start), or a single
//! legitimate client could be shed.

/// Fraction of the share, in quarters, that shedding brings a worker back down to.
const LOW_WATER_QUARTERS: usize = 3;

/// One worker's share of the budget and what its connections hold.
#[derive(Debug)]
pub(crate) struct Budget {
    share: usize,
    held: usize,
    /// The most held since `take_released` was last called: what was held and is no longer
    /// drives heap trimming. Not the sum of every release, which steady traffic (each echo
    /// charged, then released once written) would grow without anything to give back.
    peak: usize,
}

impl Budget {
    pub fn new(share: usize) -> Budget {
        Budget {
            share,
            held: 0,
            peak: 0,
        }
    }

    /// A connection held `before` bytes and now holds `after`.
    #[inline]
    pub fn charge(&mut self, before: usize, after: usize) {
        if after >= before {
            self.held += after - before;
            self.peak = self.peak.max(self.held);
        } else {
            self.held -= before - after;
        }
    }

    /// The worker's connections hold more than its share: shed.
    #[inline]
    pub fn over(&self) -> bool {
        self.held > self.share
    }

    /// Shedding stops once the connections hold no more than this.
    pub fn low_water(&self) -> usize {
        self.share / 4 * LOW_WATER_QUARTERS
    }

    /// Bytes the worker's connections hold.
    pub fn held(&self) -> usize {
        self.held
    }

    /// How far what is held fell from its peak since the last call.
    pub fn take_released(&mut self) -> usize {
        let released = self.peak - self.held;
        self.peak = self.held;
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_and_releases_balance_and_over_means_above_the_share() {
        let mut budget = Budget::new(1000);
        budget.charge(0, 600);
        budget.charge(0, 400);
        assert_eq!(budget.held(), 1000);
        assert!(!budget.over(), "exactly the share is within it");
        budget.charge(400, 401);
        assert!(budget.over());
        budget.charge(600, 0);
        assert_eq!(budget.held(), 401);
        assert!(!budget.over());
        assert_eq!(
            budget.take_released(),
            600,
            "from the peak of 1001 down to 401"
        );
        assert_eq!(budget.take_released(), 0);
        for _ in 0..1000 {
            budget.charge(0, 500);
            budget.charge(500, 0);
        }
        assert_eq!(budget.take_released(), 500, "churn is not release");
        assert_eq!(budget.low_water(), 750);
    }
}

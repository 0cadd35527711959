//! Per-sender arrival bookkeeping: in order, missing, duplicated or reordered.
//!
//! One `SeqTracker` exists per (receiver, sender) pair: per connection in echo mode, per
//! (connection, publisher) in broadcast mode. It holds the next expected sequence number and a
//! 64-message window of what was seen behind it, so a late message (a gap later filled) and a
//! duplicate can be told apart without storing every sequence number. 16 bytes per pair.

/// How one arrival relates to what the tracker had seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected sequence number.
    InOrder,
    /// Later than expected: the ones in between are (for now) missing.
    Ahead,
    /// Fills an earlier gap (or is too old for the window to tell).
    Late,
    /// Already seen.
    Duplicate,
}

impl Arrival {
    /// Whether this arrival is a message not counted before.
    pub fn is_new(self) -> bool {
        !matches!(self, Arrival::Duplicate)
    }

    /// Whether this arrival broke per-sender order.
    pub fn is_out_of_order(self) -> bool {
        matches!(self, Arrival::Ahead | Arrival::Late)
    }
}

/// Sequence state for one sender as seen by one receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// One past the highest sequence number seen.
    next: u64,
    /// Bit `j` set: sequence `next - 1 - j` was seen.
    window: u64,
}

impl SeqTracker {
    /// The full sequence number whose low 32 bits are `low`, taken as the one nearest to what
    /// this tracker expects next (messages travel with only the low 32 bits of their counter;
    /// within ±2^31 of the expected one the widening is exact).
    pub fn widen(&self, low: u32) -> u64 {
        let delta = low.wrapping_sub(self.next as u32) as i32 as i64;
        let seq = self.next as i64 + delta;
        if seq < 0 {
            low as u64
        } else {
            seq as u64
        }
    }

    /// Records `seq` and classifies it.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let shift = seq - self.next + 1;
            self.window = if shift >= 64 {
                1
            } else {
                (self.window << shift) | 1
            };
            let arrival = if seq == self.next {
                Arrival::InOrder
            } else {
                Arrival::Ahead
            };
            self.next = seq + 1;
            return arrival;
        }
        let behind = self.next - 1 - seq;
        if behind >= 64 {
            return Arrival::Late;
        }
        let bit = 1u64 << behind;
        if self.window & bit != 0 {
            Arrival::Duplicate
        } else {
            self.window |= bit;
            Arrival::Late
        }
    }

    /// One past the highest sequence number seen.
    #[cfg(test)]
    pub fn next(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_recovers_full_sequence_numbers_across_the_32_bit_wrap() {
        let mut t = SeqTracker::default();
        assert_eq!(t.widen(0), 0);
        assert_eq!(t.widen(5), 5);
        // Far past 2^32: the next few, a late one and one just across the wrap.
        let start = (3u64 << 32) - 2;
        t.observe(start);
        for seq in [start + 1, start + 2, start + 3, start - 10, start + 1000] {
            assert_eq!(t.widen(seq as u32), seq, "seq {seq}");
        }
        // Near zero a "late" low number must not go negative.
        let mut t = SeqTracker::default();
        t.observe(3);
        assert_eq!(t.widen(u32::MAX), u32::MAX as u64);
        assert_eq!(t.widen(1), 1);
    }
    use Arrival::*;

    fn run(seqs: &[u64]) -> Vec<Arrival> {
        let mut t = SeqTracker::default();
        seqs.iter().map(|&s| t.observe(s)).collect()
    }

    #[test]
    fn in_order_stream() {
        assert_eq!(run(&[0, 1, 2, 3]), vec![InOrder; 4]);
    }

    #[test]
    fn gap_then_fill_is_reordering_not_duplication() {
        assert_eq!(run(&[0, 2, 1, 3]), vec![InOrder, Ahead, Late, InOrder]);
    }

    #[test]
    fn duplicates_are_caught_inside_the_window() {
        assert_eq!(
            run(&[0, 1, 1, 0, 2]),
            vec![InOrder, InOrder, Duplicate, Duplicate, InOrder]
        );
    }

    #[test]
    fn far_jump_clears_window() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(0), InOrder);
        assert_eq!(t.observe(1000), Ahead);
        assert_eq!(t.observe(1000), Duplicate);
        assert_eq!(t.observe(999), Late);
        assert_eq!(t.observe(5), Late);
        assert_eq!(t.next(), 1001);
    }

    #[test]
    fn classification_helpers() {
        assert!(InOrder.is_new() && Late.is_new() && !Duplicate.is_new());
        assert!(Ahead.is_out_of_order() && !InOrder.is_out_of_order());
    }
}

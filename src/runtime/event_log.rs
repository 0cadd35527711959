//! Logging of events that can repeat once per connection (refused upgrades, slow consumers,
//! protocol violations, connections shed): one line per kind per second with a count, never a
//! line per connection, so a flood cannot turn the log into a second flood.
//!
//! It reads the worker's counters, which are kept anyway, so the per-message path pays nothing:
//! once a second the worker hands its counters over and every counter that moved is logged
//! with how much it moved.

use crate::stats::Counters;

/// How often the counts are logged.
const PERIOD_MS: u64 = 1000;

/// Reads one counter.
type Counter = fn(&Counters) -> u64;

/// The counters that are logged as events, with the line each gets.
const EVENTS: &[(Counter, &str)] = &[
    (
        |c| c.over_capacity,
        "upgrades refused with 503 at the connection capacity",
    ),
    (
        |c| c.sheds,
        "connections shed at the memory budget (close 1013)",
    ),
    (|c| c.rejected, "requests answered 4xx/5xx"),
    (|c| c.slow_consumers, "slow room members closed with 1008"),
    (
        |c| c.protocol_errors,
        "connections failed for protocol violations",
    ),
    (|c| c.panics, "connection handlers panicked"),
    (|c| c.accept_errors, "accepts that found no free descriptor"),
];

/// One worker's event log.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    /// Counters at the last report.
    last: Counters,
    /// Worker clock of the last report.
    at: u64,
}

impl EventLog {
    /// Logs what happened since the last report, at most once per period.
    pub fn report(&mut self, worker: usize, now: u64, counters: &Counters) {
        if now.saturating_sub(self.at) < PERIOD_MS {
            return;
        }
        for (count, what) in self.since_last(counters) {
            tracing::warn!(worker, count, "{what} in the last second");
        }
        self.last = *counters;
        self.at = now;
    }

    /// Events since the last report: (count, what) for every counter that moved.
    fn since_last<'a>(
        &'a self,
        counters: &'a Counters,
    ) -> impl Iterator<Item = (u64, &'static str)> + 'a {
        EVENTS.iter().filter_map(|(get, what)| {
            let moved = get(counters).saturating_sub(get(&self.last));
            (moved > 0).then_some((moved, *what))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_what_moved_once_per_period_with_counts() {
        let mut log = EventLog::default();
        let mut c = Counters {
            rejected: 3,
            ..Counters::default()
        };
        assert_eq!(log.since_last(&c).collect::<Vec<_>>(), [(3, EVENTS[2].1)]);
        log.report(0, 1000, &c);
        assert_eq!(log.since_last(&c).count(), 0, "reported: nothing new");
        c.rejected += 500;
        c.protocol_errors += 1;
        log.report(0, 1500, &c); // within the period: not reported yet
        assert_eq!(
            log.since_last(&c).collect::<Vec<_>>(),
            [(500, EVENTS[2].1), (1, EVENTS[4].1)],
            "counts accumulate until the next report"
        );
        log.report(0, 2000, &c);
        assert_eq!(log.since_last(&c).count(), 0);
    }
}

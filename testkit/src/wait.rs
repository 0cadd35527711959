//! Waiting for something another thread (a server worker) will make true.

use std::time::{Duration, Instant};

/// How often [`poll_until`] checks.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// Checks `cond` every [`POLL_EVERY`] until it holds (true) or `within` has passed (false).
/// `cond` is checked at least once, and once more after the deadline passes.
pub fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= within {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_at_once_without_sleeping() {
        let start = Instant::now();
        assert!(poll_until(Duration::from_secs(10), || true));
        assert!(start.elapsed() < POLL_EVERY);
    }

    #[test]
    fn true_once_the_condition_holds() {
        let mut calls = 0;
        assert!(poll_until(Duration::from_secs(10), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
    }

    #[test]
    fn false_after_the_deadline() {
        let start = Instant::now();
        let mut calls = 0;
        assert!(!poll_until(Duration::from_millis(100), || {
            calls += 1;
            false
        }));
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(calls >= 2, "checked {calls} times");
    }
}

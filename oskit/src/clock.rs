//! The one clock every measurement uses: CLOCK_MONOTONIC in nanoseconds.
//!
//! Payloads carry intended send times that another process on the same host may read (broadcast
//! fan-out, sharded runs), so the clock must be system-wide rather than a per-process `Instant`.
//! CLOCK_MONOTONIC is: every process on one Linux host sees the same value.

/// Nanoseconds since an arbitrary fixed point (boot), the same for every process on this host.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct we pass; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whole microseconds between two clock readings, zero when `later` is not later.
pub fn micros_between(earlier_ns: u64, later_ns: u64) -> u64 {
    later_ns.saturating_sub(earlier_ns) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_moves_forward() {
        let a = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = now_ns();
        assert!(b - a >= 2_000_000);
    }

    #[test]
    fn micros_saturate() {
        assert_eq!(micros_between(5_000, 1_000), 0);
        assert_eq!(micros_between(1_000, 9_999), 8);
    }
}

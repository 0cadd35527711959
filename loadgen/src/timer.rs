//! A timerfd as a mio source: wakes a worker's poll at a nanosecond-precise deadline.
//!
//! `Poll::poll` takes millisecond timeouts (epoll_wait), far too coarse for a schedule sending a
//! message every few hundred microseconds; the lag would land in the measured latency. An armed
//! timerfd makes the loop wake within the kernel's timer slack of the deadline without spinning.
//! The worker owns one timer and re-arms it to its next deadline after every loop pass; the
//! timerfd itself is corecast's (`oskit::timerfd::Ticker`), this type only skips re-arming a
//! deadline that is already armed.

use std::io;

use oskit::timerfd::Ticker;

/// A one-shot CLOCK_MONOTONIC timer; register `source()` with the worker's poll.
#[derive(Debug)]
pub struct Timer {
    fd: Ticker,
    /// The absolute deadline currently armed, to skip redundant syscalls.
    armed_ns: Option<u64>,
}

impl Timer {
    /// Creates a disarmed timer.
    pub fn new() -> io::Result<Timer> {
        Ok(Timer {
            fd: Ticker::disarmed()?,
            armed_ns: None,
        })
    }

    /// The timerfd, to register with a poll.
    pub fn source(&mut self) -> &mut Ticker {
        &mut self.fd
    }

    /// Arms the timer to fire at `deadline_ns` (CLOCK_MONOTONIC); a deadline in the past fires at
    /// once.
    pub fn arm_at(&mut self, deadline_ns: u64) -> io::Result<()> {
        if self.armed_ns == Some(deadline_ns) {
            return Ok(());
        }
        self.fd.arm_at(deadline_ns)?;
        self.armed_ns = Some(deadline_ns);
        Ok(())
    }

    /// Consumes an expiry so the (edge-triggered) fd can report the next one.
    pub fn acknowledge(&mut self) {
        self.fd.acknowledge();
        self.armed_ns = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Events, Interest, Poll, Token};

    use super::*;
    use oskit::clock::now_ns;

    #[test]
    fn wakes_poll_at_the_deadline() {
        let mut poll = Poll::new().unwrap();
        let mut timer = Timer::new().unwrap();
        poll.registry()
            .register(timer.source(), Token(1), Interest::READABLE)
            .unwrap();
        let deadline = now_ns() + 3_000_000;
        timer.arm_at(deadline).unwrap();
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(now_ns() >= deadline);
        assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(1)));
        timer.acknowledge();
        // Re-arming in the past fires again.
        timer.arm_at(1).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(events.iter().count(), 1);
    }
}

//! A CLOCK_MONOTONIC timerfd as a mio source.
//!
//! Periodic, it is the server worker's tick: armed once, it fires once per tick, so the loop
//! can sleep in `epoll_wait` with no timeout. Passing the time to the next tick as the timeout
//! instead would arm and cancel a kernel hrtimer around every sleep, which on a virtual machine
//! means programming the timer hardware on every wakeup (docs/benchmarks.md has the cost).
//! One-shot at an absolute deadline, it paces loadgen's schedule with nanosecond precision,
//! where `epoll_wait`'s millisecond timeouts would land in the measured latency.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A non-blocking CLOCK_MONOTONIC timerfd, usable as a mio source: periodic or armed for one
/// absolute deadline.
#[derive(Debug)]
pub struct Ticker {
    fd: OwnedFd,
}

impl Ticker {
    /// A disarmed timer.
    pub fn disarmed() -> io::Result<Ticker> {
        // SAFETY: plain syscall; the result is checked before it is used as a descriptor.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(Ticker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Starts ticking: the first expiry is one `interval` from now.
    pub fn new(interval: Duration) -> io::Result<Ticker> {
        let ticker = Ticker::disarmed()?;
        // A zero interval would disarm the timer.
        let every = timespec(interval.max(Duration::from_micros(1)));
        ticker.set(0, every, every)?;
        Ok(ticker)
    }

    /// Fires once at `deadline_ns` (CLOCK_MONOTONIC); a deadline in the past fires at once.
    pub fn arm_at(&self, deadline_ns: u64) -> io::Result<()> {
        // A zero it_value would disarm the timer, so the earliest deadline is 1 ns.
        let at = timespec(Duration::from_nanos(deadline_ns.max(1)));
        self.set(libc::TFD_TIMER_ABSTIME, at, timespec(Duration::ZERO))
    }

    fn set(
        &self,
        flags: libc::c_int,
        value: libc::timespec,
        interval: libc::timespec,
    ) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: interval,
            it_value: value,
        };
        // SAFETY: the fd is a timerfd we own; `spec` is a valid itimerspec; no old value wanted.
        let rc = unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), flags, &spec, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expirations so far; returns how many there were (0 if none).
    pub fn acknowledge(&self) -> u64 {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8 from a descriptor we own.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        if n == 8 {
            u64::from_ne_bytes(count)
        } else {
            0
        }
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

impl Source for Ticker {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    #[test]
    fn wakes_a_poll_without_timeout_every_interval() {
        let mut poll = Poll::new().unwrap();
        let mut ticker = Ticker::new(Duration::from_millis(5)).unwrap();
        poll.registry()
            .register(&mut ticker, Token(7), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(8);
        let mut ticks = 0;
        while ticks < 3 {
            // No timeout: only the ticker can end this wait.
            poll.poll(&mut events, None).unwrap();
            for event in events.iter() {
                assert_eq!(event.token(), Token(7));
                ticks += ticker.acknowledge();
            }
        }
        assert!(ticks >= 3);
    }

    #[test]
    fn an_absolute_deadline_fires_once() {
        let mut poll = Poll::new().unwrap();
        let mut timer = Ticker::disarmed().unwrap();
        poll.registry()
            .register(&mut timer, Token(3), Interest::READABLE)
            .unwrap();
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec into a valid pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let now_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
        timer.arm_at(now_ns + 2_000_000).unwrap();
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, None).unwrap();
        assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(3)));
        assert_eq!(timer.acknowledge(), 1);
        // One-shot: nothing more is pending.
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn acknowledging_with_nothing_expired_returns_zero() {
        let ticker = Ticker::new(Duration::from_secs(3600)).unwrap();
        assert_eq!(ticker.acknowledge(), 0);
    }
}

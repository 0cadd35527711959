//! The worker's tick: a periodic timerfd registered with its poll.
//!
//! The worker sweeps its connections' timers once per tick. Passing the time to the next tick
//! as `epoll_wait`'s timeout would arm and cancel a kernel hrtimer around every sleep, which on
//! a virtual machine means programming the timer hardware (a VM exit) once or twice per
//! wakeup; at low message rates, where nearly every message is a wakeup, that measured about
//! 7% of the server's CPU per message. A periodic timerfd is armed once and fires once per
//! tick, so the loop can sleep with no timeout at all.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A non-blocking CLOCK_MONOTONIC timerfd firing every `interval`.
#[derive(Debug)]
pub struct Ticker {
    fd: OwnedFd,
}

impl Ticker {
    /// Starts ticking: the first expiry is one `interval` from now.
    pub fn new(interval: Duration) -> io::Result<Ticker> {
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
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A zero interval would disarm the timer.
        let interval = interval.max(Duration::from_micros(1));
        let spec = libc::timespec {
            tv_sec: interval.as_secs() as libc::time_t,
            tv_nsec: interval.subsec_nanos() as libc::c_long,
        };
        let value = libc::itimerspec {
            it_interval: spec,
            it_value: spec,
        };
        // SAFETY: the fd is a timerfd we own; `value` is a valid itimerspec; no old value wanted.
        let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &value, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Ticker { fd })
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
    fn acknowledging_with_nothing_expired_returns_zero() {
        let ticker = Ticker::new(Duration::from_secs(3600)).unwrap();
        assert_eq!(ticker.acknowledge(), 0);
    }
}

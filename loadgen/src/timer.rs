//! A timerfd as a mio source: wakes a worker's poll at a nanosecond-precise deadline.
//!
//! `Poll::poll` takes millisecond timeouts (epoll_wait), far too coarse for a schedule sending a
//! message every few hundred microseconds; the lag would land in the measured latency. An armed
//! timerfd makes the loop wake within the kernel's timer slack of the deadline without spinning.
//! The worker owns one timer and re-arms it to its next deadline after every loop pass.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A non-blocking CLOCK_MONOTONIC timerfd.
#[derive(Debug)]
pub struct Timer {
    /// The timerfd; closed on drop.
    fd: OwnedFd,
    /// The absolute deadline currently armed, to skip redundant syscalls.
    armed_ns: Option<u64>,
}

impl Timer {
    /// Creates a disarmed timer.
    pub fn new() -> io::Result<Timer> {
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
        Ok(Timer { fd, armed_ns: None })
    }

    /// Arms the timer to fire at `deadline_ns` (CLOCK_MONOTONIC); a deadline in the past fires at
    /// once.
    pub fn arm_at(&mut self, deadline_ns: u64) -> io::Result<()> {
        if self.armed_ns == Some(deadline_ns) {
            return Ok(());
        }
        // A zero it_value would disarm the timer, so the earliest deadline is 1 ns.
        let deadline_ns = deadline_ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: the fd is a timerfd we own; spec is a valid itimerspec; old value not wanted.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed_ns = Some(deadline_ns);
        Ok(())
    }

    /// Consumes an expiry so the (edge-triggered) fd can report the next one.
    pub fn acknowledge(&mut self) {
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8; EAGAIN (not expired) is fine.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            );
        }
        self.armed_ns = None;
    }
}

impl Source for Timer {
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
    use std::time::Duration;

    use mio::{Events, Poll};

    use super::*;
    use crate::clock::now_ns;

    #[test]
    fn wakes_poll_at_the_deadline() {
        let mut poll = Poll::new().unwrap();
        let mut timer = Timer::new().unwrap();
        poll.registry()
            .register(&mut timer, Token(1), Interest::READABLE)
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

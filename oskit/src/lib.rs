//! oskit: the operating-system helpers both corecast binaries need, and nothing WebSocket.
//!
//! The server and loadgen pin threads, raise the open-files limit, sleep on timerfds, read one
//! monotonic clock and parse the same human units on their command lines. Those helpers live
//! here so that neither binary reaches into the other's modules:
//! * `cpu`: CPU lists (`0,2-3`), the allowed CPU set, pinning a thread to a core.
//! * `memory`: the machine's physical memory; making freed large buffers go back to the OS.
//! * `nofile`: the open-files limit (RLIMIT_NOFILE), raised to the hard limit.
//! * `timerfd`: a CLOCK_MONOTONIC timerfd as a mio source, periodic or one-shot.
//! * `clock`: CLOCK_MONOTONIC nanoseconds, comparable across processes on one host.
//! * `units`: durations and sizes as people write them.

pub mod clock;
pub mod cpu;
pub mod memory;
pub mod nofile;
pub mod timerfd;
pub mod units;

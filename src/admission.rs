//! Admission: how many connections the server holds, and which ones it turns away.
//!
//! Every accepted socket asks `Admission::admit` once. Within `--max-connections` it gets a
//! `Seat`, which it gives back through `Admission::release` when it is dropped; beyond it, it
//! gets none, and the connection answers a WebSocket upgrade with 503 (plain HTTP requests
//! such as `/healthz` are still answered). The count is the only state workers share on the
//! accept path; it is touched on accept and close, never per message.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::protocol::http::Response;

/// The server-wide connection count against its capacity.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Connections holding a seat, across all workers.
    open: AtomicUsize,
    capacity: usize,
}

/// One unit of capacity held by a connection. Not `Clone`: a seat is released once.
#[derive(Debug)]
#[must_use = "a seat must be given back with Admission::release"]
pub(crate) struct Seat(());

impl Admission {
    pub fn new(capacity: usize) -> Admission {
        Admission {
            open: AtomicUsize::new(0),
            capacity,
        }
    }

    /// A seat when the server is below capacity.
    pub fn admit(&self) -> Option<Seat> {
        if self.open.fetch_add(1, Ordering::Relaxed) < self.capacity {
            Some(Seat(()))
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    /// Gives a seat back.
    pub fn release(&self, seat: Seat) {
        let Seat(()) = seat;
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections holding a seat now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The answer to an upgrade that arrived without a seat.
pub(crate) fn over_capacity() -> Response {
    Response::reject(503, "server at capacity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_up_to_capacity_then_none_until_one_is_released() {
        let admission = Admission::new(2);
        let a = admission.admit().expect("first seat");
        let b = admission.admit().expect("second seat");
        assert!(admission.admit().is_none());
        assert_eq!(admission.open(), 2, "a refusal holds nothing");
        admission.release(a);
        let c = admission.admit().expect("a released seat is free again");
        assert!(admission.admit().is_none());
        admission.release(b);
        admission.release(c);
        assert_eq!(admission.open(), 0);
    }

    #[test]
    fn over_capacity_is_a_503() {
        assert_eq!(over_capacity().status, 503);
    }
}

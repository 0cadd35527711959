//! One worker's end of the bridge (`fanout::bus::Remote`): it collects the frames a loop pass
//! publishes and hands them to the publisher thread as one batch at the end of the pass, and
//! reports the worker's room changes to `Interest`. It never blocks: the batch goes into an
//! unbounded channel, but only after reserving its bytes against `--redis-queue`; what does not
//! fit is dropped and counted, so a slow Redis costs a bounded amount of memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::Sender;

use crate::bridge::Shared;
use crate::fanout::bus::Remote;

/// Bytes charged per queued frame beyond its own: the room name, the `Outgoing` itself and the
/// channel's slot, roughly, so that many tiny frames are bounded too.
const OVERHEAD: usize = 64;

/// A frame on its way to Redis.
#[derive(Debug)]
pub struct Outgoing {
    pub room: Arc<str>,
    pub frame: Bytes,
}

impl Outgoing {
    /// What it counts against the queue limit.
    pub fn cost(&self) -> usize {
        self.frame.len() + self.room.len() + OVERHEAD
    }
}

/// A pass's publishes and the bytes reserved for them.
#[derive(Debug)]
pub struct Batch {
    pub frames: Vec<Outgoing>,
    pub bytes: usize,
}

pub struct Link {
    /// The worker this link serves (its index among the mailboxes).
    worker: usize,
    shared: Arc<Shared>,
    to_publisher: Sender<Batch>,
    /// This pass's publishes, in order.
    pending: Vec<Outgoing>,
}

impl Link {
    pub(super) fn new(worker: usize, shared: Arc<Shared>, to_publisher: Sender<Batch>) -> Link {
        Link {
            worker,
            shared,
            to_publisher,
            pending: Vec::new(),
        }
    }

    /// Reserves room in the queue for the longest prefix of `pending` that fits; returns how
    /// many frames and bytes that is. The rest are the newest and are dropped: what goes keeps
    /// its order.
    fn reserve(&self) -> (usize, usize) {
        let limit = self.shared.queue_limit as u64;
        let mut fit = (0, 0);
        let queued = &self.shared.meters.queued_bytes;
        let _ = queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            let room = limit.saturating_sub(now) as usize;
            let (mut n, mut bytes) = (0, 0);
            for out in &self.pending {
                if bytes + out.cost() > room {
                    break;
                }
                bytes += out.cost();
                n += 1;
            }
            fit = (n, bytes);
            (n > 0).then_some(now + bytes as u64)
        });
        fit
    }
}

impl Remote for Link {
    fn publish(&mut self, room: &Arc<str>, frame: &Bytes) {
        self.pending.push(Outgoing {
            room: room.clone(),
            frame: frame.clone(),
        });
    }

    fn room_opened(&mut self, room: &Arc<str>) {
        self.shared.interest.opened(room, self.worker);
    }

    fn room_emptied(&mut self, room: &Arc<str>) {
        self.shared.interest.emptied(room, self.worker);
    }

    fn end_pass(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (n, bytes) = self.reserve();
        let dropped = self.pending.len() - n;
        if dropped > 0 {
            self.pending.truncate(n);
            let meters = &self.shared.meters;
            meters.overflow.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if n == 0 {
            return;
        }
        let batch = Batch {
            frames: std::mem::take(&mut self.pending),
            bytes,
        };
        if let Err(unsent) = self.to_publisher.send(batch) {
            // The publisher is gone (shutting down): give the reservation back.
            let meters = &self.shared.meters;
            meters
                .queued_bytes
                .fetch_sub(unsent.0.bytes as u64, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    #[test]
    fn a_full_queue_drops_and_counts_the_newest_and_never_grows_past_its_limit() {
        let room: Arc<str> = Arc::from("r");
        let one = Outgoing {
            room: room.clone(),
            frame: frame(1000),
        }
        .cost();
        let shared = Arc::new(Shared::new(3 * one));
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut link = Link::new(0, shared.clone(), tx);
        for _ in 0..2 {
            link.publish(&room, &frame(1000));
        }
        link.end_pass();
        for i in 0..3u8 {
            link.publish(&room, &Bytes::from(vec![i; 1000]));
        }
        link.end_pass();
        let meters = &shared.meters;
        assert_eq!(meters.overflow.load(Ordering::Relaxed), 2);
        assert_eq!(meters.queued_bytes.load(Ordering::Relaxed), 3 * one as u64);
        let batches: Vec<Batch> = rx.try_iter().collect();
        assert_eq!(batches.len(), 2);
        // The second pass kept its oldest frame.
        assert_eq!(batches[1].frames.len(), 1);
        assert_eq!(batches[1].frames[0].frame[0], 0);
        // Nothing fits now: the whole pass is dropped and nothing is sent.
        link.publish(&room, &frame(1));
        link.end_pass();
        assert_eq!(meters.overflow.load(Ordering::Relaxed), 3);
        assert!(rx.try_recv().is_err());
        // Once the publisher has taken what was queued, there is room again.
        meters
            .queued_bytes
            .fetch_sub(3 * one as u64, Ordering::AcqRel);
        link.publish(&room, &frame(1));
        link.end_pass();
        assert_eq!(rx.try_recv().unwrap().frames.len(), 1);
    }

    #[test]
    fn a_quiet_pass_sends_nothing() {
        let shared = Arc::new(Shared::new(1 << 20));
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut link = Link::new(0, shared, tx);
        link.end_pass();
        assert!(rx.try_recv().is_err());
    }
}

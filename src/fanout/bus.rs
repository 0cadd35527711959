//! How a message published on one worker reaches the others.
//!
//! A published message is encoded once into a `Bytes` frame. The publishing worker queues it
//! to its own members at once and sends the same `Bytes` (a reference count, never a copy) to
//! every other worker's inbox: a bounded channel plus the worker's `mio::Waker`. Per-sender
//! order holds because each (sender worker, receiver worker) pair is one FIFO.
//!
//! `Bus` is the one seam for fan-out beyond this process: a Redis pub/sub bridge would publish
//! what `publish` is given and feed what it hears back as `Envelope::Deliver`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use mio::Waker;

/// Capacity of each worker's inbox, in messages.
pub const INBOX_CAPACITY: usize = 64 * 1024;

/// What travels between workers.
#[derive(Debug)]
pub enum Envelope {
    /// Queue `frame` (already encoded) to every local member of `room`.
    Deliver { room: Arc<str>, frame: Bytes },
    /// Begin graceful shutdown.
    Shutdown,
}

/// Sending side of one worker's inbox.
#[derive(Clone)]
pub struct Mailbox {
    pub tx: Sender<Envelope>,
    pub waker: Arc<Waker>,
}

impl Mailbox {
    /// Delivers a control message, waiting for room in the inbox if need be.
    pub fn send_blocking(&self, envelope: Envelope) {
        if self.tx.send(envelope).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// One worker's link to all the others.
pub struct Bus {
    me: usize,
    inbox: Receiver<Envelope>,
    peers: Vec<Mailbox>,
    /// Messages a full peer inbox could not take yet, per peer, in order.
    overflow: Vec<VecDeque<Envelope>>,
    /// Peers sent to during this pass: each is woken once at the end of the pass.
    touched: Vec<bool>,
}

impl Bus {
    pub fn new(me: usize, inbox: Receiver<Envelope>, peers: Vec<Mailbox>) -> Bus {
        let n = peers.len();
        Bus {
            me,
            inbox,
            peers,
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            touched: vec![false; n],
        }
    }

    /// Sends a published frame to every other worker.
    pub fn publish(&mut self, room: &Arc<str>, frame: &Bytes) {
        for peer in 0..self.peers.len() {
            if peer == self.me {
                continue;
            }
            let envelope = Envelope::Deliver {
                room: room.clone(),
                frame: frame.clone(),
            };
            self.send(peer, envelope);
        }
    }

    fn send(&mut self, peer: usize, envelope: Envelope) {
        self.touched[peer] = true;
        if !self.overflow[peer].is_empty() {
            self.overflow[peer].push_back(envelope);
            return;
        }
        match self.peers[peer].tx.try_send(envelope) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(envelope)) => self.overflow[peer].push_back(envelope),
        }
    }

    /// End of a loop pass: retry held messages and wake every peer sent to.
    pub fn end_pass(&mut self) {
        for peer in 0..self.peers.len() {
            while let Some(envelope) = self.overflow[peer].pop_front() {
                match self.peers[peer].tx.try_send(envelope) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(envelope)) => {
                        self.overflow[peer].push_front(envelope);
                        break;
                    }
                }
            }
            if mem_take(&mut self.touched[peer]) {
                let _ = self.peers[peer].waker.wake();
            }
        }
    }

    /// Messages are waiting for room in a peer's inbox: poll again soon.
    pub fn has_overflow(&self) -> bool {
        self.overflow.iter().any(|q| !q.is_empty())
    }

    /// Takes up to `max` envelopes from this worker's inbox; `true` when more may remain.
    pub fn drain_inbox(&mut self, max: usize, out: &mut Vec<Envelope>) -> bool {
        for _ in 0..max {
            match self.inbox.try_recv() {
                Ok(envelope) => out.push(envelope),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return false,
            }
        }
        true
    }
}

fn mem_take(flag: &mut bool) -> bool {
    std::mem::replace(flag, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_keeps_order_through_overflow() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx0, rx0) = crossbeam_channel::bounded(4);
        let (tx1, rx1) = crossbeam_channel::bounded(2);
        let peers = vec![
            Mailbox {
                tx: tx0,
                waker: waker.clone(),
            },
            Mailbox {
                tx: tx1,
                waker: waker.clone(),
            },
        ];
        let mut bus0 = Bus::new(0, rx0, peers);
        let room: Arc<str> = Arc::from("r");
        for i in 0..5u8 {
            bus0.publish(&room, &Bytes::from(vec![i]));
        }
        assert!(bus0.has_overflow());
        let mut got = Vec::new();
        while got.len() < 5 {
            bus0.end_pass();
            while let Ok(Envelope::Deliver { frame, .. }) = rx1.try_recv() {
                got.push(frame[0]);
            }
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(!bus0.has_overflow());
    }
}

//! How a message published on one worker reaches the others.
//!
//! A published message is encoded once into a `Bytes` frame. The publishing worker queues it
//! to its own members at once and sends the same `Bytes` (a reference count, never a copy) to
//! every other worker's inbox: a bounded channel plus the worker's `mio::Waker`. Per-sender
//! order holds because each (sender worker, receiver worker) pair is one FIFO.
//!
//! `Bus` is the one seam for fan-out beyond this process: with a `Remote` attached (the Redis
//! bridge), it also hands every published frame to it, tells it which rooms this worker has
//! members in, and lets it send a pass's publishes at the end of the pass. What the remote
//! hears from other instances comes back into the inboxes as `Envelope::Deliver`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use mio::Waker;

use crate::fanout::rooms::Changed;

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

/// The other instances, as one worker sees them. Every call is made on the worker's thread and
/// must never block it.
pub trait Remote: Send {
    /// A frame published in `room` on this worker, for the members of `room` elsewhere.
    fn publish(&mut self, room: &Arc<str>, frame: &Bytes);
    /// `room` has its first member on this worker: its messages from elsewhere are wanted.
    fn room_opened(&mut self, room: &Arc<str>);
    /// `room` has lost its last member on this worker.
    fn room_emptied(&mut self, room: &Arc<str>);
    /// End of a loop pass: send what this pass published.
    fn end_pass(&mut self);
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
    /// The other instances (`--redis`); `None` when rooms end at this process.
    remote: Option<Box<dyn Remote>>,
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
            remote: None,
        }
    }

    /// Also publishes to other instances through `remote`.
    pub fn with_remote(mut self, remote: Box<dyn Remote>) -> Bus {
        self.remote = Some(remote);
        self
    }

    /// Tells the remote that this worker's membership changed (see `Rooms`).
    pub fn rooms_changed(&mut self, changed: Changed) {
        let Some(remote) = self.remote.as_mut() else {
            return;
        };
        if let Some(room) = changed.emptied {
            remote.room_emptied(&room);
        }
        if let Some(room) = changed.opened {
            remote.room_opened(&room);
        }
    }

    /// Sends a published frame to every other worker, and to the other instances.
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
        if let Some(remote) = self.remote.as_mut() {
            remote.publish(room, frame);
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

    /// End of a loop pass: retry held messages, wake every peer sent to, hand the pass's
    /// publishes to the remote.
    pub fn end_pass(&mut self) {
        if let Some(remote) = self.remote.as_mut() {
            remote.end_pass();
        }
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

    /// Records what the bus hands a remote.
    struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

    impl Remote for Recorder {
        fn publish(&mut self, room: &Arc<str>, frame: &Bytes) {
            self.0
                .lock()
                .unwrap()
                .push(format!("publish {room} {}", frame[0]));
        }
        fn room_opened(&mut self, room: &Arc<str>) {
            self.0.lock().unwrap().push(format!("opened {room}"));
        }
        fn room_emptied(&mut self, room: &Arc<str>) {
            self.0.lock().unwrap().push(format!("emptied {room}"));
        }
        fn end_pass(&mut self) {
            self.0.lock().unwrap().push("end".to_string());
        }
    }

    #[test]
    fn a_remote_hears_publishes_membership_and_pass_ends() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, rx) = crossbeam_channel::bounded(4);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut bus = Bus::new(0, rx, vec![Mailbox { tx, waker }])
            .with_remote(Box::new(Recorder(log.clone())));
        let mut rooms = crate::fanout::rooms::Rooms::default();
        bus.rooms_changed(rooms.join(7, "r"));
        bus.rooms_changed(rooms.join(8, "r"));
        bus.publish(&Arc::from("r"), &Bytes::from_static(&[5]));
        bus.end_pass();
        bus.rooms_changed(rooms.leave(7));
        bus.rooms_changed(rooms.join(8, "s"));
        assert_eq!(
            *log.lock().unwrap(),
            ["opened r", "publish r 5", "end", "emptied r", "opened s"]
        );
    }
}

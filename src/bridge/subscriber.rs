//! The subscriber thread: one pub/sub connection subscribed to the channel of every room this
//! instance has members in (`Interest`), handing each frame another instance published to the
//! workers as `Envelope::Deliver` through their mailboxes, and skipping its own.
//!
//! The connection is read with a short timeout so that, between messages, the thread notices
//! changes of `Interest` (subscribing and unsubscribing) and shutdown. A new connection starts
//! with nothing subscribed, so after a reconnect every live room is subscribed again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::TrySendError;

use crate::bridge::connector::Connector;
use crate::bridge::wire::{self, Heard, Origin};
use crate::bridge::Shared;
use crate::fanout::bus::{Envelope, Mailbox};

/// Longest wait for a message before looking at `Interest` and the stop flag again: how late,
/// at most, a new room's subscription goes out.
const POLL: Duration = Duration::from_millis(20);
/// Time Redis has to confirm a SUBSCRIBE or UNSUBSCRIBE before the link is taken as broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Subscriber {
    pub connector: Connector,
    pub shared: Arc<Shared>,
    pub origin: Origin,
    pub prefix: String,
    pub mailboxes: Vec<Mailbox>,
    pub stop: Arc<AtomicBool>,
}

impl Subscriber {
    /// Runs until `stop` is raised.
    pub fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let Some(mut conn) = self.connector.connect() else {
                std::thread::sleep(self.connector.until_next_try().min(POLL));
                continue;
            };
            if let Err(e) = self.session(&mut conn) {
                self.connector.lost(&e);
            }
            self.shared.meters.subscriptions.store(0, Ordering::Relaxed);
        }
    }

    /// Serves one connection until it fails (`Err`) or the bridge stops (`Ok`).
    fn session(&mut self, conn: &mut redis::Connection) -> redis::RedisResult<()> {
        let mut pubsub = conn.as_pubsub();
        pubsub.set_read_timeout(Some(POLL))?;
        // Rooms subscribed on this connection, by name; the `Arc` is reused for deliveries.
        let mut subscribed: HashSet<Arc<str>> = HashSet::new();
        let mut seen = None;
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(wanted) = self.shared.interest.changed_since(&mut seen) {
                self.resubscribe(&mut pubsub, &mut subscribed, wanted)?;
            }
            match pubsub.get_message() {
                Ok(msg) => self.hand_over(&msg, &subscribed),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Brings the connection's subscriptions to `wanted`.
    fn resubscribe(
        &self,
        pubsub: &mut redis::PubSub<'_>,
        subscribed: &mut HashSet<Arc<str>>,
        wanted: Vec<Arc<str>>,
    ) -> redis::RedisResult<()> {
        let wanted: HashSet<Arc<str>> = wanted.into_iter().collect();
        let gone: Vec<String> = subscribed
            .difference(&wanted)
            .map(|room| self.channel(room))
            .collect();
        let new: Vec<String> = wanted
            .difference(subscribed)
            .map(|room| self.channel(room))
            .collect();
        if gone.is_empty() && new.is_empty() {
            return Ok(());
        }
        pubsub.set_read_timeout(Some(CONFIRM_TIMEOUT))?;
        // Never with an empty list: UNSUBSCRIBE without channels means every channel.
        if !gone.is_empty() {
            pubsub.unsubscribe(&gone)?;
        }
        if !new.is_empty() {
            pubsub.subscribe(&new)?;
        }
        pubsub.set_read_timeout(Some(POLL))?;
        *subscribed = wanted;
        let meters = &self.shared.meters;
        meters
            .subscriptions
            .store(subscribed.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn hand_over(&self, msg: &redis::Msg, subscribed: &HashSet<Arc<str>>) {
        let meters = &self.shared.meters;
        let room = msg.get_channel_name().strip_prefix(self.prefix.as_str());
        // A message for a room unsubscribed a moment ago has no local member left.
        let Some(room) = room.and_then(|room| subscribed.get(room)) else {
            return;
        };
        let frame = match wire::decode(&self.origin, msg.get_payload_bytes()) {
            Heard::Foreign(frame) => frame,
            Heard::Echo => {
                meters.echoes.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Heard::Malformed => {
                meters.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        meters.received.fetch_add(1, Ordering::Relaxed);
        for mailbox in &self.mailboxes {
            let envelope = Envelope::Deliver {
                room: room.clone(),
                frame: frame.clone(),
            };
            match mailbox.tx.try_send(envelope) {
                Ok(()) => {
                    let _ = mailbox.waker.wake();
                }
                Err(TrySendError::Full(_)) => {
                    meters.inbox_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    fn channel(&self, room: &str) -> String {
        format!("{}{room}", self.prefix)
    }
}

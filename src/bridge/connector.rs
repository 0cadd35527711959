//! Connecting to Redis again and again: a backoff between failed attempts, and one log line per
//! change of state (down at start, lost, up again), never one per attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bridge::Shared;

/// Wait after the first failed attempt; doubled on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between attempts: how late at most a restarted Redis is noticed.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Time a connection attempt (TCP and the client's set-up commands) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which of the bridge's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Subscriber,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }
}

pub struct Connector {
    client: redis::Client,
    role: Role,
    shared: Arc<Shared>,
    backoff: Duration,
    next_try: Instant,
    /// The state last logged; `None` before the first attempt.
    logged_up: Option<bool>,
    /// `unlinked` when the link went down, so that coming back up can say how many frames the
    /// outage cost.
    unlinked_at_down: u64,
}

impl Connector {
    pub fn new(client: redis::Client, role: Role, shared: Arc<Shared>) -> Connector {
        Connector {
            client,
            role,
            shared,
            backoff: FIRST_BACKOFF,
            next_try: Instant::now(),
            logged_up: None,
            unlinked_at_down: 0,
        }
    }

    /// A new connection, when an attempt is due and succeeds.
    pub fn connect(&mut self) -> Option<redis::Connection> {
        if Instant::now() < self.next_try {
            return None;
        }
        match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(conn) => {
                self.backoff = FIRST_BACKOFF;
                self.up_gauge().store(1, Ordering::Relaxed);
                self.connects().fetch_add(1, Ordering::Relaxed);
                self.log_up();
                Some(conn)
            }
            Err(e) => {
                self.down(&e);
                self.next_try = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                None
            }
        }
    }

    /// The connection failed: the next attempt may come at once (Redis may only have dropped
    /// this connection); if that fails too, the backoff applies.
    pub fn lost(&mut self, error: &redis::RedisError) {
        self.down(error);
        self.next_try = Instant::now();
    }

    /// Time until the next attempt is due.
    pub fn until_next_try(&self) -> Duration {
        self.next_try.saturating_duration_since(Instant::now())
    }

    fn down(&mut self, error: &redis::RedisError) {
        self.up_gauge().store(0, Ordering::Relaxed);
        if self.logged_up == Some(false) {
            return;
        }
        let addr = self.client.get_connection_info().addr();
        let role = self.role.name();
        if self.logged_up.is_none() {
            tracing::warn!(%addr, %error, "redis {role}: cannot connect; rooms stay local, retrying with backoff");
        } else {
            tracing::warn!(%addr, %error, "redis {role}: link lost; retrying with backoff");
        }
        self.logged_up = Some(false);
        self.unlinked_at_down = self.shared.meters.unlinked.load(Ordering::Relaxed);
    }

    fn log_up(&mut self) {
        if self.logged_up == Some(true) {
            return;
        }
        let addr = self.client.get_connection_info().addr();
        let role = self.role.name();
        let dropped = self.shared.meters.unlinked.load(Ordering::Relaxed) - self.unlinked_at_down;
        match (self.logged_up, self.role) {
            (None, _) => tracing::info!(%addr, "redis {role}: connected"),
            (_, Role::Publisher) if dropped > 0 => {
                tracing::warn!(%addr, dropped, "redis {role}: link up; frames published while it was down were dropped")
            }
            (_, Role::Publisher) => tracing::info!(%addr, "redis {role}: link up"),
            (_, Role::Subscriber) => {
                tracing::info!(%addr, "redis {role}: link up; subscribing every room again")
            }
        }
        self.logged_up = Some(true);
    }

    fn up_gauge(&self) -> &AtomicU64 {
        match self.role {
            Role::Publisher => &self.shared.meters.publisher_up,
            Role::Subscriber => &self.shared.meters.subscriber_up,
        }
    }

    fn connects(&self) -> &AtomicU64 {
        match self.role {
            Role::Publisher => &self.shared.meters.publisher_connects,
            Role::Subscriber => &self.shared.meters.subscriber_connects,
        }
    }
}

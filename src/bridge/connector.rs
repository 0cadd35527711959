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
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which of the bridge's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    /// A pub/sub connection (one per shard with `--redis-cluster`).
    Subscriber,
    /// The connection that reads a cluster's shard map.
    Topology,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
            Role::Topology => "cluster map",
        }
    }
}

/// Opens one kind of connection (`T`) to one place (`target`, for the logs).
pub struct Connector<T> {
    dial: Box<dyn FnMut() -> redis::RedisResult<T> + Send>,
    target: String,
    role: Role,
    shared: Arc<Shared>,
    backoff: Duration,
    next_try: Instant,
    /// The state last logged; `None` before the first attempt.
    logged_up: Option<bool>,
    /// Whether this connector counts in its role's gauge of connections up now.
    counted_up: bool,
    /// `unlinked` when the link went down, so that coming back up can say how many frames the
    /// outage cost.
    unlinked_at_down: u64,
}

impl<T> Connector<T> {
    pub fn new(
        role: Role,
        target: String,
        shared: Arc<Shared>,
        dial: impl FnMut() -> redis::RedisResult<T> + Send + 'static,
    ) -> Connector<T> {
        Connector {
            dial: Box::new(dial),
            target,
            role,
            shared,
            backoff: FIRST_BACKOFF,
            next_try: Instant::now(),
            logged_up: None,
            counted_up: false,
            unlinked_at_down: 0,
        }
    }

    /// A new connection, when an attempt is due and succeeds.
    pub fn connect(&mut self) -> Option<T> {
        if Instant::now() < self.next_try {
            return None;
        }
        match (self.dial)() {
            Ok(conn) => {
                self.backoff = FIRST_BACKOFF;
                self.count_up(true);
                if let Some(connects) = self.connects() {
                    connects.fetch_add(1, Ordering::Relaxed);
                }
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
        self.count_up(false);
        if self.logged_up == Some(false) {
            return;
        }
        let (target, role) = (&self.target, self.role.name());
        if self.logged_up.is_none() {
            tracing::warn!(redis = %target, %error, "redis {role}: cannot connect; rooms stay local, retrying with backoff");
        } else {
            tracing::warn!(redis = %target, %error, "redis {role}: link lost; retrying with backoff");
        }
        self.logged_up = Some(false);
        self.unlinked_at_down = self.shared.meters.unlinked.load(Ordering::Relaxed);
    }

    fn log_up(&mut self) {
        if self.logged_up == Some(true) {
            return;
        }
        let (target, role) = (&self.target, self.role.name());
        let dropped = self.shared.meters.unlinked.load(Ordering::Relaxed) - self.unlinked_at_down;
        match (self.logged_up, self.role) {
            (None, _) => tracing::info!(redis = %target, "redis {role}: connected"),
            (_, Role::Publisher) if dropped > 0 => {
                tracing::warn!(redis = %target, dropped, "redis {role}: link up; frames published while it was down were dropped")
            }
            (_, Role::Subscriber) => {
                tracing::info!(redis = %target, "redis {role}: link up; subscribing every room again")
            }
            (_, _) => tracing::info!(redis = %target, "redis {role}: link up"),
        }
        self.logged_up = Some(true);
    }

    /// Keeps the role's gauge of connections up in step with this connector.
    fn count_up(&mut self, up: bool) {
        if self.counted_up == up {
            return;
        }
        self.counted_up = up;
        let meters = &self.shared.meters;
        let gauge = match self.role {
            Role::Publisher => &meters.publisher_up,
            Role::Subscriber => &meters.subscriber_up,
            Role::Topology => return,
        };
        if up {
            gauge.fetch_add(1, Ordering::Relaxed);
        } else {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn connects(&self) -> Option<&AtomicU64> {
        let meters = &self.shared.meters;
        match self.role {
            Role::Publisher => Some(&meters.publisher_connects),
            Role::Subscriber => Some(&meters.subscriber_connects),
            Role::Topology => None,
        }
    }
}

impl<T> Drop for Connector<T> {
    fn drop(&mut self) {
        self.count_up(false);
    }
}

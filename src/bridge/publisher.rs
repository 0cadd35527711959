//! The publisher thread: takes the workers' batches off the queue and writes them to Redis on
//! one connection, as one pipeline of PUBLISH commands per round (everything queued, up to a
//! bound), so a busy pass costs one round trip. With `--redis-cluster` the connection is the
//! client's cluster connection and the commands are SPUBLISH, each routed by the client to the
//! shard that owns its room's channel. While the link is down it keeps draining the
//! queue, dropping and counting what it takes, so neither the queue nor a worker ever waits
//! for Redis.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::bridge::connector::Connector;
use crate::bridge::link::Batch;
use crate::bridge::link::Outgoing;
use crate::bridge::wire::{self, Origin};
use crate::bridge::Shared;

/// Frames per pipeline, at most: later batches wait for the next round.
const PIPELINE_FRAMES: usize = 4096;
/// Bytes per pipeline, at most.
const PIPELINE_BYTES: usize = 4 << 20;
/// A Redis that has not answered a pipeline (or a ping) for this long is taken as down. Long
/// enough that a slow Redis is waited for (the queue bounds what piles up meanwhile) rather
/// than abandoned with frames it may still publish after their successors.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// With nothing to publish for this long, a PING checks that the link still works, so its
/// state (and the log) follows Redis going away even when nobody publishes.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The publishing connection.
pub enum Sink {
    /// One Redis: PUBLISH.
    Node(redis::Connection),
    /// A cluster: SPUBLISH, routed by channel. (Boxed: it is much larger than a plain
    /// connection, and there is one sink per process.)
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Sink {
    fn set_timeouts(&self, timeout: Duration) -> redis::RedisResult<()> {
        match self {
            Sink::Node(conn) => conn
                .set_read_timeout(Some(timeout))
                .and_then(|()| conn.set_write_timeout(Some(timeout))),
            Sink::Cluster(conn) => conn
                .set_read_timeout(Some(timeout))
                .and_then(|()| conn.set_write_timeout(Some(timeout))),
        }
    }

    /// Publishes `frames` as one pipeline; `payload` makes each one's channel and message.
    fn publish<'a>(
        &mut self,
        frames: impl Iterator<Item = &'a Outgoing>,
        mut payload: impl FnMut(&Outgoing) -> (String, Vec<u8>),
    ) -> redis::RedisResult<()> {
        match self {
            Sink::Node(conn) => {
                let mut pipe = redis::pipe();
                for out in frames {
                    let (channel, message) = payload(out);
                    pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
                }
                pipe.exec(conn)
            }
            Sink::Cluster(conn) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for out in frames {
                    let (channel, message) = payload(out);
                    pipe.cmd("SPUBLISH").arg(channel).arg(message).ignore();
                }
                pipe.exec(conn)
            }
        }
    }

    fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Sink::Node(conn) => redis::cmd("PING").exec(conn),
            Sink::Cluster(conn) => redis::cmd("PING").exec(conn),
        }
    }
}

pub struct Publisher {
    connector: Connector<Sink>,
    conn: Option<Sink>,
    shared: Arc<Shared>,
    origin: Origin,
    prefix: String,
    last_used: Instant,
}

impl Publisher {
    pub fn new(
        connector: Connector<Sink>,
        shared: Arc<Shared>,
        origin: Origin,
        prefix: String,
    ) -> Publisher {
        Publisher {
            connector,
            conn: None,
            shared,
            origin,
            prefix,
            last_used: Instant::now(),
        }
    }

    /// Runs until every worker's `Link` is gone.
    pub fn run(mut self, queue: Receiver<Batch>) {
        self.connect();
        loop {
            let wait = match self.conn {
                Some(_) => IDLE_CHECK,
                None => self.connector.until_next_try().min(IDLE_CHECK),
            };
            match queue.recv_timeout(wait) {
                Ok(batch) => {
                    let mut round = vec![batch];
                    let (mut frames, mut bytes) = (round[0].frames.len(), round[0].bytes);
                    while frames < PIPELINE_FRAMES && bytes < PIPELINE_BYTES {
                        let Ok(batch) = queue.try_recv() else { break };
                        frames += batch.frames.len();
                        bytes += batch.bytes;
                        round.push(batch);
                    }
                    self.send(&round, frames);
                    let queued = &self.shared.meters.queued_bytes;
                    queued.fetch_sub(bytes as u64, Ordering::AcqRel);
                }
                Err(RecvTimeoutError::Timeout) => self.idle(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn send(&mut self, round: &[Batch], frames: usize) {
        if self.conn.is_none() {
            self.connect();
        }
        let meters = &self.shared.meters;
        let Some(conn) = self.conn.as_mut() else {
            meters.unlinked.fetch_add(frames as u64, Ordering::Relaxed);
            return;
        };
        let (origin, prefix) = (&self.origin, &self.prefix);
        let frames_of_round = round.iter().flat_map(|batch| &batch.frames);
        self.last_used = Instant::now();
        let sent = conn.publish(frames_of_round, |out| {
            (
                format!("{prefix}{}", out.room),
                wire::encode(origin, &out.frame),
            )
        });
        match sent {
            Ok(()) => {
                meters.published.fetch_add(frames as u64, Ordering::Relaxed);
            }
            Err(e) => {
                meters.unlinked.fetch_add(frames as u64, Ordering::Relaxed);
                self.lose(&e);
            }
        }
    }

    fn idle(&mut self) {
        match self.conn.as_mut() {
            None => self.connect(),
            Some(conn) if self.last_used.elapsed() >= IDLE_CHECK => {
                self.last_used = Instant::now();
                if let Err(e) = conn.ping() {
                    self.lose(&e);
                }
            }
            Some(_) => {}
        }
    }

    fn connect(&mut self) {
        let Some(conn) = self.connector.connect() else {
            return;
        };
        match conn.set_timeouts(ANSWER_TIMEOUT) {
            Ok(()) => {
                self.conn = Some(conn);
                self.last_used = Instant::now();
            }
            Err(e) => self.connector.lost(&e),
        }
    }

    fn lose(&mut self, error: &redis::RedisError) {
        self.conn = None;
        self.connector.lost(error);
    }
}

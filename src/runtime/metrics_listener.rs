//! `/metrics` and `/stats.json`: the pages built from what the workers published, and the
//! optional listener (`--metrics-listen`) that serves them on an address of their own.
//!
//! The separate listener is one small thread with a blocking `std::net::TcpListener`, not a
//! part of a worker's loop: a scrape then costs the workers nothing (the thread reads the
//! atomics they publish once per tick and encodes on its own time), and nothing it does, a
//! slow scraper included, can delay a worker's connections. It serves one request at a time,
//! which is what a scraper needs, and bounds what a client can hold: a request head of at most
//! `MAX_REQUEST_HEAD` bytes, read and write timeouts of `IO_TIMEOUT`, then the socket closes.
//! Without `--metrics-listen` the same pages are answered on the public port by the
//! connections themselves (see `connection::StatsPages`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::metrics::{Snapshot, WorkerSnapshot, PROMETHEUS_CONTENT_TYPE};
use crate::protocol::http::{self, Decision, Response, StatsPage, MAX_REQUEST_HEAD};
use crate::runtime::worker::Shared;
use crate::stats::SharedCounters;

/// How long a scraper may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the workers published, copied out now.
pub(crate) fn snapshot(shared: &Shared) -> Snapshot {
    Snapshot {
        workers: shared
            .stats
            .iter()
            .zip(&shared.pass_times)
            .map(|(counters, passes)| WorkerSnapshot {
                counters: SharedCounters::snapshot(counters),
                pass_times: passes.snapshot(),
            })
            .collect(),
        capacity: shared.capacity,
        bridge: shared
            .bridge
            .get()
            .map(|source| source.snapshot().metrics())
            .unwrap_or_default(),
    }
}

/// The answer for a stats page.
pub(crate) fn page(shared: &Shared, page: StatsPage) -> Response {
    let snapshot = snapshot(shared);
    match page {
        StatsPage::Prometheus => {
            Response::ok(PROMETHEUS_CONTENT_TYPE, snapshot.prometheus().as_bytes())
        }
        StatsPage::Json => Response::ok("application/json", snapshot.json().as_bytes()),
    }
}

/// The thread serving the stats pages on their own address; stopped when dropped.
#[derive(Debug)]
pub(crate) struct MetricsListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsListener {
    /// Binds `addr` and starts serving.
    pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<MetricsListener> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("corecast-metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    // A failed accept or a client that misbehaves costs only its own request.
                    if let Ok(stream) = stream {
                        if let Err(e) = serve(stream, &shared) {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    }
                }
            })?;
        Ok(MetricsListener {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread blocks in accept: one connection wakes it to see the flag.
        let woke = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT).is_ok();
        if let Some(thread) = self.thread.take() {
            if woke {
                let _ = thread.join();
            }
        }
    }
}

/// Answers one request: the stats pages and `/healthz` (GET only), 404 for any other path;
/// then closes.
fn serve(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let parsed = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // gone before finishing its request
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_request(&buf) {
            Ok(None) if buf.len() <= MAX_REQUEST_HEAD => continue,
            Ok(None) => break Err(http::ParseError::TooLarge),
            Ok(Some((head, _))) => break Ok(head),
            Err(e) => break Err(e),
        }
    };
    let response = match parsed {
        Err(e) => e.response(),
        Ok(head) => match http::decide(&head, &http::Policy::default()) {
            Decision::Stats(p) => page(shared, p),
            Decision::Respond(r) if r.status == 200 && head.path.starts_with("/healthz") => r,
            Decision::Respond(r) if r.status == 405 => r,
            _ => Response::reject(
                404,
                "not found: this address serves /metrics and /stats.json",
            ),
        },
    };
    stream.write_all(&response.bytes)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Read what the client still sends (nothing, usually) so closing does not reset the
    // connection under the answer.
    let _ = stream.read(&mut chunk);
    Ok(())
}

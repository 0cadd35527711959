//! Starting and stopping a server: validates the configuration, opens one listener and one
//! poller per worker, wires the workers' inboxes together, starts the pinned threads, and
//! later asks them to shut down and collects their counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::{Poll, Waker};

use crate::admission::Admission;
use crate::bridge::{self, Bridge, BridgeStats};
use crate::config::Config;
use crate::connection::Limits;
use crate::error::Error;
use crate::fanout::bus::{Bus, Envelope, Mailbox, INBOX_CAPACITY};
use crate::runtime::listener;
use crate::runtime::metrics_listener::MetricsListener;
use crate::runtime::transport::Transport;
use crate::runtime::worker::{Shared, Worker, WorkerSetup, WAKER};
use crate::stats::{Counters, SharedCounters, SharedPassTimes};
use crate::tls::{Acceptor, CertError, Certs, TlsSocket};
use oskit::cpu as affinity;
use oskit::nofile as rlimit;

/// Descriptors kept free of connections: listeners, pollers, wakers, logs.
const RESERVED_FDS: u64 = 32;
/// Allocations at least this large get their own mapping (see `oskit::memory`).
pub(crate) const MAP_LARGE_ALLOCATIONS: usize = 256 << 10;

/// A running server. Dropping it shuts it down gracefully.
pub struct Server {
    addr: SocketAddr,
    workers: Vec<JoinHandle<Counters>>,
    stopper: Stopper,
    shared: Arc<Shared>,
    capacity: usize,
    stats_logger: Option<(JoinHandle<()>, Sender<()>)>,
    /// Serves the stats pages on `--metrics-listen`; stopped when dropped.
    metrics: Option<MetricsListener>,
    /// The link to other instances (`--redis`); dropped after the workers exit.
    bridge: Option<Bridge>,
    /// The TLS certificate in use (`--tls-cert`), for reloads.
    certs: Option<Arc<Certs>>,
    /// Checks the certificate files for changes (`Config::tls_watch`); stopped when dropped.
    cert_watch: Option<(JoinHandle<()>, Sender<()>)>,
}

/// Reloads the TLS certificate from its files (what SIGHUP does); clonable so a signal thread
/// can hold one.
#[derive(Clone)]
pub struct TlsReloader {
    certs: Arc<Certs>,
}

impl TlsReloader {
    /// Reads the certificate and key files again. New connections get the new certificate;
    /// established ones keep theirs. On error (logged) the old certificate stays.
    pub fn reload(&self) -> Result<(), Error> {
        reload(&self.certs)
    }
}

fn reload(certs: &Certs) -> Result<(), Error> {
    log_reload(certs, certs.reload())
}

/// Logs a reload's outcome: one line either way.
fn log_reload(certs: &Certs, result: Result<(), CertError>) -> Result<(), Error> {
    match result {
        Ok(()) => {
            tracing::info!(
                cert = %certs.files().cert.display(),
                generation = certs.generation(),
                "TLS certificate reloaded: new connections get it"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS certificate not reloaded: keeping the current one");
            Err(Error::Tls(e.to_string()))
        }
    }
}

/// Asks every worker to shut down; clonable so a signal thread can hold one.
#[derive(Clone)]
pub struct Stopper {
    mailboxes: Vec<Mailbox>,
}

impl Stopper {
    /// Starts graceful shutdown: workers stop accepting, send 1001 to every connection and exit
    /// once the close handshakes finish or the shutdown timeout passes.
    pub fn stop(&self) {
        for mailbox in &self.mailboxes {
            mailbox.send_blocking(Envelope::Shutdown);
        }
    }
}

impl Server {
    /// Binds every worker's listener and starts the workers.
    pub fn bind(config: Config) -> Result<Server, Error> {
        let workers = config
            .workers
            .unwrap_or_else(|| affinity::default_threads(config.cpus.as_ref()));
        let memory_limit = config.memory_limit.unwrap_or_else(default_memory_limit);
        validate(&config, workers, memory_limit)?;
        // Before anything starts: a certificate that cannot be served is a startup error.
        let certs = match &config.tls {
            Some(files) => Some(Arc::new(
                Certs::load(files).map_err(|e| Error::Tls(e.to_string()))?,
            )),
            None => None,
        };
        let memory_share = memory_limit / workers;
        // Buffers a peer makes us grow get their own mappings, so they go back to the OS the
        // moment they are freed, whatever was freed before.
        oskit::memory::map_large_allocations(MAP_LARGE_ALLOCATIONS);
        let nofile = rlimit::raise_nofile_limit().unwrap_or(1024);
        let derived = nofile
            .saturating_sub(RESERVED_FDS + 4 * workers as u64)
            .max(1) as usize;
        let capacity = config.max_connections.unwrap_or(derived);
        let listeners =
            listener::bind_all(config.listen, workers, config.backlog).map_err(|source| {
                Error::Bind {
                    addr: config.listen,
                    source,
                }
            })?;
        let addr = listeners[0].local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;

        let mut polls = Vec::with_capacity(workers);
        let mut mailboxes = Vec::with_capacity(workers);
        let mut inboxes: Vec<Receiver<Envelope>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new().map_err(Error::Poll)?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(Error::Poll)?);
            let (tx, rx) = crossbeam_channel::bounded(INBOX_CAPACITY);
            polls.push(poll);
            mailboxes.push(Mailbox { tx, waker });
            inboxes.push(rx);
        }
        let shared = Arc::new(Shared {
            admission: Admission::new(capacity),
            stats: (0..workers).map(|_| SharedCounters::default()).collect(),
            pass_times: (0..workers).map(|_| SharedPassTimes::default()).collect(),
            capacity,
            public_stats: config.metrics_listen.is_none(),
            bridge: std::sync::OnceLock::new(),
        });
        let metrics = match config.metrics_listen {
            Some(at) => Some(
                MetricsListener::start(at, shared.clone())
                    .map_err(|source| Error::Bind { addr: at, source })?,
            ),
            None => None,
        };
        let limits = Limits::new(&config);
        let cores = affinity::available_cores(config.cpus.as_ref());
        let stopper = Stopper {
            mailboxes: mailboxes.clone(),
        };
        let target = match (&config.redis, config.redis_cluster.as_slice()) {
            (Some(url), _) => Some(bridge::Target::Single(url)),
            (None, []) => None,
            (None, seeds) => Some(bridge::Target::Cluster(seeds)),
        };
        let (bridge, links) = match target {
            Some(target) => {
                let settings = bridge::Settings {
                    target,
                    prefix: &config.redis_prefix,
                    queue_limit: config.redis_queue,
                };
                let (bridge, links) =
                    Bridge::start(settings, mailboxes.clone()).map_err(Error::Bridge)?;
                let _ = shared.bridge.set(bridge.stats_source());
                (Some(bridge), links)
            }
            None => (None, Vec::new()),
        };
        let mut links = links.into_iter();

        let mut handles = Vec::with_capacity(workers);
        for (id, ((poll, listener), inbox)) in
            polls.into_iter().zip(listeners).zip(inboxes).enumerate()
        {
            let core = (config.pin && !cores.is_empty()).then(|| cores[id % cores.len()]);
            let mut bus = Bus::new(id, inbox, mailboxes.clone());
            if let Some(link) = links.next() {
                bus = bus.with_remote(Box::new(link));
            }
            let setup = WorkerSetup {
                id,
                core,
                poll,
                listener,
                bus,
                limits: limits.clone(),
                memory_share,
                shared: shared.clone(),
                shutdown_timeout: config.shutdown_timeout,
            };
            let spawned = match &certs {
                Some(certs) => spawn_worker::<TlsSocket>(setup, Acceptor::new(certs.clone())),
                None => spawn_worker::<mio::net::TcpStream>(setup, ()),
            };
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    stopper.stop();
                    return Err(Error::Spawn(e));
                }
            }
        }
        let pinned = if config.pin && !cores.is_empty() {
            format!(
                "{:?}",
                (0..workers)
                    .map(|i| cores[i % cores.len()])
                    .collect::<Vec<_>>()
            )
        } else {
            "unpinned".to_string()
        };
        tracing::info!(
            %addr,
            tls = certs.is_some(),
            workers,
            cores = %pinned,
            capacity,
            nofile,
            memory_limit_mib = memory_limit >> 20,
            "corecast listening"
        );
        match &metrics {
            Some(m) => {
                tracing::info!(metrics = %m.local_addr(), "metrics on their own listener: http://{}/metrics", m.local_addr())
            }
            None => tracing::info!("metrics at http://{addr}/metrics"),
        }
        let stats_logger = (!config.stats_interval.is_zero())
            .then(|| spawn_stats_logger(shared.clone(), config.stats_interval));
        let cert_watch = match &certs {
            Some(certs) if !config.tls_watch.is_zero() => {
                Some(spawn_cert_watch(certs.clone(), config.tls_watch))
            }
            _ => None,
        };
        Ok(Server {
            addr,
            workers: handles,
            stopper,
            shared,
            capacity,
            stats_logger,
            metrics,
            bridge,
            certs,
            cert_watch,
        })
    }

    /// Reloads the TLS certificate; `None` when the server does not serve TLS.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.certs.clone().map(|certs| TlsReloader { certs })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections the server admits before answering 503.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Where `/metrics` is served when it has its own listener (`Config::metrics_listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.stats.len()
    }

    /// Each worker's counters as of its last tick.
    pub fn stats(&self) -> Vec<Counters> {
        self.shared
            .stats
            .iter()
            .map(SharedCounters::snapshot)
            .collect()
    }

    /// The Redis bridge's counters; `None` without `--redis`.
    pub fn bridge_stats(&self) -> Option<BridgeStats> {
        self.bridge.as_ref().map(Bridge::stats)
    }

    /// A handle that can start shutdown from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Shuts down gracefully and returns the totals across workers.
    pub fn shutdown(mut self) -> Counters {
        self.stopper.stop();
        self.join()
    }

    /// Waits until the workers exit (after someone called `Stopper::stop`); returns totals.
    pub fn wait(mut self) -> Counters {
        self.join()
    }

    fn join(&mut self) -> Counters {
        let mut total = Counters::default();
        for handle in self.workers.drain(..) {
            match handle.join() {
                Ok(counters) => total.add(&counters),
                Err(_) => tracing::error!("a worker thread panicked"),
            }
        }
        for (handle, stop) in [self.stats_logger.take(), self.cert_watch.take()]
            .into_iter()
            .flatten()
        {
            drop(stop);
            let _ = handle.join();
        }
        self.metrics = None;
        // After the workers: their links are gone, so the publisher has nothing left to send.
        drop(self.bridge.take());
        total
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.stopper.stop();
            self.join();
        }
    }
}

/// Half the physical memory (the rest is for the kernel's socket buffers, about 8 KB per
/// loopback connection pair, and everything else on the machine); 1 GiB when unknown.
fn default_memory_limit() -> usize {
    oskit::memory::physical_memory()
        .map(|bytes| (bytes / 2) as usize)
        .unwrap_or(1 << 30)
}

fn validate(config: &Config, workers: usize, memory_limit: usize) -> Result<(), Error> {
    let fail = |msg: &str| Err(Error::Config(msg.to_string()));
    if workers == 0 || workers > 1024 {
        return fail("workers must be between 1 and 1024");
    }
    if config.read_buffer < 64 {
        return fail("read buffer must be at least 64 bytes");
    }
    if config.max_message_size == 0 {
        return fail("max message size must be at least 1 byte");
    }
    if config.max_backlog == 0 {
        return fail("max backlog must be at least 1 byte");
    }
    let needed = (config.max_message_size + config.max_backlog).saturating_mul(workers);
    if memory_limit < needed {
        return Err(Error::Config(format!(
            "memory limit {} MiB is too small: each of the {workers} workers' shares must fit \
             one largest message plus one full backlog ({} MiB in all); raise --memory-limit or \
             lower --max-message-size / --max-backlog / --workers",
            memory_limit >> 20,
            needed.div_ceil(1 << 20)
        )));
    }
    if config.max_connections == Some(0) {
        return fail("max connections must be at least 1");
    }
    if config.handshake_timeout.is_zero() || config.close_timeout.is_zero() {
        return fail("handshake and close timeouts must be positive");
    }
    if config.cpus.as_ref().is_some_and(|c| c.0.is_empty()) {
        return fail("CPU list is empty");
    }
    let bridged = config.redis.is_some() || !config.redis_cluster.is_empty();
    if bridged && config.redis_queue == 0 {
        return fail("redis queue must be at least 1 byte");
    }
    if config.redis.is_some() && !config.redis_cluster.is_empty() {
        return fail("--redis and --redis-cluster exclude each other");
    }
    Ok(())
}

/// Starts a worker thread whose connections run over `T`.
fn spawn_worker<T: Transport>(
    setup: WorkerSetup,
    acceptor: T::Acceptor,
) -> std::io::Result<JoinHandle<Counters>> {
    let id = setup.id;
    std::thread::Builder::new()
        .name(format!("corecast-worker-{id}"))
        .spawn(move || match Worker::<T>::new(setup, acceptor) {
            Ok(worker) => worker.run(),
            Err(e) => {
                tracing::error!(worker = id, error = %e, "worker failed to start");
                Counters::default()
            }
        })
}

/// Checks the certificate files every `every` and reloads them when they changed, so a
/// renewal (ACME, say) needs no signal. A half-written pair fails to load and is logged; the
/// next change (the other file landing) loads it.
fn spawn_cert_watch(certs: Arc<Certs>, every: Duration) -> (JoinHandle<()>, Sender<()>) {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let handle = std::thread::spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
            if let Some(result) = certs.reload_if_changed() {
                // On error the current certificate stays; the log line says why.
                let _ = log_reload(&certs, result);
            }
        }
    });
    (handle, stop_tx)
}

fn spawn_stats_logger(shared: Arc<Shared>, every: Duration) -> (JoinHandle<()>, Sender<()>) {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let handle = std::thread::spawn(move || {
        let mut last: Vec<Counters> = shared.stats.iter().map(SharedCounters::snapshot).collect();
        let secs = every.as_secs_f64();
        while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
            let now: Vec<Counters> = shared.stats.iter().map(SharedCounters::snapshot).collect();
            if let Some(line) = stats_line(&now, &last, secs) {
                tracing::info!("stats {line}");
            }
            last = now;
        }
    });
    (handle, stop_tx)
}

/// The periodic stats line, or `None` when nothing changed since the last one (an idle server
/// stays quiet).
fn stats_line(now: &[Counters], last: &[Counters], secs: f64) -> Option<String> {
    if now == last {
        return None;
    }
    let per_worker: Vec<String> = now
        .iter()
        .zip(last)
        .enumerate()
        .map(|(i, (n, l))| {
            format!(
                "w{i}: conns={} in/s={:.0} out/s={:.0}",
                n.connections,
                n.msgs_in.saturating_sub(l.msgs_in) as f64 / secs,
                n.msgs_out.saturating_sub(l.msgs_out) as f64 / secs
            )
        })
        .collect();
    Some(per_worker.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_line_appears_only_when_something_changed() {
        let idle = vec![Counters::default(); 2];
        assert_eq!(stats_line(&idle, &idle, 1.0), None);
        let mut busy = idle.clone();
        busy[1].msgs_in = 10;
        busy[1].connections = 1;
        let line = stats_line(&busy, &idle, 2.0).unwrap();
        assert!(line.contains("w1: conns=1 in/s=5"), "{line}");
        assert_eq!(
            stats_line(&busy, &busy, 1.0),
            None,
            "held connections alone: quiet"
        );
    }
}

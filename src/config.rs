//! Server configuration: every tunable in one plain struct with the embedded defaults.
//!
//! The CLI (`cli`) fills it from flags and `CORECAST_*` variables; tests and benches build it
//! directly. Nothing here touches the OS.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use oskit::cpu::CpuList;

/// Everything a running server needs to know. `Config::default()` is a working server on
/// `127.0.0.1:9998`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address every worker's listener binds (SO_REUSEPORT). Port 0 picks a free port once and
    /// binds all workers to it.
    pub listen: SocketAddr,
    /// Worker threads; `None` means one per available core.
    pub workers: Option<usize>,
    /// Cores to pin workers to; `None` means the process's allowed CPU set.
    pub cpus: Option<CpuList>,
    /// Pin each worker to its own core.
    pub pin: bool,
    /// Listen backlog of each worker's socket.
    pub backlog: u32,
    /// tungstenite read buffer per connection: the dominant part of per-connection memory.
    pub read_buffer: usize,
    /// Pending outbound bytes per connection before backpressure applies.
    pub max_backlog: usize,
    /// Largest message (and frame) accepted; larger closes with 1009.
    pub max_message_size: usize,
    /// Silence after which a connection is closed; a ping goes out at half of it. Zero disables.
    pub idle_timeout: Duration,
    /// Time a new connection has to complete its HTTP request.
    pub handshake_timeout: Duration,
    /// Time a peer has to finish a close handshake (and to read our final bytes).
    pub close_timeout: Duration,
    /// Time graceful shutdown waits for close handshakes.
    pub shutdown_timeout: Duration,
    /// Open connections across all workers beyond which new ones get 503. `None` derives it from
    /// RLIMIT_NOFILE.
    pub max_connections: Option<usize>,
    /// Bytes all peers together may make the server hold (partial messages, read-ahead, queued
    /// replies), split equally between workers; beyond a worker's share it sheds the
    /// connections holding the most. `None`: half of the machine's physical memory.
    pub memory_limit: Option<usize>,
    /// Subprotocols the server supports, in no particular order. Empty: accept the client's
    /// first offer.
    pub protocols: Vec<String>,
    /// Origins allowed to upgrade. Empty: any origin.
    pub allowed_origins: Vec<String>,
    /// Interval of the stats log line. Zero disables.
    pub stats_interval: Duration,
    /// Silence after which a connection drops its WebSocket parser state and read buffer, to be
    /// rebuilt on its next input: idle connections then cost a few hundred bytes. Zero never.
    pub rest_after: Duration,
    /// Serve `/metrics` and `/stats.json` only on this address (a thread of their own), not on
    /// `listen`. `None`: the public port answers them.
    pub metrics_listen: Option<SocketAddr>,
    /// Redis through which this instance's rooms are joined with every other instance's on the
    /// same Redis. `None`: rooms end at this process and no Redis is needed.
    pub redis: Option<RedisUrl>,
    /// Seed nodes of a Redis Cluster through which rooms span instances with sharded pub/sub
    /// (SPUBLISH/SSUBSCRIBE, Redis 7), so the bus scales out too. Empty: none. Not with `redis`.
    pub redis_cluster: Vec<RedisUrl>,
    /// Prefix of each room's Redis channel, so several deployments can share one Redis.
    pub redis_prefix: String,
    /// Bytes of published frames waiting for Redis, across workers, beyond which publishes to
    /// other instances are dropped (and counted) instead of queued: a slow Redis costs at most
    /// this much memory.
    pub redis_queue: usize,
    /// Certificate chain and private key (PEM) to serve TLS with: every listener then speaks
    /// only TLS (wss://, https://). `None`: plain TCP.
    pub tls: Option<TlsFiles>,
    /// How often the certificate files are checked for a change (a change reloads them, as
    /// SIGHUP does). Zero: only on request.
    pub tls_watch: Duration,
}

/// Where the TLS certificate chain and its private key are read from (PEM files, read again
/// on every reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9998)),
            workers: None,
            cpus: None,
            pin: true,
            backlog: 4096,
            read_buffer: 4096,
            max_backlog: 1 << 20,
            max_message_size: 16 << 20,
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: None,
            memory_limit: None,
            protocols: Vec::new(),
            allowed_origins: Vec::new(),
            stats_interval: Duration::from_secs(10),
            rest_after: Duration::from_secs(1),
            metrics_listen: None,
            redis: None,
            redis_cluster: Vec::new(),
            redis_prefix: "corecast:room:".to_string(),
            redis_queue: 32 << 20,
            tls: None,
            tls_watch: Duration::from_secs(1),
        }
    }
}

/// A Redis address, `redis://HOST:PORT[/DB]`, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<RedisUrl, String> {
        let url = redis::parse_redis_url(s)
            .ok_or_else(|| format!("{s:?} is not a Redis URL (redis://HOST:PORT[/DB])"))?;
        if url.scheme() != "redis" {
            return Err(format!(
                "{s:?}: only redis:// is supported, not {}://",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{s:?} names no host"));
        }
        redis::IntoConnectionInfo::into_connection_info(s).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(RedisUrl(s.to_string()))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_checked_when_parsed() {
        for good in [
            "redis://127.0.0.1:6379",
            "redis://localhost:7000/2",
            "redis://h",
        ] {
            assert_eq!(good.parse::<RedisUrl>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "rediss://127.0.0.1:6379",
            "redis://127.0.0.1:6379/x",
            "redis://127.0.0.1:99999",
        ] {
            assert!(bad.parse::<RedisUrl>().is_err(), "{bad:?} accepted");
        }
    }
}

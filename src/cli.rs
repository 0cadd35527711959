//! Command line of the `corecast` binary. Every option can also come from an environment
//! variable `CORECAST_<NAME>`; clap reports bad values in one line and exits with status 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use corecast::{Config, CpuList, RedisUrl, TlsFiles};
use oskit::units::{parse_duration, parse_size};

/// corecast: a thread-per-core WebSocket echo and broadcast server.
///
/// Endpoints: ws://HOST:PORT/echo, ws://HOST:PORT/broadcast[/ROOM], GET / (demo page),
/// GET /healthz, GET /metrics (Prometheus), GET /stats.json; wss:// and https:// with
/// --tls-cert and --tls-key.
#[derive(Debug, Parser)]
#[command(name = "corecast", version, about, long_about = None)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "CORECAST_LISTEN", default_value = "127.0.0.1:9998")]
    pub listen: SocketAddr,
    /// Worker threads [default: one per available core].
    #[arg(long, env = "CORECAST_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Cores to pin workers to, e.g. "0,2-3" [default: the process's allowed CPU set].
    #[arg(long, env = "CORECAST_CPUS")]
    pub cpus: Option<CpuList>,
    /// Do not pin workers to cores.
    #[arg(long, env = "CORECAST_NO_PIN")]
    pub no_pin: bool,
    /// Listen backlog of each worker's socket.
    #[arg(long, env = "CORECAST_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,
    /// tungstenite's read buffer, held by a connection only while tungstenite parses for it
    /// (fragments, control frames, frames larger than the worker's 64 KiB receive buffer)
    /// (bytes; K/KiB/M/MiB suffixes accepted).
    #[arg(long, env = "CORECAST_READ_BUFFER", default_value = "4KiB", value_parser = parse_size)]
    pub read_buffer: usize,
    /// Pending outbound bytes per connection before backpressure: echo stops reading, room
    /// members over it are closed with 1008.
    #[arg(long, env = "CORECAST_MAX_BACKLOG", default_value = "1MiB", value_parser = parse_size)]
    pub max_backlog: usize,
    /// Largest message accepted; larger ones close the connection with 1009.
    #[arg(long, env = "CORECAST_MAX_MESSAGE_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_message_size: usize,
    /// Close connections silent this long (a ping goes out at half of it); 0 disables.
    #[arg(long, env = "CORECAST_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Time a new connection has to send its complete HTTP request.
    #[arg(long, env = "CORECAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Time a peer has to finish a close handshake.
    #[arg(long, env = "CORECAST_CLOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,
    /// Time graceful shutdown waits for close handshakes.
    #[arg(long, env = "CORECAST_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Open connections beyond which new ones get 503 [default: from RLIMIT_NOFILE].
    #[arg(long, env = "CORECAST_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Memory all peers together may make the server hold (partial messages, read-ahead,
    /// queued replies); beyond it the connections holding the most are closed with 1013
    /// [default: half the physical memory].
    #[arg(long, env = "CORECAST_MEMORY_LIMIT", value_parser = parse_size)]
    pub memory_limit: Option<usize>,
    /// Supported subprotocol (repeatable). Without any, the client's first offer is accepted.
    #[arg(long = "protocol", env = "CORECAST_PROTOCOL", value_delimiter = ',')]
    pub protocols: Vec<String>,
    /// Origin allowed to upgrade (repeatable). Without any, every origin is allowed.
    #[arg(
        long = "allowed-origin",
        env = "CORECAST_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Interval of the stats log line; 0 disables.
    #[arg(long, env = "CORECAST_STATS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub stats_interval: Duration,
    /// Silence after which a connection releases its parser state and read buffer (rebuilt on
    /// its next input), so idle connections cost a few hundred bytes; 0 never.
    #[arg(long, env = "CORECAST_REST_AFTER", default_value = "1s", value_parser = parse_duration)]
    pub rest_after: Duration,
    /// Redis that joins this instance's rooms with every other instance's on it,
    /// redis://HOST:PORT[/DB]; without it rooms end at this process.
    #[arg(long, env = "CORECAST_REDIS", value_name = "URL")]
    pub redis: Option<RedisUrl>,
    /// Seed nodes of a Redis Cluster (comma-separated or repeated URLs): rooms span every
    /// instance on it through sharded pub/sub (Redis 7).
    #[arg(
        long,
        env = "CORECAST_REDIS_CLUSTER",
        value_name = "URL,...",
        value_delimiter = ',',
        conflicts_with = "redis"
    )]
    pub redis_cluster: Vec<RedisUrl>,
    /// Prefix of each room's Redis channel.
    #[arg(long, env = "CORECAST_REDIS_PREFIX", default_value = "corecast:room:")]
    pub redis_prefix: String,
    /// Published bytes waiting for Redis beyond which publishes to other instances are dropped
    /// (and counted) instead of queued.
    #[arg(long, env = "CORECAST_REDIS_QUEUE", default_value = "32MiB", value_parser = parse_size)]
    pub redis_queue: usize,
    /// Serve /metrics and /stats.json only on this address (e.g. 127.0.0.1:9090), not on the
    /// public port [default: on the public port].
    #[arg(long, env = "CORECAST_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve TLS (wss://, https://) with this PEM certificate chain, leaf first; needs
    /// --tls-key. Reloaded on SIGHUP and when the file changes.
    #[arg(
        long,
        env = "CORECAST_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "CORECAST_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// How often the TLS certificate files are checked for a change (a change reloads them,
    /// as SIGHUP does); 0: only on SIGHUP.
    #[arg(long, env = "CORECAST_TLS_WATCH", default_value = "1s", value_parser = parse_duration)]
    pub tls_watch: Duration,
    /// Log format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, env = "CORECAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Args {
    pub fn into_config(self) -> Config {
        Config {
            listen: self.listen,
            workers: self.workers.map(usize::from),
            cpus: self.cpus,
            pin: !self.no_pin,
            backlog: self.backlog,
            read_buffer: self.read_buffer,
            max_backlog: self.max_backlog,
            max_message_size: self.max_message_size,
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            close_timeout: self.close_timeout,
            shutdown_timeout: self.shutdown_timeout,
            max_connections: self.max_connections.map(|n| n as usize),
            memory_limit: self.memory_limit,
            protocols: self.protocols,
            allowed_origins: self.allowed_origins,
            stats_interval: self.stats_interval,
            rest_after: self.rest_after,
            redis: self.redis,
            redis_cluster: self.redis_cluster,
            redis_prefix: self.redis_prefix,
            redis_queue: self.redis_queue,
            metrics_listen: self.metrics_listen,
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                // clap requires each with the other.
                _ => None,
            },
            tls_watch: self.tls_watch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_config_defaults() {
        let config = Args::parse_from(["corecast"]).into_config();
        let want = Config::default();
        assert_eq!(config.listen, want.listen);
        assert_eq!(config.read_buffer, want.read_buffer);
        assert_eq!(config.max_backlog, want.max_backlog);
        assert_eq!(config.max_message_size, want.max_message_size);
        assert_eq!(config.idle_timeout, want.idle_timeout);
        assert_eq!(config.handshake_timeout, want.handshake_timeout);
        assert_eq!(config.stats_interval, want.stats_interval);
        assert_eq!(config.rest_after, want.rest_after);
        assert_eq!(config.redis, None);
        assert_eq!(config.redis_prefix, want.redis_prefix);
        assert_eq!(config.redis_queue, want.redis_queue);
        assert!(config.pin);
        assert_eq!(config.metrics_listen, want.metrics_listen);
        assert_eq!(config.tls, None);
        assert_eq!(config.tls_watch, want.tls_watch);
    }

    #[test]
    fn metrics_listener_and_log_format() {
        let args = Args::parse_from([
            "corecast",
            "--metrics-listen",
            "127.0.0.1:9090",
            "--log-format",
            "json",
        ]);
        assert_eq!(args.log_format, LogFormat::Json);
        let config = args.into_config();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert!(Args::try_parse_from(["corecast", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn repeatable_lists() {
        let args = Args::parse_from(["corecast", "--protocol", "chat", "--protocol", "v2,v3"]);
        assert_eq!(args.protocols, vec!["chat", "v2", "v3"]);
    }
}

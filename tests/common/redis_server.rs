//! A real `redis-server` for the bridge tests: started on a free port with persistence off,
//! killed (by its PID) and restarted on the same port, paused and resumed, and stopped on drop.
//! The tests that use it are `#[ignore]`d in the plain test run and run by `.ci/run`, which
//! installs the Debian package.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corecast::RedisUrl;

use super::{poll_until, TIMEOUT};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Extra arguments (cluster mode, say), kept for restarts.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        RedisServer::start_with(free_port(), &[])
    }

    pub fn start_with(port: u16, args: &[&str]) -> RedisServer {
        let mut server = RedisServer::not_started(port);
        server.args = args.iter().map(|a| a.to_string()).collect();
        server.launch();
        server
    }

    /// A server that will listen on `port` once `launch`ed (to test an instance started first).
    pub fn not_started(port: u16) -> RedisServer {
        RedisServer {
            port,
            child: None,
            args: Vec::new(),
        }
    }

    /// Starts the process (again) on the same port and waits until it answers PING.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string()]).args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if !self.args.iter().any(|a| a == "--dir") {
            command.args(["--dir", &std::env::temp_dir().to_string_lossy()]);
        }
        let child = command
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        self.child = Some(child);
        let answers = poll_until(TIMEOUT, || {
            self.try_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
                .is_some()
        });
        assert!(answers, "redis-server on port {} never answered", self.port);
    }

    /// Kills the process (SIGKILL, by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(&child, libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): it holds its connections but answers nothing.
    pub fn pause(&self) {
        self.signal(self.child.as_ref().expect("running"), libc::SIGSTOP);
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(self.child.as_ref().expect("running"), libc::SIGCONT);
    }

    fn signal(&self, child: &Child, signal: libc::c_int) {
        // SAFETY: a plain kill(2) to the PID of a child this struct started and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }

    pub fn url(&self) -> RedisUrl {
        format!("redis://127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url().as_str()).ok()?;
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        conn.set_read_timeout(Some(TIMEOUT)).ok()?;
        Some(conn)
    }

    pub fn connection(&self) -> redis::Connection {
        self.try_connection().expect("connect to redis-server")
    }

    /// Subscribers of `channel` (PUBSUB NUMSUB): one per instance subscribed.
    pub fn numsub(&self, channel: &str) -> u64 {
        self.subscribers("NUMSUB", channel)
    }

    /// PUBSUB NUMSUB or SHARDNUMSUB for one channel.
    fn subscribers(&self, subcommand: &str, channel: &str) -> u64 {
        let reply: (String, u64) = redis::cmd("PUBSUB")
            .arg(subcommand)
            .arg(channel)
            .query(&mut self.connection())
            .expect("PUBSUB NUMSUB");
        reply.1
    }

    /// Channels with subscribers matching `pattern` (PUBSUB CHANNELS), sorted.
    pub fn channels(&self, pattern: &str) -> Vec<String> {
        let mut channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(pattern)
            .query(&mut self.connection())
            .expect("PUBSUB CHANNELS");
        channels.sort();
        channels
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A local Redis Cluster: `n` primaries (no replicas) on free ports, slots spread by
/// `redis-cli --cluster create`, each node's state in its own temporary folder.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "corecast-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let dir_arg = dir.to_string_lossy().into_owned();
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                let port = free_port();
                let config = format!("nodes-{port}.conf");
                let args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &config,
                    "--dir",
                    &dir_arg,
                ];
                RedisServer::start_with(port, &args)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli on PATH");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, dir };
        wait_until_ok(&cluster);
        cluster
    }

    pub fn urls(&self) -> Vec<RedisUrl> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Subscribers of sharded `channel`, counted on every node (only its shard's has any).
    pub fn shard_numsub(&self, channel: &str) -> u64 {
        self.nodes.iter().map(|n| shard_numsub(n, channel)).sum()
    }

    /// The nodes holding sharded subscriptions to `channel`, by index.
    pub fn nodes_serving(&self, channel: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| shard_numsub(&self.nodes[i], channel) > 0)
            .collect()
    }

    /// Sharded channels with subscribers on any node matching `pattern`.
    pub fn shard_channels(&self, pattern: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|n| {
                redis::cmd("PUBSUB")
                    .arg("SHARDCHANNELS")
                    .arg(pattern)
                    .query::<Vec<String>>(&mut n.connection())
                    .expect("PUBSUB SHARDCHANNELS")
            })
            .collect();
        all.sort();
        all
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn shard_numsub(node: &RedisServer, channel: &str) -> u64 {
    node.subscribers("SHARDNUMSUB", channel)
}

/// Waits until every node reports the cluster's state as ok (slots agreed on).
fn wait_until_ok(cluster: &RedisCluster) {
    let ok = poll_until(TIMEOUT, || {
        cluster.nodes.iter().all(|n| {
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query::<String>(&mut n.connection())
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    });
    assert!(ok, "the cluster never reached state ok");
}

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
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
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
        let reply: (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
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

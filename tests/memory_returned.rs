//! Memory is handed back: after peers that made the server hold large buffers leave, its RSS
//! returns to near where it started, wave after wave. (glibc raises its mmap threshold after
//! the first large free, so without care the second wave's buffers come from the heap and stay
//! resident after they are freed.) One test in this file, so nothing else moves the RSS.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const ATTACKERS: usize = 24;
/// Bytes of a 4,000,000-byte frame each attacker sends before stalling.
const SENT: usize = 3_000_000;
/// How close to the starting RSS the server must come back.
const SLACK: u64 = 16 << 20;

#[test]
fn rss_returns_near_baseline_after_each_wave_of_large_buffers() {
    let server = start(corecast::Config {
        max_message_size: 4 << 20,
        memory_limit: Some(1 << 30),
        idle_timeout: Duration::ZERO,
        ..config()
    });
    let addr = server.local_addr();
    let frame = client_frame(0x82, &vec![7u8; 4_000_000], true);
    let baseline = rss_bytes();
    for wave in 1..=3 {
        let mut attackers: Vec<TcpStream> = Vec::new();
        for _ in 0..ATTACKERS {
            let (mut s, head) = raw_upgrade(addr, "/echo");
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            s.write_all(&frame[..SENT]).unwrap();
            attackers.push(s);
        }
        let held = (ATTACKERS * SENT) as u64;
        wait_until("the server to hold what the attackers sent", || {
            total(&server, |c| c.memory_held_bytes) >= held * 9 / 10
        });
        let during = rss_bytes();
        assert!(
            during > baseline + held / 2,
            "wave {wave}: RSS {during} never rose above {baseline} by half of {held}: the test \
             is not measuring anything"
        );
        drop(attackers);
        let back = testkit::poll_until(Duration::from_secs(30), || rss_bytes() <= baseline + SLACK);
        assert!(
            back,
            "wave {wave}: RSS still {} after the attackers left, baseline {baseline}",
            rss_bytes()
        );
        wait_until("nothing to be charged to the budget", || {
            total(&server, |c| c.memory_held_bytes) == 0
        });
    }
}

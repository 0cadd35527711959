//! The memory budget: peers that stall in the middle of large messages (one huge frame, or a
//! fragmented message that never ends) make the server hold what they sent. Past the budget
//! the server sheds the connections holding the most with close 1013, stays within the budget,
//! and well-behaved clients on the same server keep getting their echoes throughout.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const LIMIT: usize = 8 << 20;
const ATTACKERS: usize = 32;
/// What each attacker sends of its message before stalling.
const SENT: usize = 900_000;

fn budget_server() -> corecast::Server {
    start(corecast::Config {
        memory_limit: Some(LIMIT),
        max_message_size: 1 << 20,
        max_backlog: 256 << 10,
        // Attackers are silent: they must not rest (which never frees a message in
        // progress anyway) or time out during the test.
        idle_timeout: Duration::ZERO,
        ..config()
    })
}

/// An attacker that sends the first `SENT` bytes of one 1,000,000-byte binary frame.
fn one_big_frame(addr: SocketAddr) -> TcpStream {
    let (mut s, head) = raw_upgrade(addr, "/echo");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let frame = client_frame(0x82, &vec![7u8; 1_000_000], true);
    s.write_all(&frame[..SENT]).unwrap();
    s
}

/// An attacker that sends a fragmented binary message of `SENT` bytes in 60,000-byte frames
/// and never the final one.
fn endless_fragments(addr: SocketAddr) -> TcpStream {
    let (mut s, head) = raw_upgrade(addr, "/echo");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let chunk = vec![7u8; 60_000];
    for i in 0..SENT / chunk.len() {
        let opcode = if i == 0 { 0x02 } else { 0x00 };
        s.write_all(&client_frame(opcode, &chunk, true)).unwrap();
    }
    s
}

fn attack(attacker: fn(SocketAddr) -> TcpStream) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = budget_server();
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    let rss = RssPeak::start();
    let baseline = rss_bytes();

    let mut attackers: Vec<TcpStream> = (0..ATTACKERS).map(|_| attacker(addr)).collect();
    // A worker's share is LIMIT / 2 and shedding stops at three quarters of it, so at most
    // three attackers' bytes fit on each worker once it has shed: the rest must go.
    let at_least = ATTACKERS - 2 * 4;
    wait_until("the budget to shed the heaviest", || {
        total(&server, |c| c.sheds) >= at_least as u64
    });
    healthy.assert_echoing("while the budget sheds");

    // Every shed connection was an attacker, told 1013 before its connection ended; the
    // others are still open and silent.
    let mut told = 0;
    for s in &mut attackers {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if let Ok(Some((first, payload))) = read_frame(s) {
            assert_eq!(first, 0x88, "only a close frame comes back");
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1013);
            told += 1;
        }
    }
    // Reads still in flight may shed more after the count was taken, so the attackers told
    // are between what had to go and what the server has shed by now.
    let sheds = total(&server, |c| c.sheds);
    assert!(
        told >= at_least && told as u64 <= sheds,
        "{told} attackers got 1013; {sheds} shed, at least {at_least} had to be"
    );
    let held = total(&server, |c| c.memory_held_bytes);
    assert!(
        held <= LIMIT as u64,
        "the connections hold {held} bytes, over the {LIMIT}-byte budget"
    );
    // The budget is checked after each read, so each worker may overshoot by what one read
    // brings (here one attacker's message); the rest of the slack is this test's own clients.
    let sent_total = ATTACKERS * SENT;
    let grew = rss.peak().saturating_sub(baseline);
    assert!(
        grew < (LIMIT + (4 << 20)) as u64,
        "RSS grew by {grew} bytes while attackers sent {sent_total}: the budget did not hold"
    );
    drop(attackers);
    wait_until("the attackers' connections to go", || {
        total(&server, |c| c.connections) == healthy_connections(&server)
    });
    healthy.finish("after the attack");
    let held = total(&server, |c| c.memory_held_bytes);
    assert!(
        held < 64 << 10,
        "{held} bytes still charged after the attackers left"
    );
}

/// Connections of the healthy clients: every upgrade but the attackers'.
fn healthy_connections(server: &corecast::Server) -> u64 {
    total(server, |c| c.handshakes) - ATTACKERS as u64
}

/// The attacks measure this process's RSS, so they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn stalled_huge_frames_are_shed_at_the_budget_while_echo_goes_on() {
    attack(one_big_frame);
}

#[test]
fn endless_fragmented_messages_are_shed_at_the_budget_while_echo_goes_on() {
    attack(endless_fragments);
}

#[test]
fn a_budget_that_cannot_fit_one_message_is_refused_at_start() {
    let err = corecast::Server::bind(corecast::Config {
        memory_limit: Some(1 << 20),
        ..config()
    })
    .err()
    .expect("a 1 MiB budget with 16 MiB messages is refused");
    let text = err.to_string();
    assert!(text.contains("memory limit"), "{text}");
}

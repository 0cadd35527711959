//! Memory discipline seen by a counting global allocator: the echo hot path allocates nothing
//! per message once warm (over TLS, nothing beyond rustls' own record buffers), and
//! connections that rest (drop tungstenite's state) and wake again thousands of times leak
//! nothing. Clients are raw sockets with pre-encoded frames, so they allocate nothing in the
//! measured loops themselves (a TLS client does, on its own thread, and is not counted).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::tls::{client_config, tls_connect, TestCert};
use common::*;
use testkit::alloc::{allocations, live_bytes, thread_allocations, thread_live_bytes};

#[global_allocator]
static GLOBAL: testkit::alloc::Counting = testkit::alloc::Counting;

/// The counters are process-wide: tests in this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Echoes `MESSAGES` binary messages of `size` bytes over `s` after a warm-up (buffers reach
/// their steady size), and returns what `count` went up by meanwhile.
fn count_echoes(s: &mut (impl Read + Write), size: usize, count: impl Fn() -> u64) -> u64 {
    let frame = client_frame(0x82, &vec![0x61u8; size], true);
    let mut reply = vec![0u8; header_len(size) + size];
    let mut echo = || {
        s.write_all(&frame).unwrap();
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply[0], 0x82);
    };
    for _ in 0..200 {
        echo();
    }
    let before = count();
    for _ in 0..MESSAGES {
        echo();
    }
    count() - before
}

/// Echoes measured per message size.
const MESSAGES: u64 = 5000;

/// The length of a server frame's header for a payload of `size` bytes (below 64 KiB).
fn header_len(size: usize) -> usize {
    if size < 126 {
        2
    } else {
        4
    }
}

#[test]
fn echoing_allocates_nothing_per_message() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start(corecast::Config {
        // No timer activity during the measurement.
        idle_timeout: Duration::ZERO,
        ..config()
    });
    let (mut s, _) = raw_upgrade(server.local_addr(), "/echo");
    for size in [16usize, 512, 16 * 1024] {
        let during = count_echoes(&mut s, size, allocations);
        println!("{size} B echoes: {during} allocations for {MESSAGES} messages");
        // A per-message allocation anywhere would show as >= 5000; a handful is the worker's
        // occasional bookkeeping (a tick, a stats snapshot).
        assert!(
            during < MESSAGES / 50,
            "{size} B echoes: {during} allocations for {MESSAGES} messages"
        );
    }
}

/// Over wss:// the server's own code allocates nothing per message either; rustls 0.23 does,
/// one buffer per record it decrypts (the plaintext) and one per record it encrypts, which
/// is what this allows and no more.
#[test]
fn wss_echoing_allocates_only_rustls_record_buffers() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cert = TestCert::new("allocations");
    let server = start(corecast::Config {
        idle_timeout: Duration::ZERO,
        ..cert.config()
    });
    let mut s = tls_connect(server.local_addr(), client_config(&[&cert.der], &[])).unwrap();
    assert!(upgrade_over(&mut s, "/echo").starts_with("HTTP/1.1 101"));
    // The client's allocations (on this thread) are not the server's.
    let server_allocations = || allocations() - thread_allocations();
    for size in [16usize, 512, 16 * 1024] {
        let during = count_echoes(&mut s, size, server_allocations);
        // Records each way per message: the client's frame and the echo are one write each.
        let records = (header_len(size) + size).div_ceil(16 * 1024) as u64;
        println!(
            "{size} B echoes over TLS: {during} server allocations for {MESSAGES} messages \
             of {records} record(s) each way"
        );
        assert!(
            during <= MESSAGES * 2 * records + MESSAGES / 50,
            "{size} B echoes over TLS: {during} server allocations for {MESSAGES} messages"
        );
    }
}

#[test]
fn resting_and_waking_thousands_of_times_leaks_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start(corecast::Config {
        rest_after: Duration::from_millis(20),
        idle_timeout: Duration::ZERO,
        ..config()
    });
    let mut clients: Vec<_> = (0..20)
        .map(|_| raw_upgrade(server.local_addr(), "/echo").0)
        .collect();
    let frame = client_frame(0x81, b"wake up", true);
    let mut reply = [0u8; 9];
    let mut cycle = |clients: &mut Vec<std::net::TcpStream>| {
        for s in clients.iter_mut() {
            s.write_all(&frame).unwrap();
            s.read_exact(&mut reply).unwrap();
            assert_eq!(&reply[2..], b"wake up");
        }
        // Long enough for every connection to rest before the next cycle wakes it.
        std::thread::sleep(Duration::from_millis(80));
    };
    for _ in 0..10 {
        cycle(&mut clients);
    }
    let rests_before: u64 = server.stats().iter().map(|c| c.rests).sum();
    let live_before = live_bytes();
    for _ in 0..60 {
        cycle(&mut clients);
    }
    let live_after = live_bytes();
    let rests: u64 = server.stats().iter().map(|c| c.rests).sum::<u64>() - rests_before;
    println!("{rests} rests; live heap {live_before} -> {live_after} bytes");
    assert!(
        rests >= 20 * 50,
        "connections did not rest between cycles ({rests} rests)"
    );
    // 1,200 wake/rest cycles: a leak of even 8 bytes each would show.
    assert!(
        live_after - live_before < 8 * 1024,
        "heap grew by {} bytes",
        live_after - live_before
    );
}

#[test]
fn a_large_message_leaves_no_large_buffer_behind_once_the_connection_rests() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start(corecast::Config {
        rest_after: Duration::from_millis(20),
        idle_timeout: Duration::ZERO,
        ..config()
    });
    const CONNS: usize = 20;
    // Larger than a worker's receive buffer, so it cannot be echoed in place: it goes through
    // tungstenite and the connection's read-ahead buffer.
    const SIZE: usize = 200 * 1024;
    let mut clients: Vec<_> = (0..CONNS)
        .map(|_| raw_upgrade(server.local_addr(), "/echo").0)
        .collect();
    let small = client_frame(0x82, b"hi", true);
    let large = client_frame(0x82, &vec![0x5a; SIZE], true);
    let mut reply = vec![0u8; 10 + SIZE];
    let echo = |s: &mut std::net::TcpStream, frame: &[u8], reply: &mut [u8]| {
        s.write_all(frame).unwrap();
        s.read_exact(reply).unwrap();
        assert_eq!(reply[0], 0x82);
    };
    for s in clients.iter_mut() {
        echo(s, &small, &mut reply[..4]);
    }
    std::thread::sleep(Duration::from_millis(150)); // every connection rests
    let live_before = live_bytes();
    for s in clients.iter_mut() {
        echo(s, &large, &mut reply);
    }
    let live_busy = live_bytes();
    std::thread::sleep(Duration::from_millis(150)); // ... and rests again
    let live_after = live_bytes();
    println!("live heap: {live_before} rested, {live_busy} after large echoes, {live_after} rested again");
    // Each connection keeps its read-ahead buffer (64 KiB) until it rests.
    assert!(
        live_busy - live_before > (CONNS * 32 * 1024) as i64,
        "large messages did not take buffer space; the test measures nothing"
    );
    assert!(
        live_after - live_before < 16 * 1024,
        "{} bytes still held after the connections rested",
        live_after - live_before
    );
}

/// Issue #15: an upgraded connection that says nothing holds no heap memory, from its
/// handshake on, not only once it has rested. The 101 used to be queued, which kept the
/// outbox's chunk queue (160 bytes) allocated until the connection rested a second later: a
/// ramp of thousands of connections grew the heap by that much, and idle connections cost
/// ~25 B of RSS each more than before the in-place read path, which no longer woke tungstenite
/// (whose buffers, released at rest, had set off a heap trim).
#[test]
fn upgraded_connections_hold_no_heap_memory_before_they_rest() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start(corecast::Config {
        rest_after: Duration::from_secs(3600),
        idle_timeout: Duration::ZERO,
        ..config()
    });
    let handshakes = || -> u64 { server.stats().iter().map(|c| c.handshakes).sum() };
    // Fewer than a worker's connection slab starts with, so it does not grow either.
    const CONNS: usize = 200;
    let mut clients = Vec::with_capacity(CONNS + 8);
    // Warm-up: whatever a worker allocates once (lists, counters) is in place.
    for _ in 0..8 {
        clients.push(raw_upgrade(server.local_addr(), "/echo").0);
    }
    wait_until("the warm-up handshakes", || handshakes() == 8);
    let live_before = live_bytes();
    for _ in 0..CONNS {
        clients.push(raw_upgrade(server.local_addr(), "/echo").0);
    }
    wait_until("the handshakes", || handshakes() == (CONNS + 8) as u64);
    let grown = live_bytes() - live_before;
    println!("{CONNS} upgraded connections: live heap grew by {grown} bytes");
    assert!(
        grown < (CONNS * 16) as i64,
        "{CONNS} idle upgraded connections hold {grown} bytes of heap"
    );
    drop(clients);
}

/// Issue #14: an idle wss connection keeps rustls' session (its state and keys, about 3.2 KB)
/// and no buffer: records are read, decrypted and encrypted in the worker's scratch buffers,
/// and a connection's own buffers are freed once empty. The buffered session kept a 4 KiB
/// receive buffer more per connection, for good, which this bound would catch.
#[test]
fn idle_wss_connections_keep_the_tls_session_and_no_buffer() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cert = TestCert::new("allocations");
    let server = start(corecast::Config {
        rest_after: Duration::from_secs(3600),
        idle_timeout: Duration::ZERO,
        ..cert.config()
    });
    let client = client_config(&[&cert.der], &[]);
    let frame = client_frame(0x82, b"one message each way", true);
    let connect = || {
        let mut s = tls_connect(server.local_addr(), client.clone()).unwrap();
        assert!(upgrade_over(&mut s, "/echo").starts_with("HTTP/1.1 101"));
        s.write_all(&frame).unwrap();
        let mut reply = [0u8; 2 + 20];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[2..], b"one message each way");
        s
    };
    // The clients are this thread's; the server's heap is everyone else's.
    let server_heap = || live_bytes() - thread_live_bytes();
    // Warm-up: the workers' scratch buffers and whatever else is made once.
    let mut clients: Vec<_> = (0..8).map(|_| connect()).collect();
    let before = server_heap();
    const CONNS: usize = 100;
    clients.extend((0..CONNS).map(|_| connect()));
    // Each client has its echo back: the server is done with every record it was sent.
    let per_connection = (server_heap() - before) / CONNS as i64;
    println!("{CONNS} idle wss connections: {per_connection} bytes of server heap each");
    assert!(
        per_connection < 4096,
        "an idle wss connection holds {per_connection} bytes of heap"
    );
    drop(clients);
}

//! Inputs that try to make the server allocate or hold without bound: a frame header declaring
//! 2^63 bytes, a flood of pings from a client that does not read the pongs, a room member that
//! never reads, and a thousand connections dropped at once. Each checks the server's answer,
//! that healthy connections on every worker keep getting echoes, and the growth of resident
//! memory against a bound derived from the configured limits.
//!
//! Memory is the RSS of this test process (server and clients share it), compared with a
//! baseline taken in the same test; the tests in this file run one at a time so that they do
//! not count each other's allocations.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::*;
use corecast::Server;
use socket2::{Domain, Socket, Type};
use tungstenite::Message;

const MIB: u64 = 1 << 20;

/// Serialises the tests of this file (see the module comment).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A socket with a small, fixed receive buffer (no autotuning): what the server sends it
/// cannot hide in a multi-megabyte kernel buffer, so it stays in the server's memory unless
/// the server bounds it.
fn small_window_socket(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.set_tcp_nodelay(true).unwrap();
    socket.into()
}

/// Outbound backlog limit of the servers in the memory tests: small, so that the bounds
/// derived from it are tight.
const MAX_BACKLOG: usize = 256 * 1024;

fn server_with_small_backlog() -> (Server, Healthy) {
    let server = start(corecast::Config {
        max_backlog: MAX_BACKLOG,
        ..config()
    });
    let healthy = Healthy::start(&server);
    (server, healthy)
}

fn assert_growth_below(peak: u64, baseline: u64, bound: u64, what: &str) {
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "{what}: RSS baseline {} KiB, peak {} KiB, growth {} KiB, bound {} KiB",
        baseline / 1024,
        peak / 1024,
        growth / 1024,
        bound / 1024
    );
    assert!(
        growth < bound,
        "{what}: RSS grew by {} KiB, over the bound of {} KiB",
        growth / 1024,
        bound / 1024
    );
}

#[test]
fn frame_header_declaring_2_pow_63_bytes_closes_with_1009_allocating_nothing() {
    let _serial = one_at_a_time();
    let server = start(config());
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    let baseline = rss_bytes();
    let peak = RssPeak::start();
    let max_message = corecast::Config::default().max_message_size as u64;
    for declared in [1u64 << 63, u64::MAX, (1 << 63) - 1, max_message + 1] {
        let (mut s, _) = raw_upgrade(addr, "/echo");
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&declared.to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4, 0xaa, 0xbb]); // mask key, then a little payload
        s.write_all(&header).unwrap();
        assert_eq!(read_close_code(&mut s), Some(1009), "declared {declared}");
        healthy.assert_echoing(&format!("after declaring {declared} bytes"));
    }
    // Reserving even the configured maximum (16 MiB) would not show in RSS until written, but
    // reserving 2^63 bytes would abort this process; a few MiB of slack covers the clients.
    assert_growth_below(peak.peak(), baseline, 8 * MIB, "huge frame headers");
    healthy.finish("after the huge frame headers");
}

#[test]
fn flood_of_100k_pings_gets_every_pong_in_bounded_memory() {
    const PINGS: u64 = 100_000;
    let _serial = one_at_a_time();
    let (server, mut healthy) = server_with_small_backlog();
    let addr = server.local_addr();
    let (mut s, _) = raw_upgrade_on(small_window_socket(addr), "/echo");
    let baseline = rss_bytes();
    let peak = RssPeak::start();
    // The writer sends every ping without reading anything: 100,000 x 131 bytes = 13 MB.
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut s = s.try_clone().unwrap();
        let written = written.clone();
        std::thread::spawn(move || {
            let mut batch = Vec::with_capacity(64 * 131);
            for seq in 0..PINGS {
                let mut payload = [0x70u8; 125];
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                batch.extend_from_slice(&client_frame(0x89, &payload, true));
                if batch.len() >= 64 * 131 || seq + 1 == PINGS {
                    s.write_all(&batch).expect("server kept reading pings");
                    batch.clear();
                    written.store(seq + 1, Ordering::Relaxed);
                }
            }
        })
    };
    // Let the flood run unread until the writer is done or blocked (the server stopped
    // reading): a snapshot of progress that does not move for a second means blocked.
    let mut last = u64::MAX;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(500));
        let now = written.load(Ordering::Relaxed);
        if now == PINGS || now == last {
            break;
        }
        last = now;
    }
    let unread_peak = peak.peak();
    healthy.assert_echoing("while the pings go unanswered");
    // Now read: every ping gets its pong, in order.
    for seq in 0..PINGS {
        let (first, payload) = read_frame(&mut s)
            .expect("read pong")
            .expect("pong before EOF");
        assert_eq!(first, 0x8a, "frame {seq} is not a pong");
        assert_eq!(payload.len(), 125);
        assert_eq!(&payload[..8], &seq.to_be_bytes(), "pong out of order");
    }
    writer.join().unwrap();
    // The pongs a non-reading client is owed are bounded like echoes: the server stops reading
    // it at `max_backlog` of queued output (plus one read budget of pongs).
    assert_growth_below(
        unread_peak,
        baseline,
        4 * MAX_BACKLOG as u64 + 4 * MIB,
        "ping flood (unread)",
    );
    assert_growth_below(
        peak.peak(),
        baseline,
        4 * MAX_BACKLOG as u64 + 4 * MIB,
        "ping flood",
    );
    healthy.finish("after the ping flood");
}

#[test]
fn member_that_never_reads_is_closed_with_1008_in_bounded_memory() {
    let _serial = one_at_a_time();
    let (server, mut healthy) = server_with_small_backlog();
    let addr = server.local_addr();
    let room = "/broadcast/firehose";
    let mut publisher = connect(addr, room);
    let (mut silent, _) = raw_upgrade_on(small_window_socket(addr), room);
    let members = 2u64;
    let baseline = rss_bytes();
    let peak = RssPeak::start();
    // Publish 64 MiB as fast as the publisher's own copies come back (it is a member too, and
    // a window of four messages keeps it far below the backlog limit).
    const SIZE: usize = 16 * 1024;
    const MESSAGES: usize = 4096;
    const WINDOW: usize = 4;
    let slow_consumers = || total(&server, |c| c.slow_consumers);
    let payload = vec![0x42u8; SIZE];
    let own_copy = |publisher: &mut Client| match publisher.read().unwrap() {
        Message::Binary(b) => assert_eq!(b.len(), SIZE),
        other => panic!("publisher got {other:?}"),
    };
    for i in 0..MESSAGES {
        publisher.send(Message::binary(payload.clone())).unwrap();
        if i + 1 >= WINDOW {
            own_copy(&mut publisher);
        }
        if i % 512 == 0 {
            healthy.assert_echoing(&format!("after {i} broadcasts"));
        }
    }
    for _ in 1..WINDOW {
        own_copy(&mut publisher);
    }
    wait_until("the silent member to be closed as a slow consumer", || {
        slow_consumers() == 1
    });
    // The silent member finds what fit in its backlog, then the 1008 close.
    assert_eq!(read_close_code(&mut silent), Some(1008));
    // Its backlog, the publisher's, the bus and the clients' buffers: a few backlogs per
    // member; far less than the 64 MiB published.
    let bound = 4 * MAX_BACKLOG as u64 * members + 8 * MIB;
    assert_growth_below(peak.peak(), baseline, bound, "never-reading member");
    healthy.finish("after the firehose");
}

#[test]
fn thousand_connections_opened_and_dropped_abruptly() {
    const N: usize = 1000;
    let _serial = one_at_a_time();
    let server = start(config());
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    let accepted_before = total(&server, |c| c.accepted);
    let request = upgrade_request("/echo", "");
    let frame = client_frame(0x82, &[9u8; 1000], true);
    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.connect(&addr.into()).unwrap();
        if i % 2 == 0 {
            socket.set_linger(Some(Duration::ZERO)).unwrap(); // RST instead of FIN
        }
        let mut s: TcpStream = socket.into();
        match i % 4 {
            0 => {}                                               // silent
            1 => s.write_all(&request.as_bytes()[..40]).unwrap(), // half a request
            2 => s = raw_upgrade_on(s, "/echo").0,                // upgraded, idle
            _ => {
                // Upgraded, half a frame sent, an echo left unread.
                s = raw_upgrade_on(s, "/echo").0;
                s.write_all(&frame).unwrap();
                s.write_all(&frame[..500]).unwrap();
            }
        }
        conns.push(s);
        if i % 250 == 0 {
            healthy.assert_echoing(&format!("with {i} extra connections"));
        }
    }
    wait_until("every connection to be accepted", || {
        total(&server, |c| c.accepted) - accepted_before == N as u64
    });
    healthy.assert_echoing("with all extra connections open");
    drop(conns);
    wait_until("every dropped connection to be closed", || {
        total(&server, |c| c.connections) == healthy.clients as u64
    });
    // Nothing of theirs lingers: a connection still gets a prompt, full echo.
    let mut ws = connect(addr, "/echo");
    echo_text(&mut ws, "after the stampede").unwrap();
    healthy.finish("after the thousand connections");
    let _ = ws.close(None);
    let mut buf = [0u8; 1];
    let _ = ws.get_mut().read(&mut buf);
}

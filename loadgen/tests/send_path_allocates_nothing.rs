//! The send path (build a message, frame it, write it) makes no heap allocation per message:
//! loadgen is the other half of every closed-loop benchmark, so its per-message cost caps what
//! any server can show. A counting allocator counts this test thread's allocations only (the
//! peer runs on its own thread).

use std::net::TcpListener;
use std::time::Duration;

use loadgen::connection::{open_socket, Connection, SendError, Step};
use loadgen::payload::{Encoder, Header};
use mio::{Events, Interest, Poll, Token};
use testkit::alloc::thread_allocations;

#[global_allocator]
static GLOBAL: testkit::alloc::Counting = testkit::alloc::Counting;

/// Drives `conn` on readiness events for up to `rounds` polls of at most 50 ms each.
fn pump(poll: &mut Poll, events: &mut Events, conn: &mut Connection, rounds: u32) -> Step {
    let mut step = Step::Pending;
    for _ in 0..rounds {
        poll.poll(events, Some(Duration::from_millis(50))).unwrap();
        step = conn.drive(&mut [0u8; 4096], &mut |_, _| {});
        if step != Step::Pending {
            break;
        }
    }
    step
}

#[test]
fn sending_a_message_allocates_nothing() {
    // A peer that upgrades every connection and then reads (and discards) everything.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut ws = tungstenite::accept(stream).unwrap();
                while ws.read().is_ok() {}
            });
        }
    });
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    for size in [16usize, 24, 1000, 16 * 1024] {
        let stream = open_socket(addr, None).unwrap();
        let mut conn = Connection::new(stream, &addr.to_string(), "/echo", 7, size, None);
        poll.registry()
            .register(
                conn.stream_mut().unwrap(),
                Token(size),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
        assert_eq!(pump(&mut poll, &mut events, &mut conn, 200), Step::Opened);
        let mut encoder = Encoder::default();
        let mut send = |conn: &mut Connection, seq: u64, poll: &mut Poll, events: &mut Events| {
            let header = Header {
                sender: 1,
                seq,
                intended_ns: seq,
            };
            loop {
                let before = thread_allocations();
                let result = conn.send(encoder.message(header, size));
                let made = thread_allocations() - before;
                match result {
                    Ok(()) => return made,
                    // The peer fell behind: let it catch up (outside the count) and retry.
                    Err(SendError::Full) => {
                        pump(poll, events, conn, 1);
                    }
                    Err(e) => panic!("send failed: {e}"),
                }
            }
        };
        // Warm up: the encoder's storage, tungstenite's out buffer, the mask generator.
        for seq in 0..1000 {
            send(&mut conn, seq, &mut poll, &mut events);
        }
        let mut made = 0;
        for seq in 1000..11_000 {
            made += send(&mut conn, seq, &mut poll, &mut events);
        }
        // Before the encoder this was one allocation per message (10,000). A few are allowed
        // for tungstenite's out buffer growing when the socket pushes back.
        assert!(
            made <= 16,
            "{made} allocations for 10,000 sends of {size} B"
        );
    }
}

//! The connection state machine driven with in-memory input: no sockets, no sleeps. Each test
//! plays the client on a `MemSocket`, calls the methods the worker calls, and checks the bytes
//! that come out and the outcome the worker would act on.

mod differential;

use super::socket::MemSocket;
use super::*;
use crate::admission::Admission;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const TOKEN: Token = Token(7);

/// A connection on an in-memory socket, with the environment a worker would lend it.
struct Harness {
    client: MemSocket,
    conn: Connection<MemSocket>,
    env: Env,
    _poll: mio::Poll,
}

impl Harness {
    fn new(config: Config, seated: bool) -> Harness {
        let poll = mio::Poll::new().unwrap();
        let env = Env {
            now: 0,
            limits: Limits::new(&config),
            registry: poll.registry().try_clone().unwrap(),
            counters: Counters::default(),
            budget: crate::budget::Budget::new(usize::MAX),
            published: Vec::new(),
            stats_pages: None,
            recv: vec![0; RECV_BUFFER],
        };
        let client = MemSocket::new();
        let seat = seated.then(|| Admission::new(1).admit().unwrap());
        let conn = match Connection::accept(client.clone(), TOKEN, seat, &env) {
            Ok(conn) => conn,
            Err((e, _)) => panic!("accept: {e}"),
        };
        Harness {
            client,
            conn,
            env,
            _poll: poll,
        }
    }

    fn echo() -> Harness {
        Harness::new(Config::default(), true)
    }

    /// Upgraded on `path`, with the 101 already taken off the wire.
    fn upgraded(config: Config, path: &str) -> Harness {
        let mut h = Harness::new(config, true);
        h.client.send(upgrade(path, "").as_bytes());
        assert!(matches!(h.read(), Step::Upgraded(_)));
        h.flush();
        let head = String::from_utf8(h.client.take_output()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        h
    }

    fn read(&mut self) -> Step {
        self.conn.on_readable(&mut self.env)
    }

    fn flush(&mut self) -> Flush {
        self.conn.flush(TOKEN, &mut self.env)
    }

    /// Server frames written so far, as (first byte, payload).
    fn frames(&self) -> Vec<(u8, Vec<u8>)> {
        server_frames(&self.client.take_output())
    }
}

fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client frame.
fn client(first: u8, payload: &[u8]) -> Vec<u8> {
    testkit::client_frame(first, payload, true)
}

/// Splits unmasked server frames.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        frames.push((bytes[0], bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    frames
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn handshake_bytes_in_give_101_out_with_the_offered_subprotocol() {
    let mut h = Harness::echo();
    let request = upgrade("/echo", "Sec-WebSocket-Protocol: chat, other\r\n");
    // Byte by byte: the head is complete only at its last byte.
    for byte in &request.as_bytes()[..request.len() - 1] {
        h.client.send(std::slice::from_ref(byte));
        assert_eq!(h.read(), Step::Idle);
    }
    h.client.send(&request.as_bytes()[request.len() - 1..]);
    assert_eq!(h.read(), Step::Upgraded(Endpoint::Echo));
    // Written by the read itself: nothing is left queued for the worker to flush.
    assert_eq!(h.conn.output_after_read(), Output::Nothing);
    let answer = String::from_utf8(h.client.take_output()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
    assert!(answer.contains("Sec-WebSocket-Protocol: chat\r\n"));
    assert_eq!(h.env.counters.handshakes, 1);
    assert!(!h.conn.holds_parser(), "no frame yet: no parser state");
}

/// Heap the connection's stream keeps allocated (outbox, read-ahead) in `Ready`.
fn ready_capacity(conn: &Connection<MemSocket>) -> usize {
    match &conn.phase {
        Phase::Ready(stream) => stream.buffered_capacity(),
        _ => panic!("not Ready"),
    }
}

/// Issue #15: the 101 used to be queued, which left the outbox's chunk queue allocated until
/// the connection rested a second later; over a ramp of thousands of connections that grew
/// the heap by ~25 B per idle connection for good. An upgraded connection holds nothing.
#[test]
fn an_upgraded_connection_holds_no_buffer_before_it_rests() {
    for path in ["/echo", "/broadcast/r"] {
        let h = Harness::upgraded(Config::default(), path);
        assert_eq!(ready_capacity(&h.conn), 0, "{path}");
        assert_eq!(h.conn.charged(), 0, "{path}");
    }
}

#[test]
fn a_101_the_socket_takes_in_part_is_finished_by_the_flush_in_order() {
    let mut h = Harness::echo();
    h.client.wire().room = 10;
    let mut input = upgrade("/echo", "").into_bytes();
    input.extend(client(0x81, b"behind the request"));
    h.client.send(&input);
    assert_eq!(h.read(), Step::Upgraded(Endpoint::Echo));
    assert_eq!(h.client.take_output(), b"HTTP/1.1 1");
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.conn.output_after_read(), Output::Now);
    assert_eq!(h.flush(), Flush::Done);
    assert_eq!(
        h.client.wire().interest,
        Some(Interest::READABLE | Interest::WRITABLE)
    );
    h.client.wire().room = usize::MAX;
    assert_eq!(h.flush(), Flush::Done);
    let out = h.client.take_output();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(out[..head_end].to_vec()).unwrap();
    assert!(head.starts_with("01 Switching Protocols"), "{head}");
    assert!(head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
    assert_eq!(
        server_frames(&out[head_end..]),
        vec![(0x81, b"behind the request".to_vec())]
    );
}

#[test]
fn frames_in_become_echoes_out_in_order() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    let mut input = client(0x81, b"hello");
    input.extend(client(0x82, &[7; 3000])); // above the copy limit: queued without a copy
    input.extend(client(0x89, b"ping?"));
    input.extend(client(0x01, b"frag")); // a fragmented text message
    input.extend(client(0x80, b"mented"));
    h.client.send(&input);
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.conn.output_after_read(), Output::Now);
    assert_eq!(h.flush(), Flush::Done);
    assert_eq!(
        h.frames(),
        vec![
            (0x81, b"hello".to_vec()),
            (0x82, vec![7; 3000]),
            (0x8a, b"ping?".to_vec()),
            (0x81, b"fragmented".to_vec()),
        ]
    );
    assert_eq!(h.env.counters.msgs_in, 3);
    assert_eq!(h.env.counters.msgs_out, 3);
    assert!(
        !h.conn.holds_parser(),
        "tungstenite, needed for the ping and the fragments, is dropped once it holds nothing"
    );
}

#[test]
fn frames_behind_the_request_in_one_read_are_not_lost() {
    let mut h = Harness::echo();
    let mut input = upgrade("/echo", "").into_bytes();
    input.extend(client(0x81, b"early bird"));
    h.client.send(&input);
    assert_eq!(h.read(), Step::Upgraded(Endpoint::Echo));
    // The worker reads an upgraded connection again at once.
    assert_eq!(h.read(), Step::Idle);
    h.flush();
    let out = h.client.take_output();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        server_frames(&out[head_end..]),
        vec![(0x81, b"early bird".to_vec())]
    );
}

#[test]
fn a_room_member_queues_its_own_copy_and_publishes_the_frame_once() {
    let mut h = Harness::upgraded(Config::default(), "/broadcast/lobby");
    h.client.send(&client(0x81, b"hi all"));
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.env.published.len(), 1);
    assert_eq!(
        server_frames(&h.env.published[0]),
        vec![(0x81, b"hi all".to_vec())]
    );
    assert_eq!(h.conn.output_after_read(), Output::EndOfPass);
    assert_eq!(
        h.conn.output_after_read(),
        Output::Nothing,
        "listed once per pass"
    );
    h.flush();
    assert_eq!(h.frames(), vec![(0x81, b"hi all".to_vec())]);
}

#[test]
fn a_peer_close_is_answered_and_the_connection_ends_once_the_reply_is_written() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.send(&client(0x88, &1000u16.to_be_bytes()));
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.conn.output_after_read(), Output::Now);
    assert_eq!(h.flush(), Flush::Close, "handshake complete: drop");
    let frames = h.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0x88);
    assert_eq!(close_code(&frames[0].1), 1000);
}

#[test]
fn a_protocol_violation_closes_1002_then_fin_then_waits_for_the_peer() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.send(&testkit::client_frame(0x81, b"x", false));
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.flush(), Flush::Done, "lingers for the peer's EOF");
    let frames = h.frames();
    assert_eq!(frames[0].0, 0x88);
    assert_eq!(close_code(&frames[0].1), 1002);
    assert!(h.client.wire().fin, "FIN after the close frame");
    assert_eq!(h.env.counters.protocol_errors, 1);
    h.client.send(b"ignored");
    assert_eq!(h.read(), Step::Idle, "input while draining is discarded");
    h.client.wire().eof = true;
    assert_eq!(h.read(), Step::Close);
}

#[test]
fn invalid_utf8_closes_1007_and_oversized_closes_1009() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.send(&client(0x81, &[0xce, 0xba, 0xff, 0xfe]));
    h.read();
    h.flush();
    assert_eq!(close_code(&h.frames()[0].1), 1007);

    let config = Config {
        max_message_size: 100,
        ..Config::default()
    };
    let mut h = Harness::upgraded(config, "/echo");
    h.client.send(&client(0x82, &[0; 101]));
    h.read();
    h.flush();
    assert_eq!(close_code(&h.frames()[0].1), 1009);
}

#[test]
fn a_full_socket_registers_writable_and_echo_backpressure_stops_reading_until_it_drains() {
    let config = Config {
        max_backlog: 1000,
        ..Config::default()
    };
    let mut h = Harness::upgraded(config, "/echo");
    assert_eq!(h.client.wire().interest, Some(Interest::READABLE));
    h.client.wire().room = 0;
    for _ in 0..20 {
        h.client.send(&client(0x82, &[1; 100]));
    }
    assert_eq!(h.read(), Step::Idle);
    // What one socket read brought is all taken (it is in memory already); the echoes the
    // socket refused are queued, past the backlog.
    assert_eq!(h.env.counters.msgs_in, 20);
    assert_eq!(h.env.counters.backpressure_pauses, 1);
    assert_eq!(h.flush(), Flush::Done);
    assert_eq!(
        h.client.wire().interest,
        Some(Interest::READABLE | Interest::WRITABLE)
    );
    for _ in 0..20 {
        h.client.send(&client(0x82, &[1; 100]));
    }
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.env.counters.msgs_in, 20, "paused: the socket is not read");
    // Room for some: not yet down to half the limit.
    h.client.wire().room = 1500;
    assert_eq!(h.flush(), Flush::Done);
    // Room for everything: below half, so reading resumes and WRITABLE is dropped.
    h.client.wire().room = usize::MAX;
    assert_eq!(h.flush(), Flush::ReadAgain);
    assert_eq!(h.client.wire().interest, Some(Interest::READABLE));
    assert_eq!(h.read(), Step::Idle);
    h.flush();
    assert_eq!(h.env.counters.msgs_in, 40);
    assert_eq!(h.frames().len(), 40, "nothing dropped");
}

#[test]
fn a_slow_room_member_is_closed_1008_and_its_unsent_broadcasts_dropped() {
    let config = Config {
        max_backlog: 1000,
        ..Config::default()
    };
    let mut h = Harness::upgraded(config, "/broadcast/r");
    h.client.wire().room = 0;
    let frame = frame::encode(OpCode::Binary, &[9; 400]);
    let deliveries: Vec<Delivery> = (0..5).map(|_| h.conn.deliver(&frame, &mut h.env)).collect();
    assert_eq!(
        deliveries,
        [
            Delivery::Queued,
            Delivery::Queued,
            Delivery::Queued,
            Delivery::SlowConsumer,
            Delivery::Skipped
        ]
    );
    assert_eq!(h.env.counters.slow_consumers, 1);
    h.client.wire().room = usize::MAX;
    h.flush();
    let frames = h.frames();
    assert_eq!(frames.len(), 1, "queued broadcasts dropped: {frames:?}");
    assert_eq!(close_code(&frames[0].1), 1008);
}

#[test]
fn an_upgrade_without_a_seat_gets_503_but_other_requests_are_answered() {
    let mut h = Harness::new(Config::default(), false);
    h.client.send(upgrade("/echo", "").as_bytes());
    assert_eq!(h.read(), Step::Idle);
    h.flush();
    let answer = String::from_utf8(h.client.take_output()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let Harness { conn, mut env, .. } = h;
    assert!(conn.finish(&mut env).is_none());

    let mut h = Harness::new(Config::default(), false);
    h.client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    h.read();
    h.flush();
    let answer = String::from_utf8(h.client.take_output()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_silent_connection_rests_and_wakes_with_the_same_behaviour() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.send(&client(0x81, b"one"));
    h.read();
    assert!(!h.conn.holds_parser(), "a whole message is taken in place");
    h.env.now = 5_000;
    assert!(h.conn.tick(&mut h.env));
    assert_eq!(h.env.counters.rests, 1);
    h.env.now = 10_000;
    assert!(h.conn.tick(&mut h.env));
    assert_eq!(h.env.counters.rests, 1, "once per silence");
    h.client.send(&client(0x81, b"two"));
    h.read();
    h.flush();
    let frames = h.frames();
    assert_eq!(
        frames,
        vec![(0x81, b"one".to_vec()), (0x81, b"two".to_vec())]
    );
}

#[test]
fn half_a_frame_keeps_the_parser_state() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    let frame = client(0x81, b"split in two");
    h.client.send(&frame[..5]);
    h.read();
    h.env.now = 5_000;
    h.conn.tick(&mut h.env);
    assert!(h.conn.holds_parser(), "half a frame is inside tungstenite");
    h.client.send(&frame[5..]);
    h.read();
    h.flush();
    assert_eq!(h.frames(), vec![(0x81, b"split in two".to_vec())]);
}

#[test]
fn deadlines_end_silent_handshakes_and_idle_connections_get_a_ping_then_a_close() {
    let mut h = Harness::echo();
    h.env.now = 10_000;
    assert!(!h.conn.tick(&mut h.env), "handshake timeout");
    assert_eq!(h.env.counters.timeouts, 1);

    let config = Config {
        idle_timeout: std::time::Duration::from_secs(4),
        ..Config::default()
    };
    let mut h = Harness::upgraded(config, "/echo");
    h.env.now = 2_000;
    assert!(h.conn.tick(&mut h.env));
    assert!(h.conn.claim_flush());
    h.flush();
    assert_eq!(h.frames(), vec![(0x89, b"corecast".to_vec())]);
    h.env.now = 4_000;
    assert!(h.conn.tick(&mut h.env));
    h.flush();
    let frames = h.frames();
    assert_eq!(frames[0].0, 0x88);
    assert_eq!(close_code(&frames[0].1), 1001);
    // The peer never answers: the close deadline drops it.
    h.env.now = 9_000;
    assert!(!h.conn.tick(&mut h.env));
}

#[test]
fn shutdown_closes_open_connections_1001_and_drops_the_rest() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    assert!(h.conn.start_close(1001, "server shutting down", &mut h.env));
    h.flush();
    assert_eq!(close_code(&h.frames()[0].1), 1001);
    let mut h = Harness::echo();
    assert!(
        !h.conn.start_close(1001, "server shutting down", &mut h.env),
        "never upgraded: dropped"
    );
}

#[test]
fn a_message_in_progress_is_charged_until_its_echo_is_written() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    let frame = client(0x82, &[5; 100_000]);
    h.client.send(&frame[..60_000]);
    h.read();
    let charged = h.conn.charged();
    assert!(
        (60_000 - 14..60_000 + 70_000).contains(&charged),
        "the partial message (and what was read ahead for it): {charged}"
    );
    assert_eq!(h.env.budget.held(), charged);
    h.client.wire().room = 0; // the peer does not read its echo yet
    h.client.send(&frame[60_000..]);
    h.read();
    h.flush();
    assert!(
        h.conn.charged() >= 100_000,
        "the unsent echo is the peer's: {}",
        h.conn.charged()
    );
    h.client.wire().room = usize::MAX;
    h.flush();
    h.env.now = 5_000;
    h.conn.tick(&mut h.env); // rests: the read-ahead buffer goes too
    assert_eq!(h.conn.charged(), 0);
    assert_eq!(h.env.budget.held(), 0);
}

#[test]
fn broadcast_frames_are_not_charged_to_each_member() {
    let mut h = Harness::upgraded(Config::default(), "/broadcast/r");
    h.client.wire().room = 0;
    let frame = frame::encode(OpCode::Binary, &[9; 50_000]);
    h.conn.deliver(&frame, &mut h.env);
    h.flush();
    assert_eq!(h.conn.charged(), 0);
}

#[test]
fn shedding_frees_the_message_in_progress_and_closes_1013() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    let frame = client(0x82, &[5; 1_000_000]);
    h.client.send(&frame[..700_000]);
    while h.read() == Step::Again {}
    assert!(h.conn.charged() >= 600_000);
    assert!(
        h.conn.shed(&mut h.env),
        "a WebSocket drains with a close frame"
    );
    assert!(
        h.conn.charged() < 1000,
        "the parser's bytes are gone: {}",
        h.conn.charged()
    );
    assert!(!h.conn.holds_parser());
    assert_eq!(h.flush(), Flush::Done, "lingers for the peer's EOF");
    let frames = h.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(close_code(&frames[0].1), 1013);
    // The rest of the frame is read and discarded, and charged nothing.
    h.client.send(&frame[700_000..]);
    while h.read() == Step::Again {}
    assert_eq!(h.conn.charged(), 0);
}

#[test]
fn a_peer_that_does_not_read_its_large_output_is_dropped_when_shed() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.wire().room = 0;
    h.client.send(&client(0x82, &[1; 200_000]));
    h.read();
    h.flush();
    assert!(
        !h.conn.shed(&mut h.env),
        "no room for a close frame: drop it"
    );
}

#[test]
fn a_503_closes_as_soon_as_it_is_written() {
    let mut h = Harness::new(Config::default(), false);
    h.client.send(upgrade("/echo", "").as_bytes());
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.flush(), Flush::Close, "no lingering over capacity");
    assert!(String::from_utf8(h.client.take_output())
        .unwrap()
        .starts_with("HTTP/1.1 503"));
    assert_eq!(h.env.counters.over_capacity, 1);
}

#[test]
fn a_peer_streaming_megabytes_gets_a_quota_per_turn_and_loses_nothing() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    let message = client(0x82, &[3; 100_000]);
    for _ in 0..10 {
        h.client.send(&message);
    }
    let mut turns = 0;
    loop {
        turns += 1;
        let step = h.read();
        h.flush();
        if step == Step::Idle {
            break;
        }
        assert_eq!(step, Step::Again, "stopped at the quota, to be read again");
        assert!(turns < 100);
    }
    assert!(turns >= 4, "a megabyte in {turns} turns of at most 256 KiB");
    let frames = h.frames();
    assert_eq!(frames.len(), 10);
    assert!(frames.iter().all(|f| f == &(0x82, vec![3; 100_000])));
}

#[test]
fn a_draining_peer_that_keeps_sending_is_read_in_turns_too() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.send(&client(0x82, &[5; 10]));
    h.read();
    assert!(h.conn.shed(&mut h.env));
    h.client.send(&vec![0u8; 1 << 20]);
    assert_eq!(h.read(), Step::Again);
    let mut turns = 1;
    while h.read() == Step::Again {
        turns += 1;
    }
    assert!(turns >= 4);
    assert!(
        h.client.wire().inbound.is_empty(),
        "all of it read and discarded"
    );
}

#[test]
fn output_a_transport_holds_is_flushed_under_writable_interest_like_our_own() {
    // Before any request: a TLS handshake flight the socket did not take.
    let mut h = Harness::echo();
    h.client.wire().transport = true;
    h.client.wire().room = 0;
    h.client.wire().held.extend_from_slice(b"server hello");
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(
        h.conn.output_after_read(),
        Output::Now,
        "held output is output"
    );
    assert_eq!(h.flush(), Flush::Done);
    assert_eq!(
        h.client.wire().interest,
        Some(Interest::READABLE | Interest::WRITABLE),
        "WRITABLE until the transport has written what it holds"
    );
    h.client.wire().room = usize::MAX;
    assert_eq!(h.flush(), Flush::Done);
    assert_eq!(h.client.wire().interest, Some(Interest::READABLE));
    assert_eq!(h.client.take_output(), b"server hello");

    // After the upgrade: an echo the transport took whole but could only partly write.
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.wire().transport = true;
    h.client.wire().room = 3;
    h.client.send(&client(0x82, &[7; 100]));
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(h.flush(), Flush::Done);
    assert!(h.client.wire().interest.unwrap().is_writable());
    h.client.wire().room = usize::MAX;
    assert_eq!(h.flush(), Flush::Done);
    assert_eq!(h.client.wire().interest, Some(Interest::READABLE));
    assert_eq!(h.frames(), vec![(0x82, vec![7; 100])], "nothing stuck");
}

#[test]
fn what_the_transport_holds_is_charged_to_the_budget_until_written() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.wire().transport = true;
    h.client.wire().room = 2;
    h.client.send(&client(0x82, &[7; 100]));
    assert_eq!(h.read(), Step::Idle);
    // The echo (102 bytes) went to the transport whole; 2 bytes reached the wire.
    assert_eq!(
        h.conn.charged(),
        100,
        "the transport's bytes are the peer's"
    );
    assert_eq!(h.env.budget.held(), 100);
    h.client.wire().room = usize::MAX;
    assert_eq!(h.flush(), Flush::Done);
    assert_eq!(h.conn.charged(), 0);
    assert_eq!(h.env.budget.held(), 0);
}

#[test]
fn echoes_written_from_the_receive_buffer_keep_their_order_when_the_socket_fills() {
    let mut h = Harness::upgraded(Config::default(), "/echo");
    h.client.wire().room = 150; // the first echo and half of the second fit
    let mut input = Vec::new();
    for i in 0..3u8 {
        input.extend(client(0x82, &[i; 100]));
    }
    h.client.send(&input);
    assert_eq!(h.read(), Step::Idle);
    assert_eq!(
        h.client.wire().outbound.len(),
        150,
        "written without the outbox"
    );
    assert!(h.conn.charged() > 0, "the rest is queued, and charged");
    // More arrives while output waits: it queues behind, never ahead.
    h.client.send(&client(0x81, b"late"));
    assert_eq!(h.read(), Step::Idle);
    h.client.wire().room = usize::MAX;
    assert_eq!(h.flush(), Flush::Done);
    let frames = h.frames();
    assert_eq!(
        frames,
        vec![
            (0x82, vec![0; 100]),
            (0x82, vec![1; 100]),
            (0x82, vec![2; 100]),
            (0x81, b"late".to_vec()),
        ]
    );
    assert_eq!(h.conn.charged(), 0);
}

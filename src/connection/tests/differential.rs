//! The in-place path against tungstenite alone: the same random client byte streams (valid and
//! invalid frames, garbage, split at random points) go to a connection that takes complete
//! messages in place and to one where tungstenite parses every byte; everything observable
//! must be the same: the bytes written back (echoes, pongs, close frames and their codes), the
//! frames published to a room, when the connection ends, and every counter.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use testkit::frame::Piece;

use super::*;

/// Small, so generated frames cross it and meet the 1009 path.
const MAX_MESSAGE: usize = 1000;

/// A frame announcing more than 2^63 bytes.
const HUGE: [u8; 14] = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];

fn first_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        10 => Just(0x81u8),
        10 => Just(0x82),
        2 => Just(0x01),
        2 => Just(0x02),
        3 => Just(0x80),
        2 => Just(0x00),
        3 => Just(0x89),
        1 => Just(0x8A),
        1 => Just(0x88),
        1 => Just(0xC1), // RSV1
        1 => Just(0x83), // reserved opcode
        2 => any::<u8>(),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<char>(), 0..40)
            .prop_map(|chars| chars.into_iter().collect::<String>().into_bytes()),
        3 => prop::collection::vec(0x20u8..0x7f, 0..300),
        3 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (MAX_MESSAGE - 5..MAX_MESSAGE + 5).prop_map(|n| vec![b'x'; n]),
        1 => close_payload(),
    ]
}

/// A close frame's payload: a code (valid or not) and a reason.
fn close_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![1000u16, 1001, 1002, 1005, 999, 3000, 4999, 5000]),
        prop::collection::vec(any::<char>(), 0..10),
    )
        .prop_map(|(code, reason)| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend(reason.into_iter().collect::<String>().into_bytes());
            p
        })
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        30 => (
            first_byte(),
            prop::bool::weighted(0.95),
            prop_oneof![8 => Just(0u8), 1 => Just(1), 1 => Just(2)],
            any::<[u8; 4]>(),
            payload(),
        )
            .prop_map(|(first, masked, wide, key, payload)| Piece::Frame {
                first,
                key: masked.then_some(key),
                wide,
                payload,
            }),
        2 => (any::<[u8; 4]>(), close_payload()).prop_map(|(key, payload)| Piece::Frame {
            first: 0x88,
            key: Some(key),
            wide: 0,
            payload,
        }),
        1 => Just(Piece::Raw(HUGE.to_vec())),
        1 => prop::collection::vec(any::<u8>(), 1..20).prop_map(Piece::Raw),
    ]
}

/// A client's whole stream: the pieces, the sizes it arrives in (used in turn), how many
/// bytes the socket takes before each arrival (used in turn: a full socket leaves output
/// queued), and whether the client closes its side at the end.
#[derive(Debug, Clone)]
struct Stream {
    pieces: Vec<Piece>,
    sizes: Vec<usize>,
    rooms: Vec<usize>,
    eof: bool,
}

/// A well-formed message: valid UTF-8 text, binary, or a ping.
fn valid_piece() -> impl Strategy<Value = Piece> {
    let text = prop::collection::vec(any::<char>(), 0..40)
        .prop_map(|chars| (0x81u8, chars.into_iter().collect::<String>().into_bytes()));
    let binary = prop::collection::vec(any::<u8>(), 0..300).prop_map(|p| (0x82u8, p));
    let ping = prop::collection::vec(any::<u8>(), 0..125).prop_map(|p| (0x89u8, p));
    (
        prop_oneof![4 => text, 4 => binary, 1 => ping],
        any::<[u8; 4]>(),
    )
        .prop_map(|((first, payload), key)| Piece::Frame {
            first,
            key: Some(key),
            wide: 0,
            payload,
        })
}

/// Pieces of any kind, or well-formed messages up to a close frame and then anything.
fn pieces() -> impl Strategy<Value = Vec<Piece>> {
    let closing = (
        prop::collection::vec(valid_piece(), 0..10),
        (any::<[u8; 4]>(), close_payload()),
        prop::collection::vec(piece(), 0..4),
    )
        .prop_map(|(mut pieces, (key, payload), after)| {
            pieces.push(Piece::Frame {
                first: 0x88,
                key: Some(key),
                wide: 0,
                payload,
            });
            pieces.extend(after);
            pieces
        });
    prop_oneof![3 => prop::collection::vec(piece(), 1..24), 1 => closing]
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        pieces(),
        prop::collection::vec(1usize..700, 1..12),
        prop::collection::vec(prop_oneof![3 => Just(usize::MAX), 1 => 0usize..300], 1..6),
        any::<bool>(),
    )
        .prop_map(|(pieces, sizes, rooms, eof)| Stream {
            pieces,
            sizes,
            rooms,
            eof,
        })
}

/// Everything a worker or a client could observe of one connection.
#[derive(Debug, PartialEq)]
struct Observed {
    output: Vec<u8>,
    published: Vec<Bytes>,
    /// The connection asked to be dropped (how soon may differ: see the end of `run`).
    ended: bool,
    counters: Counters,
}

fn run(in_place: bool, path: &str, stream: &Stream) -> Observed {
    let mut bytes = Vec::new();
    for piece in &stream.pieces {
        piece.put(&mut bytes);
    }
    let (sizes, eof) = (&stream.sizes, stream.eof);
    let config = Config {
        max_message_size: MAX_MESSAGE,
        ..Config::default()
    };
    let mut h = Harness::upgraded(config, path);
    h.env.limits.in_place = in_place;
    let mut published = Vec::new();
    let mut ended = false;
    let mut chunks = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        chunks.push(&bytes[at..end]);
        at = end;
    }
    let arrivals = chunks.len() + usize::from(eof);
    // Each arrival is a readiness event, and one more with nothing new comes last. A header
    // that arrived behind the last message tungstenite returned is parsed by the in-place path
    // at once (it hands over from that header), by the reference only at the next event (its
    // reads are skipped while the socket is drained): both must end in the same place.
    for arrival in 0..=arrivals {
        h.client.wire().room = stream.rooms[arrival % stream.rooms.len()];
        match chunks.get(arrival) {
            Some(chunk) => h.client.send(chunk),
            None if arrival < arrivals => h.client.wire().eof = true,
            None => {}
        }
        let mut step = h.read();
        while step == Step::Again {
            h.flush();
            step = h.read();
        }
        published.append(&mut h.env.published);
        if step == Step::Close {
            // As the worker does when it drops the connection.
            if h.conn.ends_without_close() {
                h.env.counters.count_close(1006);
            }
            ended = true;
            break;
        }
        h.flush();
    }
    // Whatever waited for room goes out.
    h.client.wire().room = usize::MAX;
    h.flush();
    Observed {
        output: h.client.take_output(),
        published,
        ended,
        counters: h.env.counters,
    }
}

fn check(stream: &Stream) -> Result<(), TestCaseError> {
    for path in ["/echo", "/broadcast/r"] {
        let fast = run(true, path, stream);
        let reference = run(false, path, stream);
        prop_assert_eq!(fast, reference, "{} on {:?}", path, stream);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn in_place_and_tungstenite_alone_answer_every_stream_the_same(stream in stream()) {
        check(&stream)?;
    }
}

/// The generator is not vacuous: its streams reach messages taken in place, hand-overs to
/// tungstenite, and each of the close codes a client can cause.
#[test]
fn generated_streams_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut totals = Counters::default();
    for _ in 0..300 {
        let stream = stream().new_tree(&mut runner).unwrap().current();
        let c = run(true, "/echo", &stream).counters;
        totals.msgs_in += c.msgs_in;
        totals.close_1000 += c.close_1000;
        totals.close_1002 += c.close_1002;
        totals.close_1007 += c.close_1007;
        totals.close_1009 += c.close_1009;
        totals.close_1006 += c.close_1006;
    }
    println!("{totals:?}");
    assert!(totals.msgs_in > 100, "messages: {}", totals.msgs_in);
    for (code, n) in [
        (1000, totals.close_1000),
        (1002, totals.close_1002),
        (1007, totals.close_1007),
        (1009, totals.close_1009),
    ] {
        assert!(n > 0, "no stream ended with {code}");
    }
}

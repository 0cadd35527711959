//! The in-place path against tungstenite alone: the same random server byte streams (data
//! frames of every length form, pings, pongs, closes, fragments, masked frames, reserved bits
//! and opcodes, invalid UTF-8, garbage), split at random points into socket reads, go to
//! `Inbound` over one tungstenite and to another tungstenite that parses every byte. Both must
//! deliver the same messages in the same order, end with the same error at the same point, and
//! write the same amount (pongs and close replies).

use std::io::{self, Read, Write};

use proptest::prelude::*;
use tungstenite::protocol::{Role, WebSocketConfig};

use testkit::frame::{put_frame, Piece};

use super::*;

/// A socket stand-in: reads come from the feed, writes are kept.
#[derive(Default)]
struct TestSock {
    feed: Feed,
    written: Vec<u8>,
}

impl Fed for TestSock {
    fn feed(&mut self) -> &mut Feed {
        &mut self.feed
    }
}

impl Read for TestSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.feed.read(buf)
    }
}

impl Write for TestSock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn socket(read_buffer: usize) -> WebSocket<TestSock> {
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20);
    WebSocket::from_raw_socket(TestSock::default(), Role::Client, Some(config))
}

/// What a run observed: messages delivered, the error it ended with, bytes written.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    messages: Vec<Vec<u8>>,
    error: Option<String>,
    written: usize,
}

/// tungstenite parses every byte: each read is fed whole and read out.
fn reference(reads: &[&[u8]], eof: bool, read_buffer: usize) -> Seen {
    let mut ws = socket(read_buffer);
    let mut messages = Vec::new();
    let mut error = None;
    let mut deliver = |m: &[u8]| messages.push(m.to_vec());
    for read in reads {
        ws.get_mut().feed.push(read);
        if let Err(e) = drain(&mut ws, &mut deliver) {
            error = Some(e.to_string());
            break;
        }
    }
    if error.is_none() && eof {
        ws.get_mut().feed.end();
        error = drain(&mut ws, &mut deliver).err().map(|e| e.to_string());
    }
    let written = ws.get_ref().written.len();
    Seen {
        messages,
        error,
        written,
    }
}

/// The in-place path, with `leftover` bytes from the upgrade.
fn in_place(leftover: &[u8], reads: &[&[u8]], eof: bool, read_buffer: usize) -> Seen {
    let mut ws = socket(read_buffer);
    let mut inbound = Inbound::with_leftover(leftover.to_vec());
    let mut messages = Vec::new();
    let mut deliver = |m: &[u8]| messages.push(m.to_vec());
    let mut result = inbound.take(&[], &mut ws, &mut deliver);
    for read in reads {
        if result.is_err() {
            break;
        }
        result = inbound.take(read, &mut ws, &mut deliver);
    }
    if result.is_ok() && eof {
        result = inbound.end(&mut ws, &mut deliver);
    }
    let written = ws.get_ref().written.len();
    Seen {
        messages,
        error: result.err().map(|e| e.to_string()),
        written,
    }
}

/// A frame header announcing more than tungstenite's frame limit.
fn huge() -> Vec<u8> {
    let mut header = vec![0x82, 127];
    header.extend_from_slice(&(FAST_MAX + 1).to_be_bytes());
    header
}

/// The key of the (illegal) masked server frames generated.
const KEY: [u8; 4] = [1, 2, 3, 4];

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(b'a'..=b'z', 0..200),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (126usize..70_000).prop_map(|n| (0..n).map(|i| b'a' + (i % 26) as u8).collect()),
        1 => Just("é∑ü".repeat(20).into_bytes()),
        1 => Just(vec![0xff, 0xfe, b'x']),
    ]
}

fn close_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![0x03, 0xe8, b'b', b'y', b'e']),
        Just(vec![0x03, 0xe9]),
        Just(vec![0x00, 0x01]),
        Just(vec![0x03]),
    ]
}

fn piece() -> impl Strategy<Value = Piece> {
    let frame = |first: BoxedStrategy<u8>, payload: BoxedStrategy<Vec<u8>>| {
        (first, prop::bool::weighted(0.03), 0u8..3, payload).prop_map(
            |(first, masked, wide, payload)| Piece::Frame {
                first,
                key: masked.then_some(KEY),
                wide,
                payload,
            },
        )
    };
    prop_oneof![
        // Whole messages: the common case.
        40 => frame(prop_oneof![Just(0x81u8), Just(0x82u8)].boxed(), payload().boxed()),
        // Fragments: starts, continuations, ends.
        6 => frame(
            prop_oneof![Just(0x01u8), Just(0x02u8), Just(0x00u8), Just(0x80u8)].boxed(),
            payload().boxed()
        ),
        // Pings and pongs (small), and an oversized ping.
        6 => frame(
            prop_oneof![Just(0x89u8), Just(0x8au8)].boxed(),
            prop::collection::vec(any::<u8>(), 0..20).boxed()
        ),
        1 => frame(Just(0x89u8).boxed(), prop::collection::vec(any::<u8>(), 126..130).boxed()),
        2 => frame(Just(0x88u8).boxed(), close_payload().boxed()),
        // Reserved bits or opcodes, a control frame without FIN.
        1 => frame(
            prop_oneof![Just(0xc1u8), Just(0x92u8), Just(0x83u8), Just(0x8bu8), Just(0x09u8)]
                .boxed(),
            payload().boxed()
        ),
        1 => Just(Piece::Raw(huge())),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Piece::Raw),
    ]
}

/// A stream, where to cut it into reads, how much is upgrade leftover, and whether it ends.
fn case() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, usize, bool, usize)> {
    (
        prop::collection::vec(piece(), 0..30),
        prop::collection::vec(any::<usize>(), 0..12),
        any::<usize>(),
        any::<bool>(),
        prop_oneof![Just(1024usize), Just(64usize), Just(64 * 1024)],
    )
        .prop_map(|(pieces, cuts, leftover, eof, read_buffer)| {
            let mut stream = Vec::new();
            for p in &pieces {
                p.put(&mut stream);
            }
            let len = stream.len();
            let leftover = if len == 0 {
                0
            } else {
                leftover % (len / 4 + 1)
            };
            (stream, cuts, leftover, eof, read_buffer)
        })
}

fn split<'a>(stream: &'a [u8], from: usize, cuts: &[usize]) -> Vec<&'a [u8]> {
    let rest = &stream[from..];
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| if rest.is_empty() { 0 } else { c % rest.len() })
        .collect();
    points.push(0);
    points.push(rest.len());
    points.sort_unstable();
    points.windows(2).map(|w| &rest[w[0]..w[1]]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn in_place_path_matches_tungstenite((stream, cuts, leftover, eof, read_buffer) in case()) {
        let reads = split(&stream, leftover, &cuts);
        let mut all: Vec<&[u8]> = vec![&stream[..leftover]];
        all.extend(reads.iter().copied());
        let expected = reference(&all, eof, read_buffer);
        let got = in_place(&stream[..leftover], &reads, eof, read_buffer);
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn common_frames_never_reach_tungstenite() {
    let mut stream = Vec::new();
    for (i, len) in [0usize, 5, 125, 126, 300, 65535, 65536, 70_000]
        .iter()
        .enumerate()
    {
        let payload = vec![b'a' + i as u8; *len];
        let first = if i % 2 == 0 { 0x81 } else { 0x82 };
        put_frame(&mut stream, first, &payload, None, 0);
        put_frame(&mut stream, 0x82, &[7; 3], None, 2);
    }
    let mut ws = socket(1024);
    let mut inbound = Inbound::default();
    let mut got = Vec::new();
    for read in stream.chunks(1000) {
        inbound
            .take(read, &mut ws, &mut |m| got.push(m.len()))
            .unwrap();
        assert!(ws.get_mut().feed.buf.is_empty(), "tungstenite was fed");
    }
    assert_eq!(got.len(), 16);
    assert!(!inbound.has_tail());
    // A ping in the middle goes to tungstenite, which answers it; the next frame is in place.
    let mut ping = Vec::new();
    put_frame(&mut ping, 0x89, b"hi", None, 0);
    put_frame(&mut ping, 0x82, &[1; 4], None, 0);
    inbound
        .take(&ping, &mut ws, &mut |m| got.push(m.len()))
        .unwrap();
    assert_eq!(got.last(), Some(&4));
    assert_eq!(
        ws.get_ref().written.len(),
        2 + 4 + 2,
        "a masked pong with 2 bytes"
    );
}

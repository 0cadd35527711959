//! The bytes loadgen puts in every message, and the check applied to every message received.
//!
//! Layout (little endian): `sender u32 | seq u32 | intended_ns u64 | filler`, 16 bytes of
//! header, so 16-byte messages are possible. `sender` is the global index of the sending
//! connection (the publisher in broadcast mode), `seq` the low 32 bits of that sender's message
//! counter (from 0; the receiver's `SeqTracker` widens it back, see `SeqTracker::widen`), and
//! `intended_ns` the CLOCK_MONOTONIC time the schedule meant the message to leave (not when it
//! actually left), which is what latency is measured from. The filler is a pattern derived from
//! `(sender, seq)`, so a message whose header survived but whose body was mixed up with another
//! message's still fails the check. Anything else (a stray server message) fails the length
//! check or the receiver's sender and sequence checks.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Bytes taken by the header; `--size` must be at least this.
pub const HEADER_LEN: usize = 16;

/// What a message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Global index of the connection that sent it.
    pub sender: u32,
    /// The sender's message counter, from 0. Only its low 32 bits travel: `decode` returns
    /// those, and the receiver widens them with its `SeqTracker`.
    pub seq: u64,
    /// When the schedule intended it to be sent (CLOCK_MONOTONIC ns).
    pub intended_ns: u64,
}

/// Why a received message is not one we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("message is {actual} bytes, expected {expected}")]
    Length { actual: usize, expected: usize },
    #[error("message body does not match its header")]
    Content,
}

/// Builds a message of exactly `size` bytes (`size >= HEADER_LEN`).
pub fn encode(header: Header, size: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(size);
    write_message(header, size, |piece| buf.extend_from_slice(piece));
    buf
}

/// Hands the bytes of a `size`-byte message to `put`, in order.
fn write_message(header: Header, size: usize, mut put: impl FnMut(&[u8])) {
    debug_assert!(size >= HEADER_LEN);
    put(&header.sender.to_le_bytes());
    put(&(header.seq as u32).to_le_bytes());
    put(&header.intended_ns.to_le_bytes());
    let seed = filler_seed(header.sender, header.seq);
    let mut at = HEADER_LEN;
    while at < size {
        let piece = filler(seed, at, size - at);
        put(piece);
        at += piece.len();
    }
}

/// Builds outgoing messages into one reused buffer, so the send path does not allocate.
///
/// Each message is split off the buffer as a `Bytes` that shares its storage. tungstenite copies
/// a message into its own out buffer (masking it) and drops it before `write` returns, so by the
/// next `message` call the buffer is again the storage's only owner and `reserve` takes the
/// whole storage back instead of allocating. Keeping a message longer only costs one new
/// storage, never a wrong byte.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: BytesMut,
}

impl Encoder {
    /// The message `encode(header, size)` would build, as a `Bytes` on the reused storage.
    pub fn message(&mut self, header: Header, size: usize) -> Bytes {
        // Room for a few messages, so the storage is taken back only every few sends.
        self.buf.reserve(size.max(4096));
        write_message(header, size, |piece| self.buf.extend_from_slice(piece));
        self.buf.split().freeze()
    }
}

/// Checks length, marker and every filler byte, and returns the header.
pub fn decode(data: &[u8], expected_len: usize) -> Result<Header, PayloadError> {
    if data.len() != expected_len || data.len() < HEADER_LEN {
        return Err(PayloadError::Length {
            actual: data.len(),
            expected: expected_len,
        });
    }
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let header = Header {
        sender: u32_at(0),
        seq: u32_at(4) as u64,
        intended_ns: u64_at(8),
    };
    let seed = filler_seed(header.sender, header.seq);
    let mut at = HEADER_LEN;
    let mut body_ok = true;
    while at < data.len() && body_ok {
        let piece = filler(seed, at, data.len() - at);
        body_ok = data[at..at + piece.len()] == *piece;
        at += piece.len();
    }
    if !body_ok {
        return Err(PayloadError::Content);
    }
    Ok(header)
}

fn filler_seed(sender: u32, seq: u64) -> u8 {
    (seq as u8).wrapping_mul(31) ^ (seq >> 8) as u8 ^ (sender as u8).wrapping_mul(7)
}

/// Byte `i` of the filler is `seed + i` (mod 256): a ramp that repeats every 256 bytes.
fn filler_byte(seed: u8, index: usize) -> u8 {
    seed.wrapping_add(index as u8)
}

/// Two turns of the ramp, so any 256 consecutive filler bytes are one slice of it.
const RAMP: [u8; 512] = {
    let mut ramp = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        ramp[i] = i as u8;
        i += 1;
    }
    ramp
};

/// The filler bytes from `index` on, at most `max` of them and at most 256: compared and copied
/// as slices (memcmp, memcpy) rather than byte by byte, which matters at 16 KiB per message.
fn filler(seed: u8, index: usize, max: usize) -> &'static [u8] {
    let start = filler_byte(seed, index) as usize;
    &RAMP[start..start + max.min(256)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Header = Header {
        sender: 7,
        seq: 123_456,
        intended_ns: 99,
    };

    #[test]
    fn round_trips() {
        for size in [HEADER_LEN, 64, 1000] {
            let msg = encode(H, size);
            assert_eq!(msg.len(), size);
            assert_eq!(decode(&msg, size), Ok(H));
        }
    }

    #[test]
    fn sixteen_bytes_carry_the_whole_header_and_seq_travels_as_its_low_32_bits() {
        let msg = encode(H, 16);
        assert_eq!(msg.len(), 16);
        assert_eq!(decode(&msg, 16), Ok(H));
        let big = Header {
            seq: (5 << 32) + 77,
            ..H
        };
        assert_eq!(decode(&encode(big, 40), 40), Ok(Header { seq: 77, ..big }));
    }

    #[test]
    fn the_encoder_builds_the_same_bytes_and_reuses_its_storage() {
        let mut enc = Encoder::default();
        let first = enc.message(H, 64);
        assert_eq!(first[..], encode(H, 64)[..]);
        let storage = first.as_ptr() as usize;
        drop(first);
        // Every later message, of any size up to the first reservation, lands in that storage.
        for (i, size) in [16usize, 64, 1000, 4096, 17, 3000]
            .iter()
            .cycle()
            .take(200)
            .enumerate()
        {
            let h = Header { seq: i as u64, ..H };
            let msg = enc.message(h, *size);
            assert_eq!(decode(&msg, *size), Ok(h));
            let at = msg.as_ptr() as usize;
            assert!(
                (storage..storage + 8192).contains(&at),
                "message {i} of {size} B was built in a new allocation"
            );
        }
        // A message still held elsewhere is never overwritten: the encoder moves on instead.
        let kept = enc.message(H, 64);
        for seq in 0..100 {
            let _ = enc.message(Header { seq, ..H }, 4096);
        }
        assert_eq!(decode(&kept, 64), Ok(H));
    }

    #[test]
    fn rejects_wrong_length_sender_and_body() {
        let msg = encode(H, 64);
        assert_eq!(
            decode(&msg[..63], 64),
            Err(PayloadError::Length {
                actual: 63,
                expected: 64
            })
        );
        // Another sender's header on this body: the filler no longer matches.
        let mut bad = msg.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad, 64), Err(PayloadError::Content));
        let mut bad = msg.clone();
        bad[40] ^= 0x10;
        assert_eq!(decode(&bad, 64), Err(PayloadError::Content));
    }

    #[test]
    fn filler_is_the_byte_by_byte_pattern_at_every_size() {
        for size in [
            HEADER_LEN,
            HEADER_LEN + 1,
            255,
            256,
            300,
            1000,
            16 * 1024 + 3,
        ] {
            let msg = encode(H, size);
            let seed = filler_seed(H.sender, H.seq);
            for (i, &b) in msg.iter().enumerate().skip(HEADER_LEN) {
                assert_eq!(b, filler_byte(seed, i), "size {size} byte {i}");
            }
            // A flipped byte anywhere in the body, including the last, is caught.
            for at in [HEADER_LEN, size / 2, size - 1] {
                if at < HEADER_LEN || at >= size {
                    continue;
                }
                let mut bad = msg.clone();
                bad[at] ^= 0x01;
                assert_eq!(
                    decode(&bad, size),
                    Err(PayloadError::Content),
                    "size {size} at {at}"
                );
            }
        }
    }

    #[test]
    fn body_of_another_message_is_caught() {
        let a = encode(H, 64);
        let b = encode(
            Header {
                seq: H.seq + 1,
                ..H
            },
            64,
        );
        let mut mixed = a[..HEADER_LEN].to_vec();
        mixed.extend_from_slice(&b[HEADER_LEN..]);
        assert_eq!(decode(&mixed, 64), Err(PayloadError::Content));
    }
}

//! A frame on Redis: a small header naming the instance it comes from, then the WebSocket frame
//! exactly as the origin encoded it once, so a receiving instance queues it to its members
//! without re-encoding and the origin recognises (and skips) its own echo.
//!
//! Layout: one version byte, the 16-byte origin id, the frame bytes.

use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;

/// Layout version; a payload with another first byte is not ours (or from an incompatible
/// build) and is ignored.
const VERSION: u8 = 1;
/// Version byte plus origin id.
pub const HEADER_LEN: usize = 1 + 16;

/// One instance's id: 128 random bits, drawn at start, so that two instances on one Redis never
/// take each other's messages for their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin([u8; 16]);

impl Origin {
    /// A fresh id from the kernel's random source (from the standard library's randomly keyed
    /// hasher, the clock and the pid should that fail).
    pub fn random() -> Origin {
        let mut id = [0u8; 16];
        // SAFETY: `id` is a valid, writable buffer of the given length.
        let got = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
        if got != id.len() as isize {
            for (i, half) in id.chunks_mut(8).enumerate() {
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write_usize(i);
                hasher.write_u32(std::process::id());
                hasher.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                half.copy_from_slice(&hasher.finish().to_le_bytes());
            }
        }
        Origin(id)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The Redis payload for `frame` published here.
pub fn encode(origin: &Origin, frame: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(HEADER_LEN + frame.len());
    payload.push(VERSION);
    payload.extend_from_slice(&origin.0);
    payload.extend_from_slice(frame);
    payload
}

/// What a payload heard on Redis is, to the instance `me`.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A frame from another instance, for the local members.
    Foreign(Bytes),
    /// Our own publish coming back: already delivered locally.
    Echo,
    /// Not a payload of this layout.
    Malformed,
}

pub fn decode(me: &Origin, payload: &[u8]) -> Heard {
    if payload.len() <= HEADER_LEN || payload[0] != VERSION {
        return Heard::Malformed;
    }
    if payload[1..HEADER_LEN] == me.0 {
        return Heard::Echo;
    }
    Heard::Foreign(Bytes::copy_from_slice(&payload[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_to_another_instance_and_is_an_echo_at_home() {
        let (a, b) = (Origin::random(), Origin::random());
        assert_ne!(a, b);
        let payload = encode(&a, b"\x81\x02hi");
        assert_eq!(payload.len(), HEADER_LEN + 4);
        assert_eq!(
            decode(&b, &payload),
            Heard::Foreign(Bytes::from_static(b"\x81\x02hi"))
        );
        assert_eq!(decode(&a, &payload), Heard::Echo);
    }

    #[test]
    fn foreign_layouts_are_malformed() {
        let me = Origin::random();
        assert_eq!(decode(&me, b""), Heard::Malformed);
        assert_eq!(decode(&me, b"hello from redis-cli"), Heard::Malformed);
        // A header and nothing after it carries no frame.
        assert_eq!(decode(&me, &encode(&me, b"")), Heard::Malformed);
        assert_eq!(format!("{me}").len(), 32);
    }
}

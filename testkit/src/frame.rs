//! Client frames as a WebSocket client puts them on the wire, for tests that feed a server (or
//! its frame parsers) raw bytes.

/// The masking key of every frame built here: fixed, so a test's bytes are reproducible.
pub const MASK_KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Encodes one client frame: `first_byte` (FIN, RSV bits and opcode) as given, the payload
/// length in the shortest form (7 bits up to 125, 16 bits up to 65535, 64 bits beyond) and,
/// when `mask` is true, the mask bit, [`MASK_KEY`] and the payload masked with it. `mask`
/// false makes an (illegal) unmasked client frame.
pub fn client_frame(first_byte: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame(&mut out, first_byte, payload, mask.then_some(MASK_KEY), 0);
    out
}

/// Appends one frame to `out`: `first_byte` as given; the payload length in the shortest form
/// that fits it and is at least `wide` (0: 7 bits, 1: 16 bits, 2: 64 bits; a longer form than
/// needed is legal on the wire, so parsers must take it); with `key`, the mask bit, the key
/// and the payload masked with it, else the payload as it is.
pub fn put_frame(
    out: &mut Vec<u8>,
    first_byte: u8,
    payload: &[u8],
    key: Option<[u8; 4]>,
    wide: u8,
) {
    out.push(first_byte);
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    match (len, wide) {
        (0..=125, 0) => out.push(mask_bit | len as u8),
        (0..=65535, 0 | 1) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match key {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => out.extend_from_slice(payload),
    }
}

/// One piece of a random peer stream, for the differential tests that hold a fast frame path
/// to tungstenite: a frame (`put_frame`'s arguments) or bytes as they are (a header announcing
/// more than a limit, garbage).
#[derive(Debug, Clone)]
pub enum Piece {
    Frame {
        first: u8,
        key: Option<[u8; 4]>,
        /// Length in a longer form than needed: 0 shortest, 1 the 16-bit form, 2 the 64-bit.
        wide: u8,
        payload: Vec<u8>,
    },
    Raw(Vec<u8>),
}

impl Piece {
    /// Appends the piece's bytes to `out`.
    pub fn put(&self, out: &mut Vec<u8>) {
        match self {
            Piece::Frame {
                first,
                key,
                wide,
                payload,
            } => put_frame(out, *first, payload, *key, *wide),
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_take_the_shortest_form() {
        // (payload length, length byte, extended length bytes)
        let cases: [(usize, u8, &[u8]); 6] = [
            (0, 0, &[]),
            (125, 125, &[]),
            (126, 126, &[0, 126]),
            (65535, 126, &[0xff, 0xff]),
            (65536, 127, &[0, 0, 0, 0, 0, 1, 0, 0]),
            (70_000, 127, &70_000u64.to_be_bytes()),
        ];
        for (len, len_byte, extended) in cases {
            let f = client_frame(0x82, &vec![0xab; len], true);
            assert_eq!(f[0], 0x82, "len {len}");
            assert_eq!(f[1], 0x80 | len_byte, "len {len}");
            assert_eq!(&f[2..2 + extended.len()], extended, "len {len}");
            let key_at = 2 + extended.len();
            assert_eq!(&f[key_at..key_at + 4], &MASK_KEY, "len {len}");
            assert_eq!(f.len(), key_at + 4 + len, "len {len}");
        }
    }

    #[test]
    fn masked_payload_unmasks_to_the_original() {
        let payload: Vec<u8> = (0..=255).collect();
        let f = client_frame(0x81, &payload, true);
        let (key, masked) = f[4..].split_at(4);
        assert_ne!(masked, &payload[..], "the payload is masked");
        let unmasked: Vec<u8> = masked
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(unmasked, payload);
    }

    #[test]
    fn unmasked_frame_has_no_mask_bit_key_or_masking() {
        let f = client_frame(0x89, b"ping", false);
        assert_eq!(f, [0x89, 4, b'p', b'i', b'n', b'g']);
        let f = client_frame(0x82, &[7; 300], false);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        assert_eq!(&f[4..], &[7; 300][..]);
    }

    #[test]
    fn first_byte_is_kept_as_given() {
        for first in [0x01, 0x80, 0xc1, 0x0f] {
            assert_eq!(client_frame(first, b"x", true)[0], first);
        }
    }
}

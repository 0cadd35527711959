//! The common client frame, recognised straight from the worker's receive buffer.
//!
//! Nearly every frame a client sends is a complete, final, masked text or binary frame with
//! no extension bits: one frame, one message. Those are taken here without tungstenite: the
//! header is read where it lies, the payload unmasked in place, and the caller checks UTF-8
//! and acts on it. Every other frame (a control frame, a fragment, reserved bits or opcodes, an
//! unmasked frame, one over the size limit, or one not wholly in the buffer) is `Other`: the
//! caller hands the bytes from that frame on to tungstenite, which validates and answers them
//! as it always did. The two paths agree because this one accepts only frames tungstenite
//! would turn into exactly one message with the same payload (a differential property test in
//! `connection::tests` checks that on random byte streams).

/// What the bytes at the front of a buffer are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A complete data frame that is a whole message by itself.
    Message {
        text: bool,
        /// Header bytes, the mask key included: the payload starts here.
        header: usize,
        /// Payload bytes.
        len: usize,
    },
    /// Anything else, or not all of it is in the buffer yet: tungstenite's to parse.
    Other,
}

/// First header byte of a final text frame with no extension bits (FIN | opcode 1).
const FINAL_TEXT: u8 = 0x81;
/// The same for binary (FIN | opcode 2).
const FINAL_BINARY: u8 = 0x82;
const MASKED: u8 = 0x80;

/// Reads the frame at the front of `buf`; `max` is the largest payload accepted.
#[inline]
pub fn scan(buf: &[u8], max: usize) -> Scan {
    let [first, second, ..] = *buf else {
        return Scan::Other;
    };
    let text = match first {
        FINAL_TEXT => true,
        FINAL_BINARY => false,
        _ => return Scan::Other,
    };
    if second & MASKED == 0 {
        return Scan::Other;
    }
    let (header, len) = match second & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (8, u16::from_be_bytes([b[0], b[1]]) as u64),
            None => return Scan::Other,
        },
        127 => match buf.get(2..10) {
            Some(b) => (14, u64::from_be_bytes(b.try_into().expect("8 bytes"))),
            None => return Scan::Other,
        },
        n => (6, n as u64),
    };
    if len > max as u64 || buf.len() < header || ((buf.len() - header) as u64) < len {
        return Scan::Other;
    }
    Scan::Message {
        text,
        header,
        len: len as usize,
    }
}

/// XORs `payload` with the 4-byte mask `key` (RFC 6455 section 5.3), eight bytes at a time.
/// Applying it twice gives the original back.
#[inline]
pub fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = payload.chunks_exact_mut(8);
    for word in &mut words {
        let bytes: &mut [u8; 8] = word.try_into().expect("chunks of 8");
        *bytes = (u64::from_ne_bytes(*bytes) ^ wide).to_ne_bytes();
    }
    // The remainder starts at a multiple of 8 from the payload start, so at key index 0.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The mask key: the last four bytes of a client header.
#[inline]
pub fn mask_key(header: &[u8]) -> [u8; 4] {
    let at = header.len() - 4;
    [header[at], header[at + 1], header[at + 2], header[at + 3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        testkit::client_frame(first, payload, true)
    }

    #[test]
    fn complete_final_masked_data_frames_are_messages() {
        for (len, header) in [(0usize, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)] {
            let bytes = frame(0x82, &vec![1u8; len]);
            assert_eq!(
                scan(&bytes, 1 << 20),
                Scan::Message {
                    text: false,
                    header,
                    len
                }
            );
            // Any byte short of the whole frame: not yet.
            assert_eq!(scan(&bytes[..bytes.len() - 1], 1 << 20), Scan::Other);
        }
        let text = frame(0x81, b"hi");
        assert!(matches!(scan(&text, 10), Scan::Message { text: true, .. }));
    }

    #[test]
    fn everything_else_is_left_to_tungstenite() {
        let cases: [(&str, Vec<u8>); 7] = [
            ("fragment", frame(0x02, b"a")),
            ("continuation", frame(0x80, b"a")),
            ("ping", frame(0x89, b"a")),
            ("close", frame(0x88, &[3, 232])),
            ("rsv1", frame(0xC2, b"a")),
            ("reserved opcode", frame(0x83, b"a")),
            ("unmasked", testkit::client_frame(0x82, b"a", false)),
        ];
        for (what, bytes) in cases {
            assert_eq!(scan(&bytes, 1 << 20), Scan::Other, "{what}");
        }
        assert_eq!(
            scan(&frame(0x82, &[0; 11]), 10),
            Scan::Other,
            "over the limit"
        );
        assert_eq!(scan(&[0x82], 10), Scan::Other, "one byte");
        assert_eq!(
            scan(&[0x82, 0x80, 1, 2, 3], 10),
            Scan::Other,
            "part of the mask key"
        );
        // A 64-bit length that would overflow the buffer arithmetic.
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(scan(&huge, usize::MAX), Scan::Other);
    }

    #[test]
    fn unmasking_matches_the_bytewise_definition_at_every_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(31)).collect();
            let mut fast = original.clone();
            unmask(&mut fast, key);
            let slow: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow, "length {len}");
            unmask(&mut fast, key);
            assert_eq!(fast, original);
        }
    }

    #[test]
    fn the_key_is_the_last_four_header_bytes() {
        let bytes = frame(0x81, b"hello");
        let Scan::Message { header, len, .. } = scan(&bytes, 100) else {
            panic!("a message")
        };
        let mut payload = bytes[header..header + len].to_vec();
        unmask(&mut payload, mask_key(&bytes[..header]));
        assert_eq!(payload, b"hello");
    }
}

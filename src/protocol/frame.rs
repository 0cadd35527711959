//! Server-side WebSocket frame encoding.
//!
//! Server frames are never masked, so a message encoded once is the same bytes for every
//! recipient: broadcast encodes each message a single time and shares the `Bytes` with every
//! member on every worker. Decoding (and all validation of client frames) stays in tungstenite.

use bytes::{BufMut, Bytes, BytesMut};

/// Frame opcodes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

/// Longest header a server frame can have: 2 bytes + 8-byte extended length.
pub const MAX_HEADER: usize = 10;

/// Length of the header `put_header` writes for `len` payload bytes.
pub fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        MAX_HEADER
    }
}

/// Appends the header of a final, unmasked frame carrying `len` payload bytes.
pub fn put_header(out: &mut impl BufMut, opcode: OpCode, len: usize) {
    out.put_u8(0x80 | opcode as u8);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Appends a whole frame (header and payload) to `out`.
pub fn put_frame(out: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    out.reserve(MAX_HEADER + payload.len());
    put_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Encodes a whole frame into one shareable buffer.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER + payload.len());
    put_frame(&mut out, opcode, payload);
    out.freeze()
}

/// Payload length of a frame made by `encode` (its length minus its header), read from the
/// header's length byte without decoding the rest.
pub fn payload_len(frame: &[u8]) -> usize {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => MAX_HEADER,
        _ => 2,
    };
    frame.len().saturating_sub(header)
}

/// Encodes a close frame with a status code and a reason (truncated to fit the 125-byte limit
/// of control frames on a character boundary).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::{Frame, FrameHeader};

    fn parse(bytes: &[u8]) -> (FrameHeader, u64, usize) {
        let mut cursor = std::io::Cursor::new(bytes);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        (header, len, cursor.position() as usize)
    }

    #[test]
    fn lengths_use_the_shortest_form_and_tungstenite_agrees() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
            let payload = vec![7u8; len];
            let bytes = encode(OpCode::Binary, &payload);
            let (header, parsed_len, header_len) = parse(&bytes);
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(parsed_len as usize, len);
            let want_header = if len < 126 {
                2
            } else if len < 65536 {
                4
            } else {
                10
            };
            assert_eq!(header_len, want_header);
            assert_eq!(bytes.len(), header_len + len);
            assert_eq!(payload_len(&bytes), len);
            assert_eq!(super::header_len(len), header_len);
            let mut reference = Vec::new();
            Frame::message(payload, header.opcode, true)
                .format(&mut reference)
                .unwrap();
            assert_eq!(&bytes[..], &reference[..]);
        }
    }

    #[test]
    fn close_frames_carry_code_and_bounded_reason() {
        let bytes = close(1008, "slow consumer");
        assert_eq!(&bytes[..4], &[0x88, 15, 0x03, 0xF0]);
        assert_eq!(&bytes[4..], b"slow consumer");
        let long = "é".repeat(100);
        let bytes = close(1000, &long);
        let (_, len, _) = parse(&bytes);
        assert!(len <= 125);
        assert!(std::str::from_utf8(&bytes[4..]).is_ok());
    }
}

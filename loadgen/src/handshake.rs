//! The client side of the HTTP upgrade, without I/O: build the request, judge the response.
//!
//! loadgen writes the request and reads the response itself (see `connection`) instead of using
//! tungstenite's client handshake, so a pending upgrade costs only the request bytes and a small
//! response buffer, and bytes that arrive right behind the `101` are handed to tungstenite as
//! already read rather than lost.

use base64::Engine;
use thiserror::Error;
use tungstenite::handshake::derive_accept_key;

/// Responses longer than this are not a WebSocket upgrade.
pub const MAX_RESPONSE: usize = 4096;

/// Why the server's response is not an accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("server answered HTTP {0}")]
    Status(u16),
    #[error("bad Sec-WebSocket-Accept")]
    BadAccept,
    #[error("malformed HTTP response")]
    Malformed,
    #[error("HTTP response headers exceed {MAX_RESPONSE} bytes")]
    TooLarge,
}

/// The request to send and the accept key the response must carry.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// The full HTTP request.
    pub request: Vec<u8>,
    /// The Sec-WebSocket-Accept value a genuine server derives from our key.
    pub expected_accept: String,
}

impl Upgrade {
    /// Builds the upgrade request for `host` and `path` with a key derived from `nonce`.
    ///
    /// The key only has to be unique per connection (RFC 6455 4.1), not secret, so a per
    /// connection nonce mixed through a cheap hash is enough.
    pub fn new(host: &str, path: &str, nonce: u64) -> Upgrade {
        let mut key_bytes = [0u8; 16];
        key_bytes[..8].copy_from_slice(&mix(nonce).to_le_bytes());
        key_bytes[8..].copy_from_slice(&mix(nonce ^ 0xA5A5_A5A5_A5A5_A5A5).to_le_bytes());
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        Upgrade {
            request,
            expected_accept: derive_accept_key(key.as_bytes()),
        }
    }

    /// Judges the bytes received so far: `Ok(None)` wants more, `Ok(Some(n))` means the first `n`
    /// bytes were an accepted upgrade response (the rest already belongs to the WebSocket).
    pub fn parse_response(&self, buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE => {
                return Err(HandshakeError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HandshakeError::Malformed),
        };
        let code = response.code.ok_or(HandshakeError::Malformed)?;
        if code != 101 {
            return Err(HandshakeError::Status(code));
        }
        let accept = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
            .ok_or(HandshakeError::BadAccept)?;
        if accept.value != self.expected_accept.as_bytes() {
            return Err(HandshakeError::BadAccept);
        }
        Ok(Some(len))
    }
}

/// splitmix64: spreads consecutive nonces over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(accept: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
    }

    #[test]
    fn request_is_a_valid_upgrade() {
        let up = Upgrade::new("127.0.0.1:9998", "/echo", 1);
        let text = String::from_utf8(up.request.clone()).unwrap();
        assert!(text.starts_with("GET /echo HTTP/1.1\r\nHost: 127.0.0.1:9998\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let key = text
            .split("Sec-WebSocket-Key: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert_eq!(up.expected_accept, derive_accept_key(key.as_bytes()));
        assert_ne!(
            up.request,
            Upgrade::new("127.0.0.1:9998", "/echo", 2).request
        );
    }

    #[test]
    fn accepts_101_with_trailing_frame_bytes() {
        let up = Upgrade::new("h", "/", 9);
        let mut bytes = response(&up.expected_accept).into_bytes();
        let head = bytes.len();
        assert_eq!(up.parse_response(&bytes[..10]), Ok(None));
        bytes.extend_from_slice(&[0x82, 0x00]);
        assert_eq!(up.parse_response(&bytes), Ok(Some(head)));
    }

    #[test]
    fn rejects_status_accept_and_garbage() {
        let up = Upgrade::new("h", "/", 9);
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            up.parse_response(not_found),
            Err(HandshakeError::Status(404))
        );
        let wrong = response("AAAA");
        assert_eq!(
            up.parse_response(wrong.as_bytes()),
            Err(HandshakeError::BadAccept)
        );
        assert_eq!(
            up.parse_response(b"\x00\x01garbage\r\n\r\n"),
            Err(HandshakeError::Malformed)
        );
        let huge = format!("HTTP/1.1 101 OK\r\nX: {}", "a".repeat(MAX_RESPONSE));
        assert_eq!(
            up.parse_response(huge.as_bytes()),
            Err(HandshakeError::TooLarge)
        );
    }
}

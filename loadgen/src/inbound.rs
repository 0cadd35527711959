//! The receive path of an open connection: server frames taken where they lie.
//!
//! A server's frames are unmasked, and nearly every one is a complete, final text or binary
//! frame with no extension bits: one frame, one message. Those are handed to the caller
//! straight from the bytes just read (the worker's receive buffer), with no tungstenite, no
//! per-connection read buffer and no copy. Every other frame (a ping, a close, a fragment,
//! reserved bits or opcodes, a masked frame, one over tungstenite's frame limit, invalid UTF-8
//! in a text frame, anything after tungstenite saw a close or while a fragmented message is
//! open) is fed to the connection's tungstenite, byte for byte, and tungstenite is read until it
//! has nothing more: it answers, assembles or fails exactly as it would have on its own.
//!
//! Invariants:
//! - tungstenite reads only what is fed to it (`Feed`), and only whole frames plus, at the end
//!   of a read, the start of the frame being fed (`owed` more bytes of it go to tungstenite
//!   first). So once a fed frame is complete and tungstenite returned `WouldBlock`, it holds no
//!   unparsed bytes, and the next frame may be taken in place again.
//! - The incomplete frame at the end of a read that may be taken in place waits in `tail`
//!   (empty, and unallocated, between reads that end on a frame boundary).
//!
//! A differential property test (`tests` below) feeds this path and tungstenite alone the same
//! random server byte streams, split at random points, and requires the same messages in the
//! same order and the same failure.

use std::io;

use tungstenite::{Message, WebSocket};

/// Largest payload taken in place: tungstenite's default frame limit. A longer frame goes to
/// tungstenite, which refuses it.
pub const FAST_MAX: u64 = 16 << 20;

/// First header byte of a final text frame with no extension bits (FIN | opcode 1).
const FINAL_TEXT: u8 = 0x81;
/// The same for binary (FIN | opcode 2).
const FINAL_BINARY: u8 = 0x82;
const MASKED: u8 = 0x80;

/// Bytes for tungstenite to read, in front of (instead of) the socket.
#[derive(Debug, Default)]
pub struct Feed {
    buf: Vec<u8>,
    /// Bytes of `buf` already read.
    at: usize,
    /// The peer closed the stream: once `buf` is read, reads return 0.
    eof: bool,
}

impl Feed {
    /// Queues `bytes` for tungstenite.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Marks the end of the stream.
    pub fn end(&mut self) {
        self.eof = true;
    }

    /// What a read of the stream under tungstenite returns: fed bytes, then `WouldBlock` (or 0
    /// after the end).
    pub fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let rest = &self.buf[self.at..];
        if rest.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        if self.at == self.buf.len() {
            self.at = 0;
            self.buf.clear();
            if self.buf.capacity() > 64 * 1024 {
                self.buf = Vec::new();
            }
        }
        Ok(n)
    }
}

/// A stream whose reads come from a `Feed`.
pub trait Fed {
    /// Its feed.
    fn feed(&mut self) -> &mut Feed;
}

/// What the bytes at the front of a buffer are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Not even the whole header is there yet.
    Short,
    /// A final, unmasked text or binary frame with no extension bits.
    Data { text: bool, header: usize, len: u64 },
    /// Any other frame (`first` is its first byte).
    Other { first: u8, header: usize, len: u64 },
}

#[inline]
fn scan(buf: &[u8]) -> Scan {
    let [first, second, ..] = *buf else {
        return Scan::Short;
    };
    let (header, len) = match second & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (4, u16::from_be_bytes([b[0], b[1]]) as u64),
            None => return Scan::Short,
        },
        127 => match buf.get(2..10) {
            Some(b) => (10, u64::from_be_bytes(b.try_into().expect("8 bytes"))),
            None => return Scan::Short,
        },
        n => (2, n as u64),
    };
    let masked = second & MASKED != 0;
    let header = header + if masked { 4 } else { 0 };
    if buf.len() < header {
        return Scan::Short;
    }
    match first {
        FINAL_TEXT | FINAL_BINARY if !masked && len <= FAST_MAX => Scan::Data {
            text: first == FINAL_TEXT,
            header,
            len,
        },
        _ => Scan::Other { first, header, len },
    }
}

/// Per-connection receive state.
#[derive(Debug, Default)]
pub struct Inbound {
    /// The start of a frame to take in place once the rest arrives.
    tail: Vec<u8>,
    /// Bytes of the frame being fed to tungstenite that have not arrived yet.
    owed: u64,
    /// A fragmented message is open in tungstenite: every frame goes there until it ends.
    fragmenting: bool,
}

impl Inbound {
    /// Received bytes that arrived with the upgrade response: taken with the first read.
    pub fn with_leftover(leftover: Vec<u8>) -> Inbound {
        Inbound {
            tail: leftover,
            ..Inbound::default()
        }
    }

    /// Whether bytes wait to be parsed (the upgrade leftover, or a partial frame).
    pub fn has_tail(&self) -> bool {
        !self.tail.is_empty()
    }

    /// Takes `bytes`, just read from the socket (empty: only what waits in the tail), handing
    /// every data message to `deliver` in order.
    pub fn take<S: Fed + io::Read + io::Write>(
        &mut self,
        bytes: &[u8],
        ws: &mut WebSocket<S>,
        deliver: &mut impl FnMut(&[u8]),
    ) -> Result<(), tungstenite::Error> {
        if self.tail.is_empty() {
            let used = self.frames(bytes, ws, deliver)?;
            self.tail.extend_from_slice(&bytes[used..]);
            return Ok(());
        }
        let mut tail = std::mem::take(&mut self.tail);
        tail.extend_from_slice(bytes);
        let result = self.frames(&tail, ws, deliver);
        if let Ok(used) = result {
            tail.drain(..used);
            if tail.is_empty() && tail.capacity() > 64 * 1024 {
                tail = Vec::new();
            }
            self.tail = tail;
        }
        result.map(|_| ())
    }

    /// The peer closed the stream: tungstenite learns it and says how the connection ended.
    pub fn end<S: Fed + io::Read + io::Write>(
        &mut self,
        ws: &mut WebSocket<S>,
        deliver: &mut impl FnMut(&[u8]),
    ) -> Result<(), tungstenite::Error> {
        ws.get_mut().feed().end();
        drain(ws, deliver)
    }

    /// Takes the complete frames at the front of `buf`; returns the bytes used.
    fn frames<S: Fed + io::Read + io::Write>(
        &mut self,
        buf: &[u8],
        ws: &mut WebSocket<S>,
        deliver: &mut impl FnMut(&[u8]),
    ) -> Result<usize, tungstenite::Error> {
        let mut at = 0;
        if self.owed > 0 {
            let n = self.owed.min(buf.len() as u64) as usize;
            ws.get_mut().feed().push(&buf[..n]);
            self.owed -= n as u64;
            at = n;
            drain(ws, deliver)?;
        }
        while at < buf.len() {
            let rest = &buf[at..];
            let (first, header, len) = match scan(rest) {
                Scan::Short => break,
                Scan::Data { text, header, len } if !self.fragmenting && ws.can_write() => {
                    let end = header + len as usize;
                    let Some(payload) = rest.get(header..end) else {
                        // Incomplete: it waits in the tail.
                        break;
                    };
                    if !text || std::str::from_utf8(payload).is_ok() {
                        deliver(payload);
                        at += end;
                        continue;
                    }
                    (FINAL_TEXT, header, len)
                }
                Scan::Data { text, header, len } => {
                    let first = if text { FINAL_TEXT } else { FINAL_BINARY };
                    (first, header, len)
                }
                Scan::Other { first, header, len } => (first, header, len),
            };
            let opcode = first & 0x0f;
            let fin = first & 0x80 != 0;
            if opcode <= 2 {
                self.fragmenting = !fin;
            }
            let total = (header as u64).saturating_add(len);
            let n = total.min(rest.len() as u64) as usize;
            ws.get_mut().feed().push(&rest[..n]);
            self.owed = total - n as u64;
            at += n;
            drain(ws, deliver)?;
        }
        Ok(at)
    }
}

/// Reads tungstenite until it has nothing more, handing data messages to `deliver`.
fn drain<S: io::Read + io::Write>(
    ws: &mut WebSocket<S>,
    deliver: &mut impl FnMut(&[u8]),
) -> Result<(), tungstenite::Error> {
    loop {
        match ws.read() {
            Ok(Message::Binary(data)) => deliver(&data),
            Ok(Message::Text(text)) => deliver(text.as_bytes()),
            // Pings are answered by tungstenite; a Close is answered by the next read.
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;

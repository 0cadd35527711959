//! Pending outbound bytes of one connection, written with one `writev` per flush.
//!
//! Everything a connection sends goes through here, in order: the HTTP answer, tungstenite's
//! own pongs and close replies (its writer is pointed at this queue), echoed frames (copied into
//! the coalescing tail), and pre-encoded broadcast frames (shared `Bytes`, never copied). The
//! worker flushes each connection at most once per loop pass (corked writes).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::frame::{self, OpCode};

/// Most slices handed to one `writev`.
const MAX_IOVECS: usize = 64;
/// A tail buffer larger than this is freed once it has been written, so one big message does
/// not pin memory for the rest of the connection's life.
const KEEP_TAIL_CAPACITY: usize = 16 * 1024;

/// One queued run of bytes.
#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    /// A whole broadcast frame that may be dropped unsent when the connection is closed as a
    /// slow consumer; everything else (HTTP, control frames, echoes) must go out in full.
    droppable: bool,
}

/// The outbound queue. Invariant: the bytes in `chunks` precede the bytes in `tail`.
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
    /// Small writes, coalesced.
    tail: BytesMut,
    /// Unsent bytes in `chunks` and `tail`.
    pending: usize,
    /// Bytes of `chunks[0]` already written (a partial write).
    head_written: usize,
    /// Bytes of the droppable (broadcast) chunks queued, written or not: those frames are
    /// shared with every member they were queued to, so they are not this connection's own.
    shared: usize,
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued reached the socket.
    All,
    /// The socket is full; wait for WRITABLE.
    Blocked,
}

impl Outbox {
    /// Unsent bytes.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Copies `data` onto the end of the queue.
    pub fn push_copy(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.pending += data.len();
    }

    /// Encodes a whole frame onto the end of the queue: the payload's one copy.
    pub fn push_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let before = self.tail.len();
        frame::put_frame(&mut self.tail, opcode, payload);
        self.pending += self.tail.len() - before;
    }

    /// Queues a frame without copying its payload: the header joins the coalescing buffer and
    /// the payload follows as its own chunk (one more iovec in the same `writev`).
    pub fn push_frame_shared(&mut self, opcode: OpCode, payload: Bytes) {
        let before = self.tail.len();
        frame::put_header(&mut self.tail, opcode, payload.len());
        self.pending += self.tail.len() - before;
        self.push_shared(payload, false);
    }

    /// Queues a shared buffer without copying it.
    pub fn push_shared(&mut self, bytes: Bytes, droppable: bool) {
        if bytes.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            let earlier = self.tail.split().freeze();
            self.chunks.push_back(Chunk {
                bytes: earlier,
                droppable: false,
            });
        }
        self.pending += bytes.len();
        if droppable {
            self.shared += bytes.len();
        }
        self.chunks.push_back(Chunk { bytes, droppable });
    }

    /// Unsent bytes that belong to this connection alone (everything but shared broadcast
    /// frames): what it makes the server hold for it.
    pub fn owned(&self) -> usize {
        let head_shared_written = match self.chunks.front() {
            Some(head) if head.droppable => self.head_written,
            _ => 0,
        };
        self.pending - (self.shared - head_shared_written)
    }

    /// Drops every droppable chunk that has not started going out; returns the bytes dropped.
    pub fn discard_droppable(&mut self) -> usize {
        let before = self.pending;
        let partial_head = self.head_written > 0;
        let mut index = 0;
        self.chunks.retain(|c| {
            let keep = !c.droppable || (index == 0 && partial_head);
            index += 1;
            keep
        });
        self.pending = self.chunks.iter().map(|c| c.bytes.len()).sum::<usize>() - self.head_written
            + self.tail.len();
        self.shared = self
            .chunks
            .iter()
            .filter(|c| c.droppable)
            .map(|c| c.bytes.len())
            .sum();
        before - self.pending
    }

    /// Writes as much as the writer takes, one `writev` per round, until done or WouldBlock.
    pub fn flush_to(&mut self, w: &mut impl Write) -> io::Result<Flushed> {
        while self.pending > 0 {
            let result = match (self.chunks.len(), self.tail.is_empty()) {
                // One run of bytes (the common case: echoes, or one broadcast frame) goes out
                // with plain write, which skips building and importing an iovec array.
                (0, _) => w.write(&self.tail),
                (1, true) => w.write(&self.chunks[0].bytes[self.head_written..]),
                _ => self.write_vectored(w),
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) => return Err(e),
            }
        }
        if self.tail.capacity() > KEEP_TAIL_CAPACITY {
            self.tail = BytesMut::new();
        }
        Ok(Flushed::All)
    }

    /// One `writev` of the queue's front.
    fn write_vectored(&self, w: &mut impl Write) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().enumerate().take(MAX_IOVECS - 1) {
            let start = if i == 0 { self.head_written } else { 0 };
            slices[n] = IoSlice::new(&chunk.bytes[start..]);
            n += 1;
        }
        if n < MAX_IOVECS - 1 && !self.tail.is_empty() {
            slices[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        w.write_vectored(&slices[..n])
    }

    fn advance(&mut self, mut written: usize) {
        self.pending -= written;
        while written > 0 {
            let Some(head) = self.chunks.front() else {
                self.tail.advance(written);
                return;
            };
            let left = head.bytes.len() - self.head_written;
            if written < left {
                self.head_written += written;
                return;
            }
            written -= left;
            self.head_written = 0;
            if let Some(done) = self.chunks.pop_front() {
                if done.droppable {
                    self.shared -= done.bytes.len();
                }
            }
        }
    }

    /// Bytes of heap the queue keeps allocated (its chunk slots and the tail's capacity),
    /// whatever they hold.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Chunk>() + self.tail.capacity()
    }

    /// Frees the queue's memory once it is empty (idle connections keep nothing).
    pub fn shrink_if_empty(&mut self) {
        if self.pending == 0 {
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `budget` bytes per call, then blocks once `calls` run out.
    struct Trickle {
        got: Vec<u8>,
        per_call: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let mut n = 0;
            for b in bufs {
                let take = (self.per_call - n).min(b.len());
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.per_call {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn order_is_kept_across_copies_and_shared_chunks_with_partial_writes() {
        let mut out = Outbox::default();
        out.push_copy(b"ab");
        out.push_shared(Bytes::from_static(b"cdef"), true);
        out.push_copy(b"g");
        out.push_copy(b"hi");
        out.push_shared(Bytes::from_static(b"jk"), false);
        assert_eq!(out.pending(), 11);
        let mut w = Trickle {
            got: Vec::new(),
            per_call: 3,
            calls_left: 2,
        };
        assert_eq!(out.flush_to(&mut w).unwrap(), Flushed::Blocked);
        assert_eq!(out.pending(), 5);
        w.calls_left = 100;
        assert_eq!(out.flush_to(&mut w).unwrap(), Flushed::All);
        assert_eq!(w.got, b"abcdefghijk");
        assert!(out.is_empty());
    }

    #[test]
    fn shared_payload_frames_match_copied_ones_byte_for_byte() {
        let payload = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let (mut copied, mut shared) = (Outbox::default(), Outbox::default());
        for out in [&mut copied, &mut shared] {
            out.push_frame(OpCode::Text, b"before");
        }
        copied.push_frame(OpCode::Binary, &payload);
        shared.push_frame_shared(OpCode::Binary, payload.clone());
        for out in [&mut copied, &mut shared] {
            out.push_frame(OpCode::Text, b"after");
        }
        assert_eq!(copied.pending(), shared.pending());
        let mut bytes = Vec::new();
        for out in [&mut copied, &mut shared] {
            // Partial writes that end inside headers and payloads alike.
            let mut w = Trickle {
                got: Vec::new(),
                per_call: 7,
                calls_left: usize::MAX,
            };
            assert_eq!(out.flush_to(&mut w).unwrap(), Flushed::All);
            bytes.push(w.got);
        }
        assert_eq!(bytes[0], bytes[1]);
        assert_eq!(&bytes[1][8..12], &[0x82, 126, 0x13, 0x88]);
    }

    #[test]
    fn discard_keeps_started_and_undroppable_bytes() {
        let mut out = Outbox::default();
        out.push_shared(Bytes::from_static(b"1111"), true);
        out.push_shared(Bytes::from_static(b"2222"), true);
        out.push_copy(b"pong");
        out.push_shared(Bytes::from_static(b"3333"), true);
        let mut w = Trickle {
            got: Vec::new(),
            per_call: 2,
            calls_left: 1,
        };
        out.flush_to(&mut w).unwrap();
        assert_eq!(out.owned(), 4, "the pong; the broadcast frames are shared");
        assert_eq!(out.discard_droppable(), 8);
        assert_eq!(out.owned(), 4);
        out.push_copy(b"close");
        w.calls_left = 100;
        w.per_call = 100;
        out.flush_to(&mut w).unwrap();
        assert_eq!(w.got, b"1111pongclose");
        assert_eq!((out.pending(), out.owned(), out.shared), (0, 0, 0));
    }

    #[test]
    fn large_tail_is_released_after_flush() {
        let mut out = Outbox::default();
        out.push_copy(&vec![0u8; 1 << 20]);
        let mut w = Trickle {
            got: Vec::new(),
            per_call: usize::MAX,
            calls_left: 10,
        };
        out.flush_to(&mut w).unwrap();
        assert_eq!(out.tail.capacity(), 0);
        assert_eq!(w.got.len(), 1 << 20);
    }
}

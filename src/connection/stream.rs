//! The byte stream under tungstenite: the socket for reading, the `Outbox` for writing.
//!
//! tungstenite writes its pongs and close replies into the outbox (a write never blocks, so
//! none of its "WouldBlock means queued" subtleties arise), and our own frames join the same
//! queue, so ordering between them is simply queue order. The socket is written only by
//! `Stream::flush_out`, which the connection calls when the worker flushes it. tungstenite and
//! the connection only see `Read + Write`: the seam for another transport.
//!
//! Reads: tungstenite asks for at most its read-buffer size per call and zero-fills that much
//! first, so a larger buffer costs every small message. For a frame whose remaining payload is
//! larger than that, the stream instead reads the rest of the frame in one syscall into a
//! read-ahead buffer and serves tungstenite's small reads from memory. The read-ahead buffer
//! exists only on connections that receive large frames and is released when the connection
//! rests. `ReadSkip` decides when a tungstenite read could only end in `WouldBlock`.

use std::io::{self, Read, Write};

use tungstenite::{Message, WebSocket};

use super::outbox::{Flushed, Outbox};
use super::read_skip::ReadSkip;
use super::socket::Socket;
use crate::protocol::boundary::Boundary;

/// Largest single read made ahead of tungstenite; beyond this the copy, not the syscall,
/// dominates the cost of a read.
pub(crate) const READ_AHEAD_MAX: usize = 64 * 1024;

/// A client socket plus its outbound queue.
#[derive(Debug)]
pub(crate) struct Stream<S> {
    socket: S,
    out: Outbox,
    /// Bytes received so far: the connection compares it across a read to see activity.
    bytes_in: u64,
    /// Whether the socket is drained and every arrived message returned.
    skip: ReadSkip,
    /// Frame boundaries of what tungstenite was given, once the stream carries frames.
    boundary: Boundary,
    /// Whether reads are WebSocket frames (after the HTTP head) and must be followed.
    framed: bool,
    /// Bytes read from the socket but not yet handed to tungstenite; boxed, as most
    /// connections never need it and every idle one would carry it.
    ahead: Option<Box<ReadAhead>>,
}

/// `buf[start..end]` is read from the socket and not yet handed on.
#[derive(Debug, Default)]
struct ReadAhead {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadAhead {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Moves as much as fits into `dst`.
    fn take(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.end - self.start);
        dst[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        n
    }
}

impl<S: Socket> Stream<S> {
    pub fn new(socket: S) -> Stream<S> {
        Stream {
            socket,
            out: Outbox::default(),
            bytes_in: 0,
            skip: ReadSkip::default(),
            boundary: Boundary::default(),
            framed: false,
            ahead: None,
        }
    }

    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    pub fn out(&self) -> &Outbox {
        &self.out
    }

    pub fn out_mut(&mut self) -> &mut Outbox {
        &mut self.out
    }

    /// Bytes received so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// A readiness event arrived for the socket.
    pub fn readiness(&mut self) {
        self.skip.readiness();
    }

    /// From here on the stream carries client frames, starting with `first` (bytes that came
    /// after the HTTP head and go to tungstenite before anything read later).
    pub fn start_frames(&mut self, first: &[u8]) {
        self.framed = true;
        self.boundary.feed(first);
    }

    /// The stream carries no more frames for the parser (the connection is draining): drops
    /// what was read ahead and forgets the message in progress, whose bytes went with the
    /// parser.
    pub fn stop_frames(&mut self) {
        self.framed = false;
        self.boundary = Boundary::default();
        self.ahead = None;
    }

    /// Bytes this peer makes us hold in the stream and the parser above it: the data message
    /// it is in the middle of sending, what was read ahead, the output that is its own, and
    /// what the transport keeps (TLS records and plaintext in flight).
    pub fn held(&self) -> usize {
        let ahead = self.ahead.as_ref().map_or(0, |a| a.buf.capacity());
        self.boundary.unfinished() as usize + ahead + self.out.owned() + self.socket.held_bytes()
    }

    /// Writes queued bytes to the socket until done or the socket is full, then what the
    /// transport itself holds (TLS records), so `All` means everything reached the kernel.
    pub fn flush_out(&mut self) -> io::Result<Flushed> {
        let flushed = self.out.flush_to(&mut self.socket)?;
        if flushed == Flushed::All && !self.socket.write_held()? {
            return Ok(Flushed::Blocked);
        }
        Ok(flushed)
    }

    /// Output is waiting: queued here, or held by the transport (TLS records of a handshake
    /// or of a write the socket did not take whole).
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.socket.holds_output()
    }

    /// Sends FIN once everything is written.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.socket.shutdown_write()
    }

    /// This turn's read quota is used up: input may be waiting that no readiness event will
    /// announce, so the connection must be read again next pass.
    pub fn quota_used(&self) -> bool {
        self.skip.quota_used()
    }

    /// Another tungstenite `read` could only end in `WouldBlock` (see `ReadSkip`).
    pub fn nothing_to_parse(&self) -> bool {
        self.skip
            .nothing_to_parse(self.boundary.messages(), self.nothing_read_ahead())
    }

    /// Every byte read belongs to a complete frame, no fragmented message is open and nothing
    /// is read ahead: tungstenite holds nothing that a fresh `WebSocket` would not.
    pub fn at_rest(&self) -> bool {
        self.boundary.at_rest() && self.nothing_read_ahead()
    }

    /// At rest and every message the received bytes complete has been returned: tungstenite's
    /// buffers are empty, so a fresh `WebSocket` would behave the same from here.
    pub fn settled(&self) -> bool {
        self.at_rest() && self.skip.all_returned(self.boundary.messages())
    }

    /// Reads socket bytes for the caller to parse in place (the worker's receive buffer),
    /// within the turn's quota; `WouldBlock` when the socket is known to be drained.
    pub fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.skip.socket_drained() || self.skip.quota_used() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.read_socket(buf)
    }

    /// Writes straight to the socket, bypassing the outbox: only while it is empty, or the
    /// bytes would overtake what it holds.
    pub fn write_direct(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        debug_assert!(
            self.out.is_empty(),
            "a direct write would overtake queued output"
        );
        match bufs {
            [one] => self.socket.write(one),
            _ => self.socket.write_vectored(bufs),
        }
    }

    /// `rest`, read by `read_direct` but not taken in place, goes to a tungstenite built over
    /// this stream: followed from here like everything tungstenite is given.
    pub fn hand_over(&mut self, rest: &[u8]) {
        self.boundary.feed(rest);
    }

    fn nothing_read_ahead(&self) -> bool {
        self.ahead.as_ref().is_none_or(|a| a.is_empty())
    }

    /// Frees buffers a quiet connection does not need (the read-ahead buffer, an empty
    /// outbox's spare capacity).
    pub fn release_buffers(&mut self) {
        if self.nothing_read_ahead() {
            self.ahead = None;
        }
        self.out.shrink_if_empty();
    }

    /// Bytes held in buffers owned by the stream: read-ahead and the outbox's allocations.
    #[cfg(test)]
    pub fn buffered_capacity(&self) -> usize {
        self.ahead.as_ref().map_or(0, |a| a.buf.capacity()) + self.out.capacity()
    }

    fn read_socket(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.bytes_in += n as u64;
        self.skip.socket_read(n, buf.len());
        Ok(n)
    }

    /// Reads the rest of a large frame (and room for what follows) in one syscall.
    fn read_ahead(&mut self, frame_left: u64, chunk: usize) -> io::Result<usize> {
        let size = (frame_left as usize)
            .saturating_add(chunk)
            .min(READ_AHEAD_MAX);
        let ahead = self.ahead.get_or_insert_with(Default::default);
        if ahead.buf.len() < size {
            ahead.buf.resize(size, 0);
        }
        // Disjoint fields: the socket reads straight into the read-ahead buffer.
        let n = self.socket.read(&mut ahead.buf[..size])?;
        self.bytes_in += n as u64;
        self.skip.socket_read(n, size);
        ahead.start = 0;
        ahead.end = n;
        Ok(n)
    }
}

/// tungstenite's `read`, counted for `Stream::nothing_to_parse`: every message the connection
/// takes from tungstenite must come through here, or the skip would never apply.
pub(crate) fn read_message<S: Socket>(
    ws: &mut WebSocket<Stream<S>>,
) -> tungstenite::Result<Message> {
    let message = ws.read()?;
    ws.get_mut().skip.message_returned();
    Ok(message)
}

impl<S: Socket> Read for Stream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.nothing_read_ahead() {
            if self.skip.socket_drained() || self.skip.quota_used() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let frame_left = if self.framed {
                self.boundary.payload_left()
            } else {
                0
            };
            if frame_left <= buf.len() as u64 {
                let n = self.read_socket(buf)?;
                if self.framed {
                    self.boundary.feed(&buf[..n]);
                }
                return Ok(n);
            }
            if self.read_ahead(frame_left, buf.len())? == 0 {
                return Ok(0);
            }
        }
        let n = self
            .ahead
            .as_mut()
            .expect("checked above: bytes are read ahead")
            .take(buf);
        self.boundary.feed(&buf[..n]);
        Ok(n)
    }
}

impl<S> Write for Stream<S> {
    /// Queues; never blocks and never fails.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.push_copy(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::socket::MemSocket;

    /// A stream over an in-memory socket, past the HTTP head; the socket handle stays with the
    /// test to play the client.
    fn pair() -> (MemSocket, Stream<MemSocket>) {
        let client = MemSocket::new();
        let mut stream = Stream::new(client.clone());
        stream.start_frames(&[]);
        (client, stream)
    }

    /// A final client frame with a payload of `len` bytes counting up from `seed`.
    fn frame(opcode: u8, len: usize, seed: u8) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
        testkit::client_frame(0x80 | opcode, &payload, true)
    }

    /// Reads everything in `chunk`-sized reads, the client sending `pieces` one at a time
    /// whenever the stream runs dry (each send followed by a readiness event, as epoll would).
    fn read_all(
        stream: &mut Stream<MemSocket>,
        client: &MemSocket,
        pieces: &[&[u8]],
        chunk: usize,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; chunk];
        let mut next = pieces.iter();
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match next.next() {
                    Some(piece) => {
                        client.send(piece);
                        stream.readiness();
                    }
                    None => return got,
                },
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn large_frame_is_read_ahead_and_handed_on_intact() {
        let (client, mut stream) = pair();
        let big = frame(0x2, 16 * 1024, 7);
        client.send(&big);
        let mut first = vec![0u8; 4096];
        assert_eq!(stream.read(&mut first).unwrap(), 4096);
        assert_eq!(stream.bytes_in(), 4096);
        let mut second = vec![0u8; 4096];
        assert_eq!(stream.read(&mut second).unwrap(), 4096);
        assert_eq!(
            stream.bytes_in(),
            big.len() as u64,
            "the rest of the frame should come in one read"
        );
        assert_eq!(
            client.wire().reads,
            2,
            "two socket reads for the whole frame"
        );
        let mut got = first;
        got.extend_from_slice(&second);
        got.extend(read_all(&mut stream, &client, &[], 4096));
        assert_eq!(got, big);
        assert!(stream.at_rest());
        assert!(stream.buffered_capacity() > 0);
        stream.release_buffers();
        assert_eq!(stream.buffered_capacity(), 0);
    }

    /// Large and small frames, arriving in odd-sized pieces so reads end mid-header and
    /// mid-payload, come out byte for byte with `chunk`-sized reads.
    fn mixed_frames_survive(chunk: usize) {
        let (client, mut stream) = pair();
        let mut sent = Vec::new();
        for (i, len) in [70_000usize, 3, 200_000, 125, 5000, 0, 9000]
            .iter()
            .enumerate()
        {
            sent.extend(frame(0x2, *len, i as u8));
            sent.extend(frame(0x9, 2, 0xee)); // a ping between data frames
        }
        let pieces: Vec<&[u8]> = sent.chunks(3001).collect();
        let got = read_all(&mut stream, &client, &pieces, chunk);
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "bytes differ from what was sent");
        assert!(stream.at_rest());
    }

    #[test]
    fn frames_after_a_large_one_keep_their_order_and_bytes() {
        mixed_frames_survive(4096);
        mixed_frames_survive(64);
    }

    #[test]
    fn nothing_to_parse_only_once_every_arrived_message_is_returned() {
        use tungstenite::protocol::Role;
        let (client, stream) = pair();
        let mut wire = frame(0x2, 10, 1);
        wire.extend(frame(0x9, 0, 0)); // a ping: a message of its own
        wire.extend(frame(0x1, 5, b'a'));
        let partial = frame(0x2, 100, 9);
        wire.extend(&partial[..50]);
        client.send(&wire);
        let mut ws = WebSocket::from_raw_socket(stream, Role::Server, None);
        for left in (0..3).rev() {
            read_message(&mut ws).unwrap();
            // Were this true early, a message would sit in tungstenite until more data came.
            assert_eq!(
                ws.get_ref().nothing_to_parse(),
                left == 0,
                "{left} messages left"
            );
        }
        let reads = client.wire().reads;
        match read_message(&mut ws) {
            Err(tungstenite::Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            other => panic!("expected WouldBlock, got {other:?}"),
        }
        assert_eq!(
            client.wire().reads,
            reads,
            "a drained socket is not read again"
        );
        // The rest of the partial frame: a new readiness event, one more message.
        client.send(&partial[50..]);
        ws.get_mut().readiness();
        assert!(!ws.get_ref().nothing_to_parse());
        assert!(read_message(&mut ws).unwrap().is_binary());
        assert!(ws.get_ref().nothing_to_parse());
    }

    #[test]
    fn end_of_stream_inside_a_large_frame_reads_as_eof() {
        let (client, mut stream) = pair();
        let big = frame(0x2, 20_000, 1);
        client.send(&big[..10_000]);
        client.wire().eof = true;
        let got = read_all(&mut stream, &client, &[], 4096);
        assert_eq!(got, big[..10_000]);
        let mut buf = [0u8; 4096];
        stream.readiness(); // epoll reports the hang-up
        assert_eq!(stream.read(&mut buf).unwrap(), 0, "the end arrives as EOF");
        assert!(!stream.at_rest());
    }
}

//! The byte stream under tungstenite: the socket for reading, the `Outbox` for writing.
//!
//! tungstenite writes its pongs and close replies into the outbox (a write never blocks, so
//! none of its "WouldBlock means queued" subtleties arise), and our own frames join the same
//! queue, so ordering between them is simply queue order. The socket is written only by
//! `Stream::flush_out`, called by the worker once per loop pass. This is the seam for another
//! I/O backend (io_uring): tungstenite and the connection only see `Read + Write`.
//!
//! Reads: tungstenite asks for at most its read-buffer size (4 KiB by default) per call and
//! zero-fills that much first, so a larger buffer costs every small message. For a frame whose
//! remaining payload is larger than that, the stream instead reads the rest of the frame in one
//! syscall into a read-ahead buffer and serves tungstenite's small reads from memory: a 16 KiB
//! message takes 2 `recvfrom` calls instead of 5. The read-ahead buffer exists only on
//! connections that receive large frames and is released when the connection rests.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use tungstenite::{Message, WebSocket};

use super::outbox::{Flushed, Outbox};
use crate::protocol::boundary::Boundary;

/// Largest single read made ahead of tungstenite; beyond this the copy, not the syscall,
/// dominates the cost of a read.
pub const READ_AHEAD_MAX: usize = 64 * 1024;

/// A client socket plus its outbound queue.
#[derive(Debug)]
pub struct Stream {
    pub tcp: TcpStream,
    pub out: Outbox,
    /// Bytes received so far: the connection compares it across a read to see activity.
    pub bytes_in: u64,
    /// The last socket read returned less than asked for: the socket is drained. Epoll is
    /// edge-triggered and signals every new arrival, so until the next readiness event a
    /// further read would only return WouldBlock; answering that ourselves saves one `read`
    /// syscall per event. The connection clears it at the start of each readiness event.
    pub drained: bool,
    /// Frame boundaries of what tungstenite was given, once the stream carries frames.
    pub boundary: Boundary,
    /// Whether reads are WebSocket frames (after the HTTP head) and must be followed.
    pub framed: bool,
    /// Messages tungstenite has returned (wrapping, like `Boundary::messages`); kept by
    /// `read_message`.
    delivered: u32,
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

impl Stream {
    pub fn new(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            out: Outbox::default(),
            bytes_in: 0,
            drained: false,
            boundary: Boundary::default(),
            framed: false,
            delivered: 0,
            ahead: None,
        }
    }

    /// Writes queued bytes to the socket until done or the socket is full.
    pub fn flush_out(&mut self) -> io::Result<Flushed> {
        self.out.flush_to(&mut self.tcp)
    }

    /// Another tungstenite `read` could only end in `WouldBlock`: the socket is drained,
    /// nothing is read ahead, and tungstenite has returned every message that arrived, so
    /// its buffer holds at most part of a frame. Skipping that `read` saves the zero-fill
    /// of tungstenite's read buffer it starts with, once per readiness event.
    pub fn nothing_to_parse(&self) -> bool {
        self.drained && self.nothing_read_ahead() && self.delivered == self.boundary.messages()
    }

    /// Nothing read from the socket is waiting to be handed to tungstenite.
    pub fn nothing_read_ahead(&self) -> bool {
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

    /// Bytes held in buffers owned by the stream.
    #[cfg(test)]
    pub fn buffered_capacity(&self) -> usize {
        self.ahead.as_ref().map_or(0, |a| a.buf.capacity())
    }

    fn read_socket(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.bytes_in += n as u64;
        self.drained = n > 0 && n < buf.len();
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
        let n = self.tcp.read(&mut ahead.buf[..size])?;
        self.bytes_in += n as u64;
        self.drained = n > 0 && n < size;
        ahead.start = 0;
        ahead.end = n;
        Ok(n)
    }
}

/// tungstenite's `read`, counted for `Stream::nothing_to_parse`: every message the connection
/// takes from tungstenite must come through here, or the skip would never apply.
pub fn read_message(ws: &mut WebSocket<Stream>) -> tungstenite::Result<Message> {
    let message = ws.read()?;
    let stream = ws.get_mut();
    stream.delivered = stream.delivered.wrapping_add(1);
    Ok(message)
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.nothing_read_ahead() {
            if self.drained {
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

impl Write for Stream {
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
    use std::net::{TcpListener, TcpStream as StdTcp};

    /// A connected pair: the client end to write with, and a `Stream` over the server end.
    fn pair() -> (StdTcp, Stream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = StdTcp::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut stream = Stream::new(TcpStream::from_std(server));
        stream.framed = true;
        (client, stream)
    }

    /// A final client frame with a payload of `len` bytes counting up from `seed`.
    fn frame(opcode: u8, len: usize, seed: u8) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
        testkit::client_frame(0x80 | opcode, &payload, true)
    }

    /// Reads `want` bytes in tungstenite-sized chunks, waiting for data as needed.
    fn read_all(stream: &mut Stream, want: usize, chunk: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; chunk];
        while got.len() < want {
            match stream.read(&mut buf) {
                Ok(0) => panic!("EOF after {} of {want} bytes", got.len()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A new readiness event would clear this.
                    stream.drained = false;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[test]
    fn large_frame_is_read_ahead_and_handed_on_intact() {
        let (mut client, mut stream) = pair();
        let big = frame(0x2, 16 * 1024, 7);
        client.write_all(&big).unwrap();
        // Wait until the whole frame is in the socket's receive queue.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut first = vec![0u8; 4096];
        assert_eq!(stream.read(&mut first).unwrap(), 4096);
        assert_eq!(stream.bytes_in, 4096);
        let mut second = vec![0u8; 4096];
        assert_eq!(stream.read(&mut second).unwrap(), 4096);
        assert_eq!(
            stream.bytes_in,
            big.len() as u64,
            "the rest of the frame should come in one read"
        );
        let mut got = first;
        got.extend_from_slice(&second);
        got.extend(read_all(&mut stream, big.len() - 8192, 4096));
        assert_eq!(got, big);
        assert!(stream.boundary.at_rest());
        assert!(stream.nothing_read_ahead());
        assert!(stream.buffered_capacity() > 0);
        stream.release_buffers();
        assert_eq!(stream.buffered_capacity(), 0);
    }

    /// Large and small frames, written in odd-sized pieces so reads end mid-header and
    /// mid-payload, come out byte for byte with `chunk`-sized reads.
    fn mixed_frames_survive(chunk: usize) {
        let (mut client, mut stream) = pair();
        let mut sent = Vec::new();
        for (i, len) in [70_000usize, 3, 200_000, 125, 5000, 0, 9000]
            .iter()
            .enumerate()
        {
            sent.extend(frame(0x2, *len, i as u8));
            sent.extend(frame(0x9, 2, 0xee)); // a ping between data frames
        }
        let writer = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                for piece in sent.chunks(3001) {
                    client.write_all(piece).unwrap();
                }
                client
            })
        };
        let got = read_all(&mut stream, sent.len(), chunk);
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "bytes differ from what was sent");
        assert!(stream.boundary.at_rest());
        assert!(stream.nothing_read_ahead());
        drop(writer.join().unwrap());
    }

    #[test]
    fn frames_after_a_large_one_keep_their_order_and_bytes() {
        mixed_frames_survive(4096);
        mixed_frames_survive(64);
    }

    #[test]
    fn nothing_to_parse_only_once_every_arrived_message_is_returned() {
        use tungstenite::protocol::Role;
        let (mut client, stream) = pair();
        let mut wire = frame(0x2, 10, 1);
        wire.extend(frame(0x9, 0, 0)); // a ping: a message of its own
        wire.extend(frame(0x1, 5, b'a'));
        let partial = frame(0x2, 100, 9);
        wire.extend(&partial[..50]);
        client.write_all(&wire).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut ws = WebSocket::from_raw_socket(stream, Role::Server, None);
        for left in (0..3).rev() {
            read_message(&mut ws).unwrap();
            let stream = ws.get_ref();
            assert!(stream.drained, "one socket read took everything");
            // Were this true early, a message would sit in tungstenite until more data came.
            assert_eq!(stream.nothing_to_parse(), left == 0, "{left} messages left");
        }
        match read_message(&mut ws) {
            Err(tungstenite::Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            other => panic!("expected WouldBlock, got {other:?}"),
        }
        // The rest of the partial frame: a new readiness event, one more message.
        client.write_all(&partial[50..]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        ws.get_mut().drained = false;
        assert!(!ws.get_ref().nothing_to_parse());
        assert!(read_message(&mut ws).unwrap().is_binary());
        assert!(ws.get_ref().nothing_to_parse());
    }

    #[test]
    fn end_of_stream_inside_a_large_frame_reads_as_eof() {
        let (mut client, mut stream) = pair();
        let big = frame(0x2, 20_000, 1);
        client.write_all(&big[..10_000]).unwrap();
        drop(client);
        let got = read_all(&mut stream, 10_000, 4096);
        assert_eq!(got, big[..10_000]);
        let mut buf = [0u8; 4096];
        stream.drained = false;
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => panic!("{n} bytes after the end"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    stream.drained = false;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(!stream.boundary.at_rest());
    }
}

//! The byte stream under tungstenite: the socket for reading, the `Outbox` for writing.
//!
//! tungstenite writes its pongs and close replies into the outbox (a write never blocks, so
//! none of its "WouldBlock means queued" subtleties arise), and our own frames join the same
//! queue, so ordering between them is simply queue order. The socket is written only by
//! `Stream::flush_out`, called by the worker once per loop pass. This is the seam for another
//! I/O backend (io_uring): tungstenite and the connection only see `Read + Write`.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::boundary::Boundary;
use crate::outbox::{Flushed, Outbox};

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
    /// Frame boundaries of what was read, once the stream carries WebSocket frames.
    pub boundary: Boundary,
    /// Whether reads are WebSocket frames (after the HTTP head) and must be followed.
    pub framed: bool,
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
        }
    }

    /// Writes queued bytes to the socket until done or the socket is full.
    pub fn flush_out(&mut self) -> io::Result<Flushed> {
        self.out.flush_to(&mut self.tcp)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tcp.read(buf)?;
        self.bytes_in += n as u64;
        self.drained = n > 0 && n < buf.len();
        if self.framed {
            self.boundary.feed(&buf[..n]);
        }
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

//! What a connection needs from its transport: non-blocking bytes in and out, a way to send
//! FIN, and registration with the worker's poller.
//!
//! The server's connections run over `mio::net::TcpStream`. Keeping the connection generic
//! over this trait lets its state machine be driven in unit tests by an in-memory socket
//! (`MemSocket`: scripted input, captured output, a settable send capacity, the interest it
//! was registered with), with no kernel sockets and no sleeps, and leaves the seam where a TLS
//! session can sit between the socket and the HTTP/WebSocket layers.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;

/// A non-blocking byte stream a connection can run over.
///
/// `write` may report `WouldBlock` only when the kernel socket did (so a WRITABLE edge will
/// come). A transport that keeps bytes of its own for the wire (TLS records the socket did not
/// take) says so with `holds_output`, `write_held` sends them, and `held_bytes` says what its
/// buffers hold; plain TCP keeps none, and the defaults compile away.
pub(crate) trait Socket: Read + Write + Source {
    /// Sends FIN: we will write nothing more, but keep reading.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Bytes for the wire are held in the transport, waiting for the socket to take them.
    #[inline]
    fn holds_output(&self) -> bool {
        false
    }

    /// Writes what the transport holds; false when the socket is full (wait for WRITABLE).
    #[inline]
    fn write_held(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Heap bytes the transport keeps for this connection (TLS: a partial record, plaintext
    /// not yet read, records not yet written), charged to the memory budget with the
    /// connection's own buffers.
    #[inline]
    fn held_bytes(&self) -> usize {
        0
    }
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

#[cfg(test)]
pub(crate) use mem::MemSocket;

#[cfg(test)]
mod mem {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::io::{self, IoSlice, Read, Write};
    use std::rc::Rc;

    use mio::event::Source;
    use mio::{Interest, Registry, Token};

    use super::Socket;

    /// The far end's view of a `MemSocket`: what to deliver and what arrived.
    #[derive(Debug, Default)]
    pub(crate) struct Wire {
        /// Bytes the peer sent that the connection has not read yet.
        pub inbound: VecDeque<u8>,
        /// The peer closed its sending side: reads return 0 once `inbound` is empty.
        pub eof: bool,
        /// Bytes the connection wrote.
        pub outbound: Vec<u8>,
        /// How many more bytes the socket accepts before writes block.
        pub room: usize,
        /// The connection sent FIN.
        pub fin: bool,
        /// The interest last registered, if registered.
        pub interest: Option<Interest>,
        /// Socket reads made (including those answered WouldBlock).
        pub reads: usize,
        /// Writes are taken whole by a transport layer (as TLS takes plaintext) that keeps
        /// what the socket refuses in `held`.
        pub transport: bool,
        /// Bytes such a transport holds for the wire (TLS records of a handshake, say).
        pub held: Vec<u8>,
    }

    impl Wire {
        /// Moves held bytes onto the wire as far as `room` allows.
        fn send_held(&mut self) {
            let n = self.held.len().min(self.room);
            let sent: Vec<u8> = self.held.drain(..n).collect();
            self.outbound.extend(sent);
            if self.room != usize::MAX {
                self.room -= n;
            }
        }
    }

    /// An in-memory socket; the test keeps a handle on its `Wire`.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct MemSocket(pub Rc<RefCell<Wire>>);

    impl MemSocket {
        /// A socket that accepts any amount of output.
        pub fn new() -> MemSocket {
            let socket = MemSocket::default();
            socket.0.borrow_mut().room = usize::MAX;
            socket
        }

        pub fn wire(&self) -> std::cell::RefMut<'_, Wire> {
            self.0.borrow_mut()
        }

        /// The peer sends `bytes`.
        pub fn send(&self, bytes: &[u8]) {
            self.wire().inbound.extend(bytes);
        }

        /// Takes what the connection wrote so far.
        pub fn take_output(&self) -> Vec<u8> {
            std::mem::take(&mut self.wire().outbound)
        }
    }

    impl Read for MemSocket {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut wire = self.wire();
            wire.reads += 1;
            if wire.inbound.is_empty() {
                return if wire.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(wire.inbound.len());
            for (dst, src) in buf.iter_mut().zip(wire.inbound.drain(..n)) {
                *dst = src;
            }
            Ok(n)
        }
    }

    impl Write for MemSocket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut wire = self.wire();
            if wire.transport {
                wire.send_held();
                let mut n = 0;
                for buf in bufs {
                    wire.held.extend_from_slice(buf);
                    n += buf.len();
                }
                wire.send_held();
                return Ok(n);
            }
            if wire.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(wire.room - n);
                wire.outbound.extend_from_slice(&buf[..take]);
                n += take;
                if n == wire.room {
                    break;
                }
            }
            if wire.room != usize::MAX {
                wire.room -= n;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Source for MemSocket {
        fn register(&mut self, _: &Registry, _: Token, interest: Interest) -> io::Result<()> {
            self.wire().interest = Some(interest);
            Ok(())
        }

        fn reregister(&mut self, _: &Registry, _: Token, interest: Interest) -> io::Result<()> {
            self.wire().interest = Some(interest);
            Ok(())
        }

        fn deregister(&mut self, _: &Registry) -> io::Result<()> {
            self.wire().interest = None;
            Ok(())
        }
    }

    impl Socket for MemSocket {
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.wire().fin = true;
            Ok(())
        }

        fn holds_output(&self) -> bool {
            !self.0.borrow().held.is_empty()
        }

        fn write_held(&mut self) -> io::Result<bool> {
            let mut wire = self.wire();
            wire.send_held();
            Ok(wire.held.is_empty())
        }

        fn held_bytes(&self) -> usize {
            self.0.borrow().held.len()
        }
    }
}

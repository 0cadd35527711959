//! The floor under every WebSocket echo server on this machine: a measuring instrument, not a
//! server anyone should run.
//!
//! It answers any upgrade request with 101 and echoes each client frame back unmasked, with
//! none of the work a real server does (no UTF-8 check, no control-frame handling, no limits,
//! no timeouts, no fragmentation rules). What is left is the cost every server on this kernel
//! must pay: accept, one receive and one send per message, and readiness. `--io epoll` does
//! that the way corecast does (mio, edge-triggered, one read and one write per message);
//! `--io uring` submits the same receives and sends through io_uring, many per `io_uring_enter`,
//! to see whether batching the syscalls moves the floor. `benches/compare.sh` measures both
//! beside the real servers (`--servers ...,ceiling-epoll,ceiling-uring`).

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::process::ExitCode;

use slab::Slab;

/// Bytes in from one peer, bytes out to it. Both I/O paths drive the same state.
struct Conn {
    upgraded: bool,
    inbound: Vec<u8>,
    outbound: Vec<u8>,
}

const MAX_REQUEST: usize = 8 * 1024;

impl Conn {
    fn new() -> Self {
        Conn {
            upgraded: false,
            inbound: Vec::with_capacity(4096),
            outbound: Vec::with_capacity(4096),
        }
    }

    /// Takes received bytes; queues the handshake reply or the echoed frames. `Err` means the
    /// peer sent something this instrument does not handle: drop the connection.
    fn received(&mut self, data: &[u8]) -> Result<(), &'static str> {
        self.inbound.extend_from_slice(data);
        if !self.upgraded {
            let Some(end) = self.inbound.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if self.inbound.len() > MAX_REQUEST {
                    Err("request too long")
                } else {
                    Ok(())
                };
            };
            let reply = handshake_reply(&self.inbound[..end]).ok_or("not an upgrade request")?;
            self.outbound.extend_from_slice(&reply);
            self.inbound.drain(..end + 4);
            self.upgraded = true;
        }
        let used = echo_frames(&self.inbound, &mut self.outbound)?;
        self.inbound.drain(..used);
        Ok(())
    }
}

fn handshake_reply(request: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(request).ok()?;
    let key = text.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then_some(value.trim())
    })?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Some(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes(),
    )
}

/// Echoes every whole masked frame at the front of `input` into `out` (same first byte,
/// unmasked payload); returns how many input bytes it consumed.
fn echo_frames(input: &[u8], out: &mut Vec<u8>) -> Result<usize, &'static str> {
    let mut used = 0;
    loop {
        let frame = &input[used..];
        if frame.len() < 2 {
            return Ok(used);
        }
        if frame[1] & 0x80 == 0 {
            return Err("unmasked client frame");
        }
        let (len, header) = match frame[1] & 0x7f {
            126 if frame.len() >= 4 => (u16::from_be_bytes([frame[2], frame[3]]) as u64, 4),
            127 if frame.len() >= 10 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()), 10),
            126 | 127 => return Ok(used),
            n => (n as u64, 2),
        };
        if len > 16 << 20 {
            return Err("frame over 16 MiB");
        }
        let len = len as usize;
        let total = header + 4 + len;
        if frame.len() < total {
            return Ok(used);
        }
        let mask = [
            frame[header],
            frame[header + 1],
            frame[header + 2],
            frame[header + 3],
        ];
        out.push(frame[0]);
        match len {
            0..=125 => out.push(len as u8),
            126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        unmask_into(&frame[header + 4..total], mask, out);
        used += total;
    }
}

/// Appends `payload` XOR the repeating `mask`, eight bytes at a time so that a 16 KiB echo
/// measures the kernel rather than a byte loop.
fn unmask_into(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let words = payload.chunks_exact(8);
    let tail = words.remainder();
    out.reserve(payload.len());
    for word in words {
        let w = u64::from_ne_bytes(word.try_into().expect("chunks of 8")) ^ wide;
        out.extend_from_slice(&w.to_ne_bytes());
    }
    out.extend(tail.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

fn run_epoll(listener: TcpListener) -> io::Result<()> {
    use mio::{Events, Interest, Poll, Token};
    const LISTENER: Token = Token(usize::MAX);
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<(mio::net::TcpStream, Conn)> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?;
                    let entry = conns.vacant_entry();
                    poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    entry.insert((stream, Conn::new()));
                }
                continue;
            }
            let key = event.token().0;
            let Some((stream, conn)) = conns.get_mut(key) else {
                continue;
            };
            if pump(stream, conn, &mut buf).is_err() {
                conns.remove(key);
            }
        }
    }
}

/// Reads until the socket is drained (or a short read says it is), then writes what is queued.
fn pump(stream: &mut mio::net::TcpStream, conn: &mut Conn, buf: &mut [u8]) -> io::Result<()> {
    let closed = || io::Error::from(io::ErrorKind::ConnectionAborted);
    loop {
        match stream.read(buf) {
            Ok(0) => return Err(closed()),
            Ok(n) => {
                conn.received(&buf[..n]).map_err(|_| closed())?;
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    while !conn.outbound.is_empty() {
        match stream.write(&conn.outbound) {
            Ok(n) => drop(conn.outbound.drain(..n)),
            // Edge-triggered WRITABLE brings us back here when the socket drains.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn run_uring(listener: TcpListener) -> io::Result<()> {
    use io_uring::{opcode, squeue, types, IoUring};
    const ACCEPT: u64 = u64::MAX;
    const SEND: u64 = 1 << 62;
    const RECV_BUF: usize = 64 * 1024;

    /// A connection with one receive and at most one send in flight; the kernel owns `recv`
    /// while its receive is pending and `sending` while its send is, so neither moves then.
    struct Slot {
        fd: RawFd,
        conn: Conn,
        recv: Box<[u8]>,
        sending: Vec<u8>,
        sent: usize,
        /// The fd is closed; the slot waits for its in-flight send to complete.
        closing: bool,
    }
    fn send_entry(key: usize, slot: &Slot) -> squeue::Entry {
        let rest = &slot.sending[slot.sent..];
        opcode::Send::new(types::Fd(slot.fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(key as u64 | SEND)
    }
    fn recv_entry(key: usize, slot: &mut Slot) -> squeue::Entry {
        opcode::Recv::new(
            types::Fd(slot.fd),
            slot.recv.as_mut_ptr(),
            slot.recv.len() as u32,
        )
        .build()
        .user_data(key as u64)
    }
    /// Starts a send of whatever the connection has queued, unless one is in flight.
    fn start_send(key: usize, slot: &mut Slot, pending: &mut Vec<squeue::Entry>) {
        if slot.sending.is_empty() && !slot.conn.outbound.is_empty() {
            std::mem::swap(&mut slot.sending, &mut slot.conn.outbound);
            slot.sent = 0;
            pending.push(send_entry(key, slot));
        }
    }

    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(4096)?;
    let mut slots: Slab<Slot> = Slab::new();
    let mut pending = vec![opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .build()
        .user_data(ACCEPT)];
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(4096);
    loop {
        // Everything queued in the last pass goes in with the wait: one syscall.
        while !pending.is_empty() {
            let mut sq = ring.submission();
            let room = sq.capacity() - sq.len();
            let take = room.min(pending.len());
            for entry in pending.drain(..take) {
                // SAFETY: every buffer an entry points at lives in a `Slot` that is not
                // freed or reused until that entry's completion has been seen.
                unsafe { sq.push(&entry).expect("room was checked") };
            }
            drop(sq);
            if !pending.is_empty() {
                ring.submit()?;
            }
        }
        match ring.submit_and_wait(1) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for (data, result) in done.drain(..) {
            if data == ACCEPT {
                if result >= 0 {
                    // SAFETY: a completed accept hands us a new fd that nothing else owns.
                    let stream = unsafe {
                        <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(result)
                    };
                    stream.set_nodelay(true)?;
                    let entry = slots.vacant_entry();
                    let key = entry.key();
                    let slot = entry.insert(Slot {
                        fd: stream.into_raw_fd(),
                        conn: Conn::new(),
                        recv: vec![0u8; RECV_BUF].into_boxed_slice(),
                        sending: Vec::with_capacity(4096),
                        sent: 0,
                        closing: false,
                    });
                    pending.push(recv_entry(key, slot));
                }
                continue;
            }
            let key = (data & !SEND) as usize;
            let Some(slot) = slots.get_mut(key) else {
                continue;
            };
            if data & SEND != 0 {
                if slot.closing {
                    slots.remove(key);
                    continue;
                }
                if result < 0 {
                    // Nothing more goes out; the receive side sees the failure and retires
                    // the slot. Clearing `sending` lets it do that at once.
                    slot.sending.clear();
                    continue;
                }
                slot.sent += result as usize;
                if slot.sent < slot.sending.len() {
                    pending.push(send_entry(key, slot));
                } else {
                    slot.sending.clear();
                    start_send(key, slot, &mut pending);
                }
                continue;
            }
            let n = result.max(0) as usize;
            let ok = result > 0 && slot.conn.received(&slot.recv[..n]).is_ok();
            if !ok {
                // SAFETY: the fd is ours and nothing uses it after this; a send in flight
                // holds its own reference to the file, and its buffer stays in the slot
                // until that send completes.
                unsafe { libc::close(slot.fd) };
                if slot.sending.is_empty() {
                    slots.remove(key);
                } else {
                    slot.closing = true;
                }
                continue;
            }
            start_send(key, slot, &mut pending);
            pending.push(recv_entry(key, slot));
        }
    }
}

fn main() -> ExitCode {
    let mut listen = "127.0.0.1:9001".to_string();
    let mut io_kind = "epoll".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_default(),
            "--io" => io_kind = args.next().unwrap_or_default(),
            other => {
                eprintln!("peer-ceiling: unknown argument {other} (usage: --listen ADDR --io epoll|uring)");
                return ExitCode::from(2);
            }
        }
    }
    let result = TcpListener::bind(&listen).and_then(|listener| {
        eprintln!(
            "peer-ceiling ({io_kind}) listening on {}",
            listener.local_addr()?
        );
        match io_kind.as_str() {
            "epoll" => {
                listener.set_nonblocking(true)?;
                run_epoll(listener)
            }
            "uring" => run_uring(listener),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--io takes epoll or uring",
            )),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer-ceiling: {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![first];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    #[test]
    fn echoes_whole_frames_and_keeps_partial_ones() {
        let big = vec![7u8; 70_000];
        let mut input = client_frame(0x82, b"hello");
        input.extend(client_frame(0x81, &big[..300]));
        input.extend(client_frame(0x82, &big));
        let split = input.len() - 10;
        let mut out = Vec::new();
        let used = echo_frames(&input[..split], &mut out).unwrap();
        assert_eq!(&out[..7], b"\x82\x05hello");
        assert_eq!(&out[7..11], &[0x81, 126, 1, 44]);
        assert_eq!(out.len(), 7 + 4 + 300);
        let rest = echo_frames(&input[used..], &mut out).unwrap();
        assert_eq!(used + rest, input.len());
        assert_eq!(out[311], 0x82);
        assert_eq!(out[312], 127);
        assert!(out[321..].iter().all(|&b| b == 7) && out.len() == 321 + 70_000);
    }

    #[test]
    fn refuses_unmasked_frames_and_non_upgrades() {
        assert!(echo_frames(b"\x82\x01x", &mut Vec::new()).is_err());
        let mut conn = Conn::new();
        assert!(conn.received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
        let mut conn = Conn::new();
        conn.received(b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .unwrap();
        let reply = String::from_utf8(conn.outbound.clone()).unwrap();
        assert!(reply.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{reply}");
    }
}

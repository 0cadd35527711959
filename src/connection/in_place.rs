//! Reading a `Ready` connection: socket bytes land in the worker's receive buffer, and the
//! complete text and binary messages at its front are taken where they lie
//! (`protocol::inbound`): unmasked in place, UTF-8 checked, then published or echoed.
//!
//! An echo needs no copy at all: a server header is never longer than the client header it
//! answers minus its 4-byte mask key, so the reply frame is rebuilt in place (the server header
//! written over the end of the client header, the unmasked payload where it is) and written
//! from the receive buffer, every echo of one read in one `writev`. Only what the socket does
//! not take is copied, into the outbox, to go out at the next flush; while the outbox holds
//! anything, echoes queue behind it there instead, so output keeps its order.
//!
//! From the first byte the fast path cannot take, the rest of the read goes to tungstenite
//! (the connection becomes `Open`); it is dropped again once it holds nothing (`settle`).

use std::io::{self, IoSlice};
use std::mem;
use std::ops::Range;

use tungstenite::protocol::Role;
use tungstenite::WebSocket;

use super::socket::Socket;
use super::{count_echo, waiting, Connection, Env, Phase, Step, RECV_BUFFER};
use crate::protocol::frame::{self, OpCode};
use crate::protocol::inbound::{self, Scan};

/// Echo frames written from the receive buffer in one `writev`.
const BATCH: usize = 32;

/// Echo frames rebuilt in the receive buffer and not written yet.
#[derive(Default)]
struct Echoes {
    frames: [Range<usize>; BATCH],
    len: usize,
}

impl Echoes {
    fn is_full(&self) -> bool {
        self.len == BATCH
    }

    fn push(&mut self, frame: Range<usize>) {
        self.frames[self.len] = frame;
        self.len += 1;
    }
}

impl<S: Socket> Connection<S> {
    /// Reads in `Ready`, through the worker's receive buffer (lent out of `env` for the call).
    pub(super) fn read_in_place(&mut self, env: &mut Env) -> Step {
        let mut recv = mem::take(&mut env.recv);
        if recv.is_empty() {
            // A panic while it was lent out (the worker survives those) took it along.
            recv = vec![0; RECV_BUFFER];
        }
        let step = self.read_frames(&mut recv, env);
        env.recv = recv;
        step
    }

    /// Reads the socket into `recv` and takes the complete messages at its front in place;
    /// from the first byte it cannot take, tungstenite parses.
    fn read_frames(&mut self, recv: &mut [u8], env: &mut Env) -> Step {
        // tungstenite's limit, so the two paths refuse the same frames.
        let max = env.limits.ws.max_message_size.unwrap_or(usize::MAX);
        loop {
            if self.read_paused {
                return Step::Idle;
            }
            let Phase::Ready(stream) = &mut self.phase else {
                return Step::Close;
            };
            let n = match stream.read_direct(recv) {
                // The peer left without a close frame: the worker counts the 1006.
                Ok(0) => return Step::Close,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return waiting(stream),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Step::Close,
            };
            let mut echoes = (!self.publishes && stream.out().is_empty()).then(Echoes::default);
            let mut at = 0;
            while at < n && !self.read_paused {
                let Scan::Message { text, header, len } = inbound::scan(&recv[at..n], max) else {
                    break;
                };
                let end = at + header + len;
                let (head, payload) = recv[at..end].split_at_mut(header);
                let key = inbound::mask_key(head);
                inbound::unmask(payload, key);
                if text && std::str::from_utf8(payload).is_err() {
                    // Masked again, as sent: tungstenite reads it and answers 1007.
                    inbound::unmask(payload, key);
                    break;
                }
                let opcode = if text { OpCode::Text } else { OpCode::Binary };
                let Some(batch) = echoes.as_mut() else {
                    self.on_message(opcode, payload, None, env);
                    at = end;
                    continue;
                };
                self.count_in(payload, env);
                count_echo(len, env);
                let start = at + header - frame::header_len(len);
                frame::put_header(&mut &mut recv[start..at + header], opcode, len);
                batch.push(start..end);
                at = end;
                if batch.is_full() && !self.send_echoes(recv, batch, env) {
                    echoes = None;
                }
            }
            if let Some(batch) = echoes.as_mut() {
                self.send_echoes(recv, batch, env);
            }
            if at < n {
                self.hand_over(&recv[at..n], env);
                return self.read_ws(env);
            }
        }
    }

    /// Writes the batch from the receive buffer; what the socket does not take is copied to
    /// the outbox. Returns whether the outbox is still empty (later echoes may be written
    /// directly too).
    fn send_echoes(&mut self, recv: &[u8], batch: &mut Echoes, env: &mut Env) -> bool {
        let Phase::Ready(stream) = &mut self.phase else {
            unreachable!("echoes are batched in Ready only")
        };
        let frames = &batch.frames[..batch.len];
        batch.len = 0;
        if frames.is_empty() {
            return true;
        }
        let mut slices = [IoSlice::new(&[]); BATCH];
        for (slice, frame) in slices.iter_mut().zip(frames) {
            *slice = IoSlice::new(&recv[frame.clone()]);
        }
        // Any error leaves it all to the outbox: the flush meets the error again and ends the
        // connection, or retries after an interruption.
        let mut written = stream.write_direct(&slices[..frames.len()]).unwrap_or(0);
        for frame in frames {
            let len = frame.len();
            if written >= len {
                written -= len;
                continue;
            }
            stream
                .out_mut()
                .push_copy(&recv[frame.start + written..frame.end]);
            written = 0;
        }
        let pending = stream.out().pending();
        if pending > env.limits.max_backlog {
            self.read_paused = true;
            env.counters.backpressure_pauses += 1;
        }
        pending == 0
    }

    /// Gives `rest` (read, not taken in place) to a tungstenite built over the stream.
    fn hand_over(&mut self, rest: &[u8], env: &Env) {
        let Phase::Ready(mut stream) = mem::replace(&mut self.phase, Phase::Gone) else {
            unreachable!("hand-overs happen in Ready only")
        };
        stream.hand_over(rest);
        let ws = WebSocket::from_partially_read(
            stream,
            rest.to_vec(),
            Role::Server,
            Some(env.limits.ws),
        );
        self.phase = Phase::Open(Box::new(ws));
    }
}

//! Driving rustls' unbuffered state machine for `TlsSocket`: each `process_tls_records` state
//! handled in one place (plaintext to the caller's buffer, handshake records to the socket,
//! application data sealed into records), so reads, writes and the closing alert share it.
//!
//! rustls discards received bytes only from the front and finds a handshake message being
//! assembled by its offsets in what it has not discarded, so whoever calls `drive` hands it
//! the kept bytes first, exactly as they were, and discards what `drive` says it used.

use std::io::{self, IoSlice, Write};
use std::sync::atomic::Ordering;

use mio::net::TcpStream;
use rustls::server::ServerConnectionData;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, WriteTraffic,
};

use super::TlsSocket;
use crate::tls::held::Held;
use crate::tls::scratch::SEND_LIMIT;

/// Room for a `close_notify` record (and anything rustls must send before it).
const CLOSE_NOTIFY_ROOM: usize = 256;

/// Why the session cannot go on.
#[derive(Debug, thiserror::Error)]
pub(super) enum Broken {
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS: cannot encrypt: {0}")]
    Encrypt(EncryptError),
    #[error("TLS: cannot encode a handshake record: {0}")]
    Encode(EncodeError),
    #[error("TLS: a handshake message does not fit the receive buffer")]
    HandshakeTooLarge,
    #[error("TLS: a session state this server never enters (early data is off)")]
    UnexpectedState,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Broken> for io::Error {
    fn from(broken: Broken) -> io::Error {
        match broken {
            Broken::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// What `drive` is to do once the session can take application data.
pub(super) enum Goal<'a> {
    /// Nothing: the caller wants received plaintext only.
    Read,
    /// Encrypt (some of) these slices and send the records; `stage` gathers small slices,
    /// `out` takes the records.
    Seal {
        bufs: &'a [IoSlice<'a>],
        stage: &'a mut [u8],
        out: &'a mut [u8],
    },
    /// Send `close_notify`.
    CloseNotify,
}

/// Where `drive` stopped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The session needs bytes from the peer.
    Input,
    /// The caller's buffer is full: records may be left unprocessed.
    Full,
    /// The goal was met: for `Seal`, this much plaintext was taken.
    Done(usize),
    /// The peer sent `close_notify`: nothing more will be read.
    PeerClosed,
}

/// Plaintext for the caller: its buffer first, then the session's `Held`.
pub(super) struct Sink<'b> {
    pub buf: &'b mut [u8],
    pub filled: usize,
}

impl Sink<'_> {
    fn put(&mut self, bytes: &[u8], spill: &mut Held) {
        let n = bytes.len().min(self.buf.len() - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        spill.extend(&bytes[n..]);
    }

    fn is_full(&self) -> bool {
        !self.buf.is_empty() && self.filled == self.buf.len()
    }
}

impl TlsSocket {
    /// Runs the session over `incoming` (received bytes, the first of them where rustls left
    /// them last time) until it needs more input, the caller's buffer is full, or `goal` is
    /// met. Returns how many bytes of `incoming` rustls is done with, and where it stopped.
    pub(super) fn drive(
        &mut self,
        incoming: &mut [u8],
        sink: &mut Sink<'_>,
        mut goal: Goal<'_>,
    ) -> (usize, Result<Stop, Broken>) {
        let mut used = 0;
        let stop = loop {
            let status = self.tls.process_tls_records(&mut incoming[used..]);
            let mut discard = status.discard;
            let step = match status.state {
                Err(e) => Err(Broken::Tls(e)),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => loop {
                    match traffic.next_record() {
                        None if sink.is_full() => break Ok(Some(Stop::Full)),
                        None => break Ok(None),
                        Some(Err(e)) => break Err(Broken::Tls(e)),
                        Some(Ok(record)) => {
                            discard += record.discard;
                            sink.put(record.payload, &mut self.plaintext);
                        }
                    }
                },
                // Handshake records, alerts and tickets go to `outgoing` (allocated only for
                // them) and are written at the `TransmitTlsData` that follows.
                Ok(ConnectionState::EncodeTlsData(mut encode)) => match encode.encode(&mut []) {
                    Ok(_) => Ok(None),
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        self.outgoing
                            .extend_with(required_size, |out| encode.encode(out))
                            .map(|()| None)
                            .map_err(Broken::Encode)
                    }
                    Err(e) => Err(Broken::Encode(e)),
                },
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    send_held(&mut self.tcp, &mut self.outgoing)
                        .map(|_| None)
                        .map_err(Broken::Io)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Stop::Input)),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match &mut goal {
                    Goal::Read => Ok(Some(Stop::Input)),
                    Goal::Seal { bufs, stage, out } => {
                        let (tcp, outgoing) = (&mut self.tcp, &mut self.outgoing);
                        let mut taken = 0;
                        let total: usize = bufs.iter().map(|b| b.len()).sum();
                        // As much as the socket takes, as plain TCP would: more only while it
                        // has taken every record so far.
                        loop {
                            match seal(&mut traffic, bufs, taken, stage, out) {
                                Ok((plain, sealed)) => {
                                    taken += plain;
                                    if let Err(e) = send(tcp, outgoing, &out[..sealed]) {
                                        break Err(Broken::Io(e));
                                    }
                                }
                                Err(e) => break Err(e),
                            }
                            if taken == total || !outgoing.is_empty() {
                                break Ok(Some(Stop::Done(taken)));
                            }
                        }
                    }
                    Goal::CloseNotify => {
                        let mut out = [0u8; CLOSE_NOTIFY_ROOM];
                        match traffic.queue_close_notify(&mut out) {
                            Ok(n) => {
                                self.closed = true;
                                send(&mut self.tcp, &mut self.outgoing, &out[..n])
                                    .map(|()| Some(Stop::Done(0)))
                                    .map_err(Broken::Io)
                            }
                            Err(e) => Err(Broken::Encrypt(e)),
                        }
                    }
                },
                Ok(ConnectionState::PeerClosed) => {
                    self.ended = true;
                    match goal {
                        Goal::Read => Ok(Some(Stop::PeerClosed)),
                        // Sending may go on after the peer's close_notify.
                        _ => Ok(None),
                    }
                }
                Ok(ConnectionState::Closed) => {
                    self.ended = true;
                    Ok(Some(Stop::PeerClosed))
                }
                // Early data is off (`max_early_data_size` 0); states added later are not
                // expected from a server with this configuration.
                Ok(_) => Err(Broken::UnexpectedState),
            };
            used += discard;
            match step {
                Ok(None) => {}
                Ok(Some(stop)) => break (used, Ok(stop)),
                Err(e) => break (used, Err(e)),
            }
        };
        if !self.established && !self.tls.is_handshaking() {
            self.established = true;
            self.tally.handshakes.fetch_add(1, Ordering::Relaxed);
        }
        match &stop.1 {
            Err(Broken::Tls(_)) => {
                self.broken = true;
                self.send_alert(&mut incoming[stop.0..]);
            }
            Err(_) => self.broken = true,
            Ok(_) => {}
        }
        stop
    }

    /// After an error, rustls has queued an alert saying why: best effort, as the connection
    /// ends anyway. Only the alert is asked for (the state that follows is not processed).
    fn send_alert(&mut self, incoming: &mut [u8]) {
        let status = self.tls.process_tls_records(incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
            let mut out = [0u8; CLOSE_NOTIFY_ROOM];
            if let Ok(n) = encode.encode(&mut out) {
                let _ = send(&mut self.tcp, &mut self.outgoing, &out[..n]);
            }
        }
    }

    /// Drives the session over what it kept of the received bytes toward `goal`.
    pub(super) fn drive_kept(&mut self, goal: Goal<'_>) -> Result<Stop, Broken> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let mut nowhere = Sink {
            buf: &mut [],
            filled: 0,
        };
        let (used, stop) = self.drive(incoming.bytes_mut(), &mut nowhere, goal);
        incoming.consume(used);
        self.incoming = incoming;
        stop
    }
}

/// The bytes of `bufs` after the first `skip`, slice by slice (none empty).
pub(super) fn unsent<'b>(bufs: &'b [IoSlice<'_>], skip: usize) -> impl Iterator<Item = &'b [u8]> {
    let mut left = skip;
    bufs.iter().filter_map(move |buf| {
        if left >= buf.len() {
            left -= buf.len();
            return None;
        }
        let piece = &buf[left..];
        left = 0;
        Some(piece)
    })
}

/// Encrypts up to `SEND_LIMIT` bytes of `bufs`, after the first `skip`, into `out`: straight
/// from one slice when it holds them all, else gathered into `stage`. Returns the plaintext
/// taken and the record bytes written.
fn seal(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    bufs: &[IoSlice<'_>],
    skip: usize,
    stage: &mut [u8],
    out: &mut [u8],
) -> Result<(usize, usize), Broken> {
    let mut take = unsent(bufs, skip)
        .map(<[u8]>::len)
        .sum::<usize>()
        .min(SEND_LIMIT);
    let first = unsent(bufs, skip).next().unwrap_or(&[]);
    let plain: &[u8] = if first.len() >= take {
        &first[..take]
    } else {
        let mut at = 0;
        for piece in unsent(bufs, skip) {
            let n = piece.len().min(take - at);
            stage[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
        }
        &stage[..take]
    };
    loop {
        match traffic.encrypt(&plain[..take], out) {
            Ok(sealed) => return Ok((take, sealed)),
            // Smaller records than usual (a peer's max_fragment_length) cost more overhead.
            Err(EncryptError::InsufficientSize(_)) if take > 1 => take /= 2,
            Err(e) => return Err(Broken::Encrypt(e)),
        }
    }
}

/// Writes `records` after what `outgoing` holds; what the socket does not take is held.
fn send(tcp: &mut TcpStream, outgoing: &mut Held, records: &[u8]) -> io::Result<()> {
    if !outgoing.is_empty() {
        outgoing.extend(records);
        return send_held(tcp, outgoing).map(|_| ());
    }
    let mut at = 0;
    while at < records.len() {
        match tcp.write(&records[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    outgoing.extend(&records[at..]);
    Ok(())
}

/// Writes held records until none are left (true) or the socket is full (false).
pub(super) fn send_held(tcp: &mut TcpStream, outgoing: &mut Held) -> io::Result<bool> {
    while !outgoing.is_empty() {
        match tcp.write(outgoing.bytes()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => outgoing.consume(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

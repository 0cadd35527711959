//! `TlsSocket` against a real rustls client over loopback: held records, records split
//! anywhere across reads, plaintext beyond the caller's buffer, the short-read rule, and no
//! buffer kept once idle; with TLS 1.3 and TLS 1.2.

use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned,
    SupportedProtocolVersion,
};

use super::drive::unsent;
use super::*;
use crate::tls::scratch::SEND_LIMIT;

type Client = StreamOwned<ClientConnection, StdTcpStream>;

/// A server configuration and a client configuration that trusts it, offering `versions`.
fn configs_for(
    versions: &[&'static SupportedProtocolVersion],
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    configs_for(&[&TLS13, &TLS12])
}

/// Repeats `step` (retrying on WouldBlock after a short pause) until it returns Some.
fn until<T>(mut step: impl FnMut() -> io::Result<Option<T>>) -> T {
    for _ in 0..10_000 {
        match step() {
            Ok(Some(done)) => return done,
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no progress");
}

/// A client speaking `version` on its own thread, running `client` once its handshake is
/// done, and the server's end of the connection (its handshake completes as the test reads).
fn pair<T: Send + 'static>(
    version: &'static SupportedProtocolVersion,
    client: impl FnOnce(&mut Client) -> T + Send + 'static,
) -> (TlsSocket, Arc<TlsTally>, JoinHandle<T>) {
    let (server_config, client_config) = configs_for(&[version]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let tcp = StdTcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let session = ClientConnection::new(client_config, name).unwrap();
        let mut stream = StreamOwned::new(session, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        assert_eq!(stream.conn.protocol_version(), Some(version.version));
        client(&mut stream)
    });
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tally = Arc::new(TlsTally::default());
    let session = UnbufferedServerConnection::new(server_config).unwrap();
    let socket = TlsSocket::new(TcpStream::from_std(tcp), session, tally.clone());
    (socket, tally, thread)
}

/// Bytes of a test message: `len` of them, differing with `seed`.
fn message(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
        .collect()
}

/// A complete record waits in `bytes` (received, not yet processed).
fn complete_record(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && bytes.len() >= 5 + u16::from_be_bytes([bytes[3], bytes[4]]) as usize
}

/// The rule `ReadSkip` relies on, checked after a short read or `WouldBlock`: nothing the
/// caller could be given waits in the session, so another read could only block.
fn assert_drained(socket: &TlsSocket, what: &str) {
    assert!(socket.plaintext.is_empty(), "{what}: plaintext left behind");
    // During the handshake rustls may keep whole records of a message still incomplete.
    assert!(
        !socket.established || !complete_record(socket.incoming.bytes()),
        "{what}: a complete record left behind"
    );
}

/// Reads until `expected` bytes came, in reads of `chunk`, checking the short-read rule.
fn read_exactly(socket: &mut TlsSocket, expected: usize, chunk: usize) -> Vec<u8> {
    read_counting_partials(socket, expected, chunk).0
}

/// `read_exactly`, also counting the reads after which part of a record was kept.
fn read_counting_partials(
    socket: &mut TlsSocket,
    expected: usize,
    chunk: usize,
) -> (Vec<u8>, usize) {
    let mut partials = 0;
    let mut got = Vec::with_capacity(expected);
    let mut buf = vec![0u8; chunk];
    until(|| {
        while got.len() < expected {
            match socket.read(&mut buf) {
                Ok(0) => panic!("EOF after {} of {expected} bytes", got.len()),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    partials += usize::from(!socket.incoming.is_empty());
                    if n < chunk {
                        assert_drained(socket, "short read");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    partials += usize::from(!socket.incoming.is_empty());
                    assert_drained(socket, "WouldBlock");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(()))
    });
    assert_eq!(got.len(), expected, "more than was sent");
    (got, partials)
}

/// Records the socket does not take stay in the session, `holds_output` says so, and
/// `write_held` sends them once the peer reads: nothing written is lost or stuck.
#[test]
fn records_a_full_socket_refuses_are_held_and_written_later() {
    let (go, wait) = mpsc::channel::<usize>();
    let (mut socket, tally, client) = pair(&TLS13, move |stream| {
        stream.write_all(b"hello").unwrap();
        // Read nothing until the server has filled its socket, then everything.
        let expected = wait.recv().unwrap();
        let mut got = vec![0u8; expected];
        stream.read_exact(&mut got).unwrap();
        got
    });
    // A small, fixed send buffer, so the socket fills after a few records.
    socket2::SockRef::from(&socket.tcp)
        .set_send_buffer_size(8 * 1024)
        .unwrap();
    assert_eq!(read_exactly(&mut socket, 5, 5), b"hello");
    assert_eq!(tally.handshakes.load(Ordering::Relaxed), 1);

    let data = message(4 << 20, 7);
    let mut written = 0;
    loop {
        match socket.write(&data[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        assert!(written < data.len(), "the socket never filled");
    }
    assert!(socket.holds_output(), "a full socket leaves records held");
    let held = socket.outgoing.len();
    assert!(
        held <= SEND_LIMIT + 1024,
        "{held} bytes held: more than one write's records"
    );
    assert_eq!(socket.held_bytes(), socket.buffered_capacity());
    assert!(socket.held_bytes() >= held, "held records are charged");
    assert!(!socket.write_held().unwrap(), "and cannot take them yet");
    go.send(written).unwrap();
    until(|| socket.write_held().map(|done| done.then_some(())));
    assert!(!socket.holds_output(), "everything went out");
    assert_eq!(socket.buffered_capacity(), 0, "and the buffer went with it");
    assert!(client.join().unwrap() == data[..written], "bytes differ");
    drop(socket);
    assert_eq!(tally.failures.load(Ordering::Relaxed), 0);
}

/// The client sends the same messages round after round, each round's records cut at other
/// points (inside headers, inside payloads, on boundaries) with a pause at each cut, so the
/// server reads partial records and keeps them across reads; what it reads, with a buffer
/// larger than a record or much smaller, is exactly what was sent.
fn records_cut_anywhere_arrive_intact(version: &'static SupportedProtocolVersion, chunk: usize) {
    const ROUNDS: u32 = 40;
    const SIZES: [usize; 6] = [1, 100, 16 * 1024, 16 * 1024 + 1, 5, 70_000];
    let (mut socket, _, client) = pair(version, |stream| {
        stream.conn.set_buffer_limit(None); // a round is encrypted whole before it is sent
        let mut seed = 0x2545_f491u32;
        for round in 0..ROUNDS {
            for (i, &len) in SIZES.iter().enumerate() {
                stream
                    .conn
                    .writer()
                    .write_all(&message(len, round * 10 + i as u32))
                    .unwrap();
            }
            let mut wire = Vec::new();
            while stream.conn.wants_write() {
                stream.conn.write_tls(&mut wire).unwrap();
            }
            let mut cuts: Vec<usize> = (0..3)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    1 + seed as usize % (wire.len() - 1)
                })
                .collect();
            // A cut in the first header, right after it, and before the last byte.
            cuts.push([1, 5, wire.len() - 1][round as usize % 3]);
            cuts.sort_unstable();
            let mut at = 0;
            for cut in cuts.into_iter().chain([wire.len()]) {
                stream.sock.write_all(&wire[at..cut]).unwrap();
                at = cut;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Until the server closes: leaving with its session tickets unread would reset the
        // connection under bytes it has not read yet.
        let _ = stream.sock.read_to_end(&mut Vec::new());
    });
    let sent: Vec<Vec<u8>> = (0..ROUNDS)
        .flat_map(|round| {
            SIZES
                .iter()
                .enumerate()
                .map(move |(i, &len)| message(len, round * 10 + i as u32))
        })
        .collect();
    let total = sent.iter().map(Vec::len).sum();
    let (got, partials) = read_counting_partials(&mut socket, total, chunk);
    assert!(
        partials >= ROUNDS as usize,
        "only {partials} reads kept part of a record: the cuts were not exercised"
    );
    let mut at = 0;
    for (i, message) in sent.iter().enumerate() {
        assert!(
            got[at..at + message.len()] == message[..],
            "message {i} ({} bytes) differs",
            message.len()
        );
        at += message.len();
    }
    assert_eq!(socket.buffered_capacity(), 0);
    drop(socket);
    client.join().unwrap();
}

#[test]
fn records_cut_anywhere_arrive_intact_tls13() {
    records_cut_anywhere_arrive_intact(&TLS13, 64 * 1024);
    records_cut_anywhere_arrive_intact(&TLS13, 1000);
}

#[test]
fn records_cut_anywhere_arrive_intact_tls12() {
    records_cut_anywhere_arrive_intact(&TLS12, 64 * 1024);
    records_cut_anywhere_arrive_intact(&TLS12, 1000);
}

/// Plaintext the caller's buffer has no room for is kept and handed on by the next reads,
/// each filling the buffer (a short read would tell the caller the socket is drained while
/// bytes wait), and the last one short; then the socket blocks.
#[test]
fn plaintext_beyond_the_callers_buffer_comes_in_full_reads() {
    const LEN: usize = 50_500;
    let (sent, all_sent) = mpsc::channel();
    let (mut socket, _, client) = pair(&TLS13, move |stream| {
        stream.write_all(b"!").unwrap(); // the server reads it to complete the handshake
        stream.write_all(&message(LEN, 1)).unwrap();
        sent.send(()).unwrap();
        let mut end = [0u8; 1];
        let _ = stream.read(&mut end); // until the server is done
    });
    assert_eq!(read_exactly(&mut socket, 1, 1), b"!");
    all_sent.recv().unwrap();
    std::thread::sleep(Duration::from_millis(50)); // everything has arrived
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    let first = until(|| socket.read(&mut buf).map(Some));
    assert_eq!(first, 1000, "a record's plaintext fills the buffer");
    got.extend_from_slice(&buf);
    while got.len() < LEN {
        let n = socket.read(&mut buf).unwrap();
        if got.len() + n < LEN {
            assert_eq!(
                n,
                1000,
                "a short read with {} bytes to come",
                LEN - got.len()
            );
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == message(LEN, 1), "bytes differ");
    let e = socket.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(socket.buffered_capacity(), 0);
    drop(socket);
    client.join().unwrap();
}

/// Between messages an established session keeps no buffer at all: a partial record is
/// held (and charged) only until the rest arrives, replies the socket took leave nothing,
/// and the session ends with close_notify, which the client sees as a clean close.
fn an_idle_session_keeps_no_buffer(version: &'static SupportedProtocolVersion) {
    let (step, next) = mpsc::channel::<()>();
    let (mut socket, _, client) = pair(version, move |stream| {
        stream.write_all(b"ping").unwrap();
        let mut reply = vec![0u8; 100_000];
        stream.read_exact(&mut reply).unwrap();
        assert!(reply == message(100_000, 3), "reply differs");
        // One record in two parts, the server reading in between.
        stream.conn.writer().write_all(&message(3000, 4)).unwrap();
        let mut wire = Vec::new();
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut wire).unwrap();
        }
        stream.sock.write_all(&wire[..1000]).unwrap();
        next.recv().unwrap();
        stream.sock.write_all(&wire[1000..]).unwrap();
        let mut rest = Vec::new();
        // close_notify: a clean end, not an `UnexpectedEof`.
        stream.read_to_end(&mut rest).unwrap();
        rest.is_empty()
    });
    assert_eq!(read_exactly(&mut socket, 4, 64 * 1024), b"ping");
    let reply = message(100_000, 3);
    let mut written = 0;
    while written < reply.len() {
        match socket.write(&reply[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                until(|| socket.write_held().map(|done| done.then_some(())));
            }
            Err(e) => panic!("{e}"),
        }
    }
    until(|| socket.write_held().map(|done| done.then_some(())));
    assert_eq!(socket.buffered_capacity(), 0, "after reading and writing");
    let mut buf = vec![0u8; 64 * 1024];
    until(|| match socket.read(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && !socket.incoming.is_empty() => {
            Ok(Some(()))
        }
        Ok(n) => panic!("{n} bytes from a partial record"),
        other => other.map(|_| None),
    });
    assert!(
        socket.buffered_capacity() >= 1000,
        "the partial record is held"
    );
    assert_eq!(socket.held_bytes(), socket.buffered_capacity());
    step.send(()).unwrap();
    assert!(read_exactly(&mut socket, 3000, 64 * 1024) == message(3000, 4));
    assert_eq!(socket.buffered_capacity(), 0, "idle again");
    socket.shutdown_write().unwrap();
    drop(socket);
    assert!(client.join().unwrap(), "nothing after the last message");
}

#[test]
fn an_idle_session_keeps_no_buffer_tls13() {
    an_idle_session_keeps_no_buffer(&TLS13);
}

#[test]
fn an_idle_session_keeps_no_buffer_tls12() {
    an_idle_session_keeps_no_buffer(&TLS12);
}

/// A peer that leaves without close_notify reads as EOF once its data is read.
#[test]
fn eof_without_close_notify_reads_as_eof() {
    let (mut socket, tally, client) = pair(&TLS13, |stream| {
        stream.write_all(b"bye").unwrap();
        stream.sock.shutdown(Shutdown::Write).unwrap(); // FIN, no alert
        let _ = stream.sock.read_to_end(&mut Vec::new()); // until the server closes
    });
    assert_eq!(read_exactly(&mut socket, 3, 1024), b"bye");
    let mut buf = [0u8; 1024];
    assert_eq!(until(|| socket.read(&mut buf).map(Some)), 0);
    assert_eq!(socket.read(&mut buf).unwrap(), 0, "and again");
    drop(socket);
    client.join().unwrap();
    assert_eq!(tally.handshakes.load(Ordering::Relaxed), 1);
    assert_eq!(tally.failures.load(Ordering::Relaxed), 0);
}

#[test]
fn unsent_skips_what_was_taken_across_slices() {
    let bufs = [
        IoSlice::new(b"abc"),
        IoSlice::new(b""),
        IoSlice::new(b"de"),
        IoSlice::new(b"fgh"),
    ];
    let from = |skip| unsent(&bufs, skip).collect::<Vec<_>>().concat();
    assert_eq!(from(0), b"abcdefgh");
    assert_eq!(from(2), b"cdefgh");
    assert_eq!(from(3), b"defgh");
    assert_eq!(unsent(&bufs, 3).next(), Some(&b"de"[..]), "no empty slices");
    assert_eq!(from(6), b"gh");
    assert!(from(8).is_empty());
}

/// A vectored write bigger than one step is taken whole while the socket has room, and the
/// peer reads the slices in order.
#[test]
fn a_vectored_write_goes_on_while_the_socket_takes_it() {
    let parts: Vec<Vec<u8>> = [10usize, 40_000, 3, 70_000, 1]
        .iter()
        .enumerate()
        .map(|(i, &len)| message(len, i as u32))
        .collect();
    let total: usize = parts.iter().map(Vec::len).sum();
    let (mut socket, _, client) = pair(&TLS13, move |stream| {
        stream.write_all(b"go").unwrap();
        let mut got = vec![0u8; total];
        stream.read_exact(&mut got).unwrap();
        got
    });
    socket2::SockRef::from(&socket.tcp)
        .set_send_buffer_size(1 << 20)
        .unwrap();
    assert_eq!(read_exactly(&mut socket, 2, 2), b"go");
    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    assert_eq!(socket.write_vectored(&slices).unwrap(), total);
    until(|| socket.write_held().map(|done| done.then_some(())));
    assert!(client.join().unwrap() == parts.concat(), "bytes differ");
}

#[test]
fn the_plain_http_answer_is_well_formed() {
    let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len());
}

#[test]
fn a_connection_that_never_completes_its_handshake_counts_as_a_failure() {
    let (server_config, _) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tally = Arc::new(TlsTally::default());
    let session = UnbufferedServerConnection::new(server_config).unwrap();
    let mut socket = TlsSocket::new(TcpStream::from_std(tcp), session, tally.clone());
    // A handshake record announcing a 11 MB handshake message: refused at once.
    peer.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .unwrap();
    let mut buf = [0u8; 64];
    let err = until(|| match socket.read(&mut buf) {
        Ok(n) => panic!("read {n} bytes of garbage"),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Ok(Some(e)),
    });
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    drop(socket);
    assert_eq!(tally.failures.load(Ordering::Relaxed), 1);
    assert_eq!(tally.handshakes.load(Ordering::Relaxed), 0);
}

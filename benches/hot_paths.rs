//! Micro-benchmarks of the per-message hot paths: handshake parsing, frame encoding for
//! fan-out (encode once and share, against the copy-per-member way), and the echo path minus
//! syscalls (tungstenite decode, our encode into the outbox, the corked write).
//!
//! `cargo bench --bench hot_paths` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::io::{self, Read, Write};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use corecast::internals::frame::{self, OpCode};
use corecast::internals::http::{self, Policy};
use corecast::internals::Outbox;

const BROWSER_UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost:9998\r\nConnection: Upgrade\r\n\
Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n\
Origin: http://localhost:9998\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let policy = Policy::default();
    c.bench_function("handshake/parse_and_decide", |b| {
        b.iter(|| {
            let (head, _) = http::parse_request(black_box(BROWSER_UPGRADE))
                .unwrap()
                .unwrap();
            black_box(http::decide(&head, &policy))
        })
    });
}

/// A sink that accepts everything, like a socket with room.
struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Sink {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

fn fanout(c: &mut Criterion) {
    const MEMBERS: usize = 1000;
    let mut group = c.benchmark_group("fanout_1000_members");
    for size in [64usize, 1024, 16 * 1024] {
        let payload = vec![0x42u8; size];
        group.throughput(Throughput::Elements(MEMBERS as u64));
        // corecast: encode once, queue the same Bytes to every member, one writev each.
        let mut outboxes: Vec<Outbox> = (0..MEMBERS).map(|_| Outbox::default()).collect();
        group.bench_with_input(
            BenchmarkId::new("encode_once_shared", size),
            &payload,
            |b, p| {
                b.iter(|| {
                    let frame = frame::encode(OpCode::Binary, p);
                    for out in outboxes.iter_mut() {
                        out.push_shared(frame.clone(), true);
                        out.flush_to(&mut Sink).unwrap();
                    }
                })
            },
        );
        // The tungstenite way: every member's send encodes and copies the payload.
        let config = WebSocketConfig::default().write_buffer_size(0);
        let mut sockets: Vec<WebSocket<Sink>> = (0..MEMBERS)
            .map(|_| WebSocket::from_raw_socket(Sink, Role::Server, Some(config)))
            .collect();
        let shared = Bytes::from(payload.clone());
        group.bench_with_input(
            BenchmarkId::new("tungstenite_send_per_member", size),
            &shared,
            |b, p| {
                b.iter(|| {
                    for ws in sockets.iter_mut() {
                        ws.send(Message::Binary(p.clone())).unwrap();
                    }
                })
            },
        );
    }
    group.finish();
}

/// Replays the same masked client frames forever, in reads of at most `chunk` bytes.
struct Replay {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.data.len() {
            self.pos = 0;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [1u8, 2, 3, 4];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn echo_dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_dispatch");
    for size in [16usize, 512, 16 * 1024] {
        let frame_bytes = masked_frame(&vec![0x61u8; size]);
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let replay = Replay {
            data: frame_bytes,
            pos: 0,
        };
        let mut ws = WebSocket::from_raw_socket(replay, Role::Server, Some(config));
        let mut out = Outbox::default();
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                // One message per iteration: decode, encode the echo, write it out.
                loop {
                    match ws.read() {
                        Ok(Message::Binary(payload)) => {
                            out.push_frame(OpCode::Binary, &payload);
                            break;
                        }
                        Ok(_) => unreachable!(),
                        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                out.flush_to(&mut Sink).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, handshake, fanout, echo_dispatch);
criterion_main!(benches);

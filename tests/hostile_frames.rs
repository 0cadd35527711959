//! Hostile input after the upgrade: every protocol violation closes that connection with the
//! right code, and peers that vanish mid-frame or mid-handshake are cleaned up, while healthy
//! connections on every worker keep getting echoes.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::*;
use socket2::{Domain, Socket, Type};

/// One violation: what it is, the bytes sent after the upgrade, the close code expected.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    code: u16,
}

fn case(name: &'static str, code: u16, frames: &[Vec<u8>]) -> Case {
    Case {
        name,
        bytes: frames.concat(),
        code,
    }
}

#[test]
fn protocol_violations_close_with_1002_or_1007() {
    let server = start(config());
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    let text =
        |fin: bool, payload: &[u8]| client_frame(if fin { 0x81 } else { 0x01 }, payload, true);
    let cases = [
        case(
            "unmasked binary",
            1002,
            &[client_frame(0x82, b"bare", false)],
        ),
        case("unmasked ping", 1002, &[client_frame(0x89, b"", false)]),
        case("RSV1 set", 1002, &[client_frame(0xc1, b"rsv1", true)]),
        case("RSV2 set", 1002, &[client_frame(0xa1, b"rsv2", true)]),
        case("RSV3 set", 1002, &[client_frame(0x91, b"rsv3", true)]),
        case("RSV3 on a ping", 1002, &[client_frame(0x99, b"", true)]),
        case(
            "reserved data opcode 0x3",
            1002,
            &[client_frame(0x83, b"x", true)],
        ),
        case(
            "reserved data opcode 0x7",
            1002,
            &[client_frame(0x87, b"x", true)],
        ),
        case(
            "reserved control opcode 0xB",
            1002,
            &[client_frame(0x8b, b"x", true)],
        ),
        case(
            "reserved control opcode 0xF",
            1002,
            &[client_frame(0x8f, b"", true)],
        ),
        case(
            "fragmented ping",
            1002,
            &[client_frame(0x09, b"frag", true)],
        ),
        case(
            "fragmented close",
            1002,
            &[client_frame(0x08, &[3, 232], true)],
        ),
        case(
            "ping of 126 bytes",
            1002,
            &[client_frame(0x89, &[7; 126], true)],
        ),
        case(
            "pong of 65535 bytes",
            1002,
            &[client_frame(0x8a, &[7; 65535], true)],
        ),
        case(
            "close of 126 bytes",
            1002,
            &[client_frame(
                0x88,
                &[[3u8, 232].as_slice(), &[b'r'; 124]].concat(),
                true,
            )],
        ),
        case(
            "continuation without a start",
            1002,
            &[client_frame(0x80, b"x", true)],
        ),
        case(
            "new message inside a fragmented one",
            1002,
            &[text(false, b"first"), text(true, b"second")],
        ),
        case(
            "invalid UTF-8 text",
            1007,
            &[text(true, &[0xce, 0xba, 0xff, 0xfe])],
        ),
        case(
            "overlong UTF-8 encoding",
            1007,
            &[text(true, &[0xc0, 0xaf])],
        ),
        case(
            "UTF-16 surrogate in UTF-8",
            1007,
            &[text(true, &[0xed, 0xa0, 0x80])],
        ),
        case(
            "invalid UTF-8 across fragments",
            1007,
            &[
                text(false, "κόσμε".as_bytes()),
                client_frame(0x80, &[0xf4, 0x90, 0x80, 0x80], true),
            ],
        ),
    ];
    let before = total(&server, |c| c.protocol_errors);
    for Case { name, bytes, code } in &cases {
        let (mut s, _) = raw_upgrade(addr, "/echo");
        s.write_all(bytes).unwrap();
        assert_eq!(read_close_code(&mut s), Some(*code), "{name}");
        assert_closed_by_server(&mut s, name);
        healthy.assert_echoing(name);
    }
    wait_until("every violation to be counted", || {
        total(&server, |c| c.protocol_errors) - before == cases.len() as u64
    });
    healthy.finish("after the protocol violations");
}

/// A connected socket that resets (RST, not FIN) when dropped.
fn resetting_socket(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    socket.set_tcp_nodelay(true).unwrap();
    socket.into()
}

#[test]
fn connections_reset_mid_handshake_and_mid_frame_are_cleaned_up() {
    let server = start(config());
    let addr = server.local_addr();
    let mut healthy = Healthy::start(&server);
    let open = || total(&server, |c| c.connections);
    let request = upgrade_request("/echo", "");
    let frame = client_frame(0x82, &[0x5a; 4096], true);
    for round in 0..20 {
        // Reset after half a request.
        let mut s = resetting_socket(addr);
        s.write_all(&request.as_bytes()[..request.len() / 2])
            .unwrap();
        drop(s);
        // Reset right after the upgrade, halfway through a frame's header and its payload.
        for cut in [1, 3, 2 + 2 + 4 + 100] {
            let mut s = resetting_socket(addr);
            s.write_all(request.as_bytes()).unwrap();
            s.write_all(&frame[..cut]).unwrap();
            drop(s);
        }
        // Reset with a whole echo unread on our side.
        let mut s = resetting_socket(addr);
        s.write_all(request.as_bytes()).unwrap();
        s.write_all(&frame).unwrap();
        drop(s);
        if round % 5 == 0 {
            healthy.assert_echoing(&format!("during reset round {round}"));
        }
    }
    wait_until("the reset connections to be dropped", || {
        open() == healthy.clients as u64
    });
    healthy.finish("after the resets");
}

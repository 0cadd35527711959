//! /echo end to end: every message comes back unchanged, control frames are answered, and
//! protocol violations close with the right code.

mod common;

use common::*;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::{Bytes, Message};

fn echo_once(ws: &mut Client, msg: Message) {
    ws.send(msg.clone()).unwrap();
    assert_eq!(ws.read().unwrap(), msg);
}

#[test]
fn echoes_text_binary_empty_and_large_messages() {
    let server = start(config());
    let mut ws = connect(server.local_addr(), "/echo");
    echo_once(&mut ws, Message::text("hello, corecast"));
    echo_once(&mut ws, Message::binary(vec![0u8, 1, 2, 255]));
    echo_once(&mut ws, Message::text(""));
    echo_once(&mut ws, Message::binary(Vec::new()));
    echo_once(&mut ws, Message::text("é€😀".repeat(1000)));
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    echo_once(&mut ws, Message::binary(big));
    // Many in flight at once come back in order.
    for i in 0..500 {
        ws.write(Message::text(format!("msg {i}"))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..500 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("msg {i}")));
    }
}

#[test]
fn echoes_a_16_mib_message() {
    let server = start(config());
    let mut ws = connect(server.local_addr(), "/echo");
    let big = vec![0x5au8; 16 << 20];
    echo_once(&mut ws, Message::binary(big));
}

#[test]
fn fragmented_message_is_reassembled() {
    let server = start(config());
    let mut ws = connect(server.local_addr(), "/echo");
    ws.write(Message::Frame(Frame::message(
        Bytes::from_static(b"frag"),
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    // A ping between fragments is allowed and answered.
    ws.write(Message::Ping(Bytes::from_static(b"mid"))).unwrap();
    ws.write(Message::Frame(Frame::message(
        Bytes::from_static(b"men"),
        OpCode::Data(Data::Continue),
        false,
    )))
    .unwrap();
    ws.write(Message::Frame(Frame::message(
        Bytes::from_static(b"ted"),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    ws.flush().unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(Bytes::from_static(b"mid"))
    );
    assert_eq!(ws.read().unwrap(), Message::text("fragmented"));
}

#[test]
fn ping_gets_pong_with_same_payload() {
    let server = start(config());
    let mut ws = connect(server.local_addr(), "/echo");
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(Bytes::from_static(b"are you there"))
    );
}

#[test]
fn client_close_is_answered_with_the_same_code() {
    let server = start(config());
    let mut ws = connect(server.local_addr(), "/echo");
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected close reply, got {other:?}"),
    }
    // Then the server closes the TCP connection.
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
}

#[test]
fn oversized_message_closes_with_1009() {
    let server = start(corecast::Config {
        max_message_size: 1000,
        ..config()
    });
    let addr = server.local_addr();
    // One frame over the limit.
    let (mut s, _) = raw_upgrade(addr, "/echo");
    std::io::Write::write_all(&mut s, &client_frame(0x82, &[1u8; 1001], true)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1009));
    // Fragments that add up to more than the limit.
    let (mut s, _) = raw_upgrade(addr, "/echo");
    std::io::Write::write_all(&mut s, &client_frame(0x02, &[1u8; 600], true)).unwrap();
    std::io::Write::write_all(&mut s, &client_frame(0x80, &[1u8; 600], true)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1009));
    // A message at the limit still echoes.
    let (mut s, _) = raw_upgrade(addr, "/echo");
    std::io::Write::write_all(&mut s, &client_frame(0x82, &[1u8; 1000], true)).unwrap();
    let (first, payload) = read_frame(&mut s).unwrap().unwrap();
    assert_eq!((first, payload.len()), (0x82, 1000));
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    let server = start(config());
    let (mut s, _) = raw_upgrade(server.local_addr(), "/echo");
    std::io::Write::write_all(&mut s, &client_frame(0x81, b"not masked", false)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1002));
    // The server then closes the socket.
    assert!(read_frame(&mut s).unwrap().is_none());
}

#[test]
fn invalid_utf8_text_closes_with_1007() {
    let server = start(config());
    let (mut s, _) = raw_upgrade(server.local_addr(), "/echo");
    std::io::Write::write_all(&mut s, &client_frame(0x81, &[0xce, 0xba, 0xff, 0xfe], true))
        .unwrap();
    assert_eq!(read_close_code(&mut s), Some(1007));
}

#[test]
fn frames_sent_with_the_request_are_not_lost() {
    let server = start(config());
    let mut s = tcp(server.local_addr());
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    bytes.extend(client_frame(0x81, b"early bird", true));
    std::io::Write::write_all(&mut s, &bytes).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut s, &mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"));
    assert_eq!(
        read_frame(&mut s).unwrap().unwrap(),
        (0x81, b"early bird".to_vec())
    );
}

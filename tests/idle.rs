//! Silent connections hold no tungstenite state (`Phase::Ready`), rest, and come back intact.

mod common;

use std::time::Duration;

use common::*;
use corecast::Server;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Bytes, Message};

fn rests(server: &Server) -> u64 {
    server.stats().iter().map(|c| c.rests).sum()
}

#[test]
fn silent_connections_rest_and_then_echo_broadcast_and_close_normally() {
    let server = start(config());
    let addr = server.local_addr();
    let mut echo = connect(addr, "/echo");
    echo.send(Message::text("before")).unwrap();
    assert_eq!(echo.read().unwrap(), Message::text("before"));
    let mut listener = connect(addr, "/broadcast/quiet");
    let mut speaker = connect(addr, "/broadcast/quiet");
    wait_until("all three to rest", || rests(&server) >= 3);
    // Waking from rest: the echo connection works as before.
    echo.send(Message::binary(vec![9u8; 3000])).unwrap();
    assert_eq!(echo.read().unwrap(), Message::binary(vec![9u8; 3000]));
    echo.send(Message::Ping(Bytes::from_static(b"p"))).unwrap();
    assert_eq!(
        echo.read().unwrap(),
        Message::Pong(Bytes::from_static(b"p"))
    );
    // A resting member receives broadcasts without waking.
    speaker.send(Message::text("to the quiet room")).unwrap();
    assert_eq!(listener.read().unwrap(), Message::text("to the quiet room"));
    assert_eq!(speaker.read().unwrap(), Message::text("to the quiet room"));
    // The two that read input rest again (the listener never woke), then a graceful shutdown
    // reaches everyone with 1001.
    let before = rests(&server);
    wait_until("the connections to rest again", || {
        rests(&server) >= before + 2
    });
    let stopping = std::thread::spawn(move || server.shutdown());
    for mut ws in [echo, listener, speaker] {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        let _ = ws.flush();
    }
    stopping.join().unwrap();
}

#[test]
fn a_fragmented_message_survives_a_long_pause_between_fragments() {
    let server = start(config());
    let mut ws = connect(server.local_addr(), "/echo");
    let first = Frame::message(
        Bytes::from_static(b"slow "),
        OpCode::Data(Data::Text),
        false,
    );
    ws.send(Message::Frame(first)).unwrap();
    // Long enough that a connection with nothing in progress would have rested.
    std::thread::sleep(Duration::from_millis(2500));
    let last = Frame::message(
        Bytes::from_static(b"and steady"),
        OpCode::Data(Data::Continue),
        true,
    );
    ws.send(Message::Frame(last)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("slow and steady"));
}

#[test]
fn a_frame_split_across_a_pause_is_reassembled() {
    let server = start(config());
    let (mut s, _) = raw_upgrade(server.local_addr(), "/echo");
    let frame = client_frame(0x82, &[7u8; 300], true);
    std::io::Write::write_all(&mut s, &frame[..100]).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    std::io::Write::write_all(&mut s, &frame[100..]).unwrap();
    assert_eq!(read_frame(&mut s).unwrap().unwrap(), (0x82, vec![7u8; 300]));
}

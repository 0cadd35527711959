//! Worker isolation: a panic while handling one connection's input costs that connection only.
//! The worker catches it, drops the connection, counts it in `panics`, and goes on serving its
//! other connections, rooms included. The panic is triggered by a message that exists only in
//! builds with the `fault-injection` feature (`cargo test --workspace --all-features`).
#![cfg(feature = "fault-injection")]

mod common;

use common::*;
use corecast::internals::PANIC_TRIGGER;
use corecast::Server;
use tungstenite::Message;

/// Connects `path` and returns the client with the index of the worker that accepted it.
fn connect_and_locate(server: &Server, path: &str) -> (Client, usize) {
    let before: Vec<u64> = server.stats().iter().map(|c| c.handshakes).collect();
    let ws = connect(server.local_addr(), path);
    let mut worker = None;
    wait_until("the new connection to be counted", || {
        worker = server
            .stats()
            .iter()
            .zip(&before)
            .position(|(now, then)| now.handshakes > *then);
        worker.is_some()
    });
    (ws, worker.unwrap())
}

/// The server dropped `ws` without a close frame and sent nothing back.
fn assert_dropped(ws: &mut Client, what: &str) {
    match ws.read() {
        Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ))
        | Err(tungstenite::Error::ConnectionClosed)
        | Err(tungstenite::Error::Io(_)) => {}
        other => panic!("{what}: expected the connection to be dropped, got {other:?}"),
    }
}

fn read_text(ws: &mut Client) -> String {
    match ws.read().unwrap() {
        Message::Text(t) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[test]
fn a_panicking_echo_handler_costs_one_connection_not_the_worker() {
    let server = start(config());
    let mut healthy = Healthy::start(&server);
    let (mut victim, worker) = connect_and_locate(&server, "/echo");
    echo_text(&mut victim, "fine so far").unwrap();

    victim.send(Message::binary(PANIC_TRIGGER)).unwrap();
    assert_dropped(&mut victim, "the panicking connection");
    wait_until("the panic to be counted", || {
        total(&server, |c| c.panics) == 1
    });
    let stats = server.stats();
    assert_eq!(stats[worker].panics, 1, "counted on the victim's worker");
    assert!(
        stats[worker].connections > 0,
        "the victim's worker still holds its healthy connections"
    );
    healthy.assert_echoing("after the panic");

    // The worker still accepts, and a new connection (maybe reusing the victim's slab key and
    // token) works.
    let mut again = connect(server.local_addr(), "/echo");
    echo_text(&mut again, "the worker lives on").unwrap();
    wait_until("only the healthy clients and the new one to remain", || {
        total(&server, |c| c.connections) == healthy.clients as u64 + 1
    });
    healthy.finish("after the panic");
}

#[test]
fn a_panicking_room_member_leaves_the_room_intact() {
    let server = start(config());
    let addr = server.local_addr();
    let healthy = Healthy::start(&server);
    let room = "/broadcast/isolated";
    let (mut victim, _) = connect_and_locate(&server, room);
    let mut members: Vec<Client> = (0..4).map(|_| connect(addr, room)).collect();
    wait_until("every member to be counted", || {
        total(&server, |c| c.handshakes) == healthy.clients as u64 + 5
    });
    members[0].send(Message::text("before")).unwrap();
    for ws in members.iter_mut().chain([&mut victim]) {
        assert_eq!(read_text(ws), "before");
    }

    // As text this time: the trigger is the payload, whatever the opcode.
    let trigger = std::str::from_utf8(PANIC_TRIGGER).unwrap();
    victim.send(Message::text(trigger)).unwrap();
    assert_dropped(&mut victim, "the panicking member");
    wait_until("the panic to be counted", || {
        total(&server, |c| c.panics) == 1
    });

    // The others never see the trigger; the room goes on, and a newcomer joins it cleanly
    // (the victim's place in the member list was reused correctly).
    members.push(connect(addr, room));
    wait_until("the newcomer to be counted", || {
        total(&server, |c| c.handshakes) == healthy.clients as u64 + 6
    });
    members[1].send(Message::text("after")).unwrap();
    for ws in &mut members {
        assert_eq!(read_text(ws), "after");
    }
    healthy.finish("after the member's panic");
}

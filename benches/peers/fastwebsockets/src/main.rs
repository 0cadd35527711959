//! Peer server on fastwebsockets, written the way the crate's own examples are
//! (`examples/echo_server.rs` and `examples/echo_server_split.rs`): hyper's HTTP/1
//! server performs the upgrade, each WebSocket runs in its own task, on a
//! single-threaded tokio runtime, with the library's default settings.
//!
//! ```text
//! peer-fastwebsockets [--listen ADDR]      (default 127.0.0.1:9001)
//!
//! /echo               every text or binary message goes back to its sender
//! /broadcast/<room>   every text or binary message goes to every member of <room>,
//!                     the sender included
//! ```
//!
//! For fan-out a member's socket is split: the read half publishes to the room, and a
//! writer task drains the member's unbounded queue into the write half. Pongs and close
//! replies that the read half owes the peer go through that same queue, so they stay in
//! order with the messages.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fastwebsockets::{upgrade, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// One frame queued for a member's writer task.
#[derive(Debug)]
struct Outgoing {
    opcode: OpCode,
    payload: Bytes,
}

impl Outgoing {
    fn from_frame(frame: &Frame<'_>) -> Outgoing {
        Outgoing {
            opcode: frame.opcode,
            payload: Bytes::copy_from_slice(&frame.payload),
        }
    }
}

/// The broadcast rooms: room name -> (member id -> that member's outbound queue).
/// A room is removed with its last member.
#[derive(Default)]
struct Rooms {
    members: Mutex<HashMap<String, HashMap<u64, UnboundedSender<Outgoing>>>>,
    next_id: AtomicU64,
}

impl Rooms {
    fn join(&self, room: &str, queue: UnboundedSender<Outgoing>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut members = self.members.lock().expect("rooms lock poisoned");
        members
            .entry(room.to_owned())
            .or_default()
            .insert(id, queue);
        id
    }

    fn publish(&self, room: &str, opcode: OpCode, payload: Bytes) {
        let members = self.members.lock().expect("rooms lock poisoned");
        for queue in members.get(room).into_iter().flat_map(HashMap::values) {
            // A member that is leaving has dropped its receiver: nothing to do.
            let _ = queue.send(Outgoing {
                opcode,
                payload: payload.clone(),
            });
        }
    }

    fn leave(&self, room: &str, id: u64) {
        let mut members = self.members.lock().expect("rooms lock poisoned");
        if let Some(room_members) = members.get_mut(room) {
            room_members.remove(&id);
            if room_members.is_empty() {
                members.remove(room);
            }
        }
    }
}

fn main() -> io::Result<()> {
    let addr = listen_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        println!(
            "peer-fastwebsockets listening on {}",
            listener.local_addr()?
        );
        let rooms = Arc::new(Rooms::default());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let service = service_fn(move |request| server_upgrade(request, rooms.clone()));
                let connection = http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades();
                if let Err(e) = connection.await {
                    eprintln!("http connection: {e}");
                }
            });
        }
    })
}

/// `--listen ADDR` (or `--listen=ADDR`); anything else is a usage error.
fn listen_addr() -> io::Result<SocketAddr> {
    let usage = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{why}\nusage: peer-fastwebsockets [--listen ADDR]"),
        )
    };
    let mut addr = String::from("127.0.0.1:9001");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--listen=") {
            Some(value) => addr = value.to_owned(),
            None if arg == "--listen" => {
                addr = args
                    .next()
                    .ok_or_else(|| usage("--listen needs a value".into()))?
            }
            None => return Err(usage(format!("unknown argument {arg}"))),
        }
    }
    addr.parse()
        .map_err(|e| usage(format!("bad --listen address {addr}: {e}")))
}

async fn server_upgrade(
    mut request: Request<Incoming>,
    rooms: Arc<Rooms>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let path = request.uri().path();
    let room = match path.strip_prefix("/broadcast/") {
        Some(room) if !room.is_empty() => Some(room.to_owned()),
        _ if path == "/echo" => None,
        _ => {
            let mut not_found = Response::new(Empty::new());
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            return Ok(not_found);
        }
    };
    let (response, upgrade) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let session = match room {
            None => tokio::task::unconstrained(echo(upgrade)).await,
            Some(room) => tokio::task::unconstrained(broadcast(upgrade, &rooms, &room)).await,
        };
        if let Err(e) = session {
            eprintln!("websocket connection: {e}");
        }
    });
    Ok(response)
}

async fn echo(upgrade: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fastwebsockets::FragmentCollector::new(upgrade.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn broadcast(
    upgrade: upgrade::UpgradeFut,
    rooms: &Rooms,
    room: &str,
) -> Result<(), WebSocketError> {
    let (read, mut write) = upgrade.await?.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    let (queue, mut outbox) = unbounded_channel::<Outgoing>();

    let writer = tokio::spawn(async move {
        while let Some(out) = outbox.recv().await {
            let frame = Frame::new(true, out.opcode, None, Payload::Borrowed(&out.payload));
            write.write_frame(frame).await?;
            if out.opcode == OpCode::Close {
                break;
            }
        }
        Ok::<(), WebSocketError>(())
    });

    let id = rooms.join(room, queue.clone());
    let result = loop {
        // Pongs and close replies owed to the peer are queued like any message.
        let mut owed = |frame: Frame<'_>| {
            let sent = queue.send(Outgoing::from_frame(&frame));
            async move { sent }
        };
        match read.read_frame(&mut owed).await {
            Ok(frame) => match frame.opcode {
                OpCode::Close => break Ok(()),
                OpCode::Text | OpCode::Binary => {
                    rooms.publish(room, frame.opcode, Bytes::copy_from_slice(&frame.payload))
                }
                _ => {}
            },
            Err(e) => break Err(e),
        }
    };
    rooms.leave(room, id);
    drop(queue);
    // The writer ends once it has written a close frame or the queue is empty and closed.
    match writer.await {
        Ok(written) => result.and(written),
        Err(join) => Err(WebSocketError::IoError(io::Error::other(join))),
    }
}

//! Peer server on tokio-tungstenite, written the way the crate's own examples are
//! (`examples/autobahn-server.rs` for echo, `examples/server.rs` for fan-out): one
//! task per connection on a single-threaded tokio runtime, default `WebSocketConfig`.
//!
//! ```text
//! peer-tokio-tungstenite [--listen ADDR]      (default 127.0.0.1:9001)
//!
//! /echo               every text or binary message goes back to its sender
//! /broadcast/<room>   every text or binary message goes to every member of <room>,
//!                     the sender included
//! ```
//!
//! Fan-out follows `examples/server.rs`: each member owns an unbounded channel whose
//! receiving end is forwarded into its socket, and the room is a map of the senders.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::{future, pin_mut, SinkExt, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::WebSocketStream;

/// Room name -> (member's peer address -> that member's outbound queue).
/// A room is removed with its last member.
type Rooms = Arc<Mutex<HashMap<String, HashMap<SocketAddr, UnboundedSender<Message>>>>>;

/// What the upgrade request's path asked for.
enum Route {
    Echo,
    Broadcast(String),
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        match path {
            "/echo" => Some(Route::Echo),
            _ => path
                .strip_prefix("/broadcast/")
                .filter(|room| !room.is_empty())
                .map(|room| Route::Broadcast(room.to_owned())),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let addr = listen_addr()?;
    let listener = TcpListener::bind(addr).await?;
    println!(
        "peer-tokio-tungstenite listening on {}",
        listener.local_addr()?
    );
    let rooms = Rooms::default();
    loop {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(accept_connection(rooms.clone(), stream, peer));
    }
}

/// `--listen ADDR` (or `--listen=ADDR`); anything else is a usage error.
fn listen_addr() -> io::Result<SocketAddr> {
    let usage = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{why}\nusage: peer-tokio-tungstenite [--listen ADDR]"),
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

async fn accept_connection(rooms: Rooms, stream: TcpStream, peer: SocketAddr) {
    let mut route = None;
    // The error type is tungstenite's `ErrorResponse`, fixed by its `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        route = Route::parse(request.uri().path());
        if route.is_some() {
            Ok(response)
        } else {
            let mut not_found = ErrorResponse::new(Some("no such endpoint".into()));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            Err(not_found)
        }
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(ws) => ws,
        Err(_) => return, // not a WebSocket upgrade, or an unknown path: already answered
    };
    let result = match route {
        Some(Route::Echo) => echo(ws).await,
        Some(Route::Broadcast(room)) => {
            broadcast(&rooms, room, peer, ws).await;
            Ok(())
        }
        None => Ok(()),
    };
    match result {
        Ok(()) | Err(Error::ConnectionClosed | Error::Protocol(_) | Error::Utf8(_)) => {}
        Err(e) => eprintln!("{peer}: {e}"),
    }
}

async fn echo(mut ws: WebSocketStream<TcpStream>) -> Result<(), Error> {
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

async fn broadcast(rooms: &Rooms, room: String, peer: SocketAddr, ws: WebSocketStream<TcpStream>) {
    let (tx, rx) = unbounded();
    rooms
        .lock()
        .expect("rooms lock poisoned")
        .entry(room.clone())
        .or_default()
        .insert(peer, tx);

    let (outgoing, incoming) = ws.split();
    let publish = incoming.try_for_each(|message| {
        if message.is_text() || message.is_binary() {
            let rooms = rooms.lock().expect("rooms lock poisoned");
            for member in rooms.get(&room).into_iter().flat_map(HashMap::values) {
                // A member that is leaving has dropped its receiver: nothing to do.
                let _ = member.unbounded_send(message.clone());
            }
        }
        future::ok(())
    });
    let deliver = rx.map(Ok).forward(outgoing);
    pin_mut!(publish, deliver);
    future::select(publish, deliver).await;

    let mut rooms = rooms.lock().expect("rooms lock poisoned");
    if let Some(members) = rooms.get_mut(&room) {
        members.remove(&peer);
        if members.is_empty() {
            rooms.remove(&room);
        }
    }
}

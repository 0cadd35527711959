//! Peer server on tokio-tungstenite, written the way the crate's own examples are
//! (`examples/autobahn-server.rs` for echo, `examples/server.rs` for fan-out): one
//! task per connection on a single-threaded tokio runtime, default `WebSocketConfig`.
//!
//! ```text
//! peer-tokio-tungstenite [--listen ADDR] [--tls-cert FILE --tls-key FILE]
//!                                             (default 127.0.0.1:9001, plain)
//!
//! /echo               every text or binary message goes back to its sender
//! /broadcast/<room>   every text or binary message goes to every member of <room>,
//!                     the sender included
//! ```
//!
//! Fan-out follows `examples/server.rs`: each member owns an unbounded channel whose
//! receiving end is forwarded into its socket, and the room is a map of the senders.
//!
//! With `--tls-cert` and `--tls-key` (PEM) every connection is accepted through tokio-rustls
//! (ring provider, TLS 1.3 and 1.2, ALPN `http/1.1`, rustls' defaults otherwise) before the
//! WebSocket upgrade: wss:// as the crates' users write it, to compare with corecast's TLS.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::{future, pin_mut, SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
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
    let options = options()?;
    let tls = match &options.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(options.listen).await?;
    println!(
        "peer-tokio-tungstenite listening on {}{}",
        listener.local_addr()?,
        if tls.is_some() { " (TLS)" } else { "" }
    );
    let rooms = Rooms::default();
    loop {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        match &tls {
            None => tokio::spawn(accept_connection(rooms.clone(), stream, peer)),
            Some(acceptor) => {
                let (acceptor, rooms) = (acceptor.clone(), rooms.clone());
                tokio::spawn(async move {
                    // A failed TLS handshake ends this connection only.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        accept_connection(rooms, stream, peer).await;
                    }
                })
            }
        };
    }
}

/// The command line.
struct Options {
    listen: SocketAddr,
    /// Certificate chain and key files (PEM) when serving TLS.
    tls: Option<(String, String)>,
}

/// `--listen ADDR`, `--tls-cert FILE`, `--tls-key FILE` (each also as `--name=value`);
/// anything else is a usage error.
fn options() -> io::Result<Options> {
    let usage = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{why}\nusage: peer-tokio-tungstenite [--listen ADDR] [--tls-cert FILE --tls-key FILE]"
            ),
        )
    };
    let mut addr = String::from("127.0.0.1:9001");
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match name.as_str() {
            "--listen" => addr = value()?,
            "--tls-cert" => cert = Some(value()?),
            "--tls-key" => key = Some(value()?),
            _ => return Err(usage(format!("unknown argument {arg}"))),
        }
    }
    let listen = addr
        .parse()
        .map_err(|e| usage(format!("bad --listen address {addr}: {e}")))?;
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(usage("--tls-cert and --tls-key go together".into())),
    };
    Ok(Options { listen, tls })
}

/// A TLS acceptor for the PEM certificate chain and key: ring, TLS 1.3 and 1.2, ALPN
/// `http/1.1`, rustls' defaults otherwise.
fn tls_acceptor(cert: &str, key: &str) -> io::Result<TlsAcceptor> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{cert}: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("{key}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid(format!("{cert}, {key}: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_connection<S>(rooms: Rooms, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) -> Result<(), Error> {
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

async fn broadcast<S: AsyncRead + AsyncWrite + Unpin>(
    rooms: &Rooms,
    room: String,
    peer: SocketAddr,
    ws: WebSocketStream<S>,
) {
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

//! The HTTP/1.1 side of a connection: parsing the request, deciding what to answer, and the
//! bytes of every answer.
//!
//! We parse the request ourselves (httparse, incrementally, bounded) instead of using
//! tungstenite's handshake so that every request gets a proper HTTP answer (tungstenite drops
//! invalid upgrades silently) and bytes that arrive behind the request are kept for the
//! WebSocket. Everything here is pure: no sockets, no clocks.

use base64::Engine as _;
use bytes::Bytes;

/// Largest request head we accept; beyond it the answer is 431.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Most headers one request may carry; beyond it the answer is 431.
const MAX_HEADERS: usize = 64;

/// What a WebSocket connection on this server is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/echo`: every message goes back to its sender.
    Echo,
    /// `/broadcast` or `/broadcast/<room>`: every message goes to every member of the room.
    Room(String),
}

/// The name `/broadcast` (no room segment) maps to.
pub const DEFAULT_ROOM: &str = "";

/// The parts of a request the server acts on, copied out of the read buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// Minor version of HTTP/1.x.
    pub minor_version: u8,
    pub upgrade: Vec<String>,
    pub connection: Vec<String>,
    pub key: Vec<String>,
    pub version: Vec<String>,
    pub protocols: Vec<String>,
    pub origin: Option<String>,
}

/// A request that cannot be parsed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("request head larger than {MAX_REQUEST_HEAD} bytes")]
    TooLarge,
    #[error("malformed HTTP request")]
    Malformed,
}

impl ParseError {
    /// The answer a client gets for this error.
    pub fn response(self) -> Response {
        match self {
            ParseError::TooLarge => Response::reject(431, "request header fields too large"),
            ParseError::Malformed => Response::reject(400, "malformed HTTP request"),
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: more bytes needed.
/// `Ok(Some((head, n)))`: the head took the first `n` bytes; the rest belongs to the WebSocket.
pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooLarge),
        Err(_) => return Err(ParseError::Malformed),
    };
    let consumed = match status {
        httparse::Status::Partial if buf.len() > MAX_REQUEST_HEAD => {
            return Err(ParseError::TooLarge)
        }
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) if n > MAX_REQUEST_HEAD => return Err(ParseError::TooLarge),
        httparse::Status::Complete(n) => n,
    };
    let mut head = RequestHead {
        method: req.method.unwrap_or_default().to_string(),
        path: req.path.unwrap_or_default().to_string(),
        minor_version: req.version.unwrap_or(0),
        ..RequestHead::default()
    };
    for h in req.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(ParseError::Malformed);
        };
        let list = |into: &mut Vec<String>| {
            into.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from),
            )
        };
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            list(&mut head.upgrade);
        } else if name.eq_ignore_ascii_case("connection") {
            list(&mut head.connection);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.key.push(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            list(&mut head.version);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            list(&mut head.protocols);
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.trim().to_string());
        }
    }
    Ok(Some((head, consumed)))
}

/// The parts of the configuration that decide handshake answers.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Subprotocols the server supports; empty: take the client's first offer.
    pub protocols: Vec<String>,
    /// Origins allowed to upgrade; empty: any.
    pub allowed_origins: Vec<String>,
}

/// What the server answers a complete request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 101: the connection becomes a WebSocket for `endpoint`.
    Upgrade {
        endpoint: Endpoint,
        response: Response,
    },
    /// Any other answer; the connection closes once it is written.
    Respond(Response),
    /// One of the stats pages, whose body only the running server can write.
    Stats(StatsPage),
}

/// The pages that show the server's published counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsPage {
    /// `/metrics`: Prometheus text.
    Prometheus,
    /// `/stats.json`: totals for the demo page.
    Json,
}

/// An HTTP response, already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub bytes: Bytes,
}

impl Response {
    fn new(status: u16, extra_headers: &str, content_type: &str, body: &[u8]) -> Response {
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\n{extra_headers}Content-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            reason_phrase(status),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        Response {
            status,
            bytes: Bytes::from(out),
        }
    }

    /// A 200 with `body`.
    pub fn ok(content_type: &str, body: &[u8]) -> Response {
        Response::new(200, "Cache-Control: no-store\r\n", content_type, body)
    }

    /// An error answer with a one-line plain-text reason.
    pub fn reject(status: u16, reason: &str) -> Response {
        let extra = match status {
            426 => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            405 => "Allow: GET\r\n",
            503 => "Retry-After: 1\r\n",
            _ => "",
        };
        Response::new(
            status,
            extra,
            "text/plain; charset=utf-8",
            format!("{reason}\n").as_bytes(),
        )
    }

    fn switching(accept: &str, protocol: Option<&str>) -> Response {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n"
        );
        if let Some(p) = protocol {
            out.push_str("Sec-WebSocket-Protocol: ");
            out.push_str(p);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        Response {
            status: 101,
            bytes: Bytes::from(out),
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The browser demo page served at `/`.
const INDEX_HTML: &str = include_str!("index.html");

fn has_token(list: &[String], token: &str) -> bool {
    list.iter().any(|t| t.eq_ignore_ascii_case(token))
}

/// Picks the subprotocol to answer with. Never one the client did not offer: browsers fail
/// the connection on that.
pub fn select_protocol<'a>(offered: &'a [String], supported: &[String]) -> Option<&'a str> {
    if supported.is_empty() {
        return offered.first().map(String::as_str);
    }
    offered
        .iter()
        .find(|p| supported.iter().any(|s| s == *p))
        .map(String::as_str)
}

fn route(path: &str) -> Option<Route> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    match path {
        "/" | "/index.html" => Some(Route::Page),
        "/healthz" => Some(Route::Health),
        "/metrics" => Some(Route::Stats(StatsPage::Prometheus)),
        "/stats.json" => Some(Route::Stats(StatsPage::Json)),
        "/echo" => Some(Route::Ws(Endpoint::Echo)),
        "/broadcast" | "/broadcast/" => Some(Route::Ws(Endpoint::Room(DEFAULT_ROOM.into()))),
        _ => {
            let room = path.strip_prefix("/broadcast/")?;
            (!room.contains('/') && room.len() <= 256)
                .then(|| Route::Ws(Endpoint::Room(room.to_string())))
        }
    }
}

enum Route {
    Page,
    Health,
    Stats(StatsPage),
    Ws(Endpoint),
}

/// Decides the answer to a complete request (RFC 6455 §4.2.1 for upgrades).
pub fn decide(head: &RequestHead, policy: &Policy) -> Decision {
    let Some(route) = route(&head.path) else {
        return Decision::Respond(Response::reject(404, "not found"));
    };
    if head.method != "GET" {
        return Decision::Respond(Response::reject(405, "only GET is supported"));
    }
    if head.minor_version < 1 {
        return Decision::Respond(Response::reject(400, "HTTP/1.1 required"));
    }
    let endpoint = match route {
        Route::Page => {
            let r = Response::new(200, "", "text/html; charset=utf-8", INDEX_HTML.as_bytes());
            return Decision::Respond(r);
        }
        Route::Health => {
            return Decision::Respond(Response::new(200, "", "text/plain", b"ok\n"));
        }
        Route::Stats(page) => return Decision::Stats(page),
        Route::Ws(endpoint) => endpoint,
    };
    match validate_upgrade(head, policy) {
        Ok((accept, protocol)) => Decision::Upgrade {
            endpoint,
            response: Response::switching(&accept, protocol),
        },
        Err(response) => Decision::Respond(response),
    }
}

fn validate_upgrade<'a>(
    head: &'a RequestHead,
    policy: &Policy,
) -> Result<(String, Option<&'a str>), Response> {
    if !has_token(&head.upgrade, "websocket") {
        return Err(Response::reject(400, "expected Upgrade: websocket"));
    }
    if !has_token(&head.connection, "upgrade") {
        return Err(Response::reject(400, "expected Connection: Upgrade"));
    }
    match head.version.as_slice() {
        [] => return Err(Response::reject(400, "missing Sec-WebSocket-Version")),
        [v] if v == "13" => {}
        _ => return Err(Response::reject(426, "unsupported Sec-WebSocket-Version")),
    }
    let key = match head.key.as_slice() {
        [key] => key,
        [] => return Err(Response::reject(400, "missing Sec-WebSocket-Key")),
        _ => return Err(Response::reject(400, "more than one Sec-WebSocket-Key")),
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !matches!(decoded, Ok(ref k) if k.len() == 16) {
        return Err(Response::reject(400, "invalid Sec-WebSocket-Key"));
    }
    if !policy.allowed_origins.is_empty() {
        let allowed = head
            .origin
            .as_ref()
            .is_some_and(|o| policy.allowed_origins.contains(o));
        if !allowed {
            return Err(Response::reject(403, "origin not allowed"));
        }
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok((accept, select_protocol(&head.protocols, &policy.protocols)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade_request(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn decide_raw(raw: &str, policy: &Policy) -> Decision {
        let (head, n) = parse_request(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(n, raw.len());
        decide(&head, policy)
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Upgrade { response, .. } | Decision::Respond(response) => response.status,
            Decision::Stats(page) => panic!("stats page {page:?}"),
        }
    }

    fn text(d: &Decision) -> String {
        match d {
            Decision::Upgrade { response, .. } | Decision::Respond(response) => {
                String::from_utf8(response.bytes.to_vec()).unwrap()
            }
            Decision::Stats(page) => panic!("stats page {page:?}"),
        }
    }

    #[test]
    fn stats_pages_are_left_to_the_server_and_only_for_get() {
        let get =
            |path: &str| decide_raw(&format!("GET {path} HTTP/1.1\r\n\r\n"), &Policy::default());
        assert_eq!(get("/metrics"), Decision::Stats(StatsPage::Prometheus));
        assert_eq!(get("/stats.json?t=1"), Decision::Stats(StatsPage::Json));
        let post = decide_raw("POST /metrics HTTP/1.1\r\n\r\n", &Policy::default());
        assert_eq!(status(&post), 405);
        let ok = Response::ok("text/plain", b"x");
        assert!(String::from_utf8_lossy(&ok.bytes).contains("Cache-Control: no-store\r\n"));
    }

    #[test]
    fn valid_upgrade_gets_rfc_accept_key() {
        let d = decide_raw(&upgrade_request("/echo", ""), &Policy::default());
        assert!(matches!(
            d,
            Decision::Upgrade {
                endpoint: Endpoint::Echo,
                ..
            }
        ));
        // The example key and accept value from RFC 6455 §1.3.
        assert!(text(&d).contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(!text(&d).contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn partial_requests_ask_for_more_and_keep_trailing_bytes() {
        let raw = upgrade_request("/echo", "");
        assert_eq!(
            parse_request(&raw.as_bytes()[..raw.len() - 1]).unwrap(),
            None
        );
        let mut with_frame = raw.clone().into_bytes();
        with_frame.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let (_, n) = parse_request(&with_frame).unwrap().unwrap();
        assert_eq!(n, raw.len());
    }

    #[test]
    fn rooms_and_paths_route() {
        let p = Policy::default();
        let room = |path: &str| match decide_raw(&upgrade_request(path, ""), &p) {
            Decision::Upgrade {
                endpoint: Endpoint::Room(r),
                ..
            } => Some(r),
            _ => None,
        };
        assert_eq!(room("/broadcast").as_deref(), Some(""));
        assert_eq!(room("/broadcast/lobby").as_deref(), Some("lobby"));
        assert_eq!(room("/broadcast/lobby?x=1").as_deref(), Some("lobby"));
        assert_eq!(room("/broadcast/a/b"), None);
        assert_eq!(status(&decide_raw(&upgrade_request("/nope", ""), &p)), 404);
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&decide_raw(&get("/"), &p)), 200);
        assert!(text(&decide_raw(&get("/"), &p)).contains("new WebSocket"));
        assert!(text(&decide_raw(&get("/healthz"), &p)).ends_with("\r\n\r\nok\n"));
        assert_eq!(status(&decide_raw(&get("/echo"), &p)), 400);
    }

    #[test]
    fn invalid_upgrades_get_4xx() {
        let p = Policy::default();
        let cases = [
            (upgrade_request("/echo", "").replace("GET", "POST"), 405),
            (
                upgrade_request("/echo", "").replace("HTTP/1.1", "HTTP/1.0"),
                400,
            ),
            (
                upgrade_request("/echo", "").replace("Upgrade: websocket", "Upgrade: h2c"),
                400,
            ),
            (
                upgrade_request("/echo", "").replace("keep-alive, Upgrade", "keep-alive"),
                400,
            ),
            (upgrade_request("/echo", "").replace(KEY, "c2hvcnQ="), 400),
            (upgrade_request("/echo", "").replace(KEY, "!!!"), 400),
            (
                upgrade_request("/echo", "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                400,
            ),
            (
                upgrade_request("/echo", &format!("Sec-WebSocket-Key: {KEY}\r\n")),
                400,
            ),
            (
                upgrade_request("/echo", "").replace("Version: 13", "Version: 8"),
                426,
            ),
        ];
        for (raw, want) in cases {
            let d = decide_raw(&raw, &p);
            assert_eq!(status(&d), want, "{raw}");
            if want == 426 {
                assert!(text(&d).contains("Sec-WebSocket-Version: 13\r\n"));
            }
        }
    }

    #[test]
    fn header_tokens_are_case_insensitive() {
        let raw = upgrade_request("/echo", "")
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: keep-alive, Upgrade", "connection: UPGRADE");
        assert_eq!(status(&decide_raw(&raw, &Policy::default())), 101);
    }

    #[test]
    fn origin_allow_list() {
        let p = Policy {
            allowed_origins: vec!["http://ok".into()],
            ..Policy::default()
        };
        assert_eq!(
            status(&decide_raw(
                &upgrade_request("/echo", "Origin: http://ok\r\n"),
                &p
            )),
            101
        );
        assert_eq!(
            status(&decide_raw(
                &upgrade_request("/echo", "Origin: http://evil\r\n"),
                &p
            )),
            403
        );
        assert_eq!(status(&decide_raw(&upgrade_request("/echo", ""), &p)), 403);
    }

    #[test]
    fn subprotocol_selection() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(select_protocol(&s(&[]), &s(&[])), None);
        assert_eq!(select_protocol(&s(&[]), &s(&["chat"])), None);
        assert_eq!(select_protocol(&s(&["chat", "v2"]), &s(&[])), Some("chat"));
        assert_eq!(
            select_protocol(&s(&["v1", "chat"]), &s(&["chat", "v1"])),
            Some("v1")
        );
        assert_eq!(select_protocol(&s(&["v1"]), &s(&["chat"])), None);

        let raw = upgrade_request("/echo", "Sec-WebSocket-Protocol: chat, superchat\r\n");
        assert!(text(&decide_raw(&raw, &Policy::default()))
            .contains("Sec-WebSocket-Protocol: chat\r\n"));
        let p = Policy {
            protocols: vec!["superchat".into()],
            ..Policy::default()
        };
        assert!(text(&decide_raw(&raw, &p)).contains("Sec-WebSocket-Protocol: superchat\r\n"));
        let p = Policy {
            protocols: vec!["mqtt".into()],
            ..Policy::default()
        };
        assert!(!text(&decide_raw(&raw, &p)).contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn oversized_and_garbage_requests() {
        let mut big = b"GET /echo HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST_HEAD + 10, b'a');
        assert_eq!(parse_request(&big), Err(ParseError::TooLarge));
        assert_eq!(ParseError::TooLarge.response().status, 431);
        assert_eq!(
            parse_request(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(ParseError::Malformed)
        );
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse_request(many.as_bytes()), Err(ParseError::TooLarge));
    }
}

//! Property tests of the HTTP side (`http::parse_request`, then `http::decide`) over random
//! bytes and over well-formed upgrade requests with random mutations: nothing panics, and
//! every complete request is answered with 101, a page (200) or a 4xx.

use corecast::internals::http::{self, Decision, Endpoint, Policy, MAX_REQUEST_HEAD};
use proptest::prelude::*;
use proptest::sample::Index;

/// Checks everything the server may do with `buf` as the bytes received so far.
fn check(buf: &[u8], policy: &Policy) -> Result<(), TestCaseError> {
    match http::parse_request(buf) {
        // Waiting for more is only allowed while the head may still fit.
        Ok(None) => prop_assert!(buf.len() <= MAX_REQUEST_HEAD, "{} bytes", buf.len()),
        Err(e) => {
            let status = e.response().status;
            prop_assert!(status == 400 || status == 431, "{status}");
        }
        Ok(Some((head, consumed))) => {
            prop_assert!(consumed <= buf.len() && consumed <= MAX_REQUEST_HEAD);
            // Split anywhere, the same bytes arrive in pieces: the server parses after every
            // read, and a prefix of a complete head is incomplete, never a different answer.
            for cut in [consumed / 3, consumed / 2, consumed - 1] {
                prop_assert_eq!(http::parse_request(&buf[..cut]), Ok(None), "cut at {}", cut);
            }
            match http::decide(&head, policy) {
                Decision::Upgrade { endpoint, response } => {
                    prop_assert_eq!(response.status, 101);
                    prop_assert_eq!(&head.method, "GET");
                    prop_assert!(head.key.len() == 1 && head.version == ["13"]);
                    let text = String::from_utf8(response.bytes.to_vec()).unwrap();
                    prop_assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
                    prop_assert!(text.contains("\r\nSec-WebSocket-Accept: "));
                    prop_assert!(text.ends_with("\r\n\r\n"));
                    if let Endpoint::Room(room) = endpoint {
                        prop_assert!(!room.contains('/'));
                    }
                }
                Decision::Respond(response) => {
                    let status = response.status;
                    let page = status == 200 && head.method == "GET";
                    prop_assert!(page || (400..500).contains(&status), "{status}");
                    let text = String::from_utf8_lossy(&response.bytes);
                    let status_line = format!("HTTP/1.1 {status} ");
                    prop_assert!(text.starts_with(&status_line));
                    prop_assert!(text.contains("\r\nConnection: close\r\n"));
                }
                Decision::Stats(_) => {
                    prop_assert_eq!(&head.method, "GET");
                    prop_assert!(
                        head.path.starts_with("/metrics") || head.path.starts_with("/stats.json")
                    );
                }
            }
        }
    }
    Ok(())
}

/// Mostly `valid`, sometimes one of `invalid`.
fn usually(valid: &'static str, invalid: Vec<&'static str>) -> BoxedStrategy<&'static str> {
    prop_oneof![5 => Just(valid), 1 => prop::sample::select(invalid)].boxed()
}

/// An optional header line, present with `value` drawn as by `usually`.
fn header(
    name: &'static str,
    valid: &'static str,
    invalid: Vec<&'static str>,
) -> impl Strategy<Value = String> {
    prop::option::weighted(0.9, usually(valid, invalid))
        .prop_map(move |v| v.map(|v| format!("{name}: {v}\r\n")).unwrap_or_default())
}

/// A well-formed upgrade request, or close to one: each part is usually valid and sometimes
/// one of the ways it goes wrong.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = usually("GET", vec!["POST", "HEAD", "get", "PUT", "OPTIONS"]);
    let path = prop_oneof![
        4 => prop::sample::select(vec![
            "/echo",
            "/broadcast",
            "/broadcast/",
            "/broadcast/lobby",
            "/echo?x=1",
        ]),
        1 => prop::sample::select(vec![
            "/broadcast/a/b",
            "/",
            "/healthz",
            "/index.html",
            "*",
            "/nowhere",
        ]),
    ]
    .prop_map(String::from);
    let path = prop_oneof![5 => path, 1 => "/[a-z/%?=.]{0,40}"];
    let version = usually("HTTP/1.1", vec!["HTTP/1.0", "HTTP/2.0", "HTTP/1.9"]);
    let headers = (
        header(
            "Upgrade",
            "websocket",
            vec!["WebSocket", "h2c", "websocket, foo"],
        ),
        header(
            "Connection",
            "Upgrade",
            vec!["keep-alive, Upgrade", "upgrade", "close"],
        ),
        header(
            "Sec-WebSocket-Key",
            "dGhlIHNhbXBsZSBub25jZQ==",
            vec!["c2hvcnQ=", "", "!!!", "AAAAAAAAAAAAAAAAAAAAAA=="],
        ),
        header("Sec-WebSocket-Version", "13", vec!["8", "13, 8", "", "x"]),
        prop::option::of(prop::sample::select(vec!["chat", "chat, superchat", ""])).prop_map(|p| {
            p.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
                .unwrap_or_default()
        }),
        prop::option::of(prop::sample::select(vec![
            "http://good.example",
            "http://evil.example",
        ]))
        .prop_map(|o| o.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default()),
        prop::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,30}\r\n", 0..6),
    );
    (method, path, version, headers).prop_map(
        |(
            method,
            path,
            version,
            (upgrade, connection, key, ws_version, protocol, origin, extra),
        )| {
            let mut lines = vec![upgrade, connection, key, ws_version, protocol, origin];
            lines.extend(extra);
            format!(
                "{method} {path} {version}\r\nHost: localhost\r\n{}\r\n",
                lines.concat()
            )
            .into_bytes()
        },
    )
}

/// One edit of a request's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    Duplicate(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    if buf.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let i = i.index(buf.len());
            buf[i] ^= b;
        }
        Mutation::Insert(i, b) => buf.insert(i.index(buf.len() + 1), *b),
        Mutation::Delete(i) => {
            buf.remove(i.index(buf.len()));
        }
        Mutation::Truncate(i) => buf.truncate(i.index(buf.len())),
        Mutation::Duplicate(a, b) => {
            let (a, b) = (a.index(buf.len()), b.index(buf.len()));
            let piece = buf[a.min(b)..a.max(b)].to_vec();
            buf.splice(a.max(b)..a.max(b), piece);
        }
    }
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::subsequence(vec!["chat".to_string(), "superchat".to_string()], 0..=2),
        prop::sample::subsequence(vec!["http://good.example".to_string()], 0..=1),
    )
        .prop_map(|(protocols, allowed_origins)| Policy {
            protocols,
            allowed_origins,
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..12 * 1024),
                                policy in policy()) {
        check(&buf, &policy)?;
    }

    #[test]
    fn generated_requests_get_101_or_an_answer(buf in request(), policy in policy()) {
        check(&buf, &policy)?;
    }

    #[test]
    fn mutated_requests_never_panic(buf in request(),
                                    mutations in prop::collection::vec(mutation(), 1..8),
                                    trailing in prop::collection::vec(any::<u8>(), 0..64),
                                    policy in policy()) {
        let mut buf = buf;
        for m in &mutations {
            apply(&mut buf, m);
        }
        buf.extend_from_slice(&trailing); // frames may follow the head in the same read
        check(&buf, &policy)?;
    }

    #[test]
    fn oversized_heads_get_431(buf in request(), filler in 1usize..4 * MAX_REQUEST_HEAD) {
        // A header padded past the limit, complete or not: 431 either way.
        prop_assume!(http::parse_request(&buf).is_ok());
        let mut big = buf;
        let end = big.len() - 2;
        let header = format!("X-Filler: {}\r\n", "f".repeat(MAX_REQUEST_HEAD + filler % 4096));
        big.splice(end..end, header.into_bytes());
        prop_assert_eq!(http::parse_request(&big).map(|_| ()), Err(http::ParseError::TooLarge));
        prop_assert_eq!(http::parse_request(&big[..end + MAX_REQUEST_HEAD]).map(|_| ()),
                        Err(http::ParseError::TooLarge));
    }
}

/// The generator is not vacuous: it produces upgrades, pages and rejections.
#[test]
fn generator_covers_every_kind_of_answer() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut upgrades, mut pages, mut rejections) = (0, 0, 0);
    for _ in 0..500 {
        let buf = request().new_tree(&mut runner).unwrap().current();
        let Ok(Some((head, _))) = http::parse_request(&buf) else {
            rejections += 1; // HTTP/2.0: malformed for an HTTP/1.1 parser
            continue;
        };
        match http::decide(&head, &Policy::default()) {
            Decision::Upgrade { .. } => upgrades += 1,
            Decision::Respond(r) if r.status == 200 => pages += 1,
            Decision::Stats(_) => pages += 1,
            Decision::Respond(_) => rejections += 1,
        }
    }
    assert!(
        upgrades > 25 && pages > 0 && rejections > 25,
        "{upgrades} upgrades, {pages} pages, {rejections} rejections"
    );
}

//! Browser-style clients: the WHATWG WebSocket API (Node's built-in client, which follows the
//! same handshake rules as browsers: subprotocol checks, clean close) against a real server.
//! Node 20 is part of every machine this project builds on; without it this test fails.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_whatwg_websocket_api_works_against_the_server() {
    let server = start(config());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webapi/client.mjs");
    let out = Command::new("node")
        .args(["--experimental-websocket", "--no-warnings", script])
        .arg(format!("ws://{}", server.local_addr()))
        .output()
        .expect("node (20 or later) must be installed to run the browser-API test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "WHATWG WebSocket checks failed:\n{stdout}"
    );
    assert!(stdout.contains("webapi: 7 passed, 0 failed"), "{stdout}");
}

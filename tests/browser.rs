//! A real browser against a real server: headless Chromium loads the demo page in self-test
//! mode, which checks with the browser's own WebSocket: subprotocol negotiation, text and
//! binary echo, a broadcast room, a clean close; and through the page's own code: the
//! readyState history CONNECTING → OPEN → CLOSING → CLOSED, bufferedAmount rising during a
//! burst and draining, the Close button's code and reason coming back in a clean close event,
//! the error and 1006 close of a refused upgrade, and the live server stats from /stats.json.
//! It then reports to a room this test listens on. It runs twice: over ws:// and http://,
//! and over wss:// and https:// (TLS with a certificate made in the test, which this browser
//! alone trusts through `--ignore-certificate-errors-spki-list`).
//!
//! Needs Chromium (`apt-get install chromium`), so it is `#[ignore]`d in the plain test run
//! and run by `.ci/run` (which installs Chromium) with `--ignored`.

mod common;

use std::process::{Child, Command, Stdio};

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine as _;
use common::tls::{wss_connect, TestCert};
use common::*;
use tungstenite::{Message, WebSocket};

/// Kills the browser however the test ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs Chromium; run by .ci/run with --ignored"]
fn chromium_passes_the_demo_page_self_test() {
    let server = start(config());
    let addr = server.local_addr();
    let room = format!("selftest-{}", std::process::id());
    let mut report = connect(addr, &format!("/broadcast/{room}"));
    report
        .get_mut()
        .set_read_timeout(Some(REPORT_WITHIN))
        .unwrap();
    let summary = run_self_test(&format!("http://{addr}/?selftest={room}"), &[], &mut report);
    check(&summary);
}

#[test]
#[ignore = "needs Chromium; run by .ci/run with --ignored"]
fn chromium_passes_the_demo_page_self_test_over_wss() {
    let cert = TestCert::new("browser");
    let server = start(cert.config());
    let addr = server.local_addr();
    let room = format!("selftest-tls-{}", std::process::id());
    let mut report = wss_connect(addr, &format!("/broadcast/{room}"), &cert.der);
    report
        .get_mut()
        .sock
        .set_read_timeout(Some(REPORT_WITHIN))
        .unwrap();
    // This browser trusts exactly this certificate's key, and nothing else is relaxed.
    let spki_hash = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, &cert.spki));
    let trust = format!("--ignore-certificate-errors-spki-list={spki_hash}");
    let summary = run_self_test(
        &format!("https://localhost:{}/?selftest={room}", addr.port()),
        &[&trust],
        &mut report,
    );
    check(&summary);
    assert!(
        total(&server, |c| c.tls_handshakes) > 0,
        "the page came over TLS"
    );
}

/// How long the page gets to report.
const REPORT_WITHIN: Duration = Duration::from_secs(60);

/// Opens `url` in headless Chromium and returns the self-test's report from `report`.
fn run_self_test<S: Read + Write>(url: &str, extra: &[&str], report: &mut WebSocket<S>) -> String {
    let profile = std::env::temp_dir().join(format!(
        "corecast-chromium-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {chromium} (apt-get install chromium): {e}"));
    let browser = Browser(child);
    let summary = match report.read().expect("the page's report within 60 s") {
        Message::Text(t) => t.to_string(),
        other => panic!("unexpected {other:?}"),
    };
    drop(browser);
    let _ = std::fs::remove_dir_all(profile);
    println!("{summary}");
    summary
}

fn check(summary: &str) {
    assert!(
        summary.starts_with("selftest: 10 passed, 0 failed"),
        "{summary}"
    );
    for check in [
        "readyState",
        "bufferedAmount",
        "close button",
        "error event",
        "live stats",
    ] {
        assert!(summary.contains(&format!("ok {check}")), "{summary}");
    }
}

//! A real browser against a real server: headless Chromium loads the demo page in self-test
//! mode, which checks with the browser's own WebSocket: subprotocol negotiation, text and
//! binary echo, a broadcast room, a clean close; and through the page's own code: the
//! readyState history CONNECTING → OPEN → CLOSING → CLOSED, bufferedAmount rising during a
//! burst and draining, the Close button's code and reason coming back in a clean close event,
//! the error and 1006 close of a refused upgrade, and the live server stats from /stats.json.
//! It then reports to a room this test listens on.
//!
//! Needs Chromium (`apt-get install chromium`), so it is `#[ignore]`d in the plain test run
//! and run by `.ci/run` (which installs Chromium) with `--ignored`.

mod common;

use std::process::{Child, Command, Stdio};

use common::*;
use tungstenite::Message;

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
    let profile = std::env::temp_dir().join(format!("corecast-chromium-{}", std::process::id()));
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
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{addr}/?selftest={room}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {chromium} (apt-get install chromium): {e}"));
    let _browser = Browser(child);
    report
        .get_mut()
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let summary = match report.read().expect("the page's report within 60 s") {
        Message::Text(t) => t.to_string(),
        other => panic!("unexpected {other:?}"),
    };
    println!("{summary}");
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
    let _ = std::fs::remove_dir_all(profile);
}

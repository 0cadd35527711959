//! Open- and closed-loop echo runs against an in-process corecast: every message sent comes
//! back exactly once, in order, and the schedule sends exactly rate × duration messages.

mod common;

use std::time::Duration;

use common::{corecast, loadgen, url};

#[test]
fn open_loop_echo_sends_the_schedule_and_loses_nothing() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let run = loadgen(
        &[
            "--url",
            &target,
            "--conns",
            "50",
            "--threads",
            "2",
            "--rate",
            "500",
            "--duration",
            "2s",
            "--size",
            "100",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.num("/connections/established"), 50);
    assert_eq!(run.num("/messages/sent"), 1000, "rate 500/s for 2 s");
    assert_eq!(run.num("/messages/received"), 1000);
    for field in ["lost", "unsent", "duplicates", "out_of_order", "corrupt"] {
        assert_eq!(run.num(&format!("/messages/{field}")), 0, "{field}");
    }
    assert_eq!(run.num("/latency_us/count"), 1000);
    assert_eq!(run.report()["loop"], "open");
    assert!(run.stdout.contains("result        OK"), "{}", run.stdout);
    server.shutdown();
}

#[test]
fn closed_loop_echo_keeps_inflight_messages_and_loses_nothing() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let run = loadgen(
        &[
            "--url",
            &target,
            "--conns",
            "10",
            "--threads",
            "1",
            "--rate",
            "max",
            "--inflight",
            "3",
            "--duration",
            "1s",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let sent = run.num("/messages/sent");
    assert!(sent >= 30, "at least the first window goes out: {sent}");
    assert_eq!(run.num("/messages/received"), sent);
    assert_eq!(run.num("/messages/lost"), 0);
    assert_eq!(run.report()["loop"], "closed");
    assert!(run.stdout.contains("closed loop"), "{}", run.stdout);
    server.shutdown();
}

#[test]
fn warmup_is_sent_but_left_out_of_the_histogram() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let run = loadgen(
        &[
            "--url",
            &target,
            "--conns",
            "4",
            "--threads",
            "1",
            "--rate",
            "200",
            "--warmup",
            "1s",
            "--duration",
            "1s",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.num("/messages/sent"), 400);
    assert_eq!(run.num("/messages/received"), 400);
    assert_eq!(run.num("/latency_us/count"), 200);
    server.shutdown();
}

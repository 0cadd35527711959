//! Open- and closed-loop echo runs against an in-process corecast: every message sent comes
//! back exactly once, in order, and the schedule sends exactly rate × duration messages.

mod common;

use common::{corecast, loadgen, url, LIMIT};

#[test]
fn open_loop_echo_sends_the_schedule_and_loses_nothing() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let run = loadgen(
        &format!("--url {target} --conns 50 --threads 2 --rate 500 --duration 2s --size 100"),
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.expect("/connections/established", 50);
    run.expect("/messages/sent", 1000);
    run.expect("/messages/received", 1000);
    for field in ["lost", "unsent", "duplicates", "out_of_order", "corrupt"] {
        run.expect(&format!("/messages/{field}"), 0);
    }
    run.expect("/latency_us/count", 1000);
    assert_eq!(run.report()["loop"], "open");
    assert!(run.stdout.contains("result        OK"), "{}", run.stdout);
    server.shutdown();
}

#[test]
fn closed_loop_echo_keeps_inflight_messages_and_loses_nothing() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let args =
        format!("--url {target} --conns 10 --threads 1 --rate max --inflight 3 --duration 1s");
    let run = loadgen(&args, LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let sent = run.num("/messages/sent");
    assert!(sent >= 30, "at least the first window goes out: {sent}");
    run.expect("/messages/received", sent);
    run.expect("/messages/lost", 0);
    assert_eq!(run.report()["loop"], "closed");
    assert!(run.stdout.contains("closed loop"), "{}", run.stdout);
    server.shutdown();
}

#[test]
fn warmup_is_sent_but_left_out_of_the_histogram() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let args = format!("--url {target} --conns 4 --threads 1 --rate 200 --warmup 1s --duration 1s");
    let run = loadgen(&args, LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.expect("/messages/sent", 400);
    run.expect("/messages/received", 400);
    run.expect("/latency_us/count", 200);
    server.shutdown();
}

#[test]
fn busy_poll_never_sleeps_during_the_traffic_and_loses_nothing() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let args = format!("--url {target} --conns 20 --threads 1 --rate 200 --duration 1s");
    let sleeping = loadgen(&args, LIMIT);
    let busy = loadgen(&format!("{args} --busy-poll"), LIMIT);
    for run in [&sleeping, &busy] {
        assert_eq!(run.code, Some(0), "{}", run.dump());
        run.expect("/messages/sent", 200);
        run.expect("/messages/received", 200);
        run.expect("/messages/lost", 0);
    }
    assert_eq!(sleeping.report()["busy_poll"], false);
    assert_eq!(busy.report()["busy_poll"], true);
    // Without busy-polling the worker sleeps between sends 5 ms apart.
    assert!(
        sleeping.num("/traffic_sleeps") >= 100,
        "{}",
        sleeping.dump()
    );
    busy.expect("/traffic_sleeps", 0);
    assert!(busy.stdout.contains("(busy-polling)"), "{}", busy.stdout);
    server.shutdown();
}

#[test]
fn pipelined_and_large_messages_all_come_back() {
    // Replies that arrive back to back, and frames larger than any read buffer, exercise the
    // skipped WouldBlock read: a lost readiness edge would leave replies unread and lost.
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    for (size, inflight) in [(16, 4), (100, 16), (70_000, 4), (5_000, 8)] {
        let args = format!(
            "--url {target} --conns 6 --threads 1 --rate max --inflight {inflight} --size {size} --duration 1s"
        );
        let run = loadgen(&args, LIMIT);
        assert_eq!(run.code, Some(0), "{}", run.dump());
        let sent = run.num("/messages/sent");
        assert!(sent >= 6 * inflight, "size {size}: only {sent} sent");
        run.expect("/messages/received", sent);
        for field in ["lost", "duplicates", "out_of_order", "corrupt"] {
            run.expect(&format!("/messages/{field}"), 0);
        }
    }
    server.shutdown();
}

#[test]
fn rate_zero_holds_every_connection_and_sends_nothing() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let run = loadgen(
        &format!("--url {target} --conns 40 --threads 2 --rate 0 --duration 1s"),
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.expect("/connections/established", 40);
    run.expect("/connections/held", 40);
    assert_eq!(run.report()["idle"], true);
    for field in ["sent", "received", "lost", "unsent", "corrupt"] {
        run.expect(&format!("/messages/{field}"), 0);
    }
    run.expect("/latency_us/count", 0);
    assert!(run.report()["connections"]["dropped"]
        .as_object()
        .unwrap()
        .is_empty());
    assert!(
        run.stdout.contains("40 of 40 established connections held"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("\nlatency "), "{}", run.stdout);
    // The server saw the connections and no message (its counters are published per tick).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let total = |f: fn(&corecast::Counters) -> u64| server.stats().iter().map(f).sum::<u64>();
    while total(|c| c.handshakes) < 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(total(|c| c.handshakes), 40);
    assert_eq!(total(|c| c.msgs_in), 0);
    server.shutdown();
}

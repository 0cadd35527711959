//! Broadcast runs against an in-process corecast: every publish reaches every member of its
//! room exactly once and in publisher order.

mod common;

use std::time::Duration;

use common::{corecast, loadgen, url};

#[test]
fn one_room_every_member_gets_every_publish() {
    let server = corecast();
    let room = url(server.local_addr(), "/broadcast/lobby");
    let run = loadgen(
        &[
            "--mode",
            "broadcast",
            "--url",
            &room,
            "--conns",
            "20",
            "--publishers",
            "2",
            "--threads",
            "2",
            "--rate",
            "100",
            "--duration",
            "2s",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.num("/messages/sent"), 200);
    assert_eq!(run.num("/messages/expected"), 200 * 20);
    assert_eq!(run.num("/messages/received"), 200 * 20);
    for field in ["lost", "duplicates", "out_of_order", "corrupt"] {
        assert_eq!(run.num(&format!("/messages/{field}")), 0, "{field}");
    }
    let publishers = run.report()["publishers"].as_array().unwrap();
    assert_eq!(publishers.len(), 2);
    for p in publishers {
        assert_eq!(p["sent"], 100);
        assert_eq!(p["delivered"], 100 * 20);
        assert_eq!(p["missing"], 0);
    }
    server.shutdown();
}

#[test]
fn two_rooms_stay_separate() {
    let server = corecast();
    let a = url(server.local_addr(), "/broadcast/a");
    let b = url(server.local_addr(), "/broadcast/b");
    // Connections alternate rooms: 0, 2, 4 in a, 1, 3, 5 in b; publishers 0 and 1, one per room.
    let run = loadgen(
        &[
            "--mode",
            "broadcast",
            "--url",
            &a,
            "--url",
            &b,
            "--conns",
            "6",
            "--publishers",
            "2",
            "--threads",
            "1",
            "--rate",
            "40",
            "--duration",
            "1s",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.num("/messages/sent"), 40);
    assert_eq!(run.num("/messages/received"), 40 * 3);
    assert_eq!(run.num("/messages/lost"), 0);
    server.shutdown();
}

//! Broadcast runs against an in-process corecast: every publish reaches every member of its
//! room exactly once and in publisher order.

mod common;

use common::{corecast, loadgen, url, LIMIT};

#[test]
fn one_room_every_member_gets_every_publish() {
    let server = corecast();
    let room = url(server.local_addr(), "/broadcast/lobby");
    let run = loadgen(
        &format!(
            "--mode broadcast --url {room} --conns 20 --publishers 2 --threads 2 --rate 100 \
             --duration 2s"
        ),
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.expect("/messages/sent", 200);
    run.expect("/messages/expected", 200 * 20);
    run.expect("/messages/received", 200 * 20);
    // Every delivery falls in the measured window, whichever worker published it.
    run.expect("/latency_us/count", 200 * 20);
    for field in ["lost", "duplicates", "out_of_order", "corrupt"] {
        run.expect(&format!("/messages/{field}"), 0);
    }
    for p in 0..2 {
        run.expect(&format!("/publishers/{p}/sent"), 100);
        run.expect(&format!("/publishers/{p}/delivered"), 100 * 20);
        run.expect(&format!("/publishers/{p}/missing"), 0);
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
        &format!(
            "--mode broadcast --url {a} --url {b} --conns 6 --publishers 2 --threads 1 \
             --rate 40 --duration 1s"
        ),
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.expect("/messages/sent", 40);
    run.expect("/messages/received", 40 * 3);
    run.expect("/messages/lost", 0);
    server.shutdown();
}

//! Proof of open-loop measurement: a server that stops reading for one second must show that
//! second in the latency tail. A closed-loop or send-time-stamped generator would hide it
//! (coordinated omission): it would simply not send while the server stalls.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{loadgen, url, LIMIT};

/// How long the server stops reading.
const PAUSE: Duration = Duration::from_secs(1);

/// An echo server (blocking tungstenite, one thread per connection) that, once, stops reading
/// for `PAUSE` half a second after the first message arrives.
fn pausing_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let paused = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let paused = Arc::clone(&paused);
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                let mut first: Option<Instant> = None;
                while let Ok(msg) = ws.read() {
                    if !(msg.is_binary() || msg.is_text()) {
                        continue;
                    }
                    let first = *first.get_or_insert_with(Instant::now);
                    if first.elapsed() > Duration::from_millis(500)
                        && !paused.swap(true, Ordering::SeqCst)
                    {
                        std::thread::sleep(PAUSE);
                    }
                    if ws.send(msg).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_one_second_stall_appears_in_the_tail_latency() {
    let addr = pausing_echo_server();
    let run = loadgen(
        &format!(
            "--url {} --conns 1 --threads 1 --rate 200 --duration 3s",
            url(addr, "/echo")
        ),
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.expect("/messages/sent", 600);
    run.expect("/messages/received", 600);
    // Messages scheduled during the stall waited for it: the worst waited nearly all of it.
    let (p999, max) = (run.num("/latency_us/p99_9"), run.num("/latency_us/max"));
    assert!(
        max >= 900_000,
        "max {max} µs should include the 1 s stall\n{}",
        run.dump()
    );
    assert!(
        p999 >= 900_000,
        "p99.9 {p999} µs should include the 1 s stall\n{}",
        run.dump()
    );
    // About a third of the messages were scheduled during the stall, so even p90 sees it,
    // while the median (outside the stall) does not.
    assert!(run.num("/latency_us/p90") >= 300_000, "{}", run.dump());
    assert!(run.num("/latency_us/p50") < 500_000, "{}", run.dump());
}

//! A server at capacity answers 503: the report says so in one line with what to do, every
//! attempt is accounted for, the ramp figures describe the connections made, and the run fails.

mod common;

use common::{corecast_with_capacity, loadgen, url, LIMIT};

/// Connections the server admits before it answers 503.
const CAPACITY: usize = 20;

#[test]
fn a_full_server_is_reported_in_one_line_and_every_attempt_is_counted() {
    let server = corecast_with_capacity(CAPACITY);
    let run = loadgen(
        &format!(
            "--url {} --conns {} --duration 1s --rate 10",
            url(server.local_addr(), "/echo"),
            2 * CAPACITY
        ),
        LIMIT,
    );
    assert_eq!(run.code, Some(1), "{}", run.dump());

    // attempted = established + failed + abandoned, in the JSON and in the table.
    let attempted = run.num("/connections/attempted");
    let established = run.num("/connections/established");
    let failed = run.num("/connections/failed_total");
    let abandoned = run.num("/connections/abandoned");
    assert_eq!(
        attempted,
        established + failed + abandoned,
        "{}",
        run.dump()
    );
    let refused = run.num("/connections/failed/http 503");
    assert!(refused > 0, "{}", run.dump());
    // loadgen's reachability probe may briefly hold one of the server's slots.
    assert!(
        (CAPACITY as u64 - 1..=CAPACITY as u64).contains(&established),
        "{}",
        run.dump()
    );
    let counts = format!(
        "attempted {attempted}  established {established}  failed {failed} (http 503: {refused})  \
         abandoned {abandoned}"
    );
    assert!(run.stdout.contains(&counts), "{counts:?}\n{}", run.dump());

    // One line says the server is full, how full, and what to do.
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("server full"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.dump());
    let line = lines[0];
    for part in [
        &format!("{refused} attempts answered 503"),
        &format!("loadgen held {established} connections (about the server's capacity)"),
        "open-files limit",
        "SO_REUSEPORT",
        "README.md#operating-it",
    ] {
        assert!(line.contains(part), "{part:?} in {line:?}");
    }
    assert_eq!(
        run.report()["at_capacity"].as_str(),
        line.strip_prefix("capacity").map(str::trim),
        "{}",
        run.dump()
    );

    // The ramp lasted until the run stopped and its rate counts the connections made.
    let ramp_s = run.report()["connections"]["ramp_s"].as_f64().unwrap();
    let rate = run.report()["connections"]["connect_rate"]
        .as_f64()
        .unwrap();
    assert!(ramp_s > 0.0, "{}", run.dump());
    assert!(
        (rate * ramp_s - established as f64).abs() < 1e-6 * established as f64,
        "{}",
        run.dump()
    );
    server.shutdown();
}

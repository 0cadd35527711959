//! Sharding: with a (hidden) cap of 300 connections per process, 1000 connections run in four
//! child processes; the parent's merged report must count exactly what one process would.

mod common;

use std::time::Duration;

use common::{corecast, loadgen, temp_file, url};

#[test]
fn four_processes_merge_to_exact_counts() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let hgrm = temp_file("sharded.hgrm");
    let run = loadgen(
        &[
            "--url",
            &target,
            "--conns",
            "1000",
            "--max-conns-per-process",
            "300",
            "--threads",
            "1",
            "--rate",
            "1000",
            "--duration",
            "2s",
            "--hgrm",
            hgrm.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.num("/processes"), 4);
    assert_eq!(run.num("/connections/attempted"), 1000);
    assert_eq!(run.num("/connections/established"), 1000);
    assert_eq!(
        run.num("/connect_us/count"),
        1000,
        "connect histograms merged"
    );
    assert_eq!(
        run.num("/messages/sent"),
        2000,
        "rate 1000/s for 2 s across all shards"
    );
    assert_eq!(run.num("/messages/received"), 2000);
    assert_eq!(run.num("/messages/lost"), 0);
    assert_eq!(
        run.num("/latency_us/count"),
        2000,
        "latency histograms merged"
    );

    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(text.contains("Total count    =         2000]"), "{text}");
    server.shutdown();
}

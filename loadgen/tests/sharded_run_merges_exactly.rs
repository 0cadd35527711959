//! Sharding: with a (hidden) cap of 300 connections per process, 1000 connections run in four
//! child processes; the parent's merged report (table, JSON, .hgrm, plot) must count exactly
//! what one process would.

mod common;

use common::{corecast, loadgen, temp_file, url, LIMIT};

#[test]
fn four_processes_merge_to_exact_counts() {
    let server = corecast();
    let target = url(server.local_addr(), "/echo");
    let hgrm = temp_file("sharded.hgrm");
    let plot = temp_file("sharded.svg");
    let run = loadgen(
        &format!(
            "--url {target} --conns 1000 --max-conns-per-process 300 --threads 1 --rate 1000 \
             --duration 2s --hgrm {} --plot {}",
            hgrm.display(),
            plot.display()
        ),
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.expect("/processes", 4);
    run.expect("/connections/attempted", 1000);
    run.expect("/connections/established", 1000);
    run.expect("/connect_us/count", 1000);
    run.expect("/messages/sent", 2000);
    run.expect("/messages/received", 2000);
    run.expect("/messages/lost", 0);
    run.expect("/latency_us/count", 2000);

    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(text.contains("Total count    =         2000]"), "{text}");
    // The plot draws the merged histogram: one line, all samples.
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
    assert!(svg.contains(&format!("{target} (2000 samples)")), "{svg}");
    let _ = std::fs::remove_file(&plot);
    server.shutdown();
}

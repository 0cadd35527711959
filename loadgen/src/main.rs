//! The `loadgen` binary: parse the command line, run (alone or sharded), print the report.
//! Exit status: 0 clean run, 1 anything lost or failed, 2 bad input.

use std::io::IsTerminal;
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use loadgen::cli::Args;
use loadgen::plan::{Plan, ShardId};
use loadgen::plot::{self, Series};
use loadgen::progress::Progress;
use loadgen::report::{write_hgrm, Report};
use loadgen::{engine, shard};

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<u8> {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if e.use_stderr() => {
            // One line, not clap's usage block.
            let text = e.render().to_string();
            eprintln!(
                "loadgen: {}",
                text.lines().next().unwrap_or("invalid arguments")
            );
            return Ok(2);
        }
        Err(e) => {
            e.print()?;
            return Ok(0);
        }
    };
    let nofile = oskit::nofile::raise_nofile_limit().context("raising the open-files limit")?;
    let plan = match args.into_plan(nofile) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return Ok(2);
        }
    };
    if let Some(shard) = plan.shard {
        shard::run_child(Arc::new(plan), shard)?;
        return Ok(0);
    }
    if let Err(e) = preflight(&plan) {
        eprintln!("loadgen: {e}");
        return Ok(2);
    }
    let mut progress = Progress::new(
        plan.conns,
        std::io::stdout().is_terminal(),
        plan.progress_interval,
    );
    let stats = if plan.shard_count() > 1 {
        shard::run_parent(&plan, &mut progress)?
    } else {
        engine::run_process(Arc::new(plan.clone()), ShardId::SOLE, &mut progress)?
    };
    progress.finish();
    let report = Report::new(&plan, &stats);
    print!("{}", report.table());
    if let Some(path) = &plan.json {
        report
            .write_json(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &plan.hgrm {
        let mut file = std::fs::File::create(path)
            .and_then(|mut f| write_hgrm(&stats.latency, &mut f).map(|()| f))
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::flush(&mut file)?;
    }
    if let Some(path) = &plan.plot {
        let line = Series::of(report.urls.join(" "), &stats.latency);
        std::fs::write(path, plot::svg(&report.headline(), &[line]))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.exit_code() as u8)
}

/// Fails fast with one line when a target does not accept TCP connections at all.
fn preflight(plan: &Plan) -> anyhow::Result<()> {
    let timeout = plan.connect_timeout.min(Duration::from_secs(5));
    for target in &plan.targets {
        TcpStream::connect_timeout(&target.addr, timeout)
            .with_context(|| format!("cannot reach {} ({})", target.url, target.addr))?;
    }
    Ok(())
}

//! The `corecast` binary: parse the command line, set up logging, run until a signal.

use std::process::ExitCode;

use clap::Parser as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

mod cli;

use cli::{Args, LogFormat};
use corecast::Server;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if e.use_stderr() => {
            // One line, not clap's usage block: the first paragraph says what was wrong (a
            // missing argument is named on the line after "not provided:").
            let rendered = e.render().to_string();
            let first: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|line| !line.is_empty())
                .collect();
            let what = if first.is_empty() {
                "invalid arguments".to_string()
            } else {
                first.join(" ")
            };
            eprintln!("corecast: {}", what.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false);
    match args.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Event fields at the top level of each object, where log shippers look for them.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corecast: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(args.into_config()) {
        Ok(server) => server,
        Err(e @ (corecast::Error::Config(_) | corecast::Error::Tls(_))) => {
            eprintln!("corecast: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("corecast: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stopper = server.stopper();
    let reloader = server.tls_reloader();
    std::thread::spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            if signal == SIGHUP {
                match &reloader {
                    // The outcome is logged either way; a bad certificate leaves the old one.
                    Some(reloader) => {
                        let _ = reloader.reload();
                    }
                    None => tracing::info!("SIGHUP: nothing to reload (no --tls-cert)"),
                }
                continue;
            }
            seen += 1;
            if seen == 1 {
                tracing::info!(signal, "shutting down (a second signal exits at once)");
                stopper.stop();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
    let total = server.wait();
    tracing::info!(
        accepted = total.accepted,
        handshakes = total.handshakes,
        msgs_in = total.msgs_in,
        msgs_out = total.msgs_out,
        slow_consumers = total.slow_consumers,
        timeouts = total.timeouts,
        protocol_errors = total.protocol_errors,
        panics = total.panics,
        "stopped"
    );
    ExitCode::SUCCESS
}

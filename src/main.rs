//! The `restyle` binary: parse the command line, set up logs, dispatch to [`restyle::cli`].

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = restyle::cli::Cli::parse();
    // The demo draws a progress bar: keep its logs to warnings unless RUST_LOG says more.
    let default_filter = match cli.command {
        restyle::cli::Command::Demo { .. } => "warn",
        _ => "info",
    };
    restyle::telemetry::init(cli.log_format, default_filter);
    match restyle::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

//! `berth-agent`: runs on each host of an application group, polls for release work, pulls
//! the image, runs the stop then the start script, and reports. The work loop arrives with
//! the releases issue; until then the binary only says so.

use std::process::ExitCode;

use clap::Parser;

/// The host agent of Berth releases.
#[derive(Parser)]
#[command(name = "berth-agent", version)]
struct Args {
    /// Berth's base URL.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:8080")]
    berth_url: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    eprintln!("berth-agent: releases are not available yet in this build (Berth at {})", args.berth_url);
    ExitCode::from(2)
}

//! `berth-agent`: runs on each host of an application group. Registers with the group's join
//! token, long-polls Berth for work, pulls the image through the Docker engine with the job's
//! pull key, runs the stop then the start script with bash, and reports.

mod run;

use std::process::ExitCode;

use clap::Parser;

/// The host agent of Berth releases.
#[derive(Parser)]
#[command(name = "berth-agent", version)]
struct Args {
    /// Berth's base URL.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:8080")]
    berth_url: String,
    /// The group's join token (from `POST /v1/applications/{app}/groups`).
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    join_token: String,
    /// This host's id in the group (lowercase letters, digits, '.', '_', '-').
    #[arg(long, env = "BERTH_HOST_ID")]
    host_id: String,
    /// How long each poll is held by Berth, in seconds (1 to 30).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=30))]
    poll_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let agent = run::Agent::new(&args.berth_url, &args.join_token, &args.host_id, args.poll_seconds);
    agent.run().await
}

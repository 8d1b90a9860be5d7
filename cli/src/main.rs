//! `berth`: the provider CLI and `berth serve`, every function in one process.

mod keys;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "Ship private container images to your customers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every function in one process: local store, in-process queue.
    Serve {
        /// Directory for the store, keys and queued events.
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "BERTH_LISTEN", default_value = berth_shared::config::DEFAULT_LISTEN)]
        listen: String,
    },
    /// Print an account token for local use, signed with the data directory's dev key.
    DevToken {
        /// The account ID (also its registry namespace).
        #[arg(long)]
        account: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_seconds: u64,
        /// The data directory `berth serve` uses.
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
        data_dir: PathBuf,
    },
    /// Manage the keys that sign temporary keys and registry tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new P-256 signing key and a self-signed certificate for the registry's
    /// `rootcertbundle` (kept if already there).
    Generate {
        /// Directory for signing.key.pem and signing.crt.pem.
        #[arg(long, default_value = "berth-data/keys")]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { data_dir, listen } => serve::run(data_dir, listen).await,
        Command::DevToken { account, ttl_seconds, data_dir } => keys::print_dev_token(&account, ttl_seconds, &data_dir),
        Command::Keys { command: KeysCommand::Generate { out } } => keys::print_generated(&out),
    }
}

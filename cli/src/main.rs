//! `berth`: the provider CLI and `berth serve`, every function in one process.

mod client;
mod credentials;
mod keys;
mod registry;
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
    /// Get a temporary registry key for your namespace.
    Credentials {
        /// `push` (providers: push and pull) or `pull` (deployments: pull only).
        #[arg(value_parser = ["push", "pull"])]
        purpose: String,
        /// Limit the key to these repositories (relative to your namespace).
        #[arg(long, value_delimiter = ',')]
        repositories: Vec<String>,
        /// Key lifetime in seconds (60..=43200, default 3600).
        #[arg(long)]
        ttl_seconds: Option<u64>,
        /// Write the key into DIR/config.json (a docker config directory) instead of printing it.
        #[arg(long, value_name = "DIR")]
        write_docker_config: Option<PathBuf>,
        #[command(flatten)]
        api: Api,
    },
    /// Print a distribution (docker-registry) config that uses Berth as its token server.
    RegistryConfig {
        /// Where the registry listens.
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: String,
        /// Berth's URL as the registry's clients reach it.
        #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:8080")]
        berth_url: String,
        /// Directory for the registry's storage.
        #[arg(long, default_value = "berth-data/registry")]
        storage: PathBuf,
        /// The data directory `berth serve` uses (for its signing certificate).
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

/// Where Berth is and who calls it.
#[derive(clap::Args)]
struct Api {
    /// Berth's base URL.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Your account token (`berth dev-token` makes one for local use).
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the full answer as JSON.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    output: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { data_dir, listen } => serve::run(data_dir, listen).await,
        Command::DevToken { account, ttl_seconds, data_dir } => keys::print_dev_token(&account, ttl_seconds, &data_dir),
        Command::Keys { command: KeysCommand::Generate { out } } => keys::print_generated(&out),
        Command::Credentials { purpose, repositories, ttl_seconds, write_docker_config, api } => {
            let client = client::BerthClient::new(&api.url, &api.token);
            let output =
                credentials::KeyOutput { json: api.output == "json", docker_config: write_docker_config.as_deref() };
            credentials::run(&client, &purpose, repositories, ttl_seconds, output).await
        }
        Command::RegistryConfig { listen, berth_url, storage, data_dir } => {
            registry::print_config(&listen, &berth_url, &storage, &data_dir)
        }
    }
}

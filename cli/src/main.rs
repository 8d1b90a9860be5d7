//! `berth`: the provider CLI and `berth serve`, every function in one process.

mod access_keys;
mod application;
mod client;
mod credentials;
mod deployment;
mod exit;
mod files;
mod fleet;
mod group;
mod instance;
mod keys;
mod packages;
mod registry;
mod release;
mod render;
mod serve;
mod serve_lease;
mod service;
mod signing_keys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::{Api, api_client};

#[derive(Parser)]
#[command(name = "berth", version, about = "Ship private container images to your customers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Release a deployment to an application group in batches, and follow releases.
    Release {
        #[command(subcommand)]
        command: release::ReleaseCommand,
    },
    /// Applications: the groups and deployments of releases live in one.
    Application {
        #[command(subcommand)]
        command: application::ApplicationCommand,
    },
    /// Application groups: the hosts a release reaches (hosts join with the join token).
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// Deployments: an image, a working directory, start and stop scripts.
    Deployment {
        #[command(subcommand)]
        command: deployment::DeploymentCommand,
    },
    /// Run every function in one process: local store, in-process queue.
    Serve {
        /// Directory for the store, keys and queued events.
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "BERTH_LISTEN", default_value = berth_shared::platform::config::DEFAULT_LISTEN)]
        listen: String,
    },
    /// Print an account token for local use, signed with the data directory's dev key.
    DevToken {
        /// The account ID (also its registry namespace).
        #[arg(long)]
        account: String,
        /// Validity in seconds; at most, and by default, BERTH_ACCOUNT_TOKEN_MAX_SECONDS (86400).
        #[arg(long)]
        ttl_seconds: Option<u64>,
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
    /// Render a template: a service's (`--service ID`) or a local file with its config.yaml.
    /// Writes the result to stdout or `-o FILE`; `--dry-run` lists substitutions, mints nothing.
    Render {
        #[command(flatten)]
        args: render::RenderArgs,
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
    /// Deployment packages: create, version, get, list, delete.
    Package {
        #[command(subcommand)]
        command: packages::PackageCommand,
    },
    /// Services: templates plus the packages their identifiers stand for.
    Service {
        #[command(subcommand)]
        command: service::ServiceCommand,
    },
    /// Access keys that sign Compute Nest API calls (Alibaba Cloud's SDK, computenest-cli).
    AccessKey {
        #[command(subcommand)]
        command: access_keys::AccessKeyCommand,
    },
    /// Keys your images are signed with, and whether packages require signatures.
    SigningKey {
        #[command(subcommand)]
        command: signing_keys::SigningKeyCommand,
    },
    /// Service instances: one customer's deployment, with revocable, renewable pull credentials.
    Instance {
        #[command(subcommand)]
        command: instance::InstanceCommand,
    },
    /// Manage the keys that sign temporary keys and registry tokens.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Release { command } => release::release_command(command).await,
        Command::Application { command } => application::application_command(command).await,
        Command::Group { command } => group::group_command(command).await,
        Command::Deployment { command } => deployment::deployment_command(command).await,
        Command::Serve { data_dir, listen } => serve::run(data_dir, listen).await,
        Command::DevToken { account, ttl_seconds, data_dir } => keys::print_dev_token(&account, ttl_seconds, &data_dir),
        Command::Keys { command: keys::KeysCommand::Generate { out } } => keys::print_generated(&out),
        Command::AccessKey { command } => access_keys::access_key_command(command).await,
        Command::Credentials { purpose, repositories, ttl_seconds, write_docker_config, api } => {
            let (client, json) = api_client(&api);
            let output = credentials::KeyOutput { json, docker_config: write_docker_config.as_deref() };
            credentials::run(&client, &purpose, repositories, ttl_seconds, output).await
        }
        Command::Package { command } => packages::package_command(command).await,
        Command::Instance { command } => instance::run(command).await,
        Command::SigningKey { command } => signing_keys::run(command).await,
        Command::Service { command: service::ServiceCommand::Import { config, name, artifacts, api } } => {
            let (client, json) = api_client(&api);
            service::import_service(&client, &config, name, artifacts, json).await
        }
        Command::Render { args, api } => {
            let (client, json) = api_client(&api);
            render::run(&client, args, json).await
        }
        Command::RegistryConfig { listen, berth_url, storage, data_dir } => {
            registry::print_config(&listen, &berth_url, &storage, &data_dir)
        }
    }
}

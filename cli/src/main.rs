//! `berth`: the provider CLI and `berth serve`, every function in one process.

// Every index here is a serde_json::Value look-up, which answers Null rather than panicking;
// the typed API crate (issue 25, item 2) replaces them with typed answers.
#![allow(clippy::indexing_slicing, reason = "serde_json::Value look-ups, replaced by the typed API crate")]

mod access_keys;
mod client;
mod credentials;
mod exit;
mod fleet;
mod instance;
mod keys;
mod packages;
mod registry;
mod release;
mod render;
mod serve;
mod serve_lease;
mod signing_keys;

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
    /// Release a deployment to an application group in batches, and follow releases.
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Applications: the groups and deployments of releases live in one.
    Application {
        #[command(subcommand)]
        command: ApplicationCommand,
    },
    /// Application groups: the hosts a release reaches (hosts join with the join token).
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Deployments: an image, a working directory, start and stop scripts.
    Deployment {
        #[command(subcommand)]
        command: DeploymentCommand,
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
        command: PackageCommand,
    },
    /// Services: templates plus the packages their identifiers stand for.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Access keys that sign Compute Nest API calls (Alibaba Cloud's SDK, computenest-cli).
    AccessKey {
        #[command(subcommand)]
        command: AccessKeyCommand,
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
        command: KeysCommand,
    },
}

/// What a package version holds, from flags.
#[derive(clap::Args)]
struct ContentArgs {
    /// A container image `REPOSITORY:TAG` in your namespace (repeat for several).
    #[arg(long = "image")]
    images: Vec<String>,
    /// A Helm chart `REPOSITORY:TAG` in your namespace (makes a HelmChart package).
    #[arg(long, conflicts_with = "images")]
    chart: Option<String>,
    /// A local file to upload (makes a File package).
    #[arg(long, conflicts_with_all = ["images", "chart"])]
    file: Option<PathBuf>,
    /// Wait until the publish check settles the version.
    #[arg(long)]
    wait: bool,
}

impl ContentArgs {
    fn split(self) -> (packages::Content, bool) {
        (packages::Content { images: self.images, chart: self.chart, file: self.file }, self.wait)
    }
}

#[derive(Subcommand)]
enum PackageCommand {
    /// Create a package with its first version.
    Create {
        /// Package name (3-128 letters, digits, '_'); cannot be changed.
        name: String,
        /// Description (10-500 characters).
        #[arg(long)]
        description: String,
        /// Name of the first version (3-50 letters, digits, '_').
        #[arg(long)]
        version: String,
        #[command(flatten)]
        content: ContentArgs,
        /// Resource group.
        #[arg(long)]
        resource_group: Option<String>,
        /// A tag KEY[=VALUE] (repeat for several, up to 20).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Idempotency token: retrying with it creates nothing new.
        #[arg(long)]
        client_token: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Add a version to a package.
    Version {
        /// The package.
        package: String,
        /// The new version's name.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        content: ContentArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Show a package and its versions, or one version.
    Get {
        /// The package.
        package: String,
        /// One version.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// List your packages.
    List {
        /// Only this type (ContainerImage, HelmChart, File).
        #[arg(long = "type")]
        package_type: Option<String>,
        /// Only this resource group.
        #[arg(long)]
        resource_group: Option<String>,
        /// Only packages with this tag key.
        #[arg(long)]
        tag_key: Option<String>,
        /// ... and this value.
        #[arg(long)]
        tag_value: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a package (refused while a service uses it), or one version.
    Delete {
        /// The package.
        package: String,
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Define a service from a Compute Nest `.computenest/config.yaml` and the templates it names.
    Import {
        /// The config.yaml.
        config: PathBuf,
        /// Service name (default: the repository directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Map an `Artifact:` key or an ArtifactId to a Berth package: KEY=PACKAGE (repeatable).
        #[arg(long = "artifact")]
        artifacts: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
enum AccessKeyCommand {
    /// Create a key: its id on stderr, its secret (shown only now) on stdout.
    Create {
        /// A note for yourself.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// List your keys (ids and states, never secrets).
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a key: calls it signs are refused from now on.
    Revoke {
        /// The access key id.
        id: String,
        #[command(flatten)]
        api: Api,
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

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ReleaseCommand {
    /// Start a release (or plan one with --dry-run).
    Create {
        #[command(flatten)]
        args: release::CreateArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Show a release with every host's state (--watch follows it to its end).
    Get {
        /// The release id.
        id: String,
        /// Follow it to its end.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Cancel a release: batches not started never start; scaling resumes.
    Cancel {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Start the next batch of a release paused for confirmation.
    Confirm {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Pause a running release before its next batch; each batch then waits for `confirm`.
    Pause {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Roll a release back: each host it changed goes back to its previous revision.
    Rollback {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Print the full output of each step run on one host.
    Logs {
        /// The release id.
        id: String,
        /// The host.
        #[arg(long)]
        host: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
enum ApplicationCommand {
    /// Create an application.
    Create {
        /// Its name (lowercase letters, digits, '.', '_', '-').
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// List your applications, newest first.
    List {
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Delete an application with its groups and deployments (refused while a release runs).
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create a group; prints its join token (shown only now).
    Create {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        /// `static`, or `scaling` (scaling is paused during releases).
        #[arg(long, value_parser = ["static", "scaling"], default_value = "static")]
        kind: String,
        /// With `--kind scaling`: the AWS Auto Scaling group whose processes releases suspend
        /// (Berth needs BERTH_AUTO_SCALING=aws).
        #[arg(long)]
        auto_scaling_group: Option<String>,
        /// Releases skip hosts not seen for this long (120 to 2592000, default 600).
        #[arg(long)]
        stale_after_seconds: Option<u64>,
        /// The load balancer hosts are drained from before they stop, as JSON:
        /// '{"haproxy":{"runtime_api":"127.0.0.1:9999","backend":"web"},"drain_seconds":10}'
        /// or '{"target_group_arn":"arn:..."}'.
        #[arg(long, value_parser = parse_json)]
        load_balancer: Option<serde_json::Value>,
        #[command(flatten)]
        api: Api,
    },
    /// List an application's groups, newest first.
    List {
        /// The application.
        #[arg(long)]
        application: String,
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Change a group's settings.
    Update {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        /// Releases skip hosts not seen for this long.
        #[arg(long)]
        stale_after_seconds: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a group and its hosts (refused while a release runs on it).
    Delete {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Remove a host: its token is refused at once and later releases leave it out.
    RemoveHost {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group.
        #[arg(long)]
        group: String,
        /// The host id.
        host: String,
        #[command(flatten)]
        api: Api,
    },
    /// List a group's releases (rollbacks and convergences too), newest first, with outcomes.
    Releases {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Show a group: instances, active release, scaling state.
    Get {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Replace the group's join token (prints the new one); the old one is refused at once.
    RotateJoinToken {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke the group's join token: no host joins until it is rotated.
    RevokeJoinToken {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
enum DeploymentCommand {
    /// Create a deployment from an image address or a package version.
    Create {
        #[command(flatten)]
        args: release::DeploymentArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Update a deployment: a new revision (the old ones stay readable).
    Update {
        #[command(flatten)]
        args: release::DeploymentArgs,
        #[command(flatten)]
        api: Api,
    },
    /// List an application's deployments, newest first, each at its current revision.
    List {
        /// The application.
        #[arg(long)]
        application: String,
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// List a deployment's revisions, newest first.
    Revisions {
        /// The application.
        #[arg(long)]
        application: String,
        /// The deployment's name.
        name: String,
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a deployment and its revisions (refused while a release of it runs).
    Delete {
        /// The application.
        #[arg(long)]
        application: String,
        /// The deployment's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
}

fn api_client(api: &Api) -> (client::BerthClient, bool) {
    (client::BerthClient::new(&api.url, &api.token), api.output == "json")
}

async fn access_key_command(command: AccessKeyCommand) -> ExitCode {
    match command {
        AccessKeyCommand::Create { description, api } => {
            let (client, json) = api_client(&api);
            access_keys::create(&client, description, json).await
        }
        AccessKeyCommand::List { api } => {
            let (client, json) = api_client(&api);
            access_keys::list(&client, json).await
        }
        AccessKeyCommand::Revoke { id, api } => access_keys::revoke(&api_client(&api).0, &id).await,
    }
}

async fn application_command(command: ApplicationCommand) -> ExitCode {
    match command {
        ApplicationCommand::Create { name, api } => {
            let (client, json) = api_client(&api);
            release::create_application(&client, &name, json).await
        }
        ApplicationCommand::List { page, api } => {
            let (client, json) = api_client(&api);
            fleet::list(&client, "/v1/applications", "applications", &page, json, fleet::application_line).await
        }
        ApplicationCommand::Delete { name, api } => {
            fleet::delete(&api_client(&api).0, &format!("/v1/applications/{name}"), &format!("application {name}"))
                .await
        }
    }
}

async fn group_command(command: GroupCommand) -> ExitCode {
    match command {
        GroupCommand::Create {
            application,
            name,
            kind,
            auto_scaling_group,
            stale_after_seconds,
            load_balancer,
            api,
        } => {
            let (client, json) = api_client(&api);
            let group = release::NewGroup {
                name: &name,
                kind: &kind,
                auto_scaling_group: auto_scaling_group.as_deref(),
                stale_after_seconds,
                load_balancer,
            };
            release::create_group(&client, &application, &group, json).await
        }
        GroupCommand::List { application, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/groups");
            fleet::list(&client, &path, "groups", &page, json, fleet::group_line).await
        }
        GroupCommand::Update { application, name, stale_after_seconds, api } => {
            fleet::update_group(&api_client(&api).0, &application, &name, stale_after_seconds).await
        }
        GroupCommand::Delete { application, name, api } => {
            let path = format!("/v1/applications/{application}/groups/{name}");
            fleet::delete(&api_client(&api).0, &path, &format!("group {name}")).await
        }
        GroupCommand::RemoveHost { application, group, host, api } => {
            let (client, json) = api_client(&api);
            fleet::remove_host(&client, &application, &group, &host, json).await
        }
        GroupCommand::Releases { application, name, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/groups/{name}/releases");
            fleet::list(&client, &path, "releases", &page, json, fleet::release_line).await
        }
        GroupCommand::Get { application, name, api } => {
            release::get_group(&api_client(&api).0, &application, &name).await
        }
        GroupCommand::RotateJoinToken { application, name, api } => {
            let (client, json) = api_client(&api);
            release::rotate_join_token(&client, &application, &name, json).await
        }
        GroupCommand::RevokeJoinToken { application, name, api } => {
            release::revoke_join_token(&api_client(&api).0, &application, &name).await
        }
    }
}

async fn deployment_command(command: DeploymentCommand) -> ExitCode {
    match command {
        DeploymentCommand::Create { args, api } => {
            let (client, json) = api_client(&api);
            release::create_deployment(&client, args, json).await
        }
        DeploymentCommand::Update { args, api } => {
            let (client, json) = api_client(&api);
            fleet::update_deployment(&client, args, json).await
        }
        DeploymentCommand::List { application, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/deployments");
            fleet::list(&client, &path, "deployments", &page, json, fleet::deployment_line).await
        }
        DeploymentCommand::Revisions { application, name, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/deployments/{name}/revisions");
            fleet::list(&client, &path, "revisions", &page, json, fleet::deployment_line).await
        }
        DeploymentCommand::Delete { application, name, api } => {
            let path = format!("/v1/applications/{application}/deployments/{name}");
            fleet::delete(&api_client(&api).0, &path, &format!("deployment {name}")).await
        }
    }
}

async fn release_command(command: ReleaseCommand) -> ExitCode {
    let client = api_client;
    match command {
        ReleaseCommand::Create { args, api } => {
            let (client, json) = client(&api);
            release::create(&client, args, json).await
        }
        ReleaseCommand::Get { id, watch, api } => {
            let (client, json) = client(&api);
            if watch { release::watch(&client, &id, json).await } else { release::get(&client, &id, json).await }
        }
        ReleaseCommand::Cancel { id, api } => release::act(&client(&api).0, &id, "cancel").await,
        ReleaseCommand::Confirm { id, api } => release::act(&client(&api).0, &id, "confirm").await,
        ReleaseCommand::Pause { id, api } => release::act(&client(&api).0, &id, "pause").await,
        ReleaseCommand::Rollback { id, api } => {
            let (client, json) = client(&api);
            fleet::rollback(&client, &id, json).await
        }
        ReleaseCommand::Logs { id, host, api } => {
            let (client, json) = client(&api);
            release::logs(&client, &id, &host, json).await
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Release { command } => release_command(command).await,
        Command::Application { command } => application_command(command).await,
        Command::Group { command } => group_command(command).await,
        Command::Deployment { command } => deployment_command(command).await,
        Command::Serve { data_dir, listen } => serve::run(data_dir, listen).await,
        Command::DevToken { account, ttl_seconds, data_dir } => keys::print_dev_token(&account, ttl_seconds, &data_dir),
        Command::Keys { command: KeysCommand::Generate { out } } => keys::print_generated(&out),
        Command::AccessKey { command } => access_key_command(command).await,
        Command::Credentials { purpose, repositories, ttl_seconds, write_docker_config, api } => {
            let (client, json) = api_client(&api);
            let output = credentials::KeyOutput { json, docker_config: write_docker_config.as_deref() };
            credentials::run(&client, &purpose, repositories, ttl_seconds, output).await
        }
        Command::Package { command } => package_command(command).await,
        Command::Instance { command } => instance::run(command).await,
        Command::SigningKey { command } => signing_keys::run(command).await,
        Command::Service { command: ServiceCommand::Import { config, name, artifacts, api } } => {
            let (client, json) = api_client(&api);
            packages::import_service(&client, &config, name, artifacts, json).await
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

async fn package_command(command: PackageCommand) -> ExitCode {
    let client = api_client;
    match command {
        PackageCommand::Create { name, description, version, content, resource_group, tags, client_token, api } => {
            let (client, json) = client(&api);
            let (content, wait) = content.split();
            packages::create(
                &client,
                &name,
                &description,
                &version,
                content,
                resource_group,
                tags,
                client_token,
                wait,
                json,
            )
            .await
        }
        PackageCommand::Version { package, version, content, api } => {
            let (client, json) = client(&api);
            let (content, wait) = content.split();
            packages::add_version(&client, &package, &version, content, wait, json).await
        }
        PackageCommand::Get { package, version, api } => {
            let (client, json) = client(&api);
            packages::get(&client, &package, version.as_deref(), json).await
        }
        PackageCommand::List { package_type, resource_group, tag_key, tag_value, api } => {
            let (client, json) = client(&api);
            let filters = [
                ("type", package_type),
                ("resource_group", resource_group),
                ("tag_key", tag_key),
                ("tag_value", tag_value),
            ];
            packages::list(&client, &filters, json).await
        }
        PackageCommand::Delete { package, version, api } => {
            packages::delete(&client(&api).0, &package, version.as_deref()).await
        }
    }
}

/// A command-line argument that must be JSON.
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

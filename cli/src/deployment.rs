//! `berth deployment ...`: deployments and their revisions.

use std::process::ExitCode;

use berth_api::release::{
    Deployment, DeploymentImage, DeploymentPage, DeploymentRequest, RegistryEndpoint, RevisionPage,
};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, BerthClient, api_client, show};
use crate::exit::fail;
use crate::files::FileError;
use crate::fleet;

/// What `berth deployment` does.
#[derive(Subcommand)]
pub enum DeploymentCommand {
    /// Create a deployment from an image address or a package version.
    Create {
        #[command(flatten)]
        args: DeploymentArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Update a deployment: a new revision (the old ones stay readable).
    Update {
        #[command(flatten)]
        args: DeploymentArgs,
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

/// Runs one `berth deployment` command.
pub async fn deployment_command(command: DeploymentCommand) -> ExitCode {
    match command {
        DeploymentCommand::Create { args, api } => {
            let (client, json) = api_client(&api);
            create_deployment(&client, args, json).await
        }
        DeploymentCommand::Update { args, api } => {
            let (client, json) = api_client(&api);
            update_deployment(&client, args, json).await
        }
        DeploymentCommand::List { application, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/deployments");
            fleet::list::<DeploymentPage>(&client, &path, &page, json).await
        }
        DeploymentCommand::Revisions { application, name, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/deployments/{name}/revisions");
            fleet::list::<RevisionPage>(&client, &path, &page, json).await
        }
        DeploymentCommand::Delete { application, name, api } => {
            let path = format!("/v1/applications/{application}/deployments/{name}");
            fleet::delete(&api_client(&api).0, &path, &format!("deployment {name}")).await
        }
    }
}

/// What `berth deployment create` sends.
#[derive(clap::Args)]
pub struct DeploymentArgs {
    /// The application.
    #[arg(long)]
    pub application: String,
    /// The deployment's name.
    pub name: String,
    /// The image: REGISTRY/NAMESPACE/REPOSITORY:TAG.
    #[arg(long, conflicts_with = "package")]
    pub image: Option<String>,
    /// Or an Available ContainerImage package (with --version).
    #[arg(long, requires = "version")]
    pub package: Option<String>,
    /// The package version.
    #[arg(long, requires = "package")]
    pub version: Option<String>,
    /// Absolute directory the scripts run in (created if missing).
    #[arg(long)]
    pub working_directory: String,
    /// File with the start script (shell).
    #[arg(long)]
    pub start_script: std::path::PathBuf,
    /// File with the stop script (shell; must succeed when nothing runs).
    #[arg(long)]
    pub stop_script: std::path::PathBuf,
    /// Timeout of each step (pull, stop, start), 1..3600 (default 600).
    #[arg(long)]
    pub step_timeout_seconds: Option<u64>,
}

/// Why the flags make no deployment (said before Berth is asked).
#[derive(Debug, thiserror::Error)]
pub enum DeploymentArgsError {
    /// A script file could not be read.
    #[error("cannot read {0}")]
    Script(#[source] FileError),
    /// Neither an image nor a package version.
    #[error("give --image REGISTRY/NAMESPACE/REPOSITORY:TAG, or --package P --version V")]
    NoImage,
}

/// The body of `berth deployment create|update`, with the scripts read from their files.
pub fn deployment_body(args: &DeploymentArgs) -> Result<DeploymentRequest, DeploymentArgsError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|source| DeploymentArgsError::Script(FileError::at(path)(source)))
    };
    let (start, stop) = (read(&args.start_script)?, read(&args.stop_script)?);
    let image = match (&args.image, &args.package, &args.version) {
        (Some(address), None, None) => DeploymentImage::Address { address: address.clone() },
        (None, Some(package), Some(version)) => {
            DeploymentImage::Package { package: package.clone(), version: version.clone(), image: None }
        }
        _ => return Err(DeploymentArgsError::NoImage),
    };
    Ok(DeploymentRequest {
        name: args.name.clone(),
        image,
        working_directory: args.working_directory.clone(),
        start_script: start,
        stop_script: stop,
        step_timeout_seconds: args.step_timeout_seconds,
        registry_endpoint: RegistryEndpoint::default(),
        platform: None,
        script_language: None,
        revision: None,
        health: None,
    })
}

/// `berth deployment create`.
pub async fn create_deployment(client: &BerthClient, args: DeploymentArgs, json: bool) -> ExitCode {
    let body = match deployment_body(&args) {
        Ok(body) => body,
        Err(error) => return fail(&error),
    };
    let answer: Value = match client.post(&format!("/v1/applications/{}/deployments", args.application), &body).await {
        Ok(answer) => answer,
        Err(error) => return fail(&error),
    };
    let line = |d: Deployment| format!("deployment {} created: {}", args.name, d.image.address());
    show(json, answer, line)
}

/// A line of `berth deployment list` and `revisions`.
fn deployment_line(d: &Deployment) -> String {
    format!("{}\trevision {}\t{}", d.name, d.revision, d.image.address())
}

impl fleet::Listing for DeploymentPage {
    fn lines(&self) -> Vec<String> {
        self.deployments.iter().map(deployment_line).collect()
    }

    fn next_page_token(&self) -> Option<&str> {
        self.next_page_token.as_deref()
    }
}

impl fleet::Listing for RevisionPage {
    fn lines(&self) -> Vec<String> {
        self.revisions.iter().map(deployment_line).collect()
    }

    fn next_page_token(&self) -> Option<&str> {
        self.next_page_token.as_deref()
    }
}

/// `berth deployment update`: a new revision.
pub async fn update_deployment(client: &BerthClient, args: DeploymentArgs, json: bool) -> ExitCode {
    let body = match deployment_body(&args) {
        Ok(body) => body,
        Err(error) => return fail(&error),
    };
    let path = format!("/v1/applications/{}/deployments/{}", args.application, args.name);
    let answer: Value = match client.put(&path, &body).await {
        Ok(answer) => answer,
        Err(error) => return fail(&error),
    };
    let line = |d: Deployment| format!("deployment {} is now at revision {}", args.name, d.revision);
    show(json, answer, line)
}

//! `berth package ...`: deployment packages from the command line. Text output is one line
//! per thing; `--output json` prints the API's answer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_api::package::{
    CreatePackageRequest, ImageSpec, Package, PackagePage, PackageType, PackageView, Tag, VersionSpec, VersionStatus,
    VersionView,
};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, BerthClient, ClientError, api_client, read, show};
use crate::exit::fail;
use crate::files::FileError;

/// Why a version could not be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// An `--image` or `--chart` that is not `REPOSITORY:TAG` (said before Berth is asked).
    #[error("'{0}' is not REPOSITORY:TAG")]
    NotRepositoryTag(String),
    /// A `--file` whose name is not UTF-8 text.
    #[error("the file has no usable name")]
    FileName,
    /// The `--file` could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// Berth refused, or could not be asked.
    #[error(transparent)]
    Berth(#[from] ClientError),
    /// `--wait` waited in vain.
    #[error("{package}/{version} is still Creating after 5 minutes")]
    StillCreating { package: String, version: String },
}

/// What a new version holds, from the command line.
pub struct Content {
    /// `repository:tag` images.
    pub images: Vec<String>,
    /// A `repository:tag` chart.
    pub chart: Option<String>,
    /// A local file to upload.
    pub file: Option<std::path::PathBuf>,
}

impl Content {
    /// The package type the flags imply.
    pub fn package_type(&self) -> PackageType {
        match (&self.chart, &self.file) {
            (Some(_), _) => PackageType::HelmChart,
            (None, Some(_)) => PackageType::File,
            _ => PackageType::ContainerImage,
        }
    }

    fn version_body(&self, name: &str) -> Result<VersionSpec, VersionError> {
        let split = |reference: &str| -> Result<ImageSpec, VersionError> {
            let (repository, tag) = reference
                .rsplit_once(':')
                .filter(|(r, _)| !r.is_empty())
                .ok_or_else(|| VersionError::NotRepositoryTag(reference.to_owned()))?;
            Ok(ImageSpec { repository: repository.to_owned(), tag: tag.to_owned() })
        };
        let mut body = VersionSpec { name: name.to_owned(), ..VersionSpec::default() };
        if let Some(chart) = &self.chart {
            body.chart = Some(split(chart)?);
        } else if let Some(file) = &self.file {
            let name = file.file_name().and_then(|n| n.to_str()).ok_or(VersionError::FileName)?;
            body.file_name = Some(name.to_owned());
        } else {
            body.images = Some(self.images.iter().map(|i| split(i)).collect::<Result<_, _>>()?);
        }
        Ok(body)
    }
}

fn version_line(v: &VersionView) -> String {
    let status = match v.status {
        VersionStatus::Draft => "Draft",
        VersionStatus::Creating => "Creating",
        VersionStatus::Available => "Available",
        VersionStatus::Failed => "Failed",
    };
    let mut line = format!("{}/{} #{} {status}", v.package, v.version, v.number);
    for image in &v.images {
        let outcome = image.digest.as_deref().or(image.failure.as_ref().map(|f| f.code.as_str())).unwrap_or("");
        line.push_str(&format!("\n  {}:{} {outcome}", image.repository, image.tag));
    }
    if let Some(file) = &v.file {
        line.push_str(&format!("\n  file {} {}", file.file_name, file.digest.as_deref().unwrap_or("(not uploaded)")));
    }
    if let Some(reason) = &v.reason {
        line.push_str(&format!("\n  reason: {reason}"));
    }
    line
}

/// Uploads a File version's bytes, then (with `wait`) polls until the version settles; the
/// last answer, as sent.
async fn finish_version(
    client: &BerthClient,
    content: &Content,
    version: Value,
    wait: bool,
) -> Result<Value, VersionError> {
    let created: VersionView = read(version.clone())?;
    let (package, name) = (created.package, created.version);
    if let Some(file) = &content.file {
        let bytes = crate::files::read(file)?;
        return Ok(client.put_bytes(&format!("/v1/packages/{package}/versions/{name}/file"), bytes).await?);
    }
    if !wait {
        return Ok(version);
    }
    let start = Instant::now();
    loop {
        let current: Value = client.get(&format!("/v1/packages/{package}/versions/{name}")).await?;
        if read::<VersionView>(current.clone())?.status != VersionStatus::Creating {
            return Ok(current);
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(VersionError::StillCreating { package, version: name });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `POST /v1/packages` answer, the version kept as sent (it is printed whole).
#[derive(serde::Serialize, serde::Deserialize)]
struct Created {
    package: Package,
    version: Value,
}

/// `berth package create`.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    client: &BerthClient,
    name: &str,
    description: &str,
    version: &str,
    content: Content,
    resource_group: Option<String>,
    tags: Vec<String>,
    client_token: Option<String>,
    wait: bool,
    json: bool,
) -> ExitCode {
    let version_body = match content.version_body(version) {
        Ok(body) => body,
        Err(e) => return fail(&e),
    };
    let tags = tags
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) => Tag { key: k.to_owned(), value: v.to_owned() },
            None => Tag { key: t.clone(), value: String::new() },
        })
        .collect();
    let body = CreatePackageRequest {
        name: name.to_owned(),
        description: description.to_owned(),
        resource_group,
        tags,
        package_type: content.package_type(),
        version: version_body,
        client_token,
        require_signature: None,
    };
    let created: Created = match client.post("/v1/packages", &body).await {
        Ok(created) => created,
        Err(e) => return fail(&e),
    };
    match finish_version(client, &content, created.version, wait).await {
        Ok(version) => {
            let answer = serde_json::to_value(Created { package: created.package, version }).unwrap_or_default();
            show(json, answer, |c: Created| match read::<VersionView>(c.version) {
                Ok(version) => version_line(&version),
                Err(error) => error.to_string(),
            })
        }
        Err(e) => fail(&e),
    }
}

/// `berth package version`: a new version of an existing package.
pub async fn add_version(
    client: &BerthClient,
    package: &str,
    version: &str,
    content: Content,
    wait: bool,
    json: bool,
) -> ExitCode {
    let body = match content.version_body(version) {
        Ok(body) => body,
        Err(e) => return fail(&e),
    };
    let created: Value = match client.post(&format!("/v1/packages/{package}/versions"), &body).await {
        Ok(created) => created,
        Err(e) => return fail(&e),
    };
    match finish_version(client, &content, created, wait).await {
        Ok(version) => show(json, version, |v: VersionView| version_line(&v)),
        Err(e) => fail(&e),
    }
}

/// `berth package get NAME [--version V]`.
pub async fn get(client: &BerthClient, package: &str, version: Option<&str>, json: bool) -> ExitCode {
    let path = match version {
        Some(v) => format!("/v1/packages/{package}/versions/{v}"),
        None => format!("/v1/packages/{package}"),
    };
    match client.get(&path).await {
        Ok(answer) if version.is_some() => show(json, answer, |v: VersionView| version_line(&v)),
        Ok(answer) => show(json, answer, |a: PackageView| {
            let p = &a.package;
            let mut out =
                format!("{} ({}, group {}): {}", p.name, package_type(p.package_type), p.resource_group, p.description);
            for v in &a.versions {
                out.push('\n');
                out.push_str(&version_line(v));
            }
            out
        }),
        Err(e) => fail(&e),
    }
}

fn package_type(package_type: PackageType) -> &'static str {
    match package_type {
        PackageType::ContainerImage => "ContainerImage",
        PackageType::HelmChart => "HelmChart",
        PackageType::File => "File",
    }
}

/// `berth package list`.
pub async fn list(client: &BerthClient, filters: &[(&str, Option<String>)], json: bool) -> ExitCode {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query: Vec<String> =
            filters.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect();
        if let Some(token) = &token {
            query.push(format!("page_token={token}"));
        }
        let page: PackagePage = match client.get(&format!("/v1/packages?{}", query.join("&"))).await {
            Ok(page) => page,
            Err(e) => return fail(&e),
        };
        all.extend(page.packages);
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let answer = serde_json::to_value(PackagePage { packages: all, next_page_token: None }).unwrap_or_default();
    show(json, answer, |page: PackagePage| {
        let lines: Vec<String> = page
            .packages
            .iter()
            .map(|p| format!("{}\t{}\t{}", p.name, package_type(p.package_type), p.resource_group))
            .collect();
        if lines.is_empty() { "no packages".into() } else { lines.join("\n") }
    })
}

/// `berth package delete NAME [--version V]`.
pub async fn delete(client: &BerthClient, package: &str, version: Option<&str>) -> ExitCode {
    let path = match version {
        Some(v) => format!("/v1/packages/{package}/versions/{v}"),
        None => format!("/v1/packages/{package}"),
    };
    match client.delete(&path).await {
        Ok(()) => {
            eprintln!("deleted {}", path.trim_start_matches("/v1/packages/"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// What a package version holds, from flags.
#[derive(clap::Args)]
pub struct ContentArgs {
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
    fn split(self) -> (Content, bool) {
        (Content { images: self.images, chart: self.chart, file: self.file }, self.wait)
    }
}

/// What `berth package` does.
#[derive(Subcommand)]
pub enum PackageCommand {
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

/// Runs one `berth package` command.
pub async fn package_command(command: PackageCommand) -> ExitCode {
    match command {
        PackageCommand::Create { name, description, version, content, resource_group, tags, client_token, api } => {
            let (client, json) = api_client(&api);
            let (content, wait) = content.split();
            create(&client, &name, &description, &version, content, resource_group, tags, client_token, wait, json)
                .await
        }
        PackageCommand::Version { package, version, content, api } => {
            let (client, json) = api_client(&api);
            let (content, wait) = content.split();
            add_version(&client, &package, &version, content, wait, json).await
        }
        PackageCommand::Get { package, version, api } => {
            let (client, json) = api_client(&api);
            get(&client, &package, version.as_deref(), json).await
        }
        PackageCommand::List { package_type, resource_group, tag_key, tag_value, api } => {
            let (client, json) = api_client(&api);
            let filters = [
                ("type", package_type),
                ("resource_group", resource_group),
                ("tag_key", tag_key),
                ("tag_value", tag_value),
            ];
            list(&client, &filters, json).await
        }
        PackageCommand::Delete { package, version, api } => {
            delete(&api_client(&api).0, &package, version.as_deref()).await
        }
    }
}

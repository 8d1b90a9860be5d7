//! `berth package ...` and `berth service import`: deployment packages and services from the
//! command line. Text output is one line per thing; `--output json` prints the API's answer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use clap::Subcommand;

use crate::client::{Api, BerthClient, api_client};
use crate::exit::fail;

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
    pub fn package_type(&self) -> &'static str {
        match (&self.chart, &self.file) {
            (Some(_), _) => "HelmChart",
            (None, Some(_)) => "File",
            _ => "ContainerImage",
        }
    }

    fn version_body(&self, name: &str) -> Result<Value, String> {
        let split = |reference: &str| -> Result<Value, String> {
            let (repository, tag) = reference
                .rsplit_once(':')
                .filter(|(r, _)| !r.is_empty())
                .ok_or_else(|| format!("'{reference}' is not REPOSITORY:TAG"))?;
            Ok(json!({ "repository": repository, "tag": tag }))
        };
        let mut body = json!({ "name": name });
        if let Some(chart) = &self.chart {
            body["chart"] = split(chart)?;
        } else if let Some(file) = &self.file {
            let name = file.file_name().and_then(|n| n.to_str()).ok_or("the file has no usable name")?;
            body["file_name"] = json!(name);
        } else {
            body["images"] = Value::Array(self.images.iter().map(|i| split(i)).collect::<Result<_, _>>()?);
        }
        Ok(body)
    }
}

pub fn print(json: bool, value: &Value, text: impl FnOnce(&Value) -> String) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
    } else {
        println!("{}", text(value));
    }
    ExitCode::SUCCESS
}

fn version_line(v: &Value) -> String {
    let mut line = format!(
        "{}/{} #{} {}",
        v["package"].as_str().unwrap_or("?"),
        v["version"].as_str().unwrap_or("?"),
        v["number"],
        v["status"].as_str().unwrap_or("?")
    );
    for image in v["images"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            "\n  {}:{} {}",
            image["repository"].as_str().unwrap_or("?"),
            image["tag"].as_str().unwrap_or("?"),
            image["digest"].as_str().or(image["failure"]["code"].as_str()).unwrap_or("")
        ));
    }
    if let Some(file) = v["file"].as_object() {
        line.push_str(&format!(
            "\n  file {} {}",
            file["file_name"].as_str().unwrap_or("?"),
            v["file"]["digest"].as_str().unwrap_or("(not uploaded)")
        ));
    }
    if let Some(reason) = v["reason"].as_str() {
        line.push_str(&format!("\n  reason: {reason}"));
    }
    line
}

/// Uploads a File version's bytes, then (with `wait`) polls until the version settles.
async fn finish_version(client: &BerthClient, content: &Content, version: Value, wait: bool) -> Result<Value, String> {
    let (package, name) = (
        version["package"].as_str().unwrap_or_default().to_owned(),
        version["version"].as_str().unwrap_or_default().to_owned(),
    );
    if let Some(file) = &content.file {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        return client.put_bytes(&format!("/v1/packages/{package}/versions/{name}/file"), bytes).await;
    }
    if !wait {
        return Ok(version);
    }
    let start = Instant::now();
    loop {
        let current = client.get(&format!("/v1/packages/{package}/versions/{name}")).await?;
        if current["status"] != "Creating" {
            return Ok(current);
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(format!("{package}/{name} is still Creating after 5 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
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
    let tags: Vec<Value> = tags
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) => json!({ "key": k, "value": v }),
            None => json!({ "key": t }),
        })
        .collect();
    let mut body = json!({ "name": name, "description": description, "type": content.package_type(), "tags": tags, "version": version_body });
    if let Some(group) = resource_group {
        body["resource_group"] = json!(group);
    }
    if let Some(token) = client_token {
        body["client_token"] = json!(token);
    }
    let created = match client.post("/v1/packages", &body).await {
        Ok(created) => created,
        Err(e) => return fail(&e),
    };
    match finish_version(client, &content, created["version"].clone(), wait).await {
        Ok(version) => {
            print(json, &json!({ "package": created["package"], "version": version }), |v| version_line(&v["version"]))
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
    let created = match client.post(&format!("/v1/packages/{package}/versions"), &body).await {
        Ok(created) => created,
        Err(e) => return fail(&e),
    };
    match finish_version(client, &content, created, wait).await {
        Ok(version) => print(json, &version, version_line),
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
        Ok(answer) if version.is_some() => print(json, &answer, version_line),
        Ok(answer) => print(json, &answer, |a| {
            let p = &a["package"];
            let mut out = format!(
                "{} ({}, group {}): {}",
                p["name"].as_str().unwrap_or("?"),
                p["type"].as_str().unwrap_or("?"),
                p["resource_group"].as_str().unwrap_or("?"),
                p["description"].as_str().unwrap_or("")
            );
            for v in a["versions"].as_array().into_iter().flatten() {
                out.push('\n');
                out.push_str(&version_line(v));
            }
            out
        }),
        Err(e) => fail(&e),
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
        let page = match client.get(&format!("/v1/packages?{}", query.join("&"))).await {
            Ok(page) => page,
            Err(e) => return fail(&e),
        };
        all.extend(page["packages"].as_array().cloned().unwrap_or_default());
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    print(json, &json!({ "packages": all }), |v| {
        let lines: Vec<String> = v["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}\t{}\t{}",
                    p["name"].as_str().unwrap_or("?"),
                    p["type"].as_str().unwrap_or("?"),
                    p["resource_group"].as_str().unwrap_or("?")
                )
            })
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
        Ok(_) => {
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

pub async fn package_command(command: PackageCommand) -> ExitCode {
    let client = api_client;
    match command {
        PackageCommand::Create { name, description, version, content, resource_group, tags, client_token, api } => {
            let (client, json) = client(&api);
            let (content, wait) = content.split();
            create(
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
            add_version(&client, &package, &version, content, wait, json).await
        }
        PackageCommand::Get { package, version, api } => {
            let (client, json) = client(&api);
            get(&client, &package, version.as_deref(), json).await
        }
        PackageCommand::List { package_type, resource_group, tag_key, tag_value, api } => {
            let (client, json) = client(&api);
            let filters = [
                ("type", package_type),
                ("resource_group", resource_group),
                ("tag_key", tag_key),
                ("tag_value", tag_value),
            ];
            list(&client, &filters, json).await
        }
        PackageCommand::Delete { package, version, api } => {
            delete(&client(&api).0, &package, version.as_deref()).await
        }
    }
}

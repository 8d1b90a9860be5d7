//! `berth service import`: a service from a Compute Nest config and its templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_api::service::{PutService, ServiceView};
use clap::Subcommand;

use crate::client::{Api, BerthClient, show};
use crate::exit::fail;

/// What `berth service` does.
#[derive(Subcommand)]
pub enum ServiceCommand {
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

/// `berth service import CONFIG`: the config and the templates it names (read relative to the
/// config's directory, as in a repository's `.computenest/`).
pub async fn import_service(
    client: &BerthClient,
    config_path: &Path,
    name: Option<String>,
    artifacts: Vec<String>,
    json: bool,
) -> ExitCode {
    let config = match std::fs::read_to_string(config_path) {
        Ok(config) => config,
        Err(e) => return fail(&format!("{}: {e}", config_path.display())),
    };
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut templates = BTreeMap::new();
    for url in berth_shared::service::template_urls(&config) {
        match std::fs::read_to_string(base.join(&url)) {
            Ok(body) => {
                templates.insert(url, body);
            }
            Err(e) => eprintln!("warning: template {url}: {e} (not sent)"),
        }
    }
    // The default name: the repository holding `.computenest/`.
    let name = name.unwrap_or_else(|| {
        let dir = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        let repo = if dir.ends_with(".computenest") { dir.parent().map(Path::to_path_buf).unwrap_or(dir) } else { dir };
        repo.file_name().and_then(|n| n.to_str()).unwrap_or("service").to_owned()
    });
    let mut map = BTreeMap::new();
    for entry in artifacts {
        match entry.split_once('=') {
            Some((key, package)) => {
                map.insert(key.to_owned(), package.to_owned());
            }
            None => return fail(&format!("--artifact '{entry}' is not KEY=PACKAGE")),
        }
    }
    let body = PutService { config: Some(config), templates, artifacts: map };
    match client.put(&format!("/v1/services/{name}"), &body).await {
        Ok(service) => show(json, service, |s: ServiceView| {
            let mut out = format!("service {}: {} template(s)", s.name, s.templates.len());
            for (key, target) in &s.relations {
                out.push_str(&format!("\n  {{{{ {key} }}}} -> {} {}", target.package, target.version));
            }
            if !s.ignored.is_empty() {
                out.push_str(&format!("\n  ignored: {}", s.ignored.join(", ")));
            }
            out
        }),
        Err(e) => fail(&e),
    }
}

//! `berth credentials push|pull`: a temporary key, as a password on stdout (pipe it to
//! `docker login --password-stdin`), as JSON, or written into a docker config directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_api::credentials::{KeyPurpose, KeyRequest, TemporaryKey};
use serde_json::Value;

use crate::client::{BerthClient, read};
use crate::exit::fail;
use crate::files::{FileError, write_private};

/// How to print the key.
pub struct KeyOutput<'a> {
    /// Print the whole answer as JSON.
    pub json: bool,
    /// Merge the key into `DIR/config.json` instead of printing the password.
    pub docker_config: Option<&'a Path>,
}

/// Gets a key and prints or writes it.
pub async fn run(
    client: &BerthClient,
    purpose: &str,
    repositories: Vec<String>,
    ttl: Option<u64>,
    output: KeyOutput<'_>,
) -> ExitCode {
    let Some(key_purpose) = KeyPurpose::from_name(purpose) else {
        return fail(&format!("the purpose is push or pull, not {purpose}"));
    };
    let repositories = (!repositories.is_empty()).then_some(repositories);
    let body = KeyRequest { purpose: key_purpose, repositories, ttl_seconds: ttl };
    let answer: Value = match client.post("/v1/registry/credentials", &body).await {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    if output.json {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let key: TemporaryKey = match read(answer) {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    let (registry, username, expires) = (&key.registry, &key.username, &key.expires_at);
    if let Some(dir) = output.docker_config {
        return match write_docker_config(dir, &key) {
            Ok(path) => {
                eprintln!(
                    "{purpose} key for {registry} (user {username}, expires {expires}) written to {}",
                    path.display()
                );
                eprintln!("use it with: DOCKER_CONFIG={} docker pull {registry}/{username}/IMAGE:TAG", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    eprintln!("{purpose} key for {registry}, user {username}, expires {expires}; log in with:");
    eprintln!("  berth credentials {purpose} | {}", key.docker_login);
    println!("{}", key.password);
    ExitCode::SUCCESS
}

/// A docker `config.json`: its `auths` by registry, and whatever else it holds, kept as it is.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: serde_json::Map<String, Value>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// Why the key could not be written into a docker config. Never shows the key.
#[derive(Debug, thiserror::Error)]
enum DockerConfigError {
    /// Berth's `dockerconfigjson` is not base64.
    #[error("dockerconfigjson: {0}")]
    NotBase64(#[source] base64::DecodeError),
    /// Berth's `dockerconfigjson` is not a docker config.
    #[error("dockerconfigjson: {0}")]
    NotDockerConfig(#[source] serde_json::Error),
    /// The config already there is not a docker config (it is left as it is).
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The directory or the file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// Merges the key's registry entry into `dir/config.json`, keeping other entries.
fn write_docker_config(dir: &Path, key: &TemporaryKey) -> Result<PathBuf, DockerConfigError> {
    let decoded = STANDARD.decode(&key.dockerconfigjson).map_err(DockerConfigError::NotBase64)?;
    let fresh: DockerConfig = serde_json::from_slice(&decoded).map_err(DockerConfigError::NotDockerConfig)?;
    std::fs::create_dir_all(dir).map_err(FileError::at(dir))?;
    let path = dir.join("config.json");
    let mut config: DockerConfig = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(config) => config,
            Err(source) => return Err(DockerConfigError::Unreadable { path, source }),
        },
        Err(_) => DockerConfig::default(),
    };
    config.auths.extend(fresh.auths);
    write_private(&path, serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes())?;
    Ok(path)
}

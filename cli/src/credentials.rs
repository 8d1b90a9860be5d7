//! `berth credentials push|pull`: a temporary key, as a password on stdout (pipe it to
//! `docker login --password-stdin`), as JSON, or written into a docker config directory.

use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::client::BerthClient;
use crate::exit::fail;

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
    let mut body = json!({ "purpose": purpose });
    if !repositories.is_empty() {
        body["repositories"] = json!(repositories);
    }
    if let Some(ttl) = ttl {
        body["ttl_seconds"] = json!(ttl);
    }
    let key = match client.post("/v1/registry/credentials", &body).await {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    if output.json {
        println!("{}", serde_json::to_string_pretty(&key).expect("JSON"));
        return ExitCode::SUCCESS;
    }
    let (registry, username, expires) = (text(&key, "registry"), text(&key, "username"), text(&key, "expires_at"));
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
    eprintln!("  berth credentials {purpose} | {}", text(&key, "docker_login"));
    println!("{}", text(&key, "password"));
    ExitCode::SUCCESS
}

fn text<'a>(key: &'a Value, field: &str) -> &'a str {
    key[field].as_str().unwrap_or("")
}

/// Merges the key's registry entry into `dir/config.json`, keeping other entries.
fn write_docker_config(dir: &Path, key: &Value) -> Result<std::path::PathBuf, String> {
    let decoded = STANDARD.decode(text(key, "dockerconfigjson")).map_err(|e| format!("dockerconfigjson: {e}"))?;
    let fresh: Value = serde_json::from_slice(&decoded).map_err(|e| format!("dockerconfigjson: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("config.json");
    let mut config: Value = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(_) => json!({}),
    };
    if !config["auths"].is_object() {
        config["auths"] = json!({});
    }
    for (registry, entry) in fresh["auths"].as_object().into_iter().flatten() {
        config["auths"][registry] = entry.clone();
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, serde_json::to_string_pretty(&config).expect("JSON").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

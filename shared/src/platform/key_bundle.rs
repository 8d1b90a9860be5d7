//! The keys of a deployed function, from AWS Secrets Manager: one secret holding a JSON object
//! `{"account_key": PEM, "signing_key": PEM, "signing_cert": PEM, "previous_signing_keys"?: [PEM]}`
//! (the previous keys still verify after a rotation), read at cold start through
//! the AWS Parameters and Secrets Lambda Extension (a local HTTP endpoint, so no SDK is
//! linked for it) and written to private files that the usual `BERTH_*_FILE` settings name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::platform::secret::Secret;

/// The variable naming the secret (its name or ARN).
pub const SECRET_ID: &str = "BERTH_KEYS_SECRET_ID";
/// Where the extension listens unless `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT` says otherwise.
pub const DEFAULT_EXTENSION_PORT: u16 = 2773;

/// Why the key bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyBundleError {
    /// The extension did not answer.
    #[error("{SECRET_ID}: the secrets extension at {endpoint}: {source}")]
    Unreachable {
        endpoint: String,
        /// Without its URL (the endpoint is named already).
        #[source]
        source: reqwest::Error,
    },
    /// The extension refused.
    #[error("{SECRET_ID}: the secrets extension at {endpoint} answered {status}")]
    Refused { endpoint: String, status: reqwest::StatusCode },
    /// The secret is not the expected JSON object. No cause is kept: a parse error may quote
    /// the secret.
    #[error("{SECRET_ID}: the secret is not a JSON object with account_key, signing_key and signing_cert PEMs")]
    Shape,
    /// A file could not be written.
    #[error("{SECRET_ID}: cannot write the keys: {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct ExtensionAnswer {
    #[serde(rename = "SecretString")]
    secret_string: Secret<String>,
}

#[derive(Deserialize)]
struct Bundle {
    account_key: Secret<String>,
    signing_key: Secret<String>,
    signing_cert: String,
    #[serde(default)]
    previous_signing_keys: Vec<Secret<String>>,
}

/// When [`SECRET_ID`] is set, fetches the bundle from the extension at `endpoint`
/// (`http://localhost:PORT`), writes it under `dir` (mode 0600) and returns the settings that
/// point at the files. Without it, nothing.
pub async fn materialize(
    lookup: impl Fn(&str) -> Option<String>,
    endpoint: &str,
    dir: &Path,
) -> Result<HashMap<&'static str, String>, KeyBundleError> {
    let Some(secret_id) = lookup(SECRET_ID).filter(|v| !v.is_empty()) else { return Ok(HashMap::new()) };
    let token = lookup("AWS_SESSION_TOKEN").unwrap_or_default();
    // The extension answers on loopback, in plain HTTP: no root certificates to load.
    let http = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .map_err(|source| KeyBundleError::Unreachable { endpoint: endpoint.to_owned(), source })?;
    let response = http
        .get(format!("{endpoint}/secretsmanager/get"))
        .query(&[("secretId", secret_id.as_str())])
        .header("X-Aws-Parameters-Secrets-Token", token)
        .send()
        .await
        .map_err(|e| KeyBundleError::Unreachable { endpoint: endpoint.to_owned(), source: e.without_url() })?;
    if !response.status().is_success() {
        return Err(KeyBundleError::Refused { endpoint: endpoint.to_owned(), status: response.status() });
    }
    let answer: ExtensionAnswer = response.json().await.map_err(|_| KeyBundleError::Shape)?;
    let bundle: Bundle = serde_json::from_str(answer.secret_string.expose()).map_err(|_| KeyBundleError::Shape)?;
    std::fs::create_dir_all(dir).map_err(|source| KeyBundleError::Write { path: dir.to_owned(), source })?;
    let mut settings = HashMap::new();
    for (variable, file, contents) in [
        ("BERTH_ACCOUNT_KEY_FILE", "account.pem", bundle.account_key.expose().as_str()),
        ("BERTH_SIGNING_KEY_FILE", "signing.key.pem", bundle.signing_key.expose().as_str()),
        ("BERTH_SIGNING_CERT_FILE", "signing.crt.pem", bundle.signing_cert.as_str()),
    ] {
        let path = dir.join(file);
        write_private(&path, contents).map_err(|source| KeyBundleError::Write { path: path.clone(), source })?;
        settings.insert(variable, path.display().to_string());
    }
    let mut previous = Vec::new();
    for (i, key) in bundle.previous_signing_keys.iter().enumerate() {
        let path = dir.join(format!("previous-{i}.key.pem"));
        write_private(&path, key.expose()).map_err(|source| KeyBundleError::Write { path: path.clone(), source })?;
        previous.push(path.display().to_string());
    }
    if !previous.is_empty() {
        settings.insert("BERTH_PREVIOUS_SIGNING_KEY_FILES", previous.join(","));
    }
    Ok(settings)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())
}

/// The extension's endpoint from the environment.
pub fn extension_endpoint(lookup: impl Fn(&str) -> Option<String>) -> String {
    let port = lookup("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(DEFAULT_EXTENSION_PORT);
    format!("http://localhost:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// Serves `body` as the extension would; checks the token header and the secret id.
    async fn extension(body: serde_json::Value) -> String {
        let app = axum::Router::new().route(
            "/secretsmanager/get",
            get(move |headers: axum::http::HeaderMap, query: axum::extract::Query<HashMap<String, String>>| {
                let body = body.clone();
                async move {
                    if headers.get("X-Aws-Parameters-Secrets-Token").and_then(|v| v.to_str().ok()) != Some("session")
                        || query.get("secretId").map(String::as_str) != Some("berth/keys")
                    {
                        return Err(axum::http::StatusCode::FORBIDDEN);
                    }
                    Ok(axum::Json(body))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    fn env(name: &str) -> Option<String> {
        match name {
            SECRET_ID => Some("berth/keys".into()),
            "AWS_SESSION_TOKEN" => Some("session".into()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_bundle_becomes_private_files_named_by_the_settings() {
        let secret = serde_json::json!({ "account_key": "A", "signing_key": "S", "signing_cert": "C",
            "previous_signing_keys": ["P0", "P1"] })
        .to_string();
        let endpoint = extension(serde_json::json!({ "SecretString": secret })).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = materialize(env, &endpoint, dir.path()).await.unwrap();
        let signing = &settings["BERTH_SIGNING_KEY_FILE"];
        assert_eq!(std::fs::read_to_string(signing).unwrap(), "S");
        assert_eq!(std::fs::read_to_string(&settings["BERTH_ACCOUNT_KEY_FILE"]).unwrap(), "A");
        let previous: Vec<String> = settings["BERTH_PREVIOUS_SIGNING_KEY_FILES"]
            .split(',')
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(previous, ["P0", "P1"]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(signing).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_wrong_shape_or_no_extension_is_one_clear_error_without_the_secret() {
        let endpoint = extension(serde_json::json!({ "SecretString": "{\"signing_key\": \"TOPSECRET\"}" })).await;
        let dir = tempfile::tempdir().unwrap();
        let error = materialize(env, &endpoint, dir.path()).await.unwrap_err().to_string();
        assert!(error.starts_with(SECRET_ID) && !error.contains("TOPSECRET"), "{error}");
        let no_previous =
            serde_json::json!({ "account_key": "A", "signing_key": "S", "signing_cert": "C" }).to_string();
        let endpoint = extension(serde_json::json!({ "SecretString": no_previous })).await;
        let settings = materialize(env, &endpoint, dir.path()).await.unwrap();
        assert!(!settings.contains_key("BERTH_PREVIOUS_SIGNING_KEY_FILES"), "{settings:?}");
        let error = materialize(env, "http://127.0.0.1:9", dir.path()).await.unwrap_err().to_string();
        assert!(error.contains("secrets extension"), "{error}");
        assert!(materialize(|_| None, &endpoint, dir.path()).await.unwrap().is_empty(), "not configured: nothing");
    }
}

//! `docker-credential-berth`: keeps a Berth instance credential on the machine and, whenever a
//! client needs to pull, exchanges it at Berth (`POST /v1/registry/exchange`) for a fresh
//! temporary pull key, so the long-lived secret never reaches the registry.
//!
//! Two protocols on stdin/stdout, one binary:
//! - the Docker credential helper protocol (`get`, `store`, `erase`, `list`), configured in
//!   `~/.docker/config.json` as `"credHelpers": {"REGISTRY": "berth"}`;
//! - the kubelet image credential provider (`kubelet`, or no argument): a
//!   `CredentialProviderRequest` in, a `CredentialProviderResponse` out.
//!
//! Credentials are stored by `store` in `BERTH_CREDENTIALS_FILE` (default
//! `~/.config/berth/docker-credentials.json`, mode 0600), keyed by registry host, with the Berth
//! URL to exchange them at (`BERTH_URL` when stored). `BERTH_INSTANCE_USERNAME` and
//! `BERTH_INSTANCE_PASSWORD` (with `BERTH_URL`) give one credential for every registry instead.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What Docker prints for a registry the helper has nothing for (the protocol's wording).
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// The kubelet credential provider API group.
pub const KUBELET_GROUP: &str = "credentialprovider.kubelet.k8s.io/";
/// How long the kubelet may reuse an answer: half the exchanged key's hour. A revoked
/// credential's key is refused at Berth's token endpoint anyway, whatever the cache holds.
pub const KUBELET_CACHE_DURATION: &str = "30m0s";

/// Why the helper failed: one line on stderr, except [`HelperError::NotFound`]. Never shows a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// No credential for the registry (exit 1 with [`NOT_FOUND`] on stdout, as Docker expects).
    #[error("{NOT_FOUND}")]
    NotFound,
    /// An instance credential, and no Berth to exchange it at.
    #[error("BERTH_URL is not set and the stored credential names no Berth")]
    NoBerth,
    /// Berth could not be reached, or did not answer in time.
    #[error("cannot reach Berth at {berth}: {source}")]
    Unreachable {
        berth: String,
        #[source]
        source: reqwest::Error,
    },
    /// Berth refused the exchange (a revoked or suspended credential, ...).
    #[error("Berth refused the exchange (HTTP {status}): {}", detail.as_deref().unwrap_or("no detail"))]
    Refused {
        status: u16,
        /// The problem's stable code.
        code: Option<String>,
        detail: Option<String>,
    },
    /// Berth's answer is not a key.
    #[error("Berth's answer: {0}")]
    Unreadable(#[source] reqwest::Error),
    /// The credentials file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The credentials file is not one.
    #[error("{}: not a credentials file: {source}", path.display())]
    NotCredentialsFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `store` was given something else than a credential.
    #[error("store: expected ServerURL, Username, Secret: {0}")]
    NotACredential(#[source] serde_json::Error),
    /// The kubelet sent something else than a `CredentialProviderRequest`.
    #[error("expected a CredentialProviderRequest: {0}")]
    NotAKubeletRequest(#[source] serde_json::Error),
    /// A request of another kind or API group.
    #[error("expected a {KUBELET_GROUP}* CredentialProviderRequest, got {0}")]
    KubeletRequestKind(String),
    /// A command the helper does not have.
    #[error("unknown command '{0}': get, store, erase, list or kubelet")]
    UnknownCommand(String),
}

/// A Berth problem answer, as far as the helper reads it.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    code: Option<String>,
    detail: Option<String>,
}

/// Docker's credential document (`store` input, `get` output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerCredential {
    #[serde(rename = "ServerURL")]
    pub server_url: String,
    #[serde(rename = "Username")]
    pub username: String,
    #[serde(rename = "Secret")]
    pub secret: String,
}

/// One stored credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub username: String,
    pub secret: String,
    /// Where to exchange it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub berth_url: Option<String>,
}

/// Where the helper reads its settings (the environment, in the binary).
pub struct Settings {
    /// The credentials file.
    pub file: PathBuf,
    /// `BERTH_URL`.
    pub berth_url: Option<String>,
    /// `BERTH_INSTANCE_USERNAME` and `BERTH_INSTANCE_PASSWORD`: one credential for every registry.
    pub instance: Option<(String, String)>,
}

impl Settings {
    /// From the process environment.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let file = var("BERTH_CREDENTIALS_FILE").map(PathBuf::from).unwrap_or_else(|| {
            let home = var("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".config/berth/docker-credentials.json")
        });
        let instance = var("BERTH_INSTANCE_USERNAME").zip(var("BERTH_INSTANCE_PASSWORD"));
        Self { file, berth_url: var("BERTH_URL"), instance }
    }

    fn read(&self) -> Result<BTreeMap<String, StoredEntry>, HelperError> {
        match std::fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| HelperError::NotCredentialsFile { path: self.file.clone(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(HelperError::File { path: self.file.clone(), source }),
        }
    }

    fn write(&self, entries: &BTreeMap<String, StoredEntry>) -> Result<(), HelperError> {
        let io = |source| HelperError::File { path: self.file.clone(), source };
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let temporary = self.file.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(io)?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(entries).expect("JSON")).map_err(io)?;
        std::fs::rename(&temporary, &self.file).map_err(io)
    }

    /// The credential for `server` and the Berth URL to exchange it at.
    fn credential_for(&self, server: &str) -> Result<StoredEntry, HelperError> {
        if let Some((username, secret)) = &self.instance {
            return Ok(StoredEntry { username: username.clone(), secret: secret.clone(), berth_url: None });
        }
        self.read()?.remove(&registry_host(server)).ok_or(HelperError::NotFound)
    }
}

/// The registry host of a server URL as Docker passes it (`127.0.0.1:5000`,
/// `https://registry.example.com/v2/`).
pub fn registry_host(server: &str) -> String {
    let server = server.trim();
    let server = server.strip_prefix("https://").or_else(|| server.strip_prefix("http://")).unwrap_or(server);
    server.split('/').next().unwrap_or_default().to_ascii_lowercase()
}

/// The registry host an image reference names (`registry:5000/ns/app:v1` → `registry:5000`).
pub fn image_registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => "docker.io".into(),
    }
}

/// A temporary key as Berth's exchange answers (only what the helper needs).
#[derive(Debug, Deserialize)]
struct ExchangedKey {
    username: String,
    password: String,
}

/// Exchanges `entry` at Berth for a fresh temporary pull key: (username, password). A secret
/// that is not an instance credential (`bic_...`) is passed through as it is.
pub async fn exchange(settings: &Settings, entry: &StoredEntry) -> Result<(String, String), HelperError> {
    if !entry.secret.starts_with("bic_") {
        return Ok((entry.username.clone(), entry.secret.clone()));
    }
    let berth = settings.berth_url.clone().or_else(|| entry.berth_url.clone()).ok_or(HelperError::NoBerth)?;
    let url = format!("{}/v1/registry/exchange", berth.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .basic_auth(&entry.username, Some(&entry.secret))
        .send()
        .await
        .map_err(|source| HelperError::Unreachable { berth: berth.clone(), source })?;
    let status = response.status();
    if !status.is_success() {
        let problem: Problem = response.json().await.unwrap_or_default();
        return Err(HelperError::Refused { status: status.as_u16(), code: problem.code, detail: problem.detail });
    }
    let key: ExchangedKey = response.json().await.map_err(HelperError::Unreadable)?;
    Ok((key.username, key.password))
}

/// `get`: `input` is the server URL.
pub async fn get(settings: &Settings, input: &str) -> Result<DockerCredential, HelperError> {
    let server = input.trim();
    let entry = settings.credential_for(server)?;
    let (username, secret) = exchange(settings, &entry).await?;
    Ok(DockerCredential { server_url: server.to_owned(), username, secret })
}

/// `store`: `input` is a [`DockerCredential`].
pub fn store(settings: &Settings, input: &str) -> Result<(), HelperError> {
    let credential: DockerCredential = serde_json::from_str(input.trim()).map_err(HelperError::NotACredential)?;
    let mut entries = settings.read()?;
    entries.insert(
        registry_host(&credential.server_url),
        StoredEntry { username: credential.username, secret: credential.secret, berth_url: settings.berth_url.clone() },
    );
    settings.write(&entries)
}

/// `erase`: `input` is the server URL.
pub fn erase(settings: &Settings, input: &str) -> Result<(), HelperError> {
    let mut entries = settings.read()?;
    entries.remove(&registry_host(input));
    settings.write(&entries)
}

/// `list`: every stored registry and its username.
pub fn list(settings: &Settings) -> Result<BTreeMap<String, String>, HelperError> {
    Ok(settings.read()?.into_iter().map(|(server, entry)| (server, entry.username)).collect())
}

/// The kubelet's request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderRequest {
    pub api_version: String,
    pub kind: String,
    pub image: String,
}

/// The answer to the kubelet.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderResponse {
    pub api_version: String,
    pub kind: &'static str,
    /// `Registry`: the key reaches the instance's repositories on that registry, whatever the image.
    pub cache_key_type: &'static str,
    /// A Go duration string.
    pub cache_duration: &'static str,
    /// Keyed by the registry host (a `matchImages` pattern).
    pub auth: BTreeMap<String, AuthConfig>,
}

/// A username and password for the kubelet.
#[derive(Debug, Serialize)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
}

/// The kubelet provider: `input` is a `CredentialProviderRequest`.
pub async fn kubelet(settings: &Settings, input: &str) -> Result<CredentialProviderResponse, HelperError> {
    let request: CredentialProviderRequest =
        serde_json::from_str(input.trim()).map_err(HelperError::NotAKubeletRequest)?;
    if request.kind != "CredentialProviderRequest" || !request.api_version.starts_with(KUBELET_GROUP) {
        return Err(HelperError::KubeletRequestKind(request.kind));
    }
    let registry = image_registry(&request.image);
    let entry = settings.credential_for(&registry)?;
    let (username, password) = exchange(settings, &entry).await?;
    Ok(CredentialProviderResponse {
        // The same version the kubelet sent, as the API asks.
        api_version: request.api_version,
        kind: "CredentialProviderResponse",
        cache_key_type: "Registry",
        cache_duration: KUBELET_CACHE_DURATION,
        auth: BTreeMap::from([(registry, AuthConfig { username, password })]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_from_server_urls_and_images() {
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("https://Registry.example.com/v2/"), "registry.example.com");
        assert_eq!(image_registry("127.0.0.1:5000/acme/web:v1"), "127.0.0.1:5000");
        assert_eq!(image_registry("registry.example.com/acme/web@sha256:ab"), "registry.example.com");
        assert_eq!(image_registry("library/busybox"), "docker.io");
    }

    #[tokio::test]
    async fn store_list_erase_and_get_of_a_plain_secret() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings { file: dir.path().join("c.json"), berth_url: None, instance: None };
        assert!(matches!(get(&settings, "r:5000").await, Err(HelperError::NotFound)));
        store(&settings, r#"{"ServerURL":"http://r:5000/","Username":"u","Secret":"plain"}"#).unwrap();
        assert_eq!(list(&settings).unwrap(), BTreeMap::from([("r:5000".to_owned(), "u".to_owned())]));
        let got = get(&settings, "r:5000").await.unwrap();
        assert_eq!((got.username.as_str(), got.secret.as_str()), ("u", "plain"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&settings.file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        erase(&settings, "r:5000").unwrap();
        assert!(list(&settings).unwrap().is_empty());
        let bic = r#"{"ServerURL":"r:5000","Username":"a+b_c+d_e","Secret":"bic_x"}"#;
        store(&settings, bic).unwrap();
        let error = get(&settings, "r:5000").await.unwrap_err();
        assert!(matches!(error, HelperError::NoBerth), "{error:?}");
        let error = error.to_string();
        assert!(error.contains("BERTH_URL") && !error.contains("bic_x"), "{error}");
    }

    #[tokio::test]
    async fn no_answer_is_told_from_a_refusal_and_neither_shows_the_secret() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let settings = Settings {
            file: std::path::PathBuf::from("/nonexistent"),
            berth_url: Some(format!("http://{closed}")),
            instance: None,
        };
        let entry = StoredEntry { username: "a+b_c+d_e".into(), secret: "bic_secret".into(), berth_url: None };
        let error = exchange(&settings, &entry).await.unwrap_err();
        assert!(matches!(error, HelperError::Unreachable { .. }), "{error:?}");
        assert!(std::error::Error::source(&error).is_some(), "the transport error is kept");
        let shown = error.to_string();
        assert!(shown.starts_with(&format!("cannot reach Berth at http://{closed}")) && !shown.contains("bic_secret"));
        let refused = HelperError::Refused { status: 403, code: Some("instance_suspended".into()), detail: None };
        assert_eq!(refused.to_string(), "Berth refused the exchange (HTTP 403): no detail");
    }
}

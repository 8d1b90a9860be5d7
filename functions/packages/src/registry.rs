//! Berth's own reads of the OCI registry: resolving a tag to its digest, size and platforms,
//! for the publish check. Berth signs its own short-lived pull token for each repository
//! (the registry trusts Berth's certificate), so no round trip through the token endpoint.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use berth_shared::credentials::registry_token::{internal_catalog_token, internal_pull_token};
use berth_shared::names::RepositoryName;
use berth_shared::package::ImageRecord;
use berth_shared::platform::config::RegistrySettings;
use berth_shared::platform::digest::oci_digest;
use berth_shared::platform::jws::SigningKeys;
use berth_shared::signing::is_sha256_digest;
use berth_shared::signing::sigstore::{AttachmentSource, SourceError};

/// Manifest media types Berth understands (Docker v2 and OCI, manifests and indexes).
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Config media type of a Helm chart stored as an OCI artifact.
pub const HELM_CONFIG_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// Largest manifest or config blob read.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Why an image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository or tag does not exist.
    #[error("{0} not found in the registry")]
    NotFound(String),
    /// The registry did not answer; a later attempt may succeed.
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    /// The registry answered something Berth cannot use.
    #[error("registry error: {0}")]
    Unexpected(String),
    /// An answer over its size limit.
    #[error("{0}")]
    TooLarge(String),
}

/// What the registry says a tag is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// `sha256:...` of the manifest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Config plus layers (or, for an index, its manifests' sizes).
    pub size: u64,
    /// `os/arch[/variant]` per platform.
    pub platforms: Vec<String>,
    /// The config's media type (a Helm chart's is [`HELM_CONFIG_TYPE`]).
    pub config_media_type: Option<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    fn label(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}/{}/{variant}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

/// A client of the registry, reading as Berth.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    /// Built on first use (it loads the system's root certificates, a few milliseconds the
    /// function's cold start need not pay); shared by the clones.
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
    timeout: Duration,
    settings: RegistrySettings,
    keys: SigningKeys,
}

impl RegistryClient {
    /// A client for the registry in `settings`, signing its tokens with `keys`.
    pub fn new(settings: RegistrySettings, keys: SigningKeys, timeout: Duration) -> Self {
        Self { http: Arc::default(), timeout, settings, keys }
    }

    fn http(&self) -> Result<&reqwest::Client, RegistryError> {
        let built = self.http.get_or_init(|| {
            reqwest::Client::builder().timeout(self.timeout).build().map_err(|e| format!("HTTP client: {e}"))
        });
        built.as_ref().map_err(|why| RegistryError::Unreachable(why.clone()))
    }

    async fn read(
        &self,
        repository: &RepositoryName,
        path: &str,
        accept: &str,
        limit: usize,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), RegistryError> {
        let token =
            internal_pull_token(&self.keys, &self.settings, repository, berth_shared::platform::clock::unix_now())
                .map_err(|e| RegistryError::Unexpected(e.to_string()))?;
        let url = format!("{}/v2/{repository}/{path}", self.settings.url);
        let response = self
            .http()?
            .get(&url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable(without_url(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound(format!("{repository}/{path}")));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(RegistryError::Unreachable(format!("{status} for {repository}")));
        }
        if !status.is_success() {
            return Err(RegistryError::Unexpected(format!("{status} for {repository}/{path}")));
        }
        let headers = response.headers().clone();
        let too_large = || RegistryError::TooLarge(format!("{repository}/{path} is larger than {limit} bytes"));
        // Bounded while read: a declared length over the limit is refused before any byte, and
        // a body that runs past it is dropped at the chunk that crosses it.
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| RegistryError::Unreachable(without_url(&e)))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((headers, body))
    }

    /// Resolves `repository:tag`: digest, media type, size, platforms.
    pub async fn resolve(&self, repository: &RepositoryName, tag: &str) -> Result<ResolvedImage, RegistryError> {
        let (headers, body) =
            self.read(repository, &format!("manifests/{tag}"), &MANIFEST_TYPES.join(", "), MAX_MANIFEST_BYTES).await?;
        let digest = oci_digest(&body);
        // The registry's header must agree with the bytes it sent.
        if let Some(claimed) = headers.get("docker-content-digest").and_then(|v| v.to_str().ok())
            && claimed.starts_with("sha256:")
            && claimed != digest
        {
            return Err(RegistryError::Unexpected(format!(
                "{repository}:{tag}: digest header does not match the manifest"
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Unexpected(format!("{repository}:{tag}: manifest does not parse: {e}")))?;
        let media_type = manifest
            .media_type
            .clone()
            .or_else(|| headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        if !manifest.manifests.is_empty() {
            let platforms =
                manifest.manifests.iter().filter_map(|m| m.platform.as_ref().map(Platform::label)).collect();
            // Sizes are the pusher's numbers: summed without overflow.
            let size = manifest.manifests.iter().fold(0u64, |sum, m| sum.saturating_add(m.size));
            return Ok(ResolvedImage { digest, media_type, size, platforms, config_media_type: None });
        }
        let config = manifest
            .config
            .ok_or_else(|| RegistryError::Unexpected(format!("{repository}:{tag}: manifest has no config")))?;
        let size = manifest.layers.iter().fold(config.size, |sum, l| sum.saturating_add(l.size));
        let config_media_type = config.media_type.clone();
        let mut platforms = Vec::new();
        if config_media_type.as_deref() != Some(HELM_CONFIG_TYPE) {
            // The tenant's manifest names the blob: only a well-formed digest becomes a path.
            if !is_sha256_digest(&config.digest) {
                return Err(RegistryError::Unexpected(format!(
                    "{repository}:{tag}: config digest is not sha256:<hex>"
                )));
            }
            let (_, blob) =
                self.read(repository, &format!("blobs/{}", config.digest), "*/*", MAX_MANIFEST_BYTES).await?;
            if let Ok(image) = serde_json::from_slice::<ImageConfig>(&blob)
                && let (Some(os), Some(architecture)) = (image.os, image.architecture)
            {
                platforms.push(Platform { os, architecture, variant: image.variant }.label());
            }
        }
        Ok(ResolvedImage { digest, media_type, size, platforms, config_media_type })
    }
}

/// Most repositories read from the registry's catalog in one listing.
pub const MAX_CATALOG: usize = 1000;
/// Most tags read of one repository.
pub const MAX_TAGS: usize = 1000;

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// The repositories of `namespace` (full names, sorted), from the first `MAX_CATALOG`
    /// entries of the catalog after `namespace/`.
    pub async fn repositories(&self, namespace: &str) -> Result<Vec<RepositoryName>, RegistryError> {
        let token = internal_catalog_token(&self.keys, &self.settings, berth_shared::platform::clock::unix_now())
            .map_err(|e| RegistryError::Unexpected(e.to_string()))?;
        // The catalog is sorted: start just before the namespace's first repository.
        let url = format!("{}/v2/_catalog", self.settings.url);
        let last = format!("{namespace}/");
        let n = MAX_CATALOG.to_string();
        let response = self
            .http()?
            .get(&url)
            .query(&[("n", n.as_str()), ("last", last.as_str())])
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable(without_url(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Unexpected(format!("{status} for the catalog")));
        }
        if response.content_length().is_some_and(|length| length > MAX_MANIFEST_BYTES as u64) {
            return Err(RegistryError::Unexpected("the catalog page is too large".into()));
        }
        let body = response.bytes().await.map_err(|e| RegistryError::Unreachable(without_url(&e)))?;
        let catalog: Catalog = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Unexpected(format!("the catalog does not parse: {e}")))?;
        let mut names: Vec<RepositoryName> = catalog
            .repositories
            .iter()
            .filter(|name| name.starts_with(&last))
            .filter_map(|name| RepositoryName::parse(name).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The tags of `repository` (at most `MAX_TAGS`, sorted); none if it does not exist.
    pub async fn tags(&self, repository: &RepositoryName) -> Result<Vec<String>, RegistryError> {
        match self.read(repository, "tags/list", "application/json", MAX_MANIFEST_BYTES).await {
            Ok((_, body)) => {
                let list: TagList = serde_json::from_slice(&body)
                    .map_err(|e| RegistryError::Unexpected(format!("{repository} tags do not parse: {e}")))?;
                let mut tags = list.tags.unwrap_or_default();
                tags.sort();
                tags.truncate(MAX_TAGS);
                Ok(tags)
            }
            Err(RegistryError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// One repository of the registry, as the signature check reads it.
pub struct RepositoryReader<'a> {
    pub client: &'a RegistryClient,
    pub repository: &'a RepositoryName,
}

#[async_trait::async_trait]
impl AttachmentSource for RepositoryReader<'_> {
    async fn manifest(&self, tag: &str, limit: usize) -> Result<Option<Vec<u8>>, SourceError> {
        let accept = "application/vnd.oci.image.manifest.v1+json";
        match self.client.read(self.repository, &format!("manifests/{tag}"), accept, limit).await {
            Ok((_, body)) => Ok(Some(body)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(source_error(e)),
        }
    }

    async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, SourceError> {
        let path = format!("blobs/{digest}");
        self.client.read(self.repository, &path, "*/*", limit).await.map(|(_, body)| body).map_err(source_error)
    }
}

fn source_error(error: RegistryError) -> SourceError {
    match error {
        RegistryError::Unreachable(why) => SourceError::Unreachable(why),
        RegistryError::TooLarge(_) => SourceError::TooLarge,
        other => SourceError::Other(other.to_string()),
    }
}

/// A reqwest error's message without the URL (which carries nothing secret, but keeps
/// messages short and stable).
fn without_url(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(url.as_str(), "registry");
    }
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused".into()
    } else {
        message
    }
}

/// Applies a resolution to an image record of a version being checked: the digest and
/// facts on success, a failure with a stable code otherwise. `chart` requires a Helm config.
pub fn record_resolution(image: &mut ImageRecord, outcome: Result<ResolvedImage, RegistryError>, chart: bool) {
    use berth_shared::package::ImageFailure;
    match outcome {
        Ok(resolved) if chart && resolved.config_media_type.as_deref() != Some(HELM_CONFIG_TYPE) => {
            image.failure = Some(ImageFailure {
                code: "not_a_chart".into(),
                message: format!(
                    "{}:{} is not a Helm chart (config type {:?})",
                    image.repository, image.tag, resolved.config_media_type
                ),
            });
        }
        Ok(resolved) => {
            image.digest = Some(resolved.digest);
            image.media_type = Some(resolved.media_type);
            image.size = Some(resolved.size);
            image.platforms = resolved.platforms;
            image.failure = None;
        }
        Err(RegistryError::NotFound(_)) => {
            image.failure = Some(ImageFailure {
                code: "not_found".into(),
                message: format!("{}:{} does not exist in the registry", image.repository, image.tag),
            });
        }
        Err(RegistryError::Unreachable(why)) => {
            image.failure = Some(ImageFailure { code: "registry_unreachable".into(), message: why });
        }
        Err(RegistryError::Unexpected(why) | RegistryError::TooLarge(why)) => {
            image.failure = Some(ImageFailure { code: "registry_error".into(), message: why });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_digests_become_blob_paths() {
        assert!(is_sha256_digest(&format!("sha256:{}", "a1".repeat(32))));
        for bad in [
            String::new(),
            "sha256:".into(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}/../../manifests/x", "a".repeat(64)),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:{}", "a".repeat(63)),
        ] {
            assert!(!is_sha256_digest(&bad), "{bad}");
        }
    }
}

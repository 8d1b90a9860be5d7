//! `--trusted-keys`: before a job runs anything, the agent reads the image's sigstore signature
//! from the registry itself (with the job's pull key) and checks that one of the keys it was
//! given signed exactly the digest it will pull. A compromised control plane can hand out a
//! job, but not make a host run an image the provider did not sign.

use std::time::Duration;

use berth_api::agent::Job;
use berth_shared::platform::digest::oci_digest;
use berth_shared::signing::sigstore::{self, AttachmentSource, Expected, SourceError, VerifyingKey};
use tokio::sync::Mutex;

/// Manifest types asked for when a tag is resolved to its digest.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest read to resolve a tag.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest token answer read.
const MAX_TOKEN_BYTES: usize = 64 << 10;
/// Each registry request's timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Reads of one repository with the job's pull key, as a Docker client does: a 401 names the
/// token endpoint, which trades the key for a bearer token.
struct Registry<'a> {
    http: reqwest::Client,
    base: String,
    repository: &'a str,
    job: &'a Job,
    token: Mutex<Option<String>>,
}

/// `realm`, `service` and `scope` of a `Bearer` challenge (values quoted, commas inside them).
fn challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut rest = header.strip_prefix("Bearer ")?.trim_start();
    let mut realm = None;
    let mut query = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"')?,
            None => after.split_once(',').unwrap_or((after, "")),
        };
        match name.trim() {
            "realm" => realm = Some(value.to_owned()),
            name @ ("service" | "scope") => query.push((name.to_owned(), value.to_owned())),
            _ => {}
        }
        rest = after.trim_start_matches([',', ' ']);
    }
    Some((realm?, query))
}

async fn bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, SourceError> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(SourceError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| SourceError::Unreachable(e.to_string()))? {
        if body.len() + chunk.len() > limit {
            return Err(SourceError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Registry<'_> {
    async fn send(&self, path: &str, accept: &str) -> Result<reqwest::Response, SourceError> {
        let unreachable = |e: reqwest::Error| SourceError::Unreachable(e.without_url().to_string());
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        for _ in 0..2 {
            let mut request = self.http.get(&url).header(reqwest::header::ACCEPT, accept);
            if let Some(token) = self.token.lock().await.as_deref() {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(unreachable)?;
            if response.status() != reqwest::StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let header = response.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
            let (realm, query) = header
                .and_then(challenge)
                .ok_or_else(|| SourceError::Other("401 without a Bearer challenge".into()))?;
            let answer = self
                .http
                .get(&realm)
                .query(&query)
                .basic_auth(&self.job.username, Some(&self.job.password))
                .send()
                .await
                .map_err(unreachable)?;
            if !answer.status().is_success() {
                return Err(SourceError::Other(format!("the token endpoint answered {}", answer.status())));
            }
            #[derive(serde::Deserialize)]
            struct Token {
                #[serde(alias = "access_token")]
                token: String,
            }
            let token: Token = serde_json::from_slice(&bounded(answer, MAX_TOKEN_BYTES).await?)
                .map_err(|e| SourceError::Other(format!("the token answer does not parse: {e}")))?;
            *self.token.lock().await = Some(token.token);
        }
        Err(SourceError::Other("the registry refused the pull key".into()))
    }

    async fn read(&self, path: &str, accept: &str, limit: usize) -> Result<Option<Vec<u8>>, SourceError> {
        let response = self.send(path, accept).await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => bounded(response, limit).await.map(Some),
            status if status.is_server_error() => {
                Err(SourceError::Unreachable(format!("the registry answered {status}")))
            }
            status => Err(SourceError::Other(format!("the registry answered {status} for {path}"))),
        }
    }
}

#[async_trait::async_trait]
impl AttachmentSource for Registry<'_> {
    async fn manifest(&self, tag: &str, limit: usize) -> Result<Option<Vec<u8>>, SourceError> {
        self.read(&format!("manifests/{tag}"), "application/vnd.oci.image.manifest.v1+json", limit).await
    }

    async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, SourceError> {
        self.read(&format!("blobs/{digest}"), "*/*", limit)
            .await?
            .ok_or_else(|| SourceError::Other(format!("no blob {digest}")))
    }
}

/// The registry's base URL: plain HTTP on loopback (as Berth's own default), else HTTPS.
fn base_url(host: &str) -> String {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    if matches!(name, "localhost" | "[::1]") || name.starts_with("127.") {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

/// Why the job's image is not run: it is not where the job says, it cannot be resolved, or no
/// trusted key signed it.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{image} is not in {registry}")]
    OtherRegistry { image: String, registry: String },
    #[error("cannot make the registry's client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("resolving {image}: {source}")]
    Resolve {
        image: String,
        #[source]
        source: SourceError,
    },
    #[error("{0} does not exist")]
    Missing(String),
    #[error("{0} is not pinned to a sha256 digest")]
    NotPinned(String),
    /// Its stable code (`signature_untrusted`, `registry_unreachable`, ...) leads the message.
    #[error("signature check: {0}")]
    Untrusted(#[source] sigstore::Failure),
}

/// Checks the job's image and answers the address to pull and run: pinned to the digest whose
/// signature verified (a tag is resolved first). Why not, otherwise.
pub async fn verify(job: &Job, keys: &[VerifyingKey]) -> Result<String, SignatureError> {
    let prefix = format!("{}/", job.registry);
    let path = job
        .image
        .strip_prefix(&prefix)
        .ok_or_else(|| SignatureError::OtherRegistry { image: job.image.clone(), registry: job.registry.clone() })?;
    let (repository, reference) = match path.split_once('@') {
        Some((repository, digest)) => (repository, Err(digest)),
        None => match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Ok(tag)),
            _ => (path, Ok("latest")),
        },
    };
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(SignatureError::Client)?;
    let registry = Registry { http, base: base_url(&job.registry), repository, job, token: Mutex::new(None) };
    let digest = match reference {
        Err(digest) => digest.to_owned(),
        Ok(tag) => {
            let manifest = registry
                .read(&format!("manifests/{tag}"), MANIFEST_TYPES, MAX_MANIFEST_BYTES)
                .await
                .map_err(|source| SignatureError::Resolve { image: job.image.clone(), source })?
                .ok_or_else(|| SignatureError::Missing(job.image.clone()))?;
            oci_digest(&manifest)
        }
    };
    if !berth_shared::signing::is_sha256_digest(&digest) {
        return Err(SignatureError::NotPinned(job.image.clone()));
    }
    // The job may name the registry's private address: the signature names the repository as
    // the provider pushed it, so only the repository is compared here.
    let expected = Expected { digest: &digest, repository, any_registry: true };
    match sigstore::verify(&registry, expected, keys).await {
        Ok(key) => {
            eprintln!("berth-agent: {repository}@{digest} is signed by trusted key {key}");
            Ok(format!("{}/{repository}@{digest}", job.registry))
        }
        Err(failure) => Err(SignatureError::Untrusted(failure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_names_the_token_endpoint() {
        let (realm, query) = challenge(
            r#"Bearer realm="http://b/v1/registry/token",service="reg",scope="repository:acme/web:pull,push""#,
        )
        .unwrap();
        assert_eq!(realm, "http://b/v1/registry/token");
        assert_eq!(query[1], ("scope".into(), "repository:acme/web:pull,push".into()));
        assert!(challenge("Basic realm=x").is_none());
        assert_eq!(base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(base_url("registry.example.com"), "https://registry.example.com");
    }
}

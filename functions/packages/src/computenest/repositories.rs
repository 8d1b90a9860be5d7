//! The repository operations: a push key for the caller's registry namespace (Compute Nest's
//! ACR credentials), and the namespace's repositories and tags, read from the registry.

use std::time::Duration;

use berth_shared::credentials::temporary_key::{self, KeyPurpose};
use berth_shared::names::RepositoryName;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::secret::Secret;
use serde::Serialize;

use super::Call;
use super::error::CnError;
use super::view::{self, Paging, REGION};
use crate::registry::{RegistryClient, RegistryError};

/// Lifetime of the push keys handed out.
pub const KEY_TTL_SECONDS: u64 = 3600;
/// Timeout of each registry request.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// `Credentials` of GetArtifactRepositoryCredentials.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RepositoryCredentials {
    access_key_id: String,
    access_key_secret: String,
    password: Secret<String>,
    security_token: String,
    username: String,
}

/// An `AvailableResources` entry: `RepositoryName` is the registry host (what `docker login`
/// is given), `Path` the namespace's path with `*` (its directory is where images are pushed).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AvailableResource {
    path: String,
    region_id: &'static str,
    repository_name: String,
}

/// GetArtifactRepositoryCredentials answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CredentialsAnswer {
    available_resources: Vec<AvailableResource>,
    credentials: RepositoryCredentials,
    expire_date: String,
}

/// GetArtifactRepositoryCredentials: a push key (one hour) for the whole namespace.
pub async fn credentials(call: &Call<'_>) -> Result<CredentialsAnswer, CnError> {
    let kind = call.params.required("ArtifactType")?;
    if kind == "File" {
        return Err(CnError::invalid(
            "ArtifactType",
            "Berth keeps files itself: upload a File version's bytes with PUT /v1/packages/{name}/versions/{version}/file",
        ));
    }
    view::package_type("ArtifactType", kind)?;
    let registry = &call.context.config.registry.host;
    let key = temporary_key::mint(
        &call.context.signing,
        registry,
        &call.account,
        KeyPurpose::Push,
        None,
        KEY_TTL_SECONDS,
        unix_now(),
    )
    .map_err(CnError::internal)?;
    tracing::info!(account = %call.account, expires_at = %key.expires_at, "repository push key minted");
    Ok(CredentialsAnswer {
        available_resources: key
            .available_resources
            .iter()
            .map(|r| AvailableResource { path: r.path.clone(), region_id: REGION, repository_name: registry.clone() })
            .collect(),
        credentials: RepositoryCredentials {
            access_key_id: String::new(),
            access_key_secret: String::new(),
            password: key.password,
            security_token: String::new(),
            username: key.username,
        },
        expire_date: key.expires_at,
    })
}

fn client(call: &Call<'_>) -> RegistryClient {
    RegistryClient::new(call.context.config.registry.clone(), call.context.signing.clone(), REGISTRY_TIMEOUT)
}

fn registry_refusal(error: RegistryError) -> CnError {
    tracing::warn!(%error, "registry read failed");
    CnError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "The registry did not answer; retry later.",
    )
}

/// A repository of ListAcrImageRepositories (`RepoId` is the name relative to the namespace).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Repository {
    namespace: String,
    repo_id: String,
    repo_name: String,
    repo_type: &'static str,
}

/// ListAcrImageRepositories answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RepositoryPage {
    repositories: Vec<Repository>,
    #[serde(flatten)]
    paging: Paging,
}

/// ListAcrImageRepositories: the namespace's repositories (images and charts alike), those
/// whose name contains `RepoName` if given.
pub async fn list(call: &Call<'_>) -> Result<RepositoryPage, CnError> {
    if let Some(kind) = call.params.optional("ArtifactType") {
        view::package_type("ArtifactType", kind)?;
    }
    let wanted = call.params.optional("RepoName");
    let names = client(call).repositories(call.account.as_str()).await.map_err(registry_refusal)?;
    let repositories: Vec<Repository> = names
        .iter()
        .filter_map(|name| name.relative_to(&call.account))
        .filter(|relative| wanted.is_none_or(|w| relative.contains(w)))
        .map(|relative| Repository {
            namespace: call.account.to_string(),
            repo_id: relative.to_owned(),
            repo_name: relative.to_owned(),
            repo_type: "Private",
        })
        .collect();
    let (repositories, paging) = view::page(repositories, &call.params)?;
    Ok(RepositoryPage { repositories, paging })
}

/// A tag of ListAcrImageTags.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    tag: String,
}

/// ListAcrImageTags answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagPage {
    images: Vec<Image>,
    #[serde(flatten)]
    paging: Paging,
}

/// ListAcrImageTags: the tags of repository `RepoId` (as ListAcrImageRepositories names it).
pub async fn tags(call: &Call<'_>) -> Result<TagPage, CnError> {
    let id = call.params.required("RepoId")?;
    let repository = RepositoryName::within(&call.account, id)
        .ok()
        .filter(|r| !r.is_namespace_root(&call.account))
        .ok_or_else(|| {
            CnError::not_found(
                "Repository",
                format!("Repository {} does not exist.", id.chars().take(128).collect::<String>()),
            )
        })?;
    let tags = client(call).tags(&repository).await.map_err(registry_refusal)?;
    if tags.is_empty() {
        return Err(CnError::not_found("Repository", format!("Repository {id} does not exist or has no tags.")));
    }
    let images: Vec<Image> = tags.into_iter().map(|tag| Image { tag }).collect();
    let (images, paging) = view::page(images, &call.params)?;
    Ok(TagPage { images, paging })
}

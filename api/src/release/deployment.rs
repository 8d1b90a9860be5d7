//! Deployments: the image, working directory and scripts a release runs on each host.

use serde::{Deserialize, Serialize};

use crate::health::{HealthCheck, HealthRequest};

/// Where a deployment's image is, as given by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeploymentImage {
    /// A full address, `REGISTRY/NAMESPACE/REPOSITORY:TAG` or `...@sha256:...`.
    Address { address: String },
    /// An image of a published (`Available`) ContainerImage package version, pinned to the
    /// digest its publish check found. Resolved with `berth_shared::release::image_from_package`
    /// before validation.
    Package {
        package: String,
        /// The version's name.
        version: String,
        /// The image's repository (full, `namespace/name`), when the version has several.
        #[serde(default)]
        image: Option<String>,
    },
    /// The parts of an address; `registry` defaults to Berth's registry.
    Parts {
        /// Registry host; Berth's own when absent.
        #[serde(default)]
        registry: Option<String>,
        /// The namespace (your account ID).
        namespace: String,
        /// Repository within the namespace.
        repository: String,
        /// Tag or `sha256:` digest.
        version: String,
    },
}

/// A parsed image reference in Berth's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host.
    pub registry: String,
    /// Full repository name (`namespace/...`).
    pub repository: String,
    /// `:tag` or `@sha256:...` as written after the repository.
    pub reference: String,
}

impl ImageRef {
    /// The address hosts pull: `registry/repository:tag` or `registry/repository@digest`.
    pub fn address(&self) -> String {
        format!("{}/{}{}", self.registry, self.repository, self.reference)
    }
}

/// Which address of the registry hosts pull from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistryEndpoint {
    /// The address clients use (`BERTH_REGISTRY_HOST`).
    #[default]
    Public,
    /// The private (VPC) address (`BERTH_REGISTRY_PRIVATE_HOST`).
    Private,
}

/// A deployment as requested.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRequest {
    /// Its name, unique in the application.
    pub name: String,
    pub image: DeploymentImage,
    /// Absolute directory the scripts run in; created if missing.
    pub working_directory: String,
    /// Shell script that starts the new version.
    pub start_script: String,
    /// Shell script that stops the current (and any previous) version, and succeeds when
    /// nothing runs.
    pub stop_script: String,
    /// Timeout of each step (pull, stop, start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_seconds: Option<u64>,
    /// Pull over the registry's public (default) or private address.
    #[serde(default)]
    pub registry_endpoint: RegistryEndpoint,
    /// Only `linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Only `shell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_language: Option<String>,
    /// On update: the revision being replaced, if the caller wants the update refused when
    /// another came first (compare-and-swap); ignored on create, so a deployment read back
    /// can be posted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// How a host shows that the application came up after its start script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRequest>,
}

/// A validated deployment revision, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// The image, resolved.
    pub image: ImageRef,
    /// Absolute working directory.
    pub working_directory: String,
    /// Start script (bash).
    pub start_script: String,
    /// Stop script (bash).
    pub stop_script: String,
    /// Timeout of each step.
    pub step_timeout_seconds: u64,
    /// The address hosts pull from.
    #[serde(default)]
    pub registry_endpoint: RegistryEndpoint,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// The revision number, from 1; each update makes the next (documents from before
    /// revisions are revision 1).
    #[serde(default = "first_revision")]
    pub revision: u64,
    /// The health check each host runs after its start script (and while watched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

fn first_revision() -> u64 {
    1
}

impl Deployment {
    /// The registry host and image address hosts pull: the private address when chosen and
    /// configured, else the public one.
    pub fn pull_address(&self, private_host: Option<&str>) -> (String, String) {
        match (self.registry_endpoint, private_host) {
            (RegistryEndpoint::Private, Some(host)) => {
                (host.to_owned(), format!("{host}/{}{}", self.image.repository, self.image.reference))
            }
            _ => (self.image.registry.clone(), self.image.address()),
        }
    }
}

/// `GET /v1/applications/{app}/deployments` answer: each deployment at its current revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentPage {
    pub deployments: Vec<Deployment>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `GET /v1/applications/{app}/deployments/{name}/revisions` answer, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionPage {
    pub revisions: Vec<Deployment>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

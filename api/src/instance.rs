//! Service instances and their pull credentials, as a client creates and reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/services/{id}/instances` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInstance {
    pub name: String,
    /// Each credential expires after this many seconds; never, when absent.
    pub credential_ttl_seconds: Option<u64>,
}

/// A pull credential, in the answer that mints it (shown only there).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    pub registry: String,
    pub username: String,
    pub password: String,
    /// RFC 3339; absent when it never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A live credential of an instance: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSummary {
    pub id: String,
}

/// Who pulled what, as last flushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePulls {
    /// Registry tokens granting pull, per repository.
    #[serde(default)]
    pub repositories: BTreeMap<String, u64>,
    /// RFC 3339 time of the newest one.
    #[serde(default)]
    pub last_pull_at: Option<String>,
}

/// An instance as answered by get, suspend, resume and create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub name: String,
    /// `active` or `suspended`.
    pub state: String,
    pub repositories: Vec<String>,
    pub credentials: Vec<CredentialSummary>,
    #[serde(default)]
    pub pulls: InstancePulls,
}

/// `POST /v1/services/{id}/instances` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedInstance {
    pub instance: InstanceView,
    pub credential: IssuedCredential,
}

/// `POST .../instances/{name}/credentials` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedCredential {
    pub credential: IssuedCredential,
}

/// An instance in a listing: counts, no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub name: String,
    pub state: String,
    pub repositories: usize,
    pub credentials: usize,
}

/// `GET /v1/services/{id}/instances` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePage {
    pub instances: Vec<InstanceSummary>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

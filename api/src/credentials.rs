//! Keys as a client asks for and reads them: temporary registry keys, the access keys that
//! sign Compute Nest calls, and the public keys images are signed with.

use serde::{Deserialize, Serialize};

/// What a temporary key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPurpose {
    /// Providers: push and pull in their namespace.
    Push,
    /// Deployments: pull only.
    Pull,
}

impl KeyPurpose {
    /// The purpose its wire name (`push`, `pull`) names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "push" => Some(Self::Push),
            "pull" => Some(Self::Pull),
            _ => None,
        }
    }
}

/// `POST /v1/registry/credentials` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// `push` or `pull`.
    pub purpose: KeyPurpose,
    /// Repositories (relative to the namespace) the key is limited to; none: all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
    /// Lifetime in seconds; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// A temporary registry key, as handed to its owner.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporaryKey {
    pub registry: String,
    pub username: String,
    pub password: String,
    /// RFC 3339.
    pub expires_at: String,
    /// A login command that reads the password from stdin.
    pub docker_login: String,
    /// base64 of `{"auths":{registry:{username,password,auth}}}`.
    pub dockerconfigjson: String,
}

impl std::fmt::Debug for TemporaryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryKey")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/access-keys` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccessKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `POST /v1/access-keys` answer: the only time the secret is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedAccessKey {
    pub access_key_id: String,
    pub access_key_secret: String,
}

impl std::fmt::Debug for CreatedAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .finish()
    }
}

/// An access key in a listing: no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeySummary {
    pub access_key_id: String,
    /// `Active`, `Revoked` or `Expired`.
    pub status: String,
    pub created_at: String,
    #[serde(default)]
    pub description: String,
}

/// `GET /v1/access-keys` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyList {
    pub access_keys: Vec<AccessKeySummary>,
}

/// `POST /v1/signing-keys` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSigningKey {
    /// PEM.
    pub public_key: String,
    pub description: String,
}

/// A signing key (public part only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyView {
    pub id: String,
    pub status: String,
    pub created_at: String,
    pub fingerprint: String,
    #[serde(default)]
    pub description: String,
}

/// `GET /v1/signing-keys` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyList {
    pub require_signature: bool,
    pub signing_keys: Vec<SigningKeyView>,
}

/// `PUT /v1/signing-policy` body, and the part of its answer (or a package's) a client reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignaturePolicy {
    #[serde(default)]
    pub require_signature: Option<bool>,
}

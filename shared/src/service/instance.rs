//! Service instances: one deployment of a service to one customer. An instance pins the
//! package versions its service resolves to when it is created (by digest), the repositories
//! they need, and the digests of its live pull credentials.
//!
//! Documents: `accounts/{acct}/instances/{service}/{name}.json` (the instance, its
//! credentials' digests) and `accounts/{acct}/instance-pulls/{uid}.json` (the pull counts the
//! token endpoint aggregates and writes at most once per flush interval), apart so that
//! counting pulls never contends with suspending or rotating.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::credentials::instance_credential::{InstanceRef, StoredCredential};
use crate::names::{AccountId, RepositoryName};
use crate::platform::clock::rfc3339;
use crate::platform::http::error::ApiError;
use crate::service::{ArtifactRef, VersionSelector};

/// Most live credentials one instance holds; a render past it revokes the oldest.
pub const MAX_LIVE_CREDENTIALS: usize = 10;
/// Shortest `credential_ttl_seconds`.
pub const MIN_CREDENTIAL_TTL_SECONDS: u64 = 60;
/// Longest `credential_ttl_seconds` (about ten years).
pub const MAX_CREDENTIAL_TTL_SECONDS: u64 = 315_360_000;

/// Whether the instance may pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Its credentials are accepted.
    Active,
    /// Every credential is refused until it is resumed.
    Suspended,
}

/// A relation of the service, pinned to the version it resolved to at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedVersion {
    pub package: String,
    /// The version's name.
    pub version: String,
    pub number: u32,
    /// Its images (or chart), with the digests they were checked at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PinnedImage>,
}

/// An image of a pinned version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedImage {
    pub repository: RepositoryName,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique id of this instance (a re-created name gets a new one).
    pub uid: String,
    pub service: String,
    pub name: String,
    pub state: InstanceState,
    /// Relations keyed by `computenest::KIND::NAME`, pinned.
    pub pins: BTreeMap<String, PinnedVersion>,
    /// Exactly the repositories its pinned versions need, sorted.
    pub repositories: Vec<RepositoryName>,
    /// Lifetime of each credential handed out, if they expire at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ttl_seconds: Option<u64>,
    /// Live credentials (digests only), oldest first.
    pub credentials: Vec<StoredCredential>,
    pub created_at: String,
    pub updated_at: String,
    /// The limit slot it holds (see [`slots_prefix`]); `None` for instances made before slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<usize>,
}

impl Instance {
    /// The relations a render for this instance uses: every relation pinned by version name.
    pub fn relations(&self) -> BTreeMap<String, ArtifactRef> {
        self.pins
            .iter()
            .map(|(key, pin)| {
                (
                    key.clone(),
                    ArtifactRef { package: pin.package.clone(), version: VersionSelector::Name(pin.version.clone()) },
                )
            })
            .collect()
    }

    /// Which instance this is, as credentials name it.
    pub fn reference(&self, account: &AccountId) -> InstanceRef {
        InstanceRef { account: account.clone(), service: self.service.clone(), instance: self.name.clone() }
    }

    /// Adds a credential; expired ones are dropped, and past [`MAX_LIVE_CREDENTIALS`] the oldest.
    /// With `replace`, every other credential is revoked (a rotation).
    pub fn add_credential(&mut self, credential: StoredCredential, replace: bool, now: u64) {
        if replace {
            self.credentials.clear();
        }
        self.credentials.retain(|c| c.is_live(now));
        while self.credentials.len() >= MAX_LIVE_CREDENTIALS {
            self.credentials.remove(0);
        }
        self.credentials.push(credential);
        self.updated_at = rfc3339(now);
    }

    /// Whether `password` is a live credential of this active instance.
    pub fn accepts(&self, password: &str, now: u64) -> Option<&StoredCredential> {
        if self.state != InstanceState::Active {
            return None;
        }
        self.credentials.iter().find(|c| c.is_live(now) && c.matches(password))
    }

    /// Whether the credential with id `id` is still live and the instance active (for keys
    /// exchanged for it).
    pub fn still_accepts(&self, id: &str, now: u64) -> Option<&StoredCredential> {
        if self.state != InstanceState::Active {
            return None;
        }
        self.credentials.iter().find(|c| c.id == id && c.is_live(now))
    }
}

/// `POST /v1/services/{id}/instances` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    /// The instance's name: package-name rules.
    pub name: String,
    /// When given, each credential expires after this many seconds; else only revocation ends it.
    #[serde(default)]
    pub credential_ttl_seconds: Option<u64>,
}

impl CreateInstanceRequest {
    /// Checks the name and TTL, naming the field at fault.
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_instance_name("name", &self.name)?;
        if let Some(ttl) = self.credential_ttl_seconds
            && !(MIN_CREDENTIAL_TTL_SECONDS..=MAX_CREDENTIAL_TTL_SECONDS).contains(&ttl)
        {
            return Err(ApiError::invalid(
                "credential_ttl_seconds",
                "out_of_range",
                format!(
                    "credential_ttl_seconds must be between {MIN_CREDENTIAL_TTL_SECONDS} and {MAX_CREDENTIAL_TTL_SECONDS}"
                ),
            ));
        }
        Ok(())
    }
}

/// Instance names follow the package-name rules (3..=128 letters, digits, `_`).
pub fn validate_instance_name(field: &str, name: &str) -> Result<(), ApiError> {
    crate::package::validate_package_name(field, name).map_err(|e| match e {
        ApiError::Invalid { field, code, .. } => ApiError::Invalid {
            field,
            code,
            message: format!(
                "instance names are {} to {} letters, digits or '_'",
                crate::package::NAME_LEN.0,
                crate::package::NAME_LEN.1
            ),
        },
        other => other,
    })
}

/// The pull counts of an instance, as the token endpoint writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePulls {
    /// Registry tokens granting pull, per repository.
    pub repositories: BTreeMap<String, u64>,
    /// RFC 3339 time of the newest such token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pull_at: Option<String>,
}

/// A credential in an instance's view: never its digest.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialSummary {
    pub id: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `GET` of an instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub service: String,
    pub name: String,
    pub state: InstanceState,
    pub pins: BTreeMap<String, PinnedVersion>,
    pub repositories: Vec<RepositoryName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_ttl_seconds: Option<u64>,
    /// Live credentials, without secrets or digests.
    pub credentials: Vec<CredentialSummary>,
    /// Who pulled what, as last flushed.
    pub pulls: InstancePulls,
    pub created_at: String,
    pub updated_at: String,
}

impl InstanceView {
    /// The view of `instance` with its pull counts, at `now` (expired credentials left out).
    pub fn new(instance: Instance, pulls: InstancePulls, now: u64) -> Self {
        let credentials = instance
            .credentials
            .iter()
            .filter(|c| c.is_live(now))
            .map(|c| CredentialSummary {
                id: c.id.clone(),
                created_at: rfc3339(c.created_at),
                expires_at: c.expires_at.map(rfc3339),
            })
            .collect();
        Self {
            service: instance.service,
            name: instance.name,
            state: instance.state,
            pins: instance.pins,
            repositories: instance.repositories,
            credential_ttl_seconds: instance.credential_ttl_seconds,
            credentials,
            pulls,
            created_at: instance.created_at,
            updated_at: instance.updated_at,
        }
    }
}

/// The instance document.
pub fn instance_path(account: &AccountId, service: &str, name: &str) -> String {
    format!("accounts/{account}/instances/{service}/{name}.json")
}

/// Folder of a service's instances.
pub fn instances_prefix(account: &AccountId, service: &str) -> String {
    format!("accounts/{account}/instances/{service}")
}

/// Folder of a service's instance limit slots (`BERTH_MAX_INSTANCES_PER_SERVICE` at most).
pub fn slots_prefix(account: &AccountId, service: &str) -> String {
    format!("accounts/{account}/instance-slots/{service}")
}

/// Who holds an instance's slot: its name and uid (a re-created name is another holder).
pub fn slot_holder(name: &str, uid: &str) -> String {
    format!("{name}/{uid}")
}

/// The pull counts of the instance with `uid`.
pub fn pulls_path(account: &AccountId, uid: &str) -> String {
    format!("accounts/{account}/instance-pulls/{uid}.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::instance_credential::mint;

    fn instance() -> Instance {
        Instance {
            uid: "u".into(),
            service: "web".into(),
            name: "cust".into(),
            state: InstanceState::Active,
            pins: BTreeMap::new(),
            repositories: Vec::new(),
            credential_ttl_seconds: None,
            credentials: Vec::new(),
            created_at: rfc3339(0),
            updated_at: rfc3339(0),
            slot: None,
        }
    }

    #[test]
    fn credentials_are_bounded_rotated_and_refused_when_suspended() {
        let mut instance = instance();
        let reference = instance.reference(&AccountId::parse("acme").unwrap());
        let mut passwords = Vec::new();
        for _ in 0..(MAX_LIVE_CREDENTIALS + 2) {
            let (issued, stored) = mint("r", &reference, None, 10);
            instance.add_credential(stored, false, 10);
            passwords.push(issued.password.expose().clone());
        }
        assert_eq!(instance.credentials.len(), MAX_LIVE_CREDENTIALS);
        assert!(instance.accepts(&passwords[0], 10).is_none(), "the oldest was revoked");
        assert!(instance.accepts(&passwords[MAX_LIVE_CREDENTIALS + 1], 10).is_some());
        let (issued, stored) = mint("r", &reference, Some(60), 20);
        instance.add_credential(stored, true, 20);
        assert_eq!(instance.credentials.len(), 1, "a rotation revokes the others");
        assert!(instance.accepts(&passwords[MAX_LIVE_CREDENTIALS + 1], 20).is_none());
        assert!(instance.accepts(issued.password.expose(), 79).is_some());
        assert!(instance.accepts(issued.password.expose(), 80).is_none(), "expired");
        instance.state = InstanceState::Suspended;
        assert!(instance.accepts(issued.password.expose(), 21).is_none());
        assert!(instance.still_accepts(&issued.id, 21).is_none());
    }

    #[test]
    fn names_follow_the_package_rules() {
        for bad in ["ab", "has-dash", "has space", "../x"] {
            let request = CreateInstanceRequest { name: bad.into(), credential_ttl_seconds: None };
            assert!(matches!(request.validate(), Err(ApiError::Invalid { ref field, .. }) if field == "name"), "{bad}");
        }
        let request = CreateInstanceRequest { name: "cust_1".into(), credential_ttl_seconds: Some(59) };
        assert!(
            matches!(request.validate(), Err(ApiError::Invalid { ref field, .. }) if field == "credential_ttl_seconds")
        );
    }
}

//! Instance credentials: long-lived, revocable pull credentials bound to one service instance.
//!
//! The secret is a random token of its own kind (`bic_` and 32 random bytes); only its SHA-256 is stored, in the instance's
//! document. The username names the instance (`ACCOUNT+SERVICE+INSTANCE`: none of the three
//! grammars has a `+`), so the token endpoint finds the one document to check with one read.
//! Unlike a temporary key's, the password is not a signed grant: it is valid exactly while the
//! instance document lists its digest and the instance is active, so revocation is at once.

use serde::{Deserialize, Serialize};

use crate::credentials::docker_config::dockerconfigjson;
use crate::names::AccountId;
use crate::platform::clock::rfc3339;
use crate::platform::digest::sha256_hex;
use crate::platform::secret::Secret;
use crate::platform::token_kind::INSTANCE_CREDENTIAL;

/// Separator of the username's parts.
const SEPARATOR: char = '+';

/// Which instance a credential (or a key exchanged for one) belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstanceRef {
    /// The provider's account (its namespace).
    pub account: AccountId,
    /// The service.
    pub service: String,
    /// The instance's name.
    pub instance: String,
}

impl InstanceRef {
    /// The username of the instance's credentials: `ACCOUNT+SERVICE+INSTANCE`.
    pub fn username(&self) -> String {
        format!("{}{SEPARATOR}{}{SEPARATOR}{}", self.account, self.service, self.instance)
    }

    /// The instance a username names, if it has the shape of one. The parts are checked
    /// against their grammars (they become store paths).
    pub fn from_username(username: &str) -> Option<Self> {
        let mut parts = username.split(SEPARATOR);
        let (account, service, instance) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let word = |s: &str, dash: bool| {
            (3..=128).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dash && b == b'-'))
        };
        if !word(service, true) || !word(instance, false) {
            return None;
        }
        Some(Self {
            account: AccountId::parse(account).ok()?,
            service: service.to_owned(),
            instance: instance.to_owned(),
        })
    }
}

/// What a temporary key exchanged for an instance credential is bound to: the token endpoint
/// checks, for each token, that the instance is still active and the credential still listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceBinding {
    /// The instance.
    pub of: InstanceRef,
    /// The id of the credential it was exchanged for.
    pub credential: String,
}

/// A credential as the instance document keeps it: its digest, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// Public id (shown in the instance, used to tell credentials apart).
    pub id: String,
    /// SHA-256 hex of the password.
    pub sha256: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// Seconds since the epoch; none: valid until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl StoredCredential {
    /// Whether it is still valid by time at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|exp| exp > now)
    }

    /// Whether `password` is this credential's.
    pub fn matches(&self, password: &str) -> bool {
        let digest = sha256_hex(password.as_bytes());
        // Digests of a secret: a timing difference tells nothing about the secret itself.
        aws_lc_rs::constant_time::verify_slices_are_equal(digest.as_bytes(), self.sha256.as_bytes()).is_ok()
    }
}

/// A credential as handed out, once, to its owner.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedCredential {
    /// Its public id.
    pub id: String,
    /// Registry host clients use.
    pub registry: String,
    /// `ACCOUNT+SERVICE+INSTANCE`.
    pub username: String,
    /// The secret. Never logged, shown only in this answer.
    pub password: Secret<String>,
    /// base64 of `{"auths":{registry:{username,password,auth}}}`, for a Kubernetes Secret.
    pub dockerconfigjson: Secret<String>,
    /// RFC 3339 expiry, when `credential_ttl_seconds` was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Mints a credential for `instance`: what to hand out and what to store.
pub fn mint(
    registry: &str,
    instance: &InstanceRef,
    ttl_seconds: Option<u64>,
    now: u64,
) -> (IssuedCredential, StoredCredential) {
    let password = INSTANCE_CREDENTIAL.mint();
    let username = instance.username();
    let stored = StoredCredential {
        id: uuid::Uuid::new_v4().simple().to_string().chars().take(12).collect(),
        sha256: sha256_hex(password.as_bytes()),
        created_at: now,
        expires_at: ttl_seconds.map(|ttl| now.saturating_add(ttl)),
    };
    let issued = IssuedCredential {
        id: stored.id.clone(),
        registry: registry.to_owned(),
        dockerconfigjson: Secret::new(dockerconfigjson(registry, &username, &password)),
        username,
        password: Secret::new(password),
        expires_at: stored.expires_at.map(rfc3339),
    };
    (issued, stored)
}

/// Whether a password is an instance credential's (rather than a temporary key's).
pub fn is_instance_credential(password: &str) -> bool {
    INSTANCE_CREDENTIAL.marks(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> InstanceRef {
        InstanceRef { account: AccountId::parse("acme").unwrap(), service: "web-svc".into(), instance: "cust_1".into() }
    }

    #[test]
    fn usernames_round_trip_and_refuse_other_shapes() {
        let username = instance().username();
        assert_eq!(username, "acme+web-svc+cust_1");
        assert_eq!(InstanceRef::from_username(&username), Some(instance()));
        for bad in
            ["acme", "acme+web", "acme+web-svc+cust-1", "acme+web+x+y", "ACME+web+cust", "acme+../x+cust", "acme+web+c"]
        {
            assert_eq!(InstanceRef::from_username(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_digest_is_stored_and_it_matches_only_its_password() {
        let (issued, stored) = mint("r:5000", &instance(), None, 100);
        let password = issued.password.expose();
        assert!(is_instance_credential(password));
        assert_ne!(&stored.sha256, password);
        let stored_text = serde_json::to_string(&stored).unwrap();
        assert!(!stored_text.contains(password.as_str()));
        assert!(stored.matches(password));
        assert!(!stored.matches("bic_other"));
        assert!(stored.is_live(u64::MAX));
        assert_eq!(issued.expires_at, None);
        assert!(!format!("{issued:?}").contains(password.as_str()));
        let (issued, stored) = mint("r:5000", &instance(), Some(60), 100);
        assert!(stored.is_live(159) && !stored.is_live(160));
        assert_eq!(issued.expires_at.as_deref(), Some(rfc3339(160).as_str()));
    }
}

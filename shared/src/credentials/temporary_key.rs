//! Temporary keys: a username and a password that is itself a signed, expiring grant
//! (namespace, purpose, optional repositories). Stateless to verify.

use serde::{Deserialize, Serialize};

use crate::credentials::docker_config::dockerconfigjson;
use crate::names::AccountId;
use crate::names::RepositoryName;
use crate::platform::clock::rfc3339;
use crate::platform::jws::SigningKeys;
use crate::platform::secret::Secret;

/// What a key is for: push (providers) or pull (deployments). The wire type the CLI sends.
pub use berth_api::credentials::KeyPurpose;

/// Shortest key lifetime.
pub const MIN_TTL_SECONDS: u64 = 60;
/// Longest key lifetime (12 hours).
pub const MAX_TTL_SECONDS: u64 = 43_200;
/// Default key lifetime.
pub const DEFAULT_TTL_SECONDS: u64 = 3_600;
/// Most repositories one key may be limited to.
pub const MAX_KEY_REPOSITORIES: usize = 100;
/// Longest repository name relative to the namespace: what fits under the longest account id
/// and its `/` in distribution's 255, so the limit is the same for every namespace.
pub const MAX_RELATIVE_REPOSITORY: usize = crate::names::MAX_REPOSITORY_NAME - crate::names::MAX_ACCOUNT_ID_LEN - 1;
/// Audience of key passwords: nothing else accepts them (the registry wants its service).
pub const KEY_AUDIENCE: &str = "berth:temporary-key";
/// `typ` of key passwords.
pub const KEY_TYPE: &str = "berth-key+jwt";

/// The claims inside a key's password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    /// The account, which is also the username and the namespace.
    pub sub: AccountId,
    /// Always [`KEY_AUDIENCE`].
    pub aud: String,
    /// Push or pull.
    pub purpose: KeyPurpose,
    /// When given, the only repositories the key reaches (full names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<RepositoryName>>,
    /// Issued at.
    pub iat: u64,
    /// Expiry: no registry token outlives it.
    pub exp: u64,
    /// Unique id of the key.
    pub jti: String,
    /// For a key exchanged for an instance credential: the instance and credential it stands
    /// for, which must still be valid whenever it is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<crate::credentials::instance_credential::InstanceBinding>,
}

impl KeyGrant {
    /// Whether the key reaches `repository`: in its namespace, and in its list if it has one.
    pub fn reaches(&self, repository: &RepositoryName) -> bool {
        repository.is_in(&self.sub) && self.repositories.as_ref().is_none_or(|list| list.contains(repository))
    }
}

/// A minted key, as handed to its owner.
#[derive(Debug, Clone, Serialize)]
pub struct TemporaryKey {
    /// Registry host clients use, e.g. `registry.example.com` or `127.0.0.1:5000`.
    pub registry: String,
    /// The namespace (account ID).
    pub namespace: AccountId,
    /// What the key reaches.
    pub available_resources: Vec<AvailableResource>,
    /// Username for `docker login`.
    pub username: String,
    /// Password: a signed grant. Never logged.
    pub password: Secret<String>,
    pub purpose: KeyPurpose,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// A login command that reads the password from stdin.
    pub docker_login: String,
    /// base64 of `{"auths":{registry:{username,password,auth}}}`. Never logged.
    pub dockerconfigjson: Secret<String>,
}

/// A repository (or the namespace wildcard) a key reaches.
#[derive(Debug, Clone, Serialize)]
pub struct AvailableResource {
    /// Name relative to the namespace, or `*` for all of it.
    pub repository_name: String,
    /// Full path for clients: `registry/namespace/name`.
    pub path: String,
}

/// Why a key could not be minted: both are the caller's bug, never the requester's.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// A listed repository is not below the key's namespace.
    #[error("repository '{0}' is not below the key's namespace")]
    OutsideNamespace(RepositoryName),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Mints a temporary key. `now` in seconds since the epoch; `ttl` already validated.
pub fn mint(
    keys: &SigningKeys,
    registry: &str,
    account: &AccountId,
    purpose: KeyPurpose,
    repositories: Option<Vec<RepositoryName>>,
    ttl_seconds: u64,
    now: u64,
) -> Result<TemporaryKey, MintError> {
    mint_bound(keys, registry, account, purpose, repositories, ttl_seconds, now, None)
}

/// Mints a pull key for an instance, in exchange for its credential: the key is refused as soon
/// as the instance or that credential is (see [`KeyGrant::instance`]).
pub fn mint_exchanged(
    keys: &SigningKeys,
    registry: &str,
    binding: crate::credentials::instance_credential::InstanceBinding,
    repositories: Vec<RepositoryName>,
    ttl_seconds: u64,
    now: u64,
) -> Result<TemporaryKey, MintError> {
    let account = binding.of.account.clone();
    mint_bound(keys, registry, &account, KeyPurpose::Pull, Some(repositories), ttl_seconds, now, Some(binding))
}

#[allow(clippy::too_many_arguments)]
fn mint_bound(
    keys: &SigningKeys,
    registry: &str,
    account: &AccountId,
    purpose: KeyPurpose,
    repositories: Option<Vec<RepositoryName>>,
    ttl_seconds: u64,
    now: u64,
    instance: Option<crate::credentials::instance_credential::InstanceBinding>,
) -> Result<TemporaryKey, MintError> {
    let available_resources = match &repositories {
        Some(list) => list
            .iter()
            .map(|r| {
                let relative = r.relative_to(account).ok_or_else(|| MintError::OutsideNamespace(r.clone()))?;
                Ok(AvailableResource { repository_name: relative.to_owned(), path: format!("{registry}/{r}") })
            })
            .collect::<Result<Vec<_>, MintError>>()?,
        None => vec![AvailableResource { repository_name: "*".into(), path: format!("{registry}/{account}/*") }],
    };
    let grant = KeyGrant {
        sub: account.clone(),
        aud: KEY_AUDIENCE.to_owned(),
        purpose,
        repositories: repositories.clone(),
        iat: now,
        exp: now.saturating_add(ttl_seconds),
        jti: uuid::Uuid::new_v4().to_string(),
        instance,
    };
    let password = keys.sign(KEY_TYPE, &grant)?;
    let username = account.to_string();
    Ok(TemporaryKey {
        registry: registry.to_owned(),
        namespace: account.clone(),
        available_resources,
        docker_login: format!("docker login --username {username} --password-stdin {registry}"),
        dockerconfigjson: Secret::new(dockerconfigjson(registry, &username, &password)),
        username,
        password: Secret::new(password),
        purpose,
        expires_at: rfc3339(grant.exp),
    })
}

/// Verifies a key's username and password; returns its grant.
pub fn verify(keys: &SigningKeys, username: &str, password: &str) -> Result<KeyGrant, KeyRefusal> {
    let grant: KeyGrant = keys.verify(password, KEY_TYPE, KEY_AUDIENCE).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => KeyRefusal::Expired,
        _ => KeyRefusal::Invalid,
    })?;
    if grant.sub.as_str() != username {
        return Err(KeyRefusal::Invalid);
    }
    Ok(grant)
}

/// Why a key was refused. Deliberately vague: a caller learns only that it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// Wrong username or password.
    #[error("invalid username or password")]
    Invalid,
    /// The key has expired.
    #[error("the temporary key has expired; request a new one")]
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_limited_to_the_namespace_itself_is_refused_not_sliced() {
        let keys = crate::platform::jws::SigningKeys::generate();
        let acme = AccountId::parse("acme").unwrap();
        let root = RepositoryName::parse("acme").unwrap();
        let other = RepositoryName::parse("acmex/app").unwrap();
        for repository in [root, other] {
            let minted = mint(&keys, "r", &acme, KeyPurpose::Pull, Some(vec![repository]), 60, 0);
            assert!(matches!(minted, Err(MintError::OutsideNamespace(_))), "{minted:?}");
        }
        let key =
            mint(&keys, "r", &acme, KeyPurpose::Pull, Some(vec![RepositoryName::parse("acme/a/b").unwrap()]), 60, 0)
                .unwrap();
        assert_eq!(key.available_resources[0].repository_name, "a/b");
    }
}

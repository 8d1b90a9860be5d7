//! Access keys: an `AccessKeyId` and `AccessKeySecret` pair an account creates to sign requests
//! to Berth's Compute Nest API (ACS3-HMAC-SHA256), as Alibaba Cloud's SDKs do.
//!
//! The secret is never stored: it is derived from the id with Berth's signing key (HMAC-SHA256
//! keyed by the private key), so only Berth can recompute it, and a stolen store does not reveal
//! it. The record keeps the `kid` of the key it was derived with, so a rotated-out key still
//! verifies while it is configured as a previous key. Revoking marks the record and keeps it, so
//! a revoked key is refused as disabled (`InvalidAccessKeyId.Inactive`), not as unknown.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::names::AccountId;
use crate::platform::jws::SigningKeys;
use crate::platform::secret::Secret;

/// Prefix of every access key id (`BAK` + 20 upper-case base32 characters).
pub const ID_PREFIX: &str = "BAK";
/// Length of an id.
pub const ID_LEN: usize = ID_PREFIX.len() + 20;
/// Most active access keys an account may hold at once.
pub const MAX_ACTIVE_PER_ACCOUNT: usize = 10;
/// Longest description of a key.
pub const MAX_DESCRIPTION: usize = 200;
/// Domain separation of the derived secret.
const SECRET_LABEL: &str = "berth access key secret v1\0";

/// Whether a key may sign requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessKeyStatus {
    Active,
    Revoked,
    /// Never stored: shown for an `Active` key whose signing key (`kid`) is no longer
    /// configured, so its secret can no longer be checked. It does not count toward the limit.
    Expired,
}

/// An access key as stored (and listed): no secret in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// The `AccessKeyId`.
    pub access_key_id: String,
    /// The account it acts as.
    pub account: AccountId,
    /// For the owner's own bookkeeping.
    #[serde(default)]
    pub description: String,
    pub status: AccessKeyStatus,
    /// `kid` of the signing key the secret is derived with.
    pub kid: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The limit slot it holds (`accounts/{account}/access-key-slots/{slot}.json`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<usize>,
}

impl AccessKey {
    /// The status as shown: an `Active` key derived with a signing key no longer configured
    /// is `Expired`.
    pub fn status_with(&self, keys: &SigningKeys) -> AccessKeyStatus {
        match self.status {
            AccessKeyStatus::Active if keys.find(&self.kid).is_none() => AccessKeyStatus::Expired,
            status => status,
        }
    }

    /// Whether it counts toward [`MAX_ACTIVE_PER_ACCOUNT`]: it can sign now.
    pub fn counts(&self, keys: &SigningKeys) -> bool {
        self.status_with(keys) == AccessKeyStatus::Active
    }
}

/// Folder of an account's limit slots (one per active key, [`MAX_ACTIVE_PER_ACCOUNT`] at most).
pub fn slots_prefix(account: &AccountId) -> String {
    format!("accounts/{account}/access-key-slots")
}

/// `POST /v1/access-keys` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessKeyRequest {
    /// Up to [`MAX_DESCRIPTION`] characters.
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /v1/access-keys` answer: the only time the secret is shown.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedAccessKey {
    pub access_key_id: String,
    pub access_key_secret: Secret<String>,
    pub created_at: String,
    pub description: String,
    pub status: AccessKeyStatus,
}

/// A fresh access key id: [`ID_PREFIX`] and 100 random bits in upper-case base32.
pub fn new_id() -> String {
    let mut bytes = [0u8; 13];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    let encoded = data_encoding::BASE32_NOPAD.encode(&bytes);
    format!("{ID_PREFIX}{}", encoded.get(..ID_LEN - ID_PREFIX.len()).unwrap_or_default())
}

/// Whether `id` has the shape of an access key id (so it is safe as a store path).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id.starts_with(ID_PREFIX)
        && id.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// The secret of `id`, derived with the signing key `kid`; `None` if that key is no longer
/// configured.
pub fn secret(keys: &SigningKeys, kid: &str, id: &str) -> Option<Secret<String>> {
    let key = keys.find(kid)?;
    let derived = key.derive(format!("{SECRET_LABEL}{id}").as_bytes());
    Some(Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(derived)))
}

/// Checks a create request; answers the description to store.
pub fn validate_description(
    request: &CreateAccessKeyRequest,
) -> Result<String, crate::platform::http::error::ApiError> {
    let description = request.description.clone().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(crate::platform::http::error::ApiError::invalid(
            "description",
            "invalid_description",
            format!("description is at most {MAX_DESCRIPTION} characters, without control characters"),
        ));
    }
    Ok(description)
}

/// The key's record, by id (what a signed request looks up).
pub fn key_path(id: &str) -> String {
    format!("access-keys/{id}.json")
}

/// The account's index entry of a key (what the listing reads).
pub fn account_key_path(account: &AccountId, id: &str) -> String {
    format!("accounts/{account}/access-keys/{id}.json")
}

/// Folder of an account's index entries.
pub fn account_keys_prefix(account: &AccountId) -> String {
    format!("accounts/{account}/access-keys")
}

/// Seconds of one nonce bucket: markers are kept by the signed `x-acs-date` of their request.
pub const NONCE_BUCKET_SECONDS: u64 = 15 * 60;
/// Buckets kept behind the current one. A replay carries its signed date, so it is looked up
/// in that date's bucket; a date three buckets back (45 minutes) fails the 15-minute skew check
/// before any look-up, so older markers can go.
pub const NONCE_BUCKETS_KEPT: u64 = 3;

/// Folder of the nonce markers of key `id`.
pub fn nonces_prefix(id: &str) -> String {
    format!("access-key-nonces/{id}")
}

/// The marker of a signature nonce used with key `id` in a request dated `date` (seconds): the
/// nonce hashed, so any bytes are a safe path, in the date's bucket.
pub fn nonce_path(id: &str, date: u64, nonce: &str) -> String {
    let bucket = date / NONCE_BUCKET_SECONDS;
    format!("access-key-nonces/{id}/{bucket}/{}.json", crate::platform::digest::sha256_hex(nonce.as_bytes()))
}

/// Whether a marker path (from [`nonces_prefix`]) is in a bucket old enough to delete at `now`.
pub fn nonce_expired(path: &str, now: u64) -> bool {
    let current = now / NONCE_BUCKET_SECONDS;
    path.rsplit('/')
        .nth(1)
        .and_then(|bucket| bucket.parse::<u64>().ok())
        .is_some_and(|bucket| bucket + NONCE_BUCKETS_KEPT < current)
}

/// What a nonce marker records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceUse {
    /// When the request that used it was received (seconds since the epoch).
    pub at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shape_and_secrets_need_the_key() {
        let id = new_id();
        assert!(is_id(&id), "{id}");
        assert!(!is_id("BAK../../etc/passwd000000"));
        let keys = SigningKeys::generate();
        let kid = keys.current().kid().to_owned();
        let one = secret(&keys, &kid, &id).unwrap();
        assert_eq!(one.expose(), secret(&keys, &kid, &id).unwrap().expose(), "recomputable");
        assert_ne!(one.expose(), secret(&keys, &kid, &new_id()).unwrap().expose(), "per id");
        let other = SigningKeys::generate();
        assert!(secret(&other, &kid, &id).is_none(), "another key has another kid");
        assert_ne!(
            one.expose(),
            secret(&other, other.current().kid(), &id).unwrap().expose(),
            "another key derives another secret"
        );
        assert_eq!(format!("{one:?}"), crate::platform::secret::REDACTED);
    }

    #[test]
    fn nonce_markers_expire_by_the_bucket_of_their_date() {
        let now = 100 * NONCE_BUCKET_SECONDS + 10;
        let path = |date| nonce_path("BAKX", date, "n");
        assert_eq!(path(now), path(now + 5), "one bucket for the same quarter hour");
        assert!(!nonce_expired(&path(now - 15 * 60), now));
        assert!(!nonce_expired(&path(now - 3 * NONCE_BUCKET_SECONDS), now));
        assert!(nonce_expired(&path(now - 4 * NONCE_BUCKET_SECONDS), now));
        assert!(!nonce_expired("access-key-nonces/BAKX/x.json", now));
    }
}

//! Image signing keys: the public keys (ECDSA P-256, PEM as cosign and the containers tools
//! write them) an account registers so that only images it signed become `Available`, and the
//! checks that refuse a digest once the key that signed it is revoked.
//!
//! An account's keys and its signature policy are one document, changed by compare-and-swap:
//! every check reads it once. Revoking keeps the key (marked), so a refusal can name it.

pub mod sigstore;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::names::AccountId;
use crate::package::{ImageRecord, PackageVersion};
use crate::platform::digest::sha256_hex;
use crate::platform::http::error::ApiError;
use crate::platform::store::{DocumentStore, StoreError};

/// Prefix of a signing key's id (`sk-` and 16 hex digits of its fingerprint).
pub const ID_PREFIX: &str = "sk-";
/// Most active keys an account holds at once.
pub const MAX_ACTIVE_KEYS: usize = 10;
/// Most keys, active and revoked, an account's document keeps.
pub const MAX_KEYS: usize = 50;
/// Longest PEM text accepted for a public key (a P-256 key is under 200 bytes).
pub const MAX_PEM_BYTES: usize = 4096;
/// Longest description of a key.
pub const MAX_DESCRIPTION: usize = 200;

/// Whether a key's signatures are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningKeyStatus {
    Active,
    Revoked,
}

/// A registered public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// `sk-` and the first 16 hex digits of the fingerprint.
    pub id: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo (DER), hex.
    pub fingerprint: String,
    /// The key as registered, normalised to one PEM block.
    pub public_key: String,
    #[serde(default)]
    pub description: String,
    pub status: SigningKeyStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// An account's keys and signature policy, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    /// By registration.
    #[serde(default)]
    pub keys: Vec<SigningKey>,
    /// Whether packages that do not say otherwise require signatures.
    #[serde(default)]
    pub require_signature: bool,
}

impl KeyRing {
    /// The key with this id.
    pub fn key(&self, id: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Why an image that passed its publish check signed by `signed_by` is no longer trusted,
    /// if it is not: its key was revoked (or is gone).
    pub fn distrust(&self, image: &ImageRecord) -> Option<String> {
        let what = format!("{}@{}", image.repository, image.digest.as_deref().unwrap_or("?"));
        self.distrust_key(image.signed_by.as_deref()?, &what)
    }

    /// Why `what`, signed by the key `id`, is no longer trusted, if it is not.
    fn distrust_key(&self, id: &str, what: &str) -> Option<String> {
        match self.key(id) {
            Some(key) if key.status == SigningKeyStatus::Active => None,
            Some(key) => Some(format!(
                "{what} was signed by signing key {id}, revoked at {}",
                key.revoked_at.as_deref().unwrap_or("an unknown time")
            )),
            None => Some(format!("{what} was signed by signing key {id}, which the account no longer has")),
        }
    }

    /// The first reason one of `version`'s images is no longer trusted.
    pub fn distrust_version(&self, version: &PackageVersion) -> Option<String> {
        version.images.iter().find_map(|image| self.distrust(image))
    }
}

/// Where an account's [`KeyRing`] is.
pub fn key_ring_path(account: &AccountId) -> String {
    format!("accounts/{account}/signing-keys.json")
}

/// Where the key that signed a digest of the account is recorded by the publish check, so a
/// release naming the digest alone (an address) is checked too.
pub fn signed_digest_path(account: &AccountId, digest: &str) -> Option<String> {
    is_sha256_digest(digest)
        .then(|| format!("accounts/{account}/signed-digests/{}.json", digest.get(7..).unwrap_or_default()))
}

/// `sha256:` and 64 lowercase hex digits: the only digests that become paths.
pub fn is_sha256_digest(value: &str) -> bool {
    value
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// What [`signed_digest_path`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDigest {
    /// The key whose signature the publish check verified.
    pub key_id: String,
    /// The repository it was checked in.
    pub repository: String,
}

/// The account's key ring (empty when it has none).
pub async fn load(store: &DocumentStore, account: &AccountId) -> Result<KeyRing, StoreError> {
    Ok(store.get::<KeyRing>(&key_ring_path(account)).await?.map(|d| d.value).unwrap_or_default())
}

/// The 409 of a digest whose signing key was revoked.
pub fn revoked(reason: String) -> ApiError {
    ApiError::Conflict { code: "signing_key_revoked", message: reason }
}

/// Refuses (409) a version one of whose images was signed by a key revoked since.
pub fn refuse_untrusted(ring: &KeyRing, version: &PackageVersion) -> Result<(), ApiError> {
    match ring.distrust_version(version) {
        Some(reason) => Err(revoked(reason)),
        None => Ok(()),
    }
}

/// Refuses (409) an image address pinned to a digest the publish check found signed by a key
/// revoked since. One read when the address has a digest; none otherwise.
pub async fn refuse_revoked_digest(store: &DocumentStore, account: &AccountId, address: &str) -> Result<(), ApiError> {
    let Some((repository, digest)) = address.split_once('@') else {
        return Ok(());
    };
    let Some(path) = signed_digest_path(account, digest) else {
        return Ok(());
    };
    let Some(signed) = store.get::<SignedDigest>(&path).await? else {
        return Ok(());
    };
    let ring = load(store, account).await?;
    match ring.distrust_key(&signed.value.key_id, &format!("{repository}@{digest}")) {
        Some(reason) => Err(revoked(reason)),
        None => Ok(()),
    }
}

/// `POST /v1/signing-keys` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSigningKeyRequest {
    /// The public key, PEM (`-----BEGIN PUBLIC KEY-----`), as `cosign.pub` holds it.
    pub public_key: String,
    /// Up to [`MAX_DESCRIPTION`] characters.
    #[serde(default)]
    pub description: String,
}

/// `PUT /v1/signing-policy` body and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningPolicy {
    /// Whether packages that do not say otherwise require signatures.
    pub require_signature: bool,
}

/// A validated public key: its DER (SubjectPublicKeyInfo) and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub der: Vec<u8>,
    pub fingerprint: String,
}

impl PublicKey {
    /// Parses one PEM `PUBLIC KEY` block holding an ECDSA P-256 key.
    pub fn from_pem(text: &str) -> Result<Self, ApiError> {
        let field = "public_key";
        if text.len() > MAX_PEM_BYTES {
            return Err(ApiError::invalid(field, "too_long", format!("at most {MAX_PEM_BYTES} bytes of PEM")));
        }
        let der = crate::platform::pem::pem_block(text, "PUBLIC KEY").ok_or_else(|| {
            ApiError::invalid(field, "invalid_public_key", "expected a PEM block '-----BEGIN PUBLIC KEY-----'")
        })?;
        ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &der).map_err(|_| {
            ApiError::invalid(field, "unsupported_public_key", "the key is not an ECDSA P-256 public key")
        })?;
        let fingerprint = sha256_hex(&der);
        Ok(Self { der, fingerprint })
    }

    /// The key's id.
    pub fn id(&self) -> String {
        format!("{ID_PREFIX}{}", self.fingerprint.get(..16).unwrap_or_default())
    }

    /// One PEM block.
    pub fn pem(&self) -> String {
        crate::platform::pem::pem_encode("PUBLIC KEY", &self.der)
    }
}

impl AddSigningKeyRequest {
    /// Checks the request; the new key, not yet in `ring`.
    pub fn validate(&self, now: &str) -> Result<SigningKey, ApiError> {
        if self.description.chars().count() > MAX_DESCRIPTION || self.description.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "description",
                "invalid_description",
                format!("at most {MAX_DESCRIPTION} characters, no control characters"),
            ));
        }
        let key = PublicKey::from_pem(&self.public_key)?;
        Ok(SigningKey {
            id: key.id(),
            public_key: key.pem(),
            fingerprint: key.fingerprint,
            description: self.description.clone(),
            status: SigningKeyStatus::Active,
            created_at: now.to_owned(),
            revoked_at: None,
        })
    }
}

/// Adds `key` to `ring`: the same key again is the same key (idempotent); a revoked key stays
/// revoked; the limits hold.
pub fn add(ring: &mut KeyRing, key: SigningKey) -> Result<SigningKey, ApiError> {
    if let Some(existing) = ring.key(&key.id) {
        if existing.status == SigningKeyStatus::Revoked {
            return Err(ApiError::Conflict {
                code: "signing_key_revoked",
                message: format!("signing key {} was revoked; a revoked key cannot be registered again", key.id),
            });
        }
        return Ok(existing.clone());
    }
    let active = ring.keys.iter().filter(|k| k.status == SigningKeyStatus::Active).count();
    if active >= MAX_ACTIVE_KEYS || ring.keys.len() >= MAX_KEYS {
        return Err(ApiError::Conflict {
            code: "too_many_signing_keys",
            message: format!(
                "an account holds at most {MAX_ACTIVE_KEYS} active signing keys and {MAX_KEYS} in all; revoke one first"
            ),
        });
    }
    ring.keys.push(key.clone());
    Ok(key)
}

/// Revokes the key `id` of `ring` (revoking a revoked key changes nothing).
pub fn revoke(ring: &mut KeyRing, id: &str, now: &str) -> Result<SigningKey, ApiError> {
    let key =
        ring.keys.iter_mut().find(|k| k.id == id).ok_or_else(|| {
            ApiError::NotFound(format!("signing key '{}'", crate::platform::http::problem::shown(id)))
        })?;
    if key.status == SigningKeyStatus::Active {
        key.status = SigningKeyStatus::Revoked;
        key.revoked_at = Some(now.to_owned());
    }
    Ok(key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_pem() -> String {
        let private = crate::platform::pem::generate_private_key_pem();
        let der = crate::platform::pem::pem_block(&private, "PRIVATE KEY").unwrap();
        let pair =
            aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der)
                .unwrap();
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            aws_lc_rs::signature::KeyPair::public_key(&pair),
        )
        .unwrap();
        crate::platform::pem::pem_encode("PUBLIC KEY", spki.as_ref())
    }

    #[test]
    fn keys_are_p256_pem_and_the_limits_hold() {
        let request = |pem: String| AddSigningKeyRequest { public_key: pem, description: String::new() };
        let key = request(public_pem()).validate("t").unwrap();
        assert!(key.id.starts_with("sk-") && key.id.len() == 19);
        for bad in ["", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"] {
            assert!(request(bad.into()).validate("t").is_err(), "{bad}");
        }
        assert!(matches!(request("x".repeat(MAX_PEM_BYTES + 1)).validate("t"), Err(ApiError::Invalid { .. })));

        let mut ring = KeyRing::default();
        assert_eq!(add(&mut ring, key.clone()).unwrap(), key);
        assert_eq!(add(&mut ring, key.clone()).unwrap(), key, "the same key twice is one key");
        assert_eq!(ring.keys.len(), 1);
        revoke(&mut ring, &key.id, "later").unwrap();
        assert!(matches!(add(&mut ring, key.clone()), Err(ApiError::Conflict { .. })));
        for _ in 1..MAX_ACTIVE_KEYS + 1 {
            add(&mut ring, request(public_pem()).validate("t").unwrap()).unwrap();
        }
        let over = add(&mut ring, request(public_pem()).validate("t").unwrap());
        assert!(matches!(over, Err(ApiError::Conflict { code: "too_many_signing_keys", .. })));
    }

    #[test]
    fn a_revoked_key_names_itself() {
        let key = AddSigningKeyRequest { public_key: public_pem(), description: String::new() }.validate("t").unwrap();
        let mut ring = KeyRing::default();
        add(&mut ring, key.clone()).unwrap();
        let mut image = ImageRecord::unchecked(crate::names::RepositoryName::parse("acme/web").unwrap(), "v1");
        image.digest = Some(format!("sha256:{}", "a".repeat(64)));
        assert_eq!(ring.distrust(&image), None, "unsigned images are not judged here");
        image.signed_by = Some(key.id.clone());
        assert_eq!(ring.distrust(&image), None);
        revoke(&mut ring, &key.id, "2026-12-07T00:00:00Z").unwrap();
        let reason = ring.distrust(&image).unwrap();
        assert!(reason.contains(&key.id) && reason.contains("revoked at 2026-12-07T00:00:00Z"), "{reason}");
    }
}

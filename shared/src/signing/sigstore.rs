//! Sigstore signatures as the containers tools (`skopeo copy --sign-by-sigstore-private-key`
//! with `use-sigstore-attachments`) and cosign store them in a registry: the tag
//! `sha256-<hex>.sig` of the image's repository is an OCI manifest whose layers are
//! simple-signing payloads (`application/vnd.dev.cosign.simplesigning.v1+json`), each with its
//! base64 ECDSA signature (ASN.1, over the payload's bytes with SHA-256) in the annotation
//! `dev.cosignproject.cosign/signature`. A payload names what it signs:
//! `critical.image.docker-manifest-digest` and `critical.identity.docker-reference`.
//!
//! [`verify`] reads through an [`AttachmentSource`] (Berth's registry client, or the agent's),
//! every read bounded, and says which key signed exactly the expected digest, or why none did.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::{KeyRing, PublicKey, SigningKeyStatus};
use crate::platform::digest::oci_digest;
use crate::platform::http::error::ApiError;

/// Media type of a simple-signing payload layer.
pub const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// Largest signature manifest read.
pub const MAX_MANIFEST_BYTES: usize = 256 << 10;
/// Largest payload read (real ones are a few hundred bytes).
pub const MAX_PAYLOAD_BYTES: usize = 64 << 10;
/// Most signature layers checked in one manifest.
pub const MAX_LAYERS: usize = 16;
/// Longest base64 signature accepted (an ASN.1 P-256 signature is at most 72 bytes).
const MAX_SIGNATURE_B64: usize = 256;

/// The tag the signatures of `digest` (`sha256:<hex>`) are stored under.
pub fn attachment_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// A key whose signatures are checked, parsed once.
pub struct VerifyingKey {
    /// The key's id (`sk-...`).
    pub id: String,
    /// Revoked keys are checked too, so a refusal can name them.
    pub active: bool,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Parses a validated key; `None` for a key that no longer parses (never stored so).
    fn new(id: String, active: bool, revoked_at: Option<String>, der: &[u8]) -> Option<Self> {
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der).ok()?;
        Some(Self { id, active, revoked_at, key })
    }

    /// Every key of `ring`, active and revoked.
    pub fn from_ring(ring: &KeyRing) -> Vec<Self> {
        ring.keys
            .iter()
            .filter_map(|k| {
                let der = crate::platform::pem::pem_block(&k.public_key, "PUBLIC KEY")?;
                Self::new(k.id.clone(), k.status == SigningKeyStatus::Active, k.revoked_at.clone(), &der)
            })
            .collect()
    }

    /// Every `PUBLIC KEY` block of a file (the agent's `--trusted-keys`), all trusted.
    pub fn from_pem_file(text: &str) -> Result<Vec<Self>, KeyFileError> {
        let mut keys = Vec::new();
        for block in text.split_inclusive("-----END PUBLIC KEY-----").filter(|b| b.contains("-----BEGIN")) {
            let key = PublicKey::from_pem(block).map_err(KeyFileError::Key)?;
            keys.extend(Self::new(key.id(), true, None, &key.der));
        }
        if keys.is_empty() {
            return Err(KeyFileError::NoKey);
        }
        Ok(keys)
    }

    /// Whether `signature` (ASN.1 DER) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// Why a file of public keys gives no key to trust.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A block that is not a P-256 public key (as an added key would be refused).
    #[error(transparent)]
    Key(ApiError),
    /// No block at all.
    #[error("no '-----BEGIN PUBLIC KEY-----' block")]
    NoKey,
}

/// What the image must be.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `sha256:<hex>` of the manifest.
    pub digest: &'a str,
    /// `REGISTRY/REPOSITORY`, which `docker-reference` must name (with any tag or digest).
    pub repository: &'a str,
    /// `repository` is only `REPOSITORY`, and `docker-reference` may name any registry (the
    /// agent may pull through another address of the registry than the provider pushed to).
    pub any_registry: bool,
}

impl Expected<'_> {
    fn names(&self, reference: &str) -> bool {
        let named = repository_of(reference);
        if self.any_registry {
            named.split_once('/').is_some_and(|(_, path)| path == self.repository)
        } else {
            named == self.repository
        }
    }
}

/// Why no trusted signature was found: a stable code and a message naming what was missing
/// or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    /// The registry did not answer: a later try may succeed.
    pub retry: bool,
}

impl Failure {
    fn new(code: &'static str, message: String) -> Self {
        Self { code, message, retry: false }
    }
}

/// A failed read of the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No answer; a later try may succeed.
    #[error("{0}")]
    Unreachable(String),
    /// More bytes than the limit.
    #[error("over its size limit")]
    TooLarge,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Reads of one repository of the registry.
#[async_trait::async_trait]
pub trait AttachmentSource: Send + Sync {
    /// The manifest tagged `tag`, at most `limit` bytes; `None` if there is no such tag.
    async fn manifest(&self, tag: &str, limit: usize) -> Result<Option<Vec<u8>>, SourceError>;
    /// The blob `digest` (well-formed `sha256:<hex>`), at most `limit` bytes.
    async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, SourceError>;
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: PayloadImage,
    identity: Identity,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

/// What one signature layer proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by this active key, for the expected digest and repository.
    Trusted(String),
    /// Anything else, as the failure it would be.
    Refused(Failure),
}

/// The repository a `docker-reference` names: without its digest or tag.
fn repository_of(reference: &str) -> &str {
    let reference = reference.split_once('@').map_or(reference, |(name, _)| name);
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => reference,
    }
}

/// Checks one payload and its base64 signature against `keys`. Pure: what the bench measures.
pub fn check_payload(payload: &[u8], signature: &str, keys: &[VerifyingKey], expected: Expected<'_>) -> Verdict {
    let refused = |code, message| Verdict::Refused(Failure::new(code, message));
    if signature.len() > MAX_SIGNATURE_B64 {
        return refused("signature_malformed", "the signature annotation is too long".into());
    }
    let Ok(signature) = STANDARD.decode(signature.trim()) else {
        return refused("signature_malformed", "the signature annotation is not base64".into());
    };
    let Some(key) = keys.iter().find(|k| k.verifies(payload, &signature)) else {
        return refused(
            "signature_untrusted",
            format!("a signature of {} verifies with no signing key of the account", expected.digest),
        );
    };
    let parsed: Payload = match serde_json::from_slice(payload) {
        Ok(parsed) => parsed,
        Err(e) => {
            return refused("signature_malformed", format!("the payload signed by {} does not parse: {e}", key.id));
        }
    };
    let critical = parsed.critical;
    if critical.kind != SIGNATURE_TYPE {
        return refused(
            "signature_malformed",
            format!("the payload signed by {} is not a container image signature", key.id),
        );
    }
    if critical.image.digest != expected.digest {
        return refused(
            "signature_digest_mismatch",
            format!(
                "the signature by {} is of {}, not {}",
                key.id,
                crate::platform::http::problem::shown(&critical.image.digest),
                expected.digest
            ),
        );
    }
    if !expected.names(&critical.identity.reference) {
        return refused(
            "signature_identity_mismatch",
            format!(
                "the signature by {} names {}, not {}",
                key.id,
                crate::platform::http::problem::shown(&critical.identity.reference),
                expected.repository
            ),
        );
    }
    if !key.active {
        return refused(
            "signature_key_revoked",
            format!(
                "{} is signed by signing key {}, revoked at {}",
                expected.digest,
                key.id,
                key.revoked_at.as_deref().unwrap_or("an unknown time")
            ),
        );
    }
    Verdict::Trusted(key.id.clone())
}

/// How telling a failure is: the most telling one is reported when no layer is trusted.
fn rank(code: &str) -> u8 {
    match code {
        "signature_key_revoked" => 6,
        "signature_digest_mismatch" => 5,
        "signature_identity_mismatch" => 4,
        "signature_untrusted" => 3,
        "signature_too_large" => 2,
        "signature_malformed" => 1,
        _ => 0,
    }
}

fn from_source(error: SourceError, what: &str) -> Failure {
    match error {
        SourceError::Unreachable(why) => {
            Failure { code: "registry_unreachable", message: format!("{what}: {why}"), retry: true }
        }
        SourceError::TooLarge => Failure::new("signature_too_large", format!("{what} is over its size limit")),
        SourceError::Other(why) => Failure::new("registry_error", format!("{what}: {why}")),
    }
}

/// Finds a signature of `expected.digest` by an active key among `keys`: the key's id, or the
/// most telling reason none was found. At most [`MAX_LAYERS`] layers are read, each bounded.
pub async fn verify(
    source: &dyn AttachmentSource,
    expected: Expected<'_>,
    keys: &[VerifyingKey],
) -> Result<String, Failure> {
    let tag = attachment_tag(expected.digest);
    let manifest = match source.manifest(&tag, MAX_MANIFEST_BYTES).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(Failure::new(
                "signature_missing",
                format!("no signature of {}: the registry has no tag {tag}", expected.digest),
            ));
        }
        Err(e) => return Err(from_source(e, &format!("the signature manifest {tag}"))),
    };
    let manifest: Manifest = serde_json::from_slice(&manifest)
        .map_err(|e| Failure::new("signature_malformed", format!("{tag} is not an OCI manifest: {e}")))?;
    let mut worst: Option<Failure> = None;
    let mut note = |failure: Failure| {
        if worst.as_ref().is_none_or(|w| rank(failure.code) > rank(w.code)) {
            worst = Some(failure);
        }
    };
    let signatures = manifest.layers.iter().filter(|l| l.media_type == PAYLOAD_TYPE);
    for layer in signatures.take(MAX_LAYERS) {
        let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
            note(Failure::new("signature_malformed", format!("a layer of {tag} has no {SIGNATURE_ANNOTATION}")));
            continue;
        };
        if layer.size > MAX_PAYLOAD_BYTES as u64 {
            note(Failure::new(
                "signature_too_large",
                format!("a signature in {tag} declares {} bytes; at most {MAX_PAYLOAD_BYTES} are read", layer.size),
            ));
            continue;
        }
        if !super::is_sha256_digest(&layer.digest) {
            note(Failure::new("signature_malformed", format!("a layer of {tag} has no sha256 digest")));
            continue;
        }
        let payload = match source.blob(&layer.digest, MAX_PAYLOAD_BYTES).await {
            Ok(payload) => payload,
            Err(e @ SourceError::Unreachable(_)) => return Err(from_source(e, &format!("the signature in {tag}"))),
            Err(e) => {
                note(from_source(e, &format!("the signature {}", layer.digest)));
                continue;
            }
        };
        // The registry is not trusted to serve what the manifest names.
        if oci_digest(&payload) != layer.digest {
            note(Failure::new("signature_malformed", format!("the payload of {tag} does not match its digest")));
            continue;
        }
        match check_payload(&payload, signature, keys, expected) {
            Verdict::Trusted(id) => return Ok(id),
            Verdict::Refused(failure) => note(failure),
        }
    }
    Err(worst.unwrap_or_else(|| {
        Failure::new(
            "signature_missing",
            format!("no signature of {}: {tag} holds no signature layer", expected.digest),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    pub(crate) fn key_pair() -> (EcdsaKeyPair, VerifyingKey) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("P-256 key generation does not fail");
        let key = VerifyingKey::new("sk-test".into(), true, None, pair.public_key().as_ref()).unwrap();
        (pair, key)
    }

    fn payload(digest: &str, reference: &str) -> Vec<u8> {
        serde_json::json!({
            "critical": { "identity": { "docker-reference": reference }, "image": { "docker-manifest-digest": digest },
                          "type": SIGNATURE_TYPE },
            "optional": { "creator": "test" }
        })
        .to_string()
        .into_bytes()
    }

    fn sign(pair: &EcdsaKeyPair, payload: &[u8]) -> String {
        STANDARD.encode(pair.sign(&aws_lc_rs::rand::SystemRandom::new(), payload).unwrap().as_ref())
    }

    #[test]
    fn each_wrong_signature_says_what_is_wrong() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let expected = Expected { digest: &digest, repository: "reg:5000/acme/web", any_registry: false };
        let (pair, key) = key_pair();
        let (other, _) = key_pair();
        let good = payload(&digest, "reg:5000/acme/web:v1");
        let code = |verdict: Verdict| match verdict {
            Verdict::Trusted(id) => id,
            Verdict::Refused(f) => f.code.to_owned(),
        };
        let keys = [key];
        assert_eq!(code(check_payload(&good, &sign(&pair, &good), &keys, expected)), "sk-test");
        let by_digest = payload(&digest, "reg:5000/acme/web@sha256:00");
        assert_eq!(code(check_payload(&by_digest, &sign(&pair, &by_digest), &keys, expected)), "sk-test");
        assert_eq!(code(check_payload(&good, &sign(&other, &good), &keys, expected)), "signature_untrusted");
        let mut tampered = good.clone();
        tampered[20] ^= 1;
        assert_eq!(code(check_payload(&tampered, &sign(&pair, &good), &keys, expected)), "signature_untrusted");
        let elsewhere = payload(&format!("sha256:{}", "b".repeat(64)), "reg:5000/acme/web:v1");
        assert_eq!(
            code(check_payload(&elsewhere, &sign(&pair, &elsewhere), &keys, expected)),
            "signature_digest_mismatch"
        );
        let other_repo = payload(&digest, "reg:5000/acme/web2:v1");
        assert_eq!(
            code(check_payload(&other_repo, &sign(&pair, &other_repo), &keys, expected)),
            "signature_identity_mismatch"
        );
        assert_eq!(code(check_payload(&good, "%%%", &keys, expected)), "signature_malformed");
        assert_eq!(code(check_payload(&good, &"A".repeat(1 << 20), &keys, expected)), "signature_malformed");
        let any = Expected { repository: "acme/web", any_registry: true, ..expected };
        assert_eq!(code(check_payload(&good, &sign(&pair, &good), &keys, any)), "sk-test");
        assert_eq!(
            code(check_payload(&other_repo, &sign(&pair, &other_repo), &keys, any)),
            "signature_identity_mismatch"
        );
        let [mut key] = keys;
        key.active = false;
        assert_eq!(code(check_payload(&good, &sign(&pair, &good), &[key], expected)), "signature_key_revoked");
    }

    #[test]
    fn a_huge_declared_signature_is_never_read() {
        struct Huge(Vec<u8>);
        #[async_trait::async_trait]
        impl AttachmentSource for Huge {
            async fn manifest(&self, _: &str, _: usize) -> Result<Option<Vec<u8>>, SourceError> {
                Ok(Some(self.0.clone()))
            }
            async fn blob(&self, _: &str, _: usize) -> Result<Vec<u8>, SourceError> {
                panic!("a blob over the limit was asked for")
            }
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        let manifest = serde_json::json!({ "schemaVersion": 2, "layers": [{
            "mediaType": PAYLOAD_TYPE, "digest": digest, "size": 1u64 << 30,
            "annotations": { SIGNATURE_ANNOTATION: "MEUCIQ==" } }] });
        let source = Huge(manifest.to_string().into_bytes());
        let (_, key) = key_pair();
        let expected = Expected { digest: &digest, repository: "reg/acme/web", any_registry: false };
        let failure = futures::executor::block_on(verify(&source, expected, &[key])).unwrap_err();
        assert_eq!(failure.code, "signature_too_large", "{failure:?}");
        assert!(failure.message.contains("1073741824 bytes"), "{failure:?}");
    }

    #[test]
    fn the_tag_is_the_digest_with_a_dash() {
        assert_eq!(attachment_tag("sha256:abc"), "sha256-abc.sig");
        assert_eq!(repository_of("h:5000/a/b:v1"), "h:5000/a/b");
        assert_eq!(repository_of("h:5000/a/b"), "h:5000/a/b");
        assert_eq!(repository_of("h:5000/a/b@sha256:00"), "h:5000/a/b");
    }
}

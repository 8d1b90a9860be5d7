//! Sigstore signatures of images, stored as the containers tools and cosign store them: the
//! simple-signing payload c/image writes, signed with ECDSA P-256 (ASN.1, SHA-256), as a layer
//! of the OCI manifest tagged `sha256-<hex>.sig`, pushed with skopeo.
//!
//! Debian's skopeo (1.9.3) has `--sign-by-sigstore-private-key` but refuses to sign ("Debian-
//! local change: sigstore disabled"), so the signature is made here, byte for byte as
//! c/image's `signature/sigstore` makes it, and everything else is the real registry's.

use std::path::Path;

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_shared::platform::digest::sha256_hex;
use berth_shared::signing::sigstore::{PAYLOAD_TYPE, SIGNATURE_ANNOTATION, SIGNATURE_TYPE};

/// A provider's signing key.
pub struct ImageKey {
    pair: EcdsaKeyPair,
}

impl ImageKey {
    pub fn generate() -> Self {
        Self { pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("P-256 key generation") }
    }

    /// The public key as `cosign.pub` holds it.
    pub fn public_pem(&self) -> String {
        let der: PublicKeyX509Der = self.pair.public_key().as_der().expect("SPKI DER");
        berth_shared::platform::pem::pem_encode("PUBLIC KEY", der.as_ref())
    }

    /// The base64 signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(&SystemRandom::new(), payload).expect("sign").as_ref())
    }
}

/// The payload c/image signs: `docker-reference` is the reference pushed to (with its tag).
pub fn payload(digest: &str, reference: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": { "docker-reference": reference },
            "image": { "docker-manifest-digest": digest },
            "type": SIGNATURE_TYPE
        },
        "optional": { "creator": "containers/image 5.22.1", "timestamp": 1_765_000_000 }
    })
    .to_string()
    .into_bytes()
}

/// Writes an OCI layout at `dir` whose tag `tag` is a signature manifest with one layer per
/// `(payload, base64 signature)`, as c/image's `putSignaturesToSigstoreAttachments` writes it.
pub fn attachment_layout(dir: &Path, tag: &str, signatures: &[(Vec<u8>, String)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout dirs");
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (payload, signature) in signatures {
        let (digest, size) = put(payload);
        layers.push(serde_json::json!({
            "mediaType": PAYLOAD_TYPE, "digest": digest, "size": size,
            "annotations": { SIGNATURE_ANNOTATION: signature }
        }));
        diff_ids.push(digest);
    }
    let config = serde_json::json!({ "architecture": "", "os": "", "config": {}, "rootfs": { "type": "layers", "diff_ids": diff_ids } });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": layers
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
        "annotations": { "org.opencontainers.image.ref.name": tag } }] });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}

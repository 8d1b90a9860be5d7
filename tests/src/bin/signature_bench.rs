//! `make bench` part: what a signature check costs. The raw ECDSA P-256 verify rate of the
//! parsed key, against one payload's check (base64, verify, payload parse, digest and identity
//! comparison) with the signing key first and last of an account's 10, and a whole check
//! through the registry reads (an in-memory registry: manifest parse, payload digest). Same
//! process, so the ratios hold on a noisy machine.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::time::{Duration, Instant};

use berth_shared::platform::digest::oci_digest;
use berth_shared::signing::sigstore::{
    AttachmentSource, Expected, PAYLOAD_TYPE, SIGNATURE_ANNOTATION, SourceError, Verdict, VerifyingKey, check_payload,
    verify,
};
use berth_shared::signing::{KeyRing, SigningKey, SigningKeyStatus};
use berth_tests::signing::{ImageKey, payload};

const WINDOW: Duration = Duration::from_secs(2);

fn rate(mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < WINDOW {
        for _ in 0..16 {
            work();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Verifying keys of a ring of `keys`, in order.
fn ring(keys: &[&ImageKey]) -> Vec<VerifyingKey> {
    let keys = keys
        .iter()
        .enumerate()
        .map(|(i, key)| SigningKey {
            id: format!("sk-{i:016}"),
            fingerprint: String::new(),
            public_key: key.public_pem(),
            description: String::new(),
            status: SigningKeyStatus::Active,
            created_at: String::new(),
            revoked_at: None,
        })
        .collect();
    VerifyingKey::from_ring(&KeyRing { keys, require_signature: true })
}

/// A registry holding one signature manifest and its payload.
struct Memory {
    manifest: Vec<u8>,
    payload: Vec<u8>,
}

#[async_trait::async_trait]
impl AttachmentSource for Memory {
    async fn manifest(&self, _: &str, _: usize) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(Some(self.manifest.clone()))
    }
    async fn blob(&self, _: &str, _: usize) -> Result<Vec<u8>, SourceError> {
        Ok(self.payload.clone())
    }
}

fn main() {
    let signer = ImageKey::generate();
    let others: Vec<ImageKey> = (0..9).map(|_| ImageKey::generate()).collect();
    let digest = oci_digest(b"an image manifest");
    let signed = payload(&digest, "registry.example/acme/web:v1");
    let signature = signer.sign(&signed);
    let expected = Expected { digest: &digest, repository: "registry.example/acme/web", any_registry: false };

    let alone = ring(&[&signer]);
    let raw_signature = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &signature).unwrap();
    let raw = rate(|| assert!(alone[0].verifies(&signed, &raw_signature)));
    let one = rate(|| assert!(matches!(check_payload(&signed, &signature, &alone, expected), Verdict::Trusted(_))));
    let mut last: Vec<&ImageKey> = others.iter().collect();
    last.push(&signer);
    let tenth = ring(&last);
    let ten = rate(|| assert!(matches!(check_payload(&signed, &signature, &tenth, expected), Verdict::Trusted(_))));

    let manifest = serde_json::json!({ "schemaVersion": 2, "layers": [{
        "mediaType": PAYLOAD_TYPE, "digest": oci_digest(&signed), "size": signed.len(),
        "annotations": { SIGNATURE_ANNOTATION: signature } }] });
    let memory = Memory { manifest: manifest.to_string().into_bytes(), payload: signed.clone() };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let whole = rate(|| assert!(runtime.block_on(verify(&memory, expected, &alone)).is_ok()));

    println!("signature check (ECDSA P-256, one core)");
    println!("  raw verify, parsed key          {raw:>9.0}/s");
    println!("  payload check, 1 key            {one:>9.0}/s  ({:.0}% of raw)", 100.0 * one / raw);
    println!("  payload check, key 10th of 10   {ten:>9.0}/s  ({:.0}% of raw / 10)", 1000.0 * ten / raw);
    println!("  whole check from reads, 1 key   {whole:>9.0}/s  ({:.0}% of raw)", 100.0 * whole / raw);
}

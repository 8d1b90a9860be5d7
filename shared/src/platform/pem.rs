//! PEM text: P-256 keys and certificates as files and secrets hold them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Generates a new P-256 private key and returns it as PKCS#8 PEM.
pub fn generate_private_key_pem() -> String {
    let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .expect("P-256 key generation does not fail");
    pem_encode("PRIVATE KEY", document.as_ref())
}

/// PEM-encodes DER bytes under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The base64 body of the first PEM block labelled `label`, decoded.
pub fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text.get(start..).unwrap_or_default().find(&end)?;
    let body: String = text.get(start..stop).unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

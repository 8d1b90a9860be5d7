//! The token-signing keys: ES256 with a PKCS#8 P-256 key, its certificate in `x5c`, and the
//! libtrust `kid` distribution looks keys up by. Several keys may be configured for rotation:
//! the current one signs, all of them verify and are published in the JWKS.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::platform::pem::pem_block;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why signing keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        reason: String,
    },
    /// Not a PKCS#8 P-256 private key.
    #[error("{path} is not a PKCS#8 P-256 private key in PEM")]
    NotAKey {
        /// The file.
        path: String,
    },
    /// The certificate is not PEM, or is not for this key.
    #[error("{path} is not a PEM certificate for the signing key")]
    CertificateMismatch {
        /// The file.
        path: String,
    },
}

/// One signing key with everything published about it.
pub struct SigningKey {
    kid: String,
    // Parsed once: jsonwebtoken's `EncodingKey` re-parses the PKCS#8 key on every signature,
    // which halved the minting rate (`make bench`, token-bench).
    pair: EcdsaKeyPair,
    decoding: DecodingKey,
    certificate: Option<String>,
    x: String,
    y: String,
    /// The encoded header of registry tokens (`typ` `JWT`), made once: with the certificate
    /// in `x5c` it is most of each token.
    registry_header: String,
}

impl SigningKey {
    /// A key from PKCS#8 DER and, optionally, its certificate (DER).
    pub fn from_pkcs8(der: &[u8], certificate: Option<&[u8]>) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?;
        let point = pair.public_key().as_ref().to_vec();
        if point.len() != 65 || point.first() != Some(&4) {
            return None;
        }
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&point);
        // The certificate must carry this very public key.
        if let Some(cert) = certificate
            && !cert.windows(spki.len()).any(|w| w == spki.as_slice())
        {
            return None;
        }
        let x = URL_SAFE_NO_PAD.encode(point.get(1..33).unwrap_or_default());
        let y = URL_SAFE_NO_PAD.encode(point.get(33..65).unwrap_or_default());
        let kid = libtrust_kid(&spki);
        let certificate = certificate.map(|c| STANDARD.encode(c));
        Some(Self {
            registry_header: encoded_header(REGISTRY_TOKEN_TYPE, &kid, certificate.as_deref()).ok()?,
            decoding: DecodingKey::from_ec_components(&x, &y).ok()?,
            kid,
            certificate,
            pair,
            x,
            y,
        })
    }

    /// The libtrust key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A 32-byte value derived from this private key for `label` (HMAC-SHA256 keyed by the
    /// PKCS#8 key): the same for the same key and label, and computable only by a holder of
    /// the private key.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let der = self.pair.to_pkcs8v1().expect("a parsed key serialises");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, der.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(aws_lc_rs::hmac::sign(&key, label).as_ref());
        out
    }
}

/// `typ` of registry tokens.
const REGISTRY_TOKEN_TYPE: &str = "JWT";

/// A JWS header, base64url: ES256, `kid`, `x5c` when a certificate is configured, and `typ`.
fn encoded_header(typ: &str, kid: &str, certificate: Option<&str>) -> Result<String, serde_json::Error> {
    let mut header = json!({ "typ": typ, "alg": "ES256", "kid": kid });
    if let (Some(certificate), Some(fields)) = (certificate, header.as_object_mut()) {
        fields.insert("x5c".to_owned(), json!([certificate]));
    }
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?))
}

/// The libtrust key id distribution uses: SHA-256 of the DER SubjectPublicKeyInfo, first
/// 240 bits, base32 without padding, in 12 groups of 4 joined by `:`.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    let encoded = data_encoding::BASE32_NOPAD.encode(hash.as_ref().get(..30).unwrap_or_default());
    encoded.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("base32 is ASCII")).collect::<Vec<_>>().join(":")
}

/// The configured keys: the current one signs; every one verifies.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Arc<Vec<SigningKey>>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys").field("kids", &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>()).finish()
    }
}

fn read(path: &Path) -> Result<String, SigningKeyError> {
    std::fs::read_to_string(path)
        .map_err(|e| SigningKeyError::Read { path: path.display().to_string(), reason: e.to_string() })
}

impl SigningKeys {
    /// Loads the current key and certificate, then any previous keys (verify only).
    pub fn load(key_file: &Path, cert_file: &Path, previous: &[std::path::PathBuf]) -> Result<Self, SigningKeyError> {
        let mut keys = vec![Self::load_one(key_file, Some(cert_file))?];
        for path in previous {
            keys.push(Self::load_one(path, None)?);
        }
        Ok(Self { keys: Arc::new(keys) })
    }

    fn load_one(key_file: &Path, cert_file: Option<&Path>) -> Result<SigningKey, SigningKeyError> {
        let not_a_key = || SigningKeyError::NotAKey { path: key_file.display().to_string() };
        let der = pem_block(&read(key_file)?, "PRIVATE KEY").ok_or_else(not_a_key)?;
        let certificate = match cert_file {
            Some(path) => Some(
                pem_block(&read(path)?, "CERTIFICATE")
                    .ok_or_else(|| SigningKeyError::CertificateMismatch { path: path.display().to_string() })?,
            ),
            None => None,
        };
        SigningKey::from_pkcs8(&der, certificate.as_deref()).ok_or_else(|| match cert_file {
            Some(path) if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).is_ok() => {
                SigningKeyError::CertificateMismatch { path: path.display().to_string() }
            }
            _ => not_a_key(),
        })
    }

    /// One freshly generated key without a certificate: tests and benchmarks.
    pub fn generate() -> Self {
        let der =
            pem_block(&crate::platform::pem::generate_private_key_pem(), "PRIVATE KEY").expect("a fresh PKCS#8 key");
        Self::from_keys(vec![SigningKey::from_pkcs8(&der, None).expect("a fresh P-256 key")])
    }

    /// Keys from already-parsed parts, the first signing.
    pub fn from_keys(keys: Vec<SigningKey>) -> Self {
        assert!(!keys.is_empty(), "at least one signing key");
        Self { keys: Arc::new(keys) }
    }

    /// The signing key.
    pub fn current(&self) -> &SigningKey {
        self.keys.first().expect("`load` and `from_keys` keep at least one key")
    }

    /// Every configured key, the current one first: what verifies.
    pub fn all(&self) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter()
    }

    /// The configured key (current or previous) with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Signs `claims` with the current key: ES256, `kid`, `x5c` (when a certificate is
    /// configured) and the given `typ`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let key = self.current();
        // A compact JWS by hand over the parsed key: header, claims, ES256 (fixed r||s).
        let mut token = match typ {
            REGISTRY_TOKEN_TYPE => key.registry_header.clone(),
            _ => encoded_header(typ, &key.kid, key.certificate.as_deref())?,
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
        let signature = key
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// Verifies a token signed by any configured key, for `audience`, with its `typ`.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        audience: &str,
    ) -> Result<T, jsonwebtoken::errors::Error> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(typ) {
            return Err(ErrorKind::InvalidToken.into());
        }
        let key = match header.kid.as_deref() {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid).ok_or(ErrorKind::InvalidSignature)?,
            None => self.current(),
        };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 0;
        Ok(jsonwebtoken::decode::<T>(token, &key.decoding, &validation)?.claims)
    }

    /// Decodes a registry token signed by the current key (tests only: no audience check).
    #[cfg(test)]
    pub fn verify_registry_token_for_tests<T: DeserializeOwned>(&self, token: &str) -> T {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        validation.validate_exp = false;
        jsonwebtoken::decode::<T>(token, &self.current().decoding, &validation).expect("valid token").claims
    }

    /// The JSON Web Key Set of every configured key.
    pub fn jwks(&self) -> Jwks {
        let keys = self
            .keys
            .iter()
            .map(|k| Jwk {
                alg: "ES256",
                crv: "P-256",
                kid: k.kid.clone(),
                kty: "EC",
                key_use: "sig",
                x: k.x.clone(),
                x5c: k.certificate.clone().map(|certificate| vec![certificate]),
                y: k.y.clone(),
            })
            .collect();
        Jwks { keys }
    }
}

/// A JSON Web Key Set (RFC 7517): the public keys that verify Berth's tokens.
#[derive(Debug, Clone, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One P-256 verification key, with its certificate chain when one is configured. Fields in
/// alphabetical order, as the document has always been written.
#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    pub alg: &'static str,
    pub crv: &'static str,
    pub kid: String,
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
    pub x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
    pub y: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtrust_kid_shape() {
        let kid = libtrust_kid(b"anything");
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert!(
            kid.split(':')
                .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)))
        );
    }
}

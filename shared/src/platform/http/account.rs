//! Accounts: the caller's identity and namespace, from a bearer JWT.
//!
//! The namespace a caller acts in is always its account ID, taken from the verified token,
//! never from a request field.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::names::AccountId;
use crate::platform::clock::unix_now;
use crate::platform::http::error::ApiError;
use crate::platform::pem::pem_block;

/// Audience of account tokens.
pub const ACCOUNT_AUDIENCE: &str = "berth";
/// `typ` of account tokens: the header of every token [`AccountKeys::issue`] signs, and the only
/// one [`AccountKeys::verify`] accepts (temporary keys are `berth-key+jwt`, registry tokens `JWT`).
pub const ACCOUNT_TOKEN_TYPE: &str = "berth-account+jwt";
/// Default longest lifetime (`exp - iat`) of an account token, 24 hours
/// (`BERTH_ACCOUNT_TOKEN_MAX_SECONDS`).
pub const DEFAULT_MAX_LIFETIME_SECONDS: u64 = 86_400;
/// Clock skew allowed on `exp` and `iat`.
pub const LEEWAY_SECONDS: u64 = 30;

/// Claims of an account token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountClaims {
    /// The account ID.
    pub sub: AccountId,
    /// Issuer.
    pub iss: String,
    /// Audience, always [`ACCOUNT_AUDIENCE`].
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
}

/// Errors loading account keys or issuing tokens.
#[derive(Debug, thiserror::Error)]
pub enum AccountKeyError {
    /// The key file could not be read.
    #[error("cannot read account key file {path}: {source}")]
    Read {
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a P-256 key in PEM.
    #[error("account key file {path} is not a P-256 EC key in PEM (PUBLIC KEY or PKCS#8 PRIVATE KEY)")]
    Format { path: String },
    /// Only a public key is configured, so tokens cannot be issued here.
    #[error("no private account key is configured; tokens can only be verified")]
    CannotIssue,
    /// Signing failed.
    #[error("signing an account token failed")]
    Sign,
    /// The lifetime asked for is longer than the maximum.
    #[error("a token may live at most {max} seconds (BERTH_ACCOUNT_TOKEN_MAX_SECONDS); {asked} asked")]
    TooLong {
        /// The lifetime asked for.
        asked: u64,
        /// The maximum.
        max: u64,
    },
}

/// Keys that verify (and, given a private key, issue) account tokens. ES256 only.
#[derive(Clone)]
pub struct AccountKeys {
    issuer: String,
    max_lifetime: u64,
    decoding: Arc<DecodingKey>,
    encoding: Option<Arc<EncodingKey>>,
}

impl fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKeys")
            .field("issuer", &self.issuer)
            .field("max_lifetime", &self.max_lifetime)
            .field("can_issue", &self.encoding.is_some())
            .finish()
    }
}

/// The claims as they arrive, before the checks [`AccountKeys::verify`] adds to jsonwebtoken's.
#[derive(Deserialize)]
struct ReceivedClaims {
    sub: AccountId,
    iss: String,
    aud: String,
    #[serde(default)]
    iat: Option<u64>,
    exp: u64,
}

impl AccountKeys {
    /// Loads a PEM file: a `PUBLIC KEY` verifies only; a PKCS#8 `PRIVATE KEY` also issues.
    pub fn load(path: &Path, issuer: &str) -> Result<Self, AccountKeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| AccountKeyError::Read { path: shown.clone(), source })?;
        Self::from_pem(&pem, issuer).ok_or(AccountKeyError::Format { path: shown })
    }

    /// Parses PEM text as [`AccountKeys::load`] does.
    pub fn from_pem(pem: &[u8], issuer: &str) -> Option<Self> {
        let text = std::str::from_utf8(pem).ok()?;
        if text.contains("-----BEGIN PRIVATE KEY-----") {
            let der = pem_block(text, "PRIVATE KEY")?;
            Self::from_pkcs8(&der, issuer)
        } else {
            let decoding = DecodingKey::from_ec_pem(pem).ok()?;
            Some(Self {
                issuer: issuer.to_owned(),
                max_lifetime: DEFAULT_MAX_LIFETIME_SECONDS,
                decoding: Arc::new(decoding),
                encoding: None,
            })
        }
    }

    /// Keys from a PKCS#8 P-256 private key (DER).
    pub fn from_pkcs8(der: &[u8], issuer: &str) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?;
        let point = pair.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || x || y.
        if point.len() != 65 || point.first() != Some(&4) {
            return None;
        }
        let x = URL_SAFE_NO_PAD.encode(point.get(1..33).unwrap_or_default());
        let y = URL_SAFE_NO_PAD.encode(point.get(33..65).unwrap_or_default());
        let decoding = DecodingKey::from_ec_components(&x, &y).ok()?;
        Some(Self {
            issuer: issuer.to_owned(),
            max_lifetime: DEFAULT_MAX_LIFETIME_SECONDS,
            decoding: Arc::new(decoding),
            encoding: Some(Arc::new(EncodingKey::from_ec_der(der))),
        })
    }

    /// The longest lifetime (`exp - iat`, seconds) of a token these keys verify or issue
    /// (`BERTH_ACCOUNT_TOKEN_MAX_SECONDS`; default [`DEFAULT_MAX_LIFETIME_SECONDS`]).
    pub fn with_max_lifetime(mut self, seconds: u64) -> Self {
        self.max_lifetime = seconds;
        self
    }

    /// The longest lifetime of a token, in seconds.
    pub fn max_lifetime(&self) -> u64 {
        self.max_lifetime
    }

    /// The `iss` of the tokens these keys verify and issue.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies a bearer token and returns its account: ES256 by this key, header `typ`
    /// exactly [`ACCOUNT_TOKEN_TYPE`], our issuer and audience, `iat` present and not in the
    /// future, not expired, and `exp - iat` at most the maximum lifetime.
    pub fn verify(&self, token: &str) -> Result<AccountClaims, ApiError> {
        let refuse = |why: &str| ApiError::Unauthenticated(format!("invalid account token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| refuse(describe_jwt_error(&e)))?;
        if header.typ.as_deref() != Some(ACCOUNT_TOKEN_TYPE) {
            return Err(refuse("not an account token"));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[ACCOUNT_AUDIENCE]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<ReceivedClaims>(token, &self.decoding, &validation)
            .map_err(|e| refuse(describe_jwt_error(&e)))?
            .claims;
        let iat = claims.iat.ok_or_else(|| refuse("missing claim iat"))?;
        // A token issued "in the future" would live past the maximum from now.
        if iat > unix_now().saturating_add(LEEWAY_SECONDS) {
            return Err(refuse("issued in the future"));
        }
        if claims.exp.saturating_sub(iat) > self.max_lifetime {
            return Err(refuse(&format!("lifetime over the maximum of {} seconds", self.max_lifetime)));
        }
        Ok(AccountClaims { sub: claims.sub, iss: claims.iss, aud: claims.aud, iat, exp: claims.exp })
    }

    /// Issues a token for `account`, valid for `ttl_seconds` (at most the maximum lifetime).
    pub fn issue(&self, account: &AccountId, ttl_seconds: u64) -> Result<String, AccountKeyError> {
        let encoding = self.encoding.as_ref().ok_or(AccountKeyError::CannotIssue)?;
        if ttl_seconds > self.max_lifetime {
            return Err(AccountKeyError::TooLong { asked: ttl_seconds, max: self.max_lifetime });
        }
        let now = unix_now();
        let claims = AccountClaims {
            sub: account.clone(),
            iss: self.issuer.clone(),
            aud: ACCOUNT_AUDIENCE.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl_seconds),
        };
        jsonwebtoken::encode(&account_header(), &claims, encoding).map_err(|_| AccountKeyError::Sign)
    }
}

/// The header of account tokens: ES256, `typ` [`ACCOUNT_TOKEN_TYPE`].
fn account_header() -> Header {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(ACCOUNT_TOKEN_TYPE.to_owned());
    header
}

fn describe_jwt_error(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "algorithm must be ES256",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::Json(_) => "bad claims",
        _ => "malformed",
    }
}

/// The authenticated caller of a request. Extracting it verifies the bearer token.
#[derive(Debug, Clone)]
pub struct Account {
    /// The account, which is also the registry namespace.
    pub id: AccountId,
}

/// State types that can verify account tokens implement this to enable the [`Account`] extractor.
pub trait HasAccountKeys {
    /// The verifying keys.
    fn account_keys(&self) -> &AccountKeys;
}

impl<S> FromRequestParts<S> for Account
where
    S: HasAccountKeys + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthenticated("missing Authorization: Bearer token".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| ApiError::Unauthenticated("Authorization must be 'Bearer <token>'".into()))?;
        let claims = state.account_keys().verify(token.trim())?;
        crate::platform::serve::mark_authenticated(&parts.extensions);
        Ok(Self { id: claims.sub })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::pem::{generate_private_key_pem, pem_encode};

    const ISSUER: &str = crate::platform::config::DEFAULT_ACCOUNT_ISSUER;

    fn keys() -> AccountKeys {
        AccountKeys::from_pem(generate_private_key_pem().as_bytes(), ISSUER).unwrap()
    }

    fn acme() -> AccountId {
        AccountId::parse("acme").unwrap()
    }

    /// Signs `claims` with `keys`' private key under `header`.
    fn sign(keys: &AccountKeys, header: &Header, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(header, claims, keys.encoding.as_ref().unwrap()).unwrap()
    }

    fn refusal(keys: &AccountKeys, token: &str) -> String {
        match keys.verify(token) {
            Err(ApiError::Unauthenticated(message)) => message,
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    fn claims(iat: Option<u64>, exp: u64) -> serde_json::Value {
        let mut claims = serde_json::json!({ "sub": "acme", "iss": ISSUER, "aud": ACCOUNT_AUDIENCE, "exp": exp });
        if let Some(iat) = iat {
            claims["iat"] = iat.into();
        }
        claims
    }

    #[test]
    fn issued_token_verifies_to_its_account() {
        let keys = keys();
        let account = AccountId::parse("acme").unwrap();
        let token = keys.issue(&account, 60).unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, account);
    }

    #[test]
    fn token_from_other_key_or_issuer_or_expired_is_refused() {
        let account = AccountId::parse("acme").unwrap();
        let token = keys().issue(&account, 60).unwrap();
        assert!(matches!(keys().verify(&token), Err(ApiError::Unauthenticated(m)) if m.contains("bad signature")));

        let pem = generate_private_key_pem();
        let other_issuer = AccountKeys::from_pem(pem.as_bytes(), "someone-else").unwrap();
        let ours = AccountKeys::from_pem(pem.as_bytes(), ISSUER).unwrap();
        let token = other_issuer.issue(&account, 60).unwrap();
        assert!(matches!(ours.verify(&token), Err(ApiError::Unauthenticated(m)) if m.contains("issuer")));

        let encoding = ours.encoding.clone().unwrap();
        let now = unix_now();
        let claims = AccountClaims {
            sub: account,
            iss: ISSUER.into(),
            aud: ACCOUNT_AUDIENCE.into(),
            iat: now - 600,
            exp: now - 300,
        };
        let expired = jsonwebtoken::encode(&account_header(), &claims, &encoding).unwrap();
        assert!(matches!(ours.verify(&expired), Err(ApiError::Unauthenticated(m)) if m.contains("expired")));
    }

    #[test]
    fn issued_tokens_carry_the_account_type() {
        let token = keys().issue(&acme(), 60).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("berth-account+jwt"));
        assert_eq!(header.alg, Algorithm::ES256);
    }

    #[test]
    fn a_token_of_another_type_is_refused() {
        let keys = keys();
        let now = unix_now();
        let good = claims(Some(now), now + 60);
        assert_eq!(keys.verify(&sign(&keys, &account_header(), &good)).unwrap().sub, acme());
        for typ in [None, Some("JWT"), Some("berth-key+jwt"), Some("berth-download+jwt"), Some("Berth-Account+JWT")] {
            let mut header = Header::new(Algorithm::ES256);
            header.typ = typ.map(str::to_owned);
            let message = refusal(&keys, &sign(&keys, &header, &good));
            assert!(message.contains("not an account token"), "{typ:?}: {message}");
        }
        assert!(refusal(&keys, "not-a-jwt").contains("malformed"));
    }

    #[test]
    fn a_lifetime_over_the_maximum_is_refused() {
        let keys = keys();
        let now = unix_now();
        let header = account_header();
        let at_most = sign(&keys, &header, &claims(Some(now), now + DEFAULT_MAX_LIFETIME_SECONDS));
        assert!(keys.verify(&at_most).is_ok());
        let over = sign(&keys, &header, &claims(Some(now), now + DEFAULT_MAX_LIFETIME_SECONDS + 1));
        assert!(refusal(&keys, &over).contains("lifetime over the maximum of 86400 seconds"));
        // An old iat does not help: the lifetime is exp - iat.
        let backdated = sign(&keys, &header, &claims(Some(now - 3600), now + DEFAULT_MAX_LIFETIME_SECONDS - 1));
        assert!(refusal(&keys, &backdated).contains("lifetime"));
        // Nor does an iat in the future, which would stretch it past the maximum from now.
        let year = 365 * 86_400;
        let ahead = sign(&keys, &header, &claims(Some(now + year), now + year + 60));
        assert!(refusal(&keys, &ahead).contains("issued in the future"));

        let short = keys.clone().with_max_lifetime(3600);
        assert_eq!(short.max_lifetime(), 3600);
        assert!(refusal(&short, &at_most).contains("maximum of 3600 seconds"));
        assert!(short.verify(&short.issue(&acme(), 3600).unwrap()).is_ok());
        assert!(matches!(short.issue(&acme(), 3601), Err(AccountKeyError::TooLong { asked: 3601, max: 3600 })));
        assert!(matches!(keys.issue(&acme(), u64::MAX), Err(AccountKeyError::TooLong { .. })));
    }

    #[test]
    fn a_token_without_iat_is_refused() {
        let keys = keys();
        let now = unix_now();
        let message = refusal(&keys, &sign(&keys, &account_header(), &claims(None, now + 60)));
        assert!(message.contains("missing claim iat"), "{message}");
        let mut stringly = claims(None, now + 60);
        stringly["iat"] = now.to_string().into();
        assert!(refusal(&keys, &sign(&keys, &account_header(), &stringly)).contains("bad claims"));
    }

    #[test]
    fn public_key_only_verifies_and_cannot_issue() {
        let pem = generate_private_key_pem();
        let private = AccountKeys::from_pem(pem.as_bytes(), ISSUER).unwrap();
        let der = pem_block(&pem, "PRIVATE KEY").unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
        // SubjectPublicKeyInfo for P-256: fixed 26-byte prefix + the 65-byte point.
        let mut spki = hex_prefix();
        spki.extend_from_slice(pair.public_key().as_ref());
        let public = AccountKeys::from_pem(pem_encode("PUBLIC KEY", &spki).as_bytes(), ISSUER).unwrap();
        let token = private.issue(&AccountId::parse("acme").unwrap(), 60).unwrap();
        assert_eq!(public.verify(&token).unwrap().sub.as_str(), "acme");
        assert!(matches!(public.issue(&AccountId::parse("acme").unwrap(), 60), Err(AccountKeyError::CannotIssue)));
    }

    fn hex_prefix() -> Vec<u8> {
        vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ]
    }
}

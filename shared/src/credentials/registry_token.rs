//! Registry tokens (Docker Registry v2 token auth): what the token endpoint signs for a
//! verified temporary key and the scopes asked for.

use serde::{Deserialize, Serialize};

use crate::credentials::scope::{Access, Scope, grant};
use crate::credentials::temporary_key::KeyGrant;
use crate::platform::clock::rfc3339;
use crate::platform::config::RegistrySettings;
use crate::platform::jws::SigningKeys;
use crate::platform::secret::Secret;

/// Lifetime of a registry token when the key lives longer.
pub const TOKEN_TTL_SECONDS: u64 = 300;
/// Shortest `expires_in` clients honour; a key with less left gets no token.
pub const MIN_EXPIRES_IN: u64 = 60;
/// How far in the past `nbf` is put, for clocks slightly ahead of ours.
pub const NOT_BEFORE_SKEW: u64 = 10;

/// Claims of a registry token, as distribution reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryClaims {
    /// Issuer.
    pub iss: String,
    /// The key's username.
    pub sub: String,
    /// The registry's service: one string, never an array.
    pub aud: String,
    /// Integer expiry, never after the key's.
    pub exp: u64,
    /// Slightly in the past.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique id.
    pub jti: String,
    /// What the token allows.
    pub access: Vec<Access>,
}

/// The token endpoint's answer.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The signed token. Never logged.
    pub token: Secret<String>,
    /// The same token, for OAuth2-style clients.
    pub access_token: Secret<String>,
    /// Seconds until `exp`, at least [`MIN_EXPIRES_IN`].
    pub expires_in: u64,
    /// RFC 3339 issue time.
    pub issued_at: String,
}

/// Why no token was issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// The key expires within [`MIN_EXPIRES_IN`] seconds.
    #[error("the temporary key expires within {MIN_EXPIRES_IN} seconds; request a new one")]
    KeyExpiring,
    /// Signing failed (a bug or a bad key).
    #[error("signing failed")]
    Signing,
}

/// Signs a token granting `key` what it may do of `scopes`.
pub fn issue(
    keys: &SigningKeys,
    settings: &RegistrySettings,
    key: &KeyGrant,
    scopes: &[Scope],
    now: u64,
) -> Result<TokenResponse, TokenRefusal> {
    if key.exp < now + MIN_EXPIRES_IN {
        return Err(TokenRefusal::KeyExpiring);
    }
    let exp = (now + TOKEN_TTL_SECONDS).min(key.exp);
    let claims = RegistryClaims {
        iss: settings.issuer.clone(),
        sub: key.sub.to_string(),
        aud: settings.service.clone(),
        exp,
        nbf: now.saturating_sub(NOT_BEFORE_SKEW),
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        access: grant(key, scopes),
    };
    let token = keys.sign("JWT", &claims).map_err(|_| TokenRefusal::Signing)?;
    Ok(TokenResponse {
        access_token: Secret::new(token.clone()),
        token: Secret::new(token),
        expires_in: exp - now,
        issued_at: rfc3339(now),
    })
}

/// Most query parameters the token endpoint reads.
pub const MAX_QUERY_PAIRS: usize = crate::credentials::scope::MAX_SCOPES + 8;

/// The token endpoint's query, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenQuery {
    /// `service`: must be ours when given.
    pub service: Option<String>,
    /// Every `scope`, split on spaces.
    pub scopes: Vec<Scope>,
    /// `account`: must equal the Basic username when given.
    pub account: Option<String>,
    /// `offline_token` (docker login sends `true`); no refresh token is issued either way.
    pub offline_token: bool,
    /// `client_id`, for logs.
    pub client_id: Option<String>,
}

impl TokenQuery {
    /// Parses the query pairs, checking `service` against ours.
    pub fn parse(
        pairs: &[(String, String)],
        settings: &RegistrySettings,
    ) -> Result<Self, crate::platform::http::error::ApiError> {
        use crate::platform::http::error::ApiError;
        if pairs.len() > MAX_QUERY_PAIRS {
            return Err(ApiError::invalid(
                "scope",
                "too_many",
                format!("at most {} scopes", crate::credentials::scope::MAX_SCOPES),
            ));
        }
        let mut query = Self::default();
        let mut scopes = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "service" => query.service = Some(value.clone()),
                "scope" => scopes.push(value.as_str()),
                "account" => query.account = Some(value.clone()),
                "offline_token" => query.offline_token = value == "true",
                "client_id" => query.client_id = Some(value.chars().take(64).collect()),
                _ => {}
            }
        }
        if let Some(service) = &query.service
            && service != &settings.service
        {
            return Err(ApiError::invalid("service", "unknown_service", "this token server serves another registry"));
        }
        query.scopes = crate::credentials::scope::parse_scopes(scopes)
            .map_err(|e| ApiError::invalid("scope", "invalid_scope", e.to_string()))?;
        Ok(query)
    }
}

/// Subject of the tokens Berth signs for its own registry calls.
pub const INTERNAL_SUBJECT: &str = "berth";

/// A token for Berth itself to read the registry's catalog (`registry:catalog:*`), which it
/// filters to one namespace before anything leaves it. Never handed to a tenant.
pub fn internal_catalog_token(
    keys: &SigningKeys,
    settings: &RegistrySettings,
    now: u64,
) -> Result<String, TokenRefusal> {
    internal_token(
        keys,
        settings,
        Access { kind: "registry".into(), name: "catalog".into(), actions: vec!["*".into()] },
        now,
    )
}

/// A short-lived pull token for Berth's own reads of `repository` (publish checks).
pub fn internal_pull_token(
    keys: &SigningKeys,
    settings: &RegistrySettings,
    repository: &crate::names::RepositoryName,
    now: u64,
) -> Result<String, TokenRefusal> {
    let access = Access { kind: "repository".into(), name: repository.to_string(), actions: vec!["pull".into()] };
    internal_token(keys, settings, access, now)
}

/// A token of Berth's own (subject [`INTERNAL_SUBJECT`]) for one access, briefly valid.
fn internal_token(
    keys: &SigningKeys,
    settings: &RegistrySettings,
    access: Access,
    now: u64,
) -> Result<String, TokenRefusal> {
    let claims = RegistryClaims {
        iss: settings.issuer.clone(),
        sub: INTERNAL_SUBJECT.to_owned(),
        aud: settings.service.clone(),
        exp: now + MIN_EXPIRES_IN * 2,
        nbf: now.saturating_sub(NOT_BEFORE_SKEW),
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        access: vec![access],
    };
    keys.sign("JWT", &claims).map_err(|_| TokenRefusal::Signing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::scope::parse_scopes;
    use crate::credentials::temporary_key::{KEY_AUDIENCE, KeyPurpose};
    use crate::names::AccountId;
    use crate::platform::jws::SigningKey;
    use crate::platform::pem::pem_block;

    fn keys() -> SigningKeys {
        let der = pem_block(&crate::platform::pem::generate_private_key_pem(), "PRIVATE KEY").unwrap();
        SigningKeys::from_keys(vec![SigningKey::from_pkcs8(&der, None).unwrap()])
    }

    fn settings() -> RegistrySettings {
        RegistrySettings {
            host: "r:5000".into(),
            service: "svc".into(),
            issuer: "berth".into(),
            url: "http://r:5000".into(),
        }
    }

    fn grant(exp: u64) -> KeyGrant {
        KeyGrant {
            sub: AccountId::parse("acme").unwrap(),
            aud: KEY_AUDIENCE.into(),
            purpose: KeyPurpose::Push,
            repositories: None,
            iat: 0,
            exp,
            jti: "k".into(),
            instance: None,
        }
    }

    #[test]
    fn token_claims_follow_the_rules() {
        let keys = keys();
        let now = 1_000_000;
        let scopes = parse_scopes(["repository:acme/app:pull"]).unwrap();
        let response = issue(&keys, &settings(), &grant(now + 3600), &scopes, now).unwrap();
        let claims: RegistryClaims = keys.verify_registry_token_for_tests(response.token.expose());
        assert_eq!(claims.aud, "svc");
        assert_eq!(claims.iss, "berth");
        assert_eq!(claims.exp, now + TOKEN_TTL_SECONDS);
        assert_eq!(response.expires_in, TOKEN_TTL_SECONDS);
        assert!(claims.nbf < claims.iat);
        // Capped at the key's expiry.
        let capped = issue(&keys, &settings(), &grant(now + 90), &scopes, now).unwrap();
        assert_eq!(capped.expires_in, 90);
        // A key with under a minute left gets nothing.
        assert_eq!(issue(&keys, &settings(), &grant(now + 59), &scopes, now).unwrap_err(), TokenRefusal::KeyExpiring);
    }

    #[test]
    fn query_checks_service_and_collects_scopes() {
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let query = TokenQuery::parse(
            &pairs(&[
                ("service", "svc"),
                ("scope", "repository:acme/a:pull"),
                ("scope", "repository:acme/b:push repository:acme/c:pull"),
                ("offline_token", "true"),
                ("client_id", "docker"),
            ]),
            &settings(),
        )
        .unwrap();
        assert_eq!(query.scopes.len(), 3);
        assert!(query.offline_token);
        assert!(TokenQuery::parse(&pairs(&[("service", "other")]), &settings()).is_err());
        assert!(TokenQuery::parse(&pairs(&[("scope", "nonsense")]), &settings()).is_err());
    }
}

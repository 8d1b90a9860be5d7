//! Registry tokens (Docker Registry v2 token auth): what the token endpoint signs for a
//! verified temporary key and the scopes asked for.

use serde::{Deserialize, Serialize};

use crate::scope::{Access, Scope, grant};
use crate::secret::Secret;
use crate::signing::SigningKeys;
use crate::temporary_key::{KeyGrant, rfc3339};

/// Lifetime of a registry token when the key lives longer.
pub const TOKEN_TTL_SECONDS: u64 = 300;
/// Shortest `expires_in` clients honour; a key with less left gets no token.
pub const MIN_EXPIRES_IN: u64 = 60;
/// How far in the past `nbf` is put, for clocks slightly ahead of ours.
pub const NOT_BEFORE_SKEW: u64 = 10;

/// Who signs registry tokens and for which registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Host clients use (`BERTH_REGISTRY_HOST`), e.g. `127.0.0.1:5000`.
    pub host: String,
    /// The registry's `service` (`BERTH_REGISTRY_SERVICE`): the tokens' `aud`.
    pub service: String,
    /// The tokens' `iss` (`BERTH_TOKEN_ISSUER`), as in the registry's `auth.token.issuer`.
    pub issuer: String,
}

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
pub const MAX_QUERY_PAIRS: usize = crate::scope::MAX_SCOPES + 8;

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
    pub fn parse(pairs: &[(String, String)], settings: &RegistrySettings) -> Result<Self, crate::error::ApiError> {
        use crate::error::ApiError;
        if pairs.len() > MAX_QUERY_PAIRS {
            return Err(ApiError::invalid("scope", "too_many", format!("at most {} scopes", crate::scope::MAX_SCOPES)));
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
        query.scopes = crate::scope::parse_scopes(scopes)
            .map_err(|e| ApiError::invalid("scope", "invalid_scope", e.to_string()))?;
        Ok(query)
    }
}

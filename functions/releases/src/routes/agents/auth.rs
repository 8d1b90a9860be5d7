//! A host authenticated by its own host token.

use super::*;
use berth_shared::platform::token_kind::{HOST_TOKEN, RandomKind};
use std::sync::Arc;

/// The bearer token of a request, if it is of the given kind by its prefix.
pub(crate) fn bearer(parts: &Parts, kind: RandomKind) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| kind.marks(t) && t.len() <= MAX_TOKEN_BYTES)
}

/// Longest bearer token looked up (a host token naming its host's place: up to about 650
/// bytes with the longest names).
const MAX_TOKEN_BYTES: usize = 1024;

/// A host, authenticated by its own host token (`Authorization: Bearer bht_...`): it polls
/// and reports for itself only.
pub struct Host {
    /// The host and its group.
    pub host: HostRef,
    /// Its record as read to authenticate it (its version for a `last_seen` swap). Shared with
    /// the token cache ([`Engine::recent_record`]), and dropped by a poll before it is held:
    /// 100,000 held polls do not keep 100,000 records.
    pub record: Arc<Versioned<HostRecord>>,
}

impl FromRequestParts<Engine> for Host {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Engine) -> Result<Self, Self::Rejection> {
        let token = bearer(parts, HOST_TOKEN).ok_or_else(host_refused)?;
        // Boxed: this future's room is kept by every held poll (axum's handler future holds
        // it), while the reads need it only for a moment.
        let host = Box::pin(host_of(engine, token)).await?;
        berth_shared::platform::serve::mark_authenticated(&parts.extensions);
        Ok(host)
    }
}

fn host_refused() -> ApiError {
    ApiError::Unauthenticated(format!(
        "a valid host token is required (Authorization: Bearer {}..., from POST /v1/agent/register)",
        HOST_TOKEN.prefix
    ))
}

async fn host_of(engine: &Engine, token: &str) -> Result<Host, ApiError> {
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    // Where the token points is read once per process; whether it still acts for that host,
    // on every request.
    if let Some(host) = engine.token_place(&digest) {
        if let Some(record) = engine.recent_record(&digest) {
            return Ok(Host { host, record });
        }
        if let Some(record) = named_by(engine, &host, &digest).await? {
            return Ok(Host { host, record });
        }
        engine.forget_token_place(&digest);
    }
    let host = match crate::engine::place_in_token(token) {
        Some(host) => host,
        None => {
            let store = &engine.context.store;
            store.get::<HostRef>(&layout::host_token(&digest)).await?.ok_or_else(host_refused)?.value
        }
    };
    let record = named_by(engine, &host, &digest).await?.ok_or_else(host_refused)?;
    engine.remember_token_place(&digest, &host);
    Ok(Host { host, record })
}

/// The host's record, if it names this token: only the token the record names acts for the
/// host (registering again replaces it). Kept for the token's next requests.
async fn named_by(
    engine: &Engine,
    host: &HostRef,
    digest: &str,
) -> Result<Option<Arc<Versioned<HostRecord>>>, ApiError> {
    let path = layout::host_record(&host.group, &host.host);
    let record = engine.context.store.get::<HostRecord>(&path).await?;
    let Some(record) = record.filter(|i| i.value.host_token_sha256.as_deref() == Some(digest)).map(Arc::new) else {
        return Ok(None);
    };
    engine.note_record(digest, &record);
    Ok(Some(record))
}

impl Host {
    /// The `host` query, when an agent still sends one, must name the token's own host.
    pub(super) fn check_named(&self, named: Option<&str>) -> Result<(), ApiError> {
        match named {
            Some(name) if name != self.host.host => {
                Err(ApiError::Forbidden(format!("this host token acts for host '{}' only", self.host.host)))
            }
            _ => Ok(()),
        }
    }
}

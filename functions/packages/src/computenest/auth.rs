//! Who signed a Compute Nest call: the access key in its ACS3 `Authorization`, checked against
//! the secret Berth derives for it, within 15 minutes of `x-acs-date`, with a nonce never seen
//! before in that window. The account of the key is the namespace the call acts in.

use axum::http::{HeaderMap, StatusCode};
use berth_shared::credentials::access_key::{self, AccessKey, AccessKeyStatus, NonceUse};
use berth_shared::names::AccountId;
use berth_shared::platform::clock::parse_rfc3339;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::store::StoreError;

use super::error::CnError;
use super::signature::{self, SignatureError, SignedRequest};

/// Largest difference between `x-acs-date` and Berth's clock.
pub const MAX_SKEW_SECONDS: u64 = 15 * 60;
/// Longest `x-acs-signature-nonce`.
pub const MAX_NONCE: usize = 128;

fn refused(code: &str, message: impl Into<String>) -> CnError {
    CnError::auth(StatusCode::BAD_REQUEST, code, message)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The signature checks that need no key: the header's shape, the date and the nonce's shape.
/// Answers the parsed header and the nonce.
pub fn precheck(headers: &HeaderMap, now: u64) -> Result<(signature::Authorization, u64, String), CnError> {
    let authorization = signature::parse_authorization(headers).map_err(|e| match e {
        SignatureError::Missing => refused("MissingAuthorization", "The request is not signed (ACS3-HMAC-SHA256)."),
        other => refused("IncompleteSignature", other.to_string()),
    })?;
    let date = header(headers, "x-acs-date").ok_or_else(|| refused("MissingParameter", "x-acs-date is required."))?;
    let at = parse_rfc3339(date).ok_or_else(|| {
        refused("InvalidTimeStamp.Format", "x-acs-date must be ISO 8601 UTC, e.g. 2026-12-01T00:00:00Z.")
    })?;
    if at.abs_diff(now) > MAX_SKEW_SECONDS {
        return Err(refused(
            "InvalidTimeStamp.Expired",
            format!("x-acs-date {date} is more than {} minutes from the server's time.", MAX_SKEW_SECONDS / 60),
        ));
    }
    let nonce = header(headers, "x-acs-signature-nonce").filter(|n| n.len() <= MAX_NONCE).ok_or_else(|| {
        refused("MissingParameter", format!("x-acs-signature-nonce is required (at most {MAX_NONCE} characters)."))
    })?;
    Ok((authorization, at, nonce.to_owned()))
}

/// Authenticates a signed call; answers the account it acts as.
pub async fn authenticate(
    context: &FunctionContext,
    request: &SignedRequest<'_>,
    now: u64,
) -> Result<AccountId, CnError> {
    let (authorization, date, nonce) = precheck(request.headers, now)?;
    let id = &authorization.access_key_id;
    let unknown =
        || CnError::auth(StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound", "Specified access key is not found.");
    if !access_key::is_id(id) {
        return Err(unknown());
    }
    let key = context.store.get::<AccessKey>(&access_key::key_path(id)).await?.ok_or_else(unknown)?.value;
    if key.status != AccessKeyStatus::Active {
        return Err(CnError::auth(
            StatusCode::BAD_REQUEST,
            "InvalidAccessKeyId.Inactive",
            "Specified access key is disabled.",
        ));
    }
    // A key derived with a signing key no longer configured cannot be checked: it is gone.
    let secret = access_key::secret(&context.signing, &key.kid, id).ok_or_else(unknown)?;
    signature::verify(request, &authorization, secret.expose()).map_err(|e| match e {
        SignatureError::ContentHash => refused("InvalidContentSha256", e.to_string()),
        _ => refused(
            "SignatureDoesNotMatch",
            "Specified signature does not match our calculation (ACS3-HMAC-SHA256 over the canonical request).",
        ),
    })?;
    // Only a correctly signed request spends its nonce, so nobody can burn another's nonces.
    let marker = access_key::nonce_path(id, date, &nonce);
    match context.store.create(&marker, &NonceUse { at: now }).await {
        Ok(_) => {}
        Err(StoreError::AlreadyExists(_)) => {
            return Err(refused("SignatureNonceUsed", "Specified signature nonce was used already."));
        }
        Err(e) => return Err(e.into()),
    }
    // About one call in 256 (by the nonce's hash) removes the key's markers too old to matter,
    // so they stay bounded by an hour of calls.
    if marker.rsplit('/').next().is_some_and(|file| file.starts_with("00")) {
        prune_nonces(context, id, now).await;
    }
    Ok(key.account)
}

async fn prune_nonces(context: &FunctionContext, id: &str, now: u64) {
    let paths = match context.store.list_paths(&access_key::nonces_prefix(id)).await {
        Ok(paths) => paths,
        Err(error) => return tracing::warn!(%error, "listing nonce markers failed"),
    };
    let mut removed = 0;
    for path in paths.iter().filter(|p| access_key::nonce_expired(p, now)) {
        if context.store.delete(path).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(access_key_id = %id, removed, "expired nonce markers removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(date: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let signed = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce";
        let value = format!("ACS3-HMAC-SHA256 Credential=BAKX,SignedHeaders={signed},Signature={}", "a".repeat(64));
        headers.insert("authorization", value.parse().unwrap());
        headers.insert("x-acs-date", date.parse().unwrap());
        headers.insert("x-acs-signature-nonce", "n".parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn pruning_removes_only_markers_too_old_to_matter() {
        let context = FunctionContext::ephemeral();
        let now = parse_rfc3339("2026-12-01T12:00:00Z").unwrap();
        let old = access_key::nonce_path("BAKX", now - 3600, "a");
        let recent = access_key::nonce_path("BAKX", now - 20 * 60, "b");
        let other = access_key::nonce_path("BAKY", now - 3600, "c");
        for path in [&old, &recent, &other] {
            context.store.create(path, &NonceUse { at: now }).await.unwrap();
        }
        prune_nonces(&context, "BAKX", now).await;
        let left = context.store.list_paths("access-key-nonces").await.unwrap();
        assert_eq!(left, [recent, other]);
    }

    #[test]
    fn dates_more_than_15_minutes_off_are_refused() {
        let now = parse_rfc3339("2026-12-01T00:20:00Z").unwrap();
        assert!(precheck(&headers("2026-12-01T00:05:00Z"), now).is_ok());
        assert_eq!(precheck(&headers("2026-12-01T00:04:59Z"), now).unwrap_err().code, "InvalidTimeStamp.Expired");
        assert_eq!(precheck(&headers("2026-12-01T00:35:01Z"), now).unwrap_err().code, "InvalidTimeStamp.Expired");
        assert_eq!(precheck(&headers("tomorrow"), now).unwrap_err().code, "InvalidTimeStamp.Format");
        assert_eq!(precheck(&HeaderMap::new(), now).unwrap_err().code, "MissingAuthorization");
    }
}

//! Signing-key routes: an account registers the public keys its images are signed with,
//! lists them, revokes them, and sets whether its packages require signatures by default.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_shared::platform::clock::{rfc3339, unix_now};
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::account::Account;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiPath};
use berth_shared::signing::{self, AddSigningKeyRequest, KeyRing, SigningKey, SigningPolicy};
use serde::Serialize;

/// `GET /v1/signing-keys` answer: every key, by registration, with the account's policy.
#[derive(Serialize)]
pub struct SigningKeyList {
    signing_keys: Vec<SigningKey>,
    require_signature: bool,
}

/// `POST /v1/signing-keys`: registers a public key (the same key again answers the same key).
pub async fn add_signing_key(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiJson(request): ApiJson<AddSigningKeyRequest>,
) -> Result<(StatusCode, Json<SigningKey>), ApiError> {
    let key = request.validate(&rfc3339(unix_now()))?;
    let mut added = None;
    context
        .store
        .modify(&signing::key_ring_path(&caller.id), |ring: Option<KeyRing>| {
            let mut ring = ring.unwrap_or_default();
            added = Some(signing::add(&mut ring, key.clone())?);
            Ok::<_, ApiError>(ring)
        })
        .await?;
    let added = added.ok_or_else(|| ApiError::Internal("the key ring was not changed".into()))?;
    tracing::info!(account = %caller.id, signing_key = %added.id, "signing key registered");
    Ok((StatusCode::CREATED, Json(added)))
}

/// `GET /v1/signing-keys`.
pub async fn list_signing_keys(
    State(context): State<FunctionContext>,
    caller: Account,
) -> Result<Json<SigningKeyList>, ApiError> {
    let ring = signing::load(&context.store, &caller.id).await?;
    Ok(Json(SigningKeyList { signing_keys: ring.keys, require_signature: ring.require_signature }))
}

/// `DELETE /v1/signing-keys/{id}`: revokes a key at once. Versions it signed stay, shown as
/// no longer trusted, and are refused wherever a digest reaches a customer.
pub async fn revoke_signing_key(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SigningKey>, ApiError> {
    let now = rfc3339(unix_now());
    let mut revoked = None;
    context
        .store
        .modify(&signing::key_ring_path(&caller.id), |ring: Option<KeyRing>| {
            let mut ring = ring.unwrap_or_default();
            revoked = Some(signing::revoke(&mut ring, &id, &now)?);
            Ok::<_, ApiError>(ring)
        })
        .await?;
    let revoked = revoked.ok_or_else(|| ApiError::Internal("the key ring was not changed".into()))?;
    tracing::info!(account = %caller.id, signing_key = %revoked.id, "signing key revoked");
    Ok(Json(revoked))
}

/// `GET /v1/signing-policy`.
pub async fn get_signing_policy(
    State(context): State<FunctionContext>,
    caller: Account,
) -> Result<Json<SigningPolicy>, ApiError> {
    let ring = signing::load(&context.store, &caller.id).await?;
    Ok(Json(SigningPolicy { require_signature: ring.require_signature }))
}

/// `PUT /v1/signing-policy`: whether packages that do not say otherwise require signatures
/// (checked for versions submitted from now on).
pub async fn put_signing_policy(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiJson(policy): ApiJson<SigningPolicy>,
) -> Result<Json<SigningPolicy>, ApiError> {
    context
        .store
        .modify(&signing::key_ring_path(&caller.id), |ring: Option<KeyRing>| {
            let mut ring = ring.unwrap_or_default();
            ring.require_signature = policy.require_signature;
            Ok::<_, ApiError>(ring)
        })
        .await?;
    tracing::info!(account = %caller.id, require_signature = policy.require_signature, "signing policy set");
    Ok(Json(policy))
}

/// Shows, on versions with signed images, why one is no longer trusted (its key was revoked
/// since). Reads the key ring only when a version has a signed image.
pub(crate) async fn mark_untrusted(
    context: &FunctionContext,
    account: &berth_shared::names::AccountId,
    versions: &mut [berth_shared::package::PackageVersion],
) -> Result<(), ApiError> {
    if !versions.iter().any(|v| v.images.iter().any(|i| i.signed_by.is_some())) {
        return Ok(());
    }
    let ring = berth_shared::signing::load(&context.store, account).await?;
    for version in versions {
        version.untrusted = ring.distrust_version(version);
    }
    Ok(())
}

//! Access-key routes: an account creates, lists and revokes the keys that sign its Compute
//! Nest API requests. The secret is answered once, at creation, and never stored.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_shared::credentials::access_key::{
    self, AccessKey, AccessKeyStatus, CreateAccessKeyRequest, CreatedAccessKey, MAX_ACTIVE_PER_ACCOUNT,
};
use berth_shared::platform::clock::{rfc3339, unix_now};
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::account::Account;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiPath};
use berth_shared::platform::slots::{self, Holder};
use serde::Serialize;

/// `GET /v1/access-keys` answer: every key of the caller, by creation, without secrets.
#[derive(Serialize)]
pub struct AccessKeyList {
    access_keys: Vec<AccessKey>,
}

async fn keys_of(context: &FunctionContext, caller: &Account) -> Result<Vec<AccessKey>, ApiError> {
    let mut keys: Vec<AccessKey> = context
        .store
        .list::<AccessKey>(&access_key::account_keys_prefix(&caller.id))
        .await?
        .into_iter()
        .map(|(_, doc)| doc.value)
        .collect();
    // Shown as they act now; the slot is bookkeeping.
    for key in &mut keys {
        key.status = key.status_with(&context.signing);
        key.slot = None;
    }
    keys.sort_by(|a, b| (&a.created_at, &a.access_key_id).cmp(&(&b.created_at, &b.access_key_id)));
    Ok(keys)
}

/// `POST /v1/access-keys`: a new key; its secret is in this answer only.
pub async fn create_access_key(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiJson(request): ApiJson<CreateAccessKeyRequest>,
) -> Result<(StatusCode, Json<CreatedAccessKey>), ApiError> {
    let description = access_key::validate_description(&request)?;
    let too_many = || ApiError::Conflict {
        code: "too_many_access_keys",
        message: format!("an account holds at most {MAX_ACTIVE_PER_ACCOUNT} active access keys; revoke one first"),
    };
    // The listing refuses cheaply (and counts keys made before slots); the slot decides.
    let active = keys_of(&context, &caller).await?.iter().filter(|k| k.counts(&context.signing)).count();
    if active >= MAX_ACTIVE_PER_ACCOUNT {
        return Err(too_many());
    }
    let id = access_key::new_id();
    let kid = context.signing.current().kid().to_owned();
    let secret = access_key::secret(&context.signing, &kid, &id)
        .ok_or_else(|| ApiError::Internal("the current signing key is not configured".into()))?;
    let now = unix_now();
    let prefix = access_key::slots_prefix(&caller.id);
    let start = slots::start_for(&id, MAX_ACTIVE_PER_ACCOUNT);
    let slot = slots::take(&context.store, &prefix, MAX_ACTIVE_PER_ACCOUNT, start, &id, now, |holder| {
        let context = context.clone();
        async move {
            Ok(match context.store.get::<AccessKey>(&access_key::key_path(&holder)).await? {
                None => Holder::Missing,
                Some(key) if key.value.counts(&context.signing) => Holder::Counts,
                Some(_) => Holder::Gone,
            })
        }
    })
    .await?
    .ok_or_else(too_many)?;
    let key = AccessKey {
        access_key_id: id.clone(),
        account: caller.id.clone(),
        description,
        status: AccessKeyStatus::Active,
        kid,
        created_at: rfc3339(now),
        revoked_at: None,
        slot: Some(slot),
    };
    if let Err(e) = context.store.create(&access_key::key_path(&id), &key).await {
        slots::free(&context.store, &prefix, slot, &id, now).await?;
        return Err(e.into());
    }
    context.store.put(&access_key::account_key_path(&caller.id, &id), &key).await?;
    tracing::info!(account = %caller.id, access_key_id = %id, "access key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedAccessKey {
            access_key_id: id,
            access_key_secret: secret,
            created_at: key.created_at,
            description: key.description,
            status: key.status,
        }),
    ))
}

/// `GET /v1/access-keys`: the caller's keys (ids and states, never secrets).
pub async fn list_access_keys(
    State(context): State<FunctionContext>,
    caller: Account,
) -> Result<Json<AccessKeyList>, ApiError> {
    Ok(Json(AccessKeyList { access_keys: keys_of(&context, &caller).await? }))
}

/// `DELETE /v1/access-keys/{id}`: revokes a key of the caller at once; requests it signs are
/// refused from now on. Revoking a revoked key changes nothing.
pub async fn revoke_access_key(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AccessKey>, ApiError> {
    if !access_key::is_id(&id) {
        return Err(ApiError::invalid("id", "invalid_access_key_id", "not an access key id"));
    }
    let not_found = || ApiError::NotFound(format!("access key '{id}'"));
    let now = rfc3339(unix_now());
    let revoked = context
        .store
        .modify(&access_key::key_path(&id), |key: Option<AccessKey>| {
            let mut key = key.filter(|k| k.account == caller.id).ok_or_else(not_found)?;
            if key.status == AccessKeyStatus::Active {
                key.status = AccessKeyStatus::Revoked;
                key.revoked_at = Some(now.clone());
            }
            Ok::<_, ApiError>(key)
        })
        .await?
        .value;
    context.store.put(&access_key::account_key_path(&caller.id, &id), &revoked).await?;
    if let Some(slot) = revoked.slot {
        slots::free(&context.store, &access_key::slots_prefix(&caller.id), slot, &id, unix_now()).await?;
    }
    tracing::info!(account = %caller.id, access_key_id = %id, "access key revoked");
    Ok(Json(AccessKey { slot: None, ..revoked }))
}

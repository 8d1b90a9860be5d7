//! The credentials function: temporary namespace-scoped registry keys, the registry token
//! endpoint an OCI registry delegates its auth to, and the keys that verify its tokens.

mod instance;
mod pulls;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use berth_shared::credentials::key_request::{self, KeyRequest};
use berth_shared::credentials::registry_token::{self, TokenQuery, TokenRefusal, TokenResponse};
use berth_shared::credentials::temporary_key::{self, TemporaryKey};
use berth_shared::credentials::verified_keys::VerifiedKeys;
use berth_shared::names::AccountId;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::account::Account;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiQuery, BasicAuth};
use berth_shared::platform::runtime::Function;
use berth_shared::service::instance::pulls_path;
use serde::Serialize;

pub use crate::pulls::PullCounter;

/// The function's name.
pub const NAME: &str = "credentials";

/// The function: routes only, it consumes no events.
pub fn function(context: FunctionContext) -> Function {
    Function { name: NAME, router: router(context), events: None, winding_down: None }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    let pulls = PullCounter::new(context.store.clone(), context.config.pull_flush_interval);
    let verified = Arc::new(VerifiedKeys::new(context.signing.clone()));
    Router::new()
        .route("/v1/account", get(account))
        .route("/v1/registry/credentials", post(create_key))
        .route("/v1/registry/exchange", post(exchange))
        .route("/v1/registry/token", get(token))
        .route("/.well-known/jwks.json", get(jwks))
        .layer(Extension(pulls))
        .layer(Extension(verified))
        .with_state(context)
}

/// `GET /v1/account` answer: the namespace is the account ID, named on its own so that callers
/// need not know that.
#[derive(Serialize)]
pub struct AccountView {
    account: AccountId,
    namespace: AccountId,
}

/// `GET /v1/account`: the caller's account and the registry namespace it acts in.
async fn account(caller: Account) -> Json<AccountView> {
    Json(AccountView { namespace: caller.id.clone(), account: caller.id })
}

/// `POST /v1/registry/credentials`: a temporary key for the caller's namespace.
async fn create_key(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiJson(request): ApiJson<KeyRequest>,
) -> Result<Json<TemporaryKey>, ApiError> {
    let request = key_request::validate(request, &caller.id)?;
    let registry = &context.config.registry;
    let key = temporary_key::mint(
        &context.signing,
        &registry.host,
        &caller.id,
        request.purpose,
        request.repositories,
        request.ttl_seconds,
        unix_now(),
    )
    .map_err(|e| ApiError::Internal(format!("signing a temporary key: {e}")))?;
    tracing::info!(account = %caller.id, purpose = ?key.purpose, expires_at = %key.expires_at, "temporary key minted");
    Ok(Json(key))
}

/// `GET /v1/registry/token`: Docker Registry v2 token auth with a temporary key or an
/// instance credential.
async fn token(
    State(context): State<FunctionContext>,
    Extension(pulls): Extension<Arc<PullCounter>>,
    Extension(verified): Extension<Arc<VerifiedKeys>>,
    credentials: BasicAuth,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<TokenResponse>, ApiError> {
    let settings = &context.config.registry;
    let query = TokenQuery::parse(&pairs, settings)?;
    let now = unix_now();
    let login = instance::login(&context, &verified, &credentials, now).await?;
    let key = &login.grant;
    if query.account.as_ref().is_some_and(|account| account != &credentials.username) {
        return Err(ApiError::Unauthenticated("account does not match the credentials".into()));
    }
    if let Some(scope) = berth_shared::credentials::scope::namespace_root(key, &query.scopes) {
        return Err(ApiError::invalid(
            "scope",
            "repository_is_namespace",
            format!("'{}' is your namespace itself; repositories live below it, e.g. {}/app", scope.name, key.sub),
        ));
    }
    let response = registry_token::issue(&context.signing, settings, key, &query.scopes, now).map_err(|e| match e {
        TokenRefusal::KeyExpiring => ApiError::Unauthenticated(e.to_string()),
        TokenRefusal::Signing => ApiError::Internal("signing a registry token failed".into()),
    })?;
    if let Some((of, uid)) = &login.instance {
        let pulled = berth_shared::credentials::scope::grant(key, &query.scopes)
            .into_iter()
            .filter(|access| access.actions.iter().any(|a| a == "pull"))
            .map(|access| access.name);
        pulls.record(&pulls_path(&of.account, uid), pulled, now);
    }
    tracing::info!(
        account = %key.sub,
        kind = login.kind.as_str(),
        instance = login.instance.as_ref().map(|(of, _)| of.instance.as_str()).unwrap_or("-"),
        scopes = query.scopes.len(),
        client_id = query.client_id.as_deref().unwrap_or("-"),
        expires_in = response.expires_in,
        "registry token issued"
    );
    Ok(Json(response))
}

/// Lifetime of a key exchanged for an instance credential (it is refused as soon as the
/// credential is, whatever its expiry).
pub const EXCHANGED_KEY_TTL_SECONDS: u64 = temporary_key::DEFAULT_TTL_SECONDS;

/// `POST /v1/registry/exchange`: an instance credential (Basic auth) for a fresh temporary pull
/// key reaching exactly the instance's repositories, so the long-lived secret never reaches
/// the registry (`docker-credential-berth` calls it on every `get`).
async fn exchange(
    State(context): State<FunctionContext>,
    Extension(verified): Extension<Arc<VerifiedKeys>>,
    credentials: BasicAuth,
) -> Result<Json<TemporaryKey>, ApiError> {
    let now = unix_now();
    if !berth_shared::credentials::instance_credential::is_instance_credential(credentials.password.expose()) {
        return Err(ApiError::Unauthenticated("an instance credential (bic_...) is required".into()));
    }
    let login = instance::login(&context, &verified, &credentials, now).await?;
    let grant = login.grant;
    let (Some(binding), Some(repositories)) = (grant.instance, grant.repositories) else {
        return Err(ApiError::Internal("an instance login without its instance".into()));
    };
    let ttl = EXCHANGED_KEY_TTL_SECONDS.min(grant.exp.saturating_sub(now));
    let instance_name = binding.of.instance.clone();
    let key =
        temporary_key::mint_exchanged(&context.signing, &context.config.registry.host, binding, repositories, ttl, now)
            .map_err(|e| ApiError::Internal(format!("signing a temporary key: {e}")))?;
    tracing::info!(account = %key.namespace, instance = %instance_name, expires_at = %key.expires_at, "temporary key exchanged for an instance credential");
    Ok(Json(key))
}

/// `GET /.well-known/jwks.json`: the keys registry tokens are signed with (the document is
/// built by [`berth_shared::platform::jws::SigningKeys::jwks`]).
async fn jwks(State(context): State<FunctionContext>) -> Json<berth_shared::platform::jws::Jwks> {
    Json(context.signing.jwks())
}

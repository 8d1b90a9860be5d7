//! The credentials function: temporary namespace-scoped registry keys and the registry
//! token endpoint. For now it answers who the caller is.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use berth_shared::account::Account;
use berth_shared::context::FunctionContext;
use berth_shared::runtime::Function;
use serde_json::{Value, json};

/// The function's name.
pub const NAME: &str = "credentials";

/// The function: routes only, it consumes no events.
pub fn function(context: FunctionContext) -> Function {
    Function { name: NAME, router: router(context), events: None }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    Router::new().route("/v1/account", get(account)).with_state(context)
}

/// `GET /v1/account`: the caller's account and the registry namespace it acts in.
async fn account(State(_): State<FunctionContext>, caller: Account) -> Json<Value> {
    Json(json!({ "account": caller.id, "namespace": caller.id }))
}

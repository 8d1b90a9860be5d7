//! The scaling pause is recorded as suspended only once the adapter confirmed it, and until
//! then no host of the release is stopped; a failed suspend is retried by the next advance.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use berth_releases::engine::Engine;
use berth_releases::scaling::ScalingAdapter;
use berth_releases::store_layout::GroupRef;
use berth_shared::names::AccountId;
use berth_shared::platform::context::FunctionContext;
use common::call;
use serde_json::{Value, json};

/// Refuses the first `failures` suspends, as a scaling API that is down for a while would.
struct Flaky {
    failures: u32,
    suspends: AtomicU32,
}

#[async_trait]
impl ScalingAdapter for Flaky {
    async fn suspend(&self, _: &GroupRef) -> Result<(), String> {
        let n = self.suspends.fetch_add(1, Ordering::SeqCst);
        if n < self.failures { Err("Throttling: rate exceeded".into()) } else { Ok(()) }
    }

    async fn resume(&self, _: &GroupRef) -> Result<(), String> {
        Ok(())
    }
}

async fn scaling(router: &axum::Router, token: &str) -> Value {
    let (status, group) = call(router, Method::GET, "/v1/applications/app/groups/g", token, None).await;
    assert_eq!(status, StatusCode::OK, "{group}");
    group["scaling"].clone()
}

#[tokio::test]
async fn no_host_is_stopped_until_the_adapter_confirmed_the_suspend() {
    let context = FunctionContext::ephemeral();
    let adapter = Arc::new(Flaky { failures: 2, suspends: AtomicU32::new(0) });
    let engine = Engine::with_scaling(context.clone(), adapter.clone());
    let router = berth_releases::router(engine.clone());
    let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
    let registry = &context.config.registry.host;
    call(&router, Method::POST, "/v1/applications", &token, Some(json!({ "name": "app" }))).await;
    let (_, group) = call(
        &router,
        Method::POST,
        "/v1/applications/app/groups",
        &token,
        Some(json!({ "name": "g", "kind": "scaling" })),
    )
    .await;
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    call(&router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;
    let join = group["join_token"].as_str().unwrap();
    let (_, registered) = call(&router, Method::POST, "/v1/agent/register", join, Some(json!({ "host": "h1" }))).await;
    let host = registered["host_token"].as_str().unwrap().to_owned();
    // No pull phase: the first job would be the run that stops the container.
    let body = json!({ "application": "app", "deployment": "d", "group": "g", "pull_first": false });
    let (status, release) = call(&router, Method::POST, "/v1/releases", &token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    let id = release["id"].as_str().unwrap();

    for attempt in 1..=2 {
        let error = engine.advance(id).await.expect_err("the suspend failed");
        assert!(error.to_string().contains("Throttling"), "{error}");
        let (status, job) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &host, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "attempt {attempt}: no job before the suspend: {job}");
        let state = scaling(&router, &token).await;
        assert_eq!((state["paused"].as_bool(), state["suspended"].as_bool()), (Some(true), Some(false)), "{state}");
    }
    engine.advance(id).await.unwrap();
    assert_eq!(scaling(&router, &token).await["suspended"], true);
    let (status, job) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &host, None).await;
    assert_eq!((status, job["kind"].as_str()), (StatusCode::OK, Some("run")), "{job}");
    // Renewals of a confirmed pause do not call the adapter again.
    engine.advance(id).await.unwrap();
    assert_eq!(adapter.suspends.load(Ordering::SeqCst), 3);
}

//! A release larger than one stored document holds: its plan is stored in parts, a process
//! that never saw it loads it whole, and hosts with ids of the full allowed length get jobs.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

mod common;

use axum::http::{Method, StatusCode};
use berth_releases::engine::Engine;
use berth_releases::store_layout::{self as layout, GroupRef, HostRecord};
use berth_shared::names::{AccountId, MAX_NAME_LEN};
use berth_shared::platform::context::FunctionContext;
use berth_shared::release::PLAN_PART_HOSTS;
use common::call;
use serde_json::json;

#[tokio::test]
async fn a_plan_over_one_document_is_stored_in_parts_and_read_back_whole() {
    let context = FunctionContext::ephemeral();
    let engine = Engine::new(context.clone());
    let router = berth_releases::router(engine.clone());
    let acme = AccountId::parse("acme").unwrap();
    let token = context.account_keys.issue(&acme, 600).unwrap();
    let registry = &context.config.registry.host;
    call(&router, Method::POST, "/v1/applications", &token, Some(json!({ "name": "app" }))).await;
    let (_, group) =
        call(&router, Method::POST, "/v1/applications/app/groups", &token, Some(json!({ "name": "g" }))).await;
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    call(&router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;

    // One host registers as an agent would; the rest are written straight to the store,
    // which is what registering them one by one would leave.
    let long = |i: usize| format!("h{i:0>width$}", width = MAX_NAME_LEN - 1);
    let join = group["join_token"].as_str().unwrap();
    let (status, registered) =
        call(&router, Method::POST, "/v1/agent/register", join, Some(json!({ "host": long(0) }))).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let host_token = registered["host_token"].as_str().unwrap().to_owned();
    let reference = GroupRef { account: acme.clone(), application: "app".into(), group: "g".into() };
    let hosts = PLAN_PART_HOSTS + 500;
    let writes = (1..hosts).map(|i| {
        let store = context.store.clone();
        let instance = HostRecord {
            host: long(i),
            registered_at: berth_shared::platform::clock::unix_now(),
            ..HostRecord::default()
        };
        let path = layout::host_record(&reference, &instance.host);
        async move { store.put(&path, &instance).await.unwrap() }
    });
    futures::future::join_all(writes).await;

    let body = json!({ "application": "app", "deployment": "d", "group": "g", "batches": 2 });
    let (status, release) = call(&router, Method::POST, "/v1/releases", &token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{}", release["detail"]);
    let id = release["id"].as_str().unwrap().to_owned();
    let parts = context.store.list_paths(&format!("releases/{id}/plan-hosts")).await;
    // list_paths only lists `.json` documents: the parts are documents like any other.
    assert_eq!(parts.unwrap().len(), 2);

    // A process that never saw the release (an empty plan cache) reads it whole.
    let fresh = Engine::new(context.clone());
    let plan = fresh.plan(&id).await.unwrap().expect("the plan");
    assert_eq!(plan.release.hosts().count(), hosts);
    assert_eq!(plan.release.batches.len(), 2);
    assert!(plan.release.hosts().all(|h| h.len() == MAX_NAME_LEN));
    fresh.advance(&id).await.unwrap();
    let router = berth_releases::router(fresh);
    let (status, job) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &host_token, None).await;
    assert_eq!((status, job["kind"].as_str()), (StatusCode::OK, Some("pull")), "{job}");
}

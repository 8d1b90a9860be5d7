//! No version stays `Creating` when its publish-check event is lost: the sweep submits it
//! again, and its last attempt settles it.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_packages::{MAX_RESUBMISSIONS, SweepOutcome, sweep};
use berth_shared::names::AccountId;
use berth_shared::package::{self, PENDING_CHECKS, PackageVersion, VersionStatus};
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::in_process;
use serde_json::{Value, json};

/// A context whose registry is a closed port, so every check that runs finds it unreachable.
fn context() -> FunctionContext {
    let mut context = FunctionContext::ephemeral();
    let mut config = (*context.config).clone();
    config.registry.host = "127.0.0.1:9".into();
    context.config = Arc::new(config);
    context
}

async fn create(context: &FunctionContext, name: &str) -> Value {
    let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
    let body = json!({
        "name": name, "description": "the web front end", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] }
    });
    let request = Request::post("/v1/packages")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let answer = in_process::send(&berth_packages::router(context.clone()), request).await;
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(answer.status, StatusCode::CREATED, "{body}");
    body
}

/// Receives and never settles: what a lost event looks like to the function.
async fn lose_events(context: &FunctionContext) -> usize {
    context.queue.receive(100, Duration::from_millis(10)).await.unwrap().len()
}

async fn version(context: &FunctionContext, name: &str) -> PackageVersion {
    let acme = AccountId::parse("acme").unwrap();
    context.store.get(&package::version_path(&acme, name, "v_1")).await.unwrap().unwrap().value
}

#[tokio::test]
async fn a_lost_check_is_submitted_again_and_its_last_attempt_settles_the_version() {
    let context = context();
    let client_context = context.clone();
    let created = create(&context, "web").await;
    assert_eq!(created["version"]["status"], "Creating");
    assert_eq!(lose_events(&context).await, 1, "the create queued its check");

    let stale = context.config.queue_visibility.as_secs() * u64::from(context.config.queue_max_attempts);
    let mut now = unix_now();
    // Not yet stale: a check in flight is left alone.
    assert_eq!(sweep(&context, &registry(&client_context), now).await.unwrap(), SweepOutcome::default());
    for round in 1..=MAX_RESUBMISSIONS {
        now += stale + 1;
        let outcome = sweep(&context, &registry(&client_context), now).await.unwrap();
        assert_eq!(outcome.resubmitted, 1, "round {round}");
        assert_eq!(lose_events(&context).await, 1, "round {round} queued the check again");
        assert_eq!(version(&context, "web").await.status, VersionStatus::Creating);
    }
    now += stale + 1;
    let outcome = sweep(&context, &registry(&client_context), now).await.unwrap();
    assert_eq!(outcome.settled, 1);
    let settled = version(&context, "web").await;
    assert_eq!(settled.status, VersionStatus::Failed);
    assert_eq!(settled.images[0].failure.as_ref().unwrap().code, "registry_unreachable");
    assert!(context.store.list_paths(PENDING_CHECKS).await.unwrap().is_empty(), "the marker went with it");
    assert_eq!(lose_events(&context).await, 0);
}

#[tokio::test]
async fn markers_of_settled_or_deleted_versions_are_cleared_without_a_check() {
    let context = context();
    create(&context, "gone").await;
    create(&context, "done").await;
    lose_events(&context).await;
    let acme = AccountId::parse("acme").unwrap();
    context.store.delete(&package::version_path(&acme, "gone", "v_1")).await.unwrap();
    let mut done = version(&context, "done").await;
    done.status = VersionStatus::Available;
    context.store.put(&package::version_path(&acme, "done", "v_1"), &done).await.unwrap();
    // A marker that is not a PendingCheck is skipped, not fatal to the sweep.
    context.store.put(&format!("{PENDING_CHECKS}/acme/bad/v1.json"), &json!({"torn": true})).await.unwrap();

    let later = unix_now() + 3600;
    let outcome = sweep(&context, &registry(&context), later).await.unwrap();
    assert_eq!(outcome, SweepOutcome { resubmitted: 0, settled: 0, cleared: 2 });
    assert_eq!(lose_events(&context).await, 0);
    assert_eq!(context.store.list_paths(PENDING_CHECKS).await.unwrap(), [format!("{PENDING_CHECKS}/acme/bad/v1.json")]);
}

fn registry(context: &FunctionContext) -> berth_packages::RegistryClient {
    berth_packages::registry_client(context)
}

//! The fan-out in one process: the real router and engine over a memory store, simulated
//! agents, and every advance and report repeated and raced. The outcome must be the one a
//! single, orderly delivery gives.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

mod common;

use axum::http::{Method, StatusCode};
use berth_releases::engine::Engine;
use berth_shared::names::AccountId;
use berth_shared::platform::context::FunctionContext;
use berth_shared::release::{HostLogs, Job, JobKind, Report, Step};
use common::call;
use serde_json::{Value, json};

/// Advances `id` `n` times at once.
async fn race_advances(engine: &Engine, id: &str, n: usize) {
    let runs = (0..n).map(|_| engine.advance(id));
    for outcome in futures::future::join_all(runs).await {
        outcome.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raced_advances_and_repeated_reports_give_the_orderly_outcome() {
    let context = FunctionContext::ephemeral();
    let engine = Engine::new(context.clone());
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
    let join = group["join_token"].as_str().unwrap().to_owned();
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    let (status, answer) =
        call(&router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let hosts: Vec<String> = (1..=6).map(|i| format!("h{i}")).collect();
    let mut host_tokens = std::collections::HashMap::new();
    for host in &hosts {
        let (status, registered) =
            call(&router, Method::POST, "/v1/agent/register", &join, Some(json!({ "host": host }))).await;
        assert_eq!(status, StatusCode::OK);
        host_tokens.insert(host.clone(), registered["host_token"].as_str().unwrap().to_owned());
    }
    let body = json!({ "application": "app", "deployment": "d", "group": "g", "batches": 3, "max_failures": 1 });
    let (status, release) = call(&router, Method::POST, "/v1/releases", &token, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    let id = release["id"].as_str().unwrap().to_owned();
    let (status, problem) = call(&router, Method::POST, "/v1/releases", &token, Some(body)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("release_in_progress")));

    // No consumer runs: the test drives every advance itself, many at once.
    let mut rounds = 0;
    loop {
        race_advances(&engine, &id, 8).await;
        let (_, now) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
        if now["status"] != "running" {
            break;
        }
        rounds += 1;
        assert!(rounds < 20, "the release did not end: {now:#}");
        for host in &hosts {
            let host_token = &host_tokens[host];
            let (status, job) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", host_token, None).await;
            if status == StatusCode::NO_CONTENT {
                continue;
            }
            let job: Job = serde_json::from_value(job).unwrap();
            assert_eq!(job.image, format!("{registry}/acme/app:v1"));
            // h2 fails its start script: within max_failures 1.
            let ok = !(job.kind == JobKind::Run && host == "h2");
            let report = Report {
                job_id: job.job_id.clone(),
                release: id.clone(),
                kind: job.kind,
                ok,
                step: if job.kind == JobKind::Pull { Step::Pull } else { Step::Start },
                exit_code: Some(if ok { 0 } else { 7 }),
                reason: (!ok).then(|| "the start script exited with code 7".to_owned()),
                logs: HostLogs::default(),
                log_parts: None,
            };
            let uri = format!("/v1/agent/reports?host={host}");
            // The same report three times at once: one is taken, the others change nothing.
            let sends = (0..3)
                .map(|_| call(&router, Method::POST, &uri, host_token, Some(serde_json::to_value(&report).unwrap())));
            let answers = futures::future::join_all(sends).await;
            let taken = answers.iter().filter(|(s, a)| *s == StatusCode::OK && a["accepted"] == true).count();
            assert_eq!(taken, 1, "{answers:?}");
        }
    }
    let (_, done) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["summary"], json!({ "succeeded": 5, "failed": 1 }));
    let (_, group) = call(&router, Method::GET, "/v1/applications/app/groups/g", &token, None).await;
    assert_eq!(group["active_release"], Value::Null);
    assert_eq!(
        group["scaling"],
        json!({ "paused": false, "suspended": false, "pauses": 1, "resumes": 1, "ended": [id] }),
        "paused once, resumed once"
    );
    // More advances of a finished release change nothing.
    race_advances(&engine, &id, 8).await;
    let (_, again) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
    assert_eq!(again, done);
    // A new release on the group may start now.
    let body = json!({ "application": "app", "deployment": "d", "group": "g" });
    let (status, _) = call(&router, Method::POST, "/v1/releases", &token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
}

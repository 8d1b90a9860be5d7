//! Two engines over one store, as two processes (or Lambda instances) are: a held poll in one
//! wakes when the other moves the release, and an advance in one counts the reports the other
//! took. Neither learns of the other's work but through the store.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use berth_releases::engine::{Engine, SNAPSHOT_LIFE};
use berth_shared::names::AccountId;
use berth_shared::platform::config::QueueLocation;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::EventHandler;
use berth_shared::release::{Job, JobKind, Report};
use common::call;
use serde_json::json;

async fn setup(context: &FunctionContext, router: &axum::Router) -> (String, Vec<String>) {
    let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
    let registry = &context.config.registry.host;
    call(router, Method::POST, "/v1/applications", &token, Some(json!({ "name": "app" }))).await;
    let (_, group) =
        call(router, Method::POST, "/v1/applications/app/groups", &token, Some(json!({ "name": "g" }))).await;
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    call(router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;
    let join = group["join_token"].as_str().unwrap();
    let mut hosts = Vec::new();
    for host in ["h1", "h2"] {
        let (status, registered) =
            call(router, Method::POST, "/v1/agent/register", join, Some(json!({ "host": host }))).await;
        assert_eq!(status, StatusCode::OK, "{registered}");
        hosts.push(registered["host_token"].as_str().unwrap().to_owned());
    }
    (token, hosts)
}

/// Two engines over the context's store and queue, and their routers.
fn two_processes(context: &FunctionContext) -> (Engine, Engine, axum::Router, axum::Router) {
    let (a, b) = (Engine::new(context.clone()), Engine::new(context.clone()));
    let (router_a, router_b) = (berth_releases::router(a.clone()), berth_releases::router(b.clone()));
    (a, b, router_a, router_b)
}

/// A release started through `router` and `engine`, and the pull job handed to `host`.
async fn pulling(engine: &Engine, router: &axum::Router, token: &str, host: &str) -> (String, Job) {
    let body = json!({ "application": "app", "deployment": "d", "group": "g" });
    let id = create_release(router, token, body).await;
    engine.advance(&id).await.unwrap();
    let (_, job) = call(router, Method::GET, "/v1/agent/jobs?wait_seconds=0", host, None).await;
    (id, serde_json::from_value(job).unwrap())
}

/// A poll that is not held: its status.
async fn poll_now(router: &axum::Router, host_token: &str) -> StatusCode {
    call(router, Method::GET, "/v1/agent/jobs?wait_seconds=0", host_token, None).await.0
}

/// Creates a release through `router`: its id.
async fn create_release(router: &axum::Router, token: &str, body: serde_json::Value) -> String {
    let (status, release) = call(router, Method::POST, "/v1/releases", token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    release["id"].as_str().unwrap().to_owned()
}

fn pulled(job: &Job) -> serde_json::Value {
    let report = Report::succeeded(job.job_id.clone(), job.release.clone(), JobKind::Pull);
    serde_json::to_value(report).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_poll_wakes_on_another_process_move_and_advances_count_its_reports() {
    let context = FunctionContext::ephemeral();
    let (_, b, router_a, router_b) = two_processes(&context);
    let (token, hosts) = setup(&context, &router_a).await;

    // h1 holds a poll in A while B creates and starts the release: A's watch of the group
    // sees the move through the store and wakes it, well before its 20 s wait ends.
    let held = {
        let (router, host) = (router_a.clone(), hosts[0].clone());
        tokio::spawn(async move {
            let asked = Instant::now();
            let answer = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=20", &host, None).await;
            (answer, asked.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({ "application": "app", "deployment": "d", "group": "g" });
    let id = create_release(&router_b, &token, body).await;
    b.advance(&id).await.unwrap();
    let ((status, job), waited) = held.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{job}");
    assert!(waited < SNAPSHOT_LIFE * 5, "the held poll answered only after {waited:?}");
    let first: Job = serde_json::from_value(job).unwrap();
    assert_eq!(first.kind, JobKind::Pull);

    // B lists the pulls once (none yet); both hosts then report through A, which B never
    // hears of. B's next advance trusts its count for at most a second, then lists again and
    // moves the release on.
    b.advance(&id).await.unwrap();
    let (_, job) = call(&router_a, Method::GET, "/v1/agent/jobs?wait_seconds=0", &hosts[1], None).await;
    let second: Job = serde_json::from_value(job).unwrap();
    for (host, job) in [(&hosts[0], &first), (&hosts[1], &second)] {
        let (status, answer) = call(&router_a, Method::POST, "/v1/agent/reports", host, Some(pulled(job))).await;
        assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    }
    let advancing = Instant::now();
    b.advance(&id).await.unwrap();
    let (_, view) = call(&router_b, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
    assert_eq!(view["phase"], json!({ "step": "batch", "batch": 0 }), "{view:#}");
    assert!(advancing.elapsed() < Duration::from_secs(5), "the advance took {:?}", advancing.elapsed());

    // A pull reported again once the release moved on (an agent's retry) is still accepted
    // and changes nothing.
    let (status, answer) = call(&router_b, Method::POST, "/v1/agent/reports", &hosts[0], Some(pulled(&first))).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(false)), "{answer}");
    let (_, after) = call(&router_b, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
    assert_eq!(after["phase"], view["phase"], "{after:#}");
}

/// Over a shared queue (SQS, which every process consumes), a report one process takes is
/// news for the advance another runs: waiting for the phase's last report, which it counts as
/// not in yet and would trust for a second, it lists again as soon as the news comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_shared_queue_a_report_in_one_process_ends_the_wait_of_an_advance_in_another() {
    let mut context = FunctionContext::ephemeral();
    let mut config = (*context.config).clone();
    // Both engines take it for SQS; the queue itself is one in-process queue they share.
    config.queue =
        QueueLocation::Sqs { url: "https://sqs.us-east-1.amazonaws.com/0/shared".into(), dead_letter_url: None };
    context.config = Arc::new(config);
    let (a, _, router_a, router_b) = two_processes(&context);
    let (token, hosts) = setup(&context, &router_a).await;
    let body = json!({ "application": "app", "deployment": "d", "group": "g" });
    let id = create_release(&router_a, &token, body).await;
    // A lists the pulls (none yet); h1 then reports through A, which counts it.
    a.advance(&id).await.unwrap();
    let mut jobs = Vec::new();
    for host in &hosts {
        let (_, job) = call(&router_a, Method::GET, "/v1/agent/jobs?wait_seconds=0", host, None).await;
        jobs.push(serde_json::from_value::<Job>(job).unwrap());
    }
    let (status, answer) = call(&router_a, Method::POST, "/v1/agent/reports", &hosts[0], Some(pulled(&jobs[0]))).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    for delivery in context.queue.receive(10, Duration::ZERO).await.unwrap() {
        context.queue.ack(&delivery).await.unwrap();
    }

    // A's advance counts 1 of 2 and waits; h2 reports through B, whose news A receives.
    let started = Instant::now();
    let waiting = tokio::spawn({
        let (a, id) = (a.clone(), id.clone());
        async move { a.advance(&id).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the advance waits for the last pull");
    let (status, answer) = call(&router_b, Method::POST, "/v1/agent/reports", &hosts[1], Some(pulled(&jobs[1]))).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    let news = context.queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(news.len(), 1, "one message for the report");
    let handler = berth_releases::events(a.clone());
    handler.handle(&news[0].envelope).await.unwrap();
    // Its count would have been trusted for a second: it lists on the news instead.
    loop {
        let (_, view) = call(&router_a, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
        if view["phase"] == json!({ "step": "batch", "batch": 0 }) {
            break;
        }
        assert!(started.elapsed() < Duration::from_millis(600), "still {view:#} after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    waiting.await.unwrap().unwrap();
}

/// A process asked to stop answers its held polls at once (204), so a graceful shutdown does
/// not wait out every agent's poll; they wait on one wake-up only, which closing sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_engine_answers_held_polls_at_once() {
    let context = FunctionContext::ephemeral();
    let engine = Engine::new(context.clone());
    let router = berth_releases::router(engine.clone());
    let (_, hosts) = setup(&context, &router).await;
    let held: Vec<_> = hosts
        .iter()
        .map(|host| {
            let (router, host) = (router.clone(), host.clone());
            tokio::spawn(async move {
                let asked = Instant::now();
                let (status, _) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=30", &host, None).await;
                (status, asked.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.close();
    for poll in held {
        let (status, waited) = poll.await.unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(waited < Duration::from_secs(10), "a held poll answered only after {waited:?} of its 30 s");
    }
}

/// A host whose report another process took names that job in its next poll: this process
/// neither reads the report nor hands the job out again. The word holds for that poll only:
/// a poll without it reads as before. The report is deleted from the store to make a read
/// show: one that reads finds the job not reported and hands it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_naming_the_job_reported_elsewhere_does_not_read_it() {
    let context = FunctionContext::ephemeral();
    let (a, _, router_a, router_b) = two_processes(&context);
    let (token, hosts) = setup(&context, &router_a).await;
    let (id, job) = pulling(&a, &router_a, &token, &hosts[0]).await;
    let (status, answer) = call(&router_b, Method::POST, "/v1/agent/reports", &hosts[0], Some(pulled(&job))).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    context.store.delete(&berth_releases::store_layout::pull(&id, "h1")).await.unwrap();

    let poll = |reported: &str| format!("/v1/agent/jobs?wait_seconds=0{reported}");
    let named = poll(&format!("&reported={}", job.job_id));
    let (status, _) = call(&router_a, Method::GET, &named, &hosts[0], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the host's word spared the read");
    let (status, again) = call(&router_a, Method::GET, &poll(""), &hosts[0], None).await;
    assert_eq!(status, StatusCode::OK, "read, and found not reported: {again}");
    assert_eq!(again["job_id"], json!(job.job_id));
    let long = poll(&format!("&reported={}", "j".repeat(65)));
    let (status, problem) = call(&router_a, Method::GET, &long, &hosts[0], None).await;
    assert_eq!((status, &problem["field"]), (StatusCode::BAD_REQUEST, &json!("reported")), "{problem}");
}

/// A host whose last report was another job (its previous release's run) is handed the pull
/// without a read; without its word the pull's report is read, and found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_naming_another_job_is_handed_its_pull_without_a_read() {
    let context = FunctionContext::ephemeral();
    let (a, _, router_a, router_b) = two_processes(&context);
    let (token, hosts) = setup(&context, &router_a).await;
    let (_, job) = pulling(&a, &router_a, &token, &hosts[0]).await;
    let (status, _) = call(&router_a, Method::POST, "/v1/agent/reports", &hosts[0], Some(pulled(&job))).await;
    assert_eq!(status, StatusCode::OK);
    // B never saw that report. A poll naming an earlier release's run takes the host's word.
    let earlier = berth_shared::release::job_id("0b9e7c34-5d1f-4f43-9a55-3c1f0e2d8a61", "h1", JobKind::Run);
    let named = format!("/v1/agent/jobs?wait_seconds=0&reported={earlier}");
    let (status, again) = call(&router_b, Method::GET, &named, &hosts[0], None).await;
    assert_eq!((status, &again["job_id"]), (StatusCode::OK, &json!(job.job_id)), "handed without a read: {again}");
    assert_eq!(poll_now(&router_b, &hosts[0]).await, StatusCode::NO_CONTENT, "read, and found reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_record_answers_its_token_for_a_moment_and_a_removal_here_refuses_it_at_once() {
    let context = FunctionContext::ephemeral();
    let (_, _, router_a, router_b) = two_processes(&context);
    let (token, hosts) = setup(&context, &router_a).await;
    // B reads h1's record to authenticate its poll; the record deleted behind it, the next
    // poll there is still answered from that read (a moment is all it lasts).
    assert_eq!(poll_now(&router_b, &hosts[0]).await, StatusCode::NO_CONTENT);
    let record = "accounts/acme/applications/app/groups/g/instances/h1.json";
    let kept = context.store.get::<serde_json::Value>(record).await.unwrap().unwrap().value;
    context.store.delete(record).await.unwrap();
    assert_eq!(poll_now(&router_b, &hosts[0]).await, StatusCode::NO_CONTENT, "answered from the record just read");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(poll_now(&router_b, &hosts[0]).await, StatusCode::UNAUTHORIZED, "read again once the moment passed");
    context.store.put(record, &kept).await.unwrap();

    // A removal in the process that kept the record refuses the token there at once.
    assert_eq!(poll_now(&router_a, &hosts[1]).await, StatusCode::NO_CONTENT);
    let (status, _) = call(&router_a, Method::DELETE, "/v1/applications/app/groups/g/instances/h2", &token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(poll_now(&router_a, &hosts[1]).await, StatusCode::UNAUTHORIZED, "refused at once where it was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_names_its_host_for_a_process_that_never_saw_it_and_one_from_before_uses_its_index() {
    use base64::Engine as _;
    let context = FunctionContext::ephemeral();
    let (_, _, router_a, router_b) = two_processes(&context);
    let (_, hosts) = setup(&context, &router_a).await;
    // B never saw h1's token: its index deleted, the token's own place finds the record.
    let digest = |token: &str| berth_shared::platform::digest::sha256_hex(token.as_bytes());
    context.store.delete(&format!("host-tokens/{}.json", digest(&hosts[0]))).await.unwrap();
    assert_eq!(poll_now(&router_b, &hosts[0]).await, StatusCode::NO_CONTENT);
    // A place rewritten to name another host finds a record that names another digest.
    let random = &hosts[0][4..47];
    let h2 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("acme/app/g/h2");
    assert_eq!(poll_now(&router_b, &format!("bht_{random}{h2}")).await, StatusCode::UNAUTHORIZED);

    // A token from before (no place in it) is found through its index, as it was.
    let old = berth_shared::platform::token_kind::HOST_TOKEN.mint();
    let record = "accounts/acme/applications/app/groups/g/instances/h2.json";
    let mut h2 = context.store.get::<serde_json::Value>(record).await.unwrap().unwrap().value;
    h2["host_token_sha256"] = json!(digest(&old));
    context.store.put(record, &h2).await.unwrap();
    let place = json!({ "account": "acme", "application": "app", "group": "g", "host": "h2" });
    context.store.put(&format!("host-tokens/{}.json", digest(&old)), &place).await.unwrap();
    assert_eq!(poll_now(&router_b, &old).await, StatusCode::NO_CONTENT);
    assert_eq!(poll_now(&router_b, &hosts[1]).await, StatusCode::UNAUTHORIZED, "the record names the old token now");
}

/// The only process over its store (`berth serve` on its data directory) takes every report of
/// the releases it creates: whether a host reported is never read. A pull's report written
/// behind it (which no process of such a deployment can write) shows it: the poll does not
/// read it and hands the pull out, where an engine that is not alone reads it and hands out
/// nothing. Reports it takes and its time-outs it knows at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_process_knows_which_hosts_reported_without_reading() {
    let context = FunctionContext::ephemeral();
    let sole = Engine::new(context.clone()).as_sole_process();
    let router = berth_releases::router(sole.clone());
    let (token, hosts) = setup(&context, &router).await;
    let (id, job) = pulling(&sole, &router, &token, &hosts[0]).await;
    assert_eq!(job.kind, JobKind::Pull);
    let behind = berth_shared::release::PullResult {
        ok: true,
        exit_code: Some(0),
        reason: None,
        output: Default::default(),
        at: 1,
    };
    context.store.put(&berth_releases::store_layout::pull(&id, "h2"), &behind).await.unwrap();
    assert_eq!(poll_now(&router, &hosts[1]).await, StatusCode::OK, "not read: handed out");
    let other = berth_releases::router(Engine::new(context.clone()));
    assert_eq!(poll_now(&other, &hosts[1]).await, StatusCode::NO_CONTENT, "read, and found reported");
    let (status, answer) = call(&router, Method::POST, "/v1/agent/reports", &hosts[0], Some(pulled(&job))).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    assert_eq!(poll_now(&router, &hosts[0]).await, StatusCode::NO_CONTENT, "its own report known");
}

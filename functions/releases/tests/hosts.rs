//! Host identity in one process (the real router and engine over a memory store): each host
//! acts with its own token for its own jobs only, join tokens rotate and revoke, and a bad
//! stored plan of one tenant never stops another tenant's polls.

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
use berth_shared::release::{Job, JobKind, Report, job_id};
use common::call;
use serde_json::{Value, json};

struct Tenant {
    router: axum::Router,
    token: String,
    join: String,
}

async fn tenant(context: &FunctionContext, router: &axum::Router, account: &str) -> Tenant {
    let token = context.account_keys.issue(&AccountId::parse(account).unwrap(), 600).unwrap();
    let registry = &context.config.registry.host;
    call(router, Method::POST, "/v1/applications", &token, Some(json!({ "name": "app" }))).await;
    let (status, group) =
        call(router, Method::POST, "/v1/applications/app/groups", &token, Some(json!({ "name": "g" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/{account}/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    let (status, answer) =
        call(router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    Tenant { router: router.clone(), token, join: group["join_token"].as_str().unwrap().to_owned() }
}

impl Tenant {
    async fn register(&self, host: &str) -> String {
        let (status, registered) =
            call(&self.router, Method::POST, "/v1/agent/register", &self.join, Some(json!({ "host": host }))).await;
        assert_eq!(status, StatusCode::OK, "{registered}");
        assert_eq!(registered["host"], host);
        let token = registered["host_token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("bht_"), "{token}");
        token
    }

    async fn release(&self, batches: usize) -> String {
        let body = json!({ "application": "app", "deployment": "d", "group": "g", "batches": batches });
        let (status, release) = call(&self.router, Method::POST, "/v1/releases", &self.token, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{release}");
        release["id"].as_str().unwrap().to_owned()
    }
}

async fn poll(router: &axum::Router, host_token: &str) -> (StatusCode, Value) {
    call(router, Method::GET, "/v1/agent/jobs?wait_seconds=0", host_token, None).await
}

fn report(job_id: String, release: &str, kind: JobKind) -> Value {
    let report = Report::succeeded(job_id, release.to_owned(), kind);
    serde_json::to_value(report).unwrap()
}

async fn send(router: &axum::Router, host_token: &str, body: Value) -> (StatusCode, Value) {
    call(router, Method::POST, "/v1/agent/reports", host_token, Some(body)).await
}

#[tokio::test]
async fn a_host_acts_for_itself_only_and_reports_only_the_job_it_holds() {
    let context = FunctionContext::ephemeral();
    let engine = Engine::new(context.clone());
    let router = berth_releases::router(engine.clone());
    let acme = tenant(&context, &router, "acme").await;
    let h1 = acme.register("h1").await;
    let h2 = acme.register("h2").await;
    // Two batches, pull first: h1 and h2 pull, then one batch each. No consumer runs: the
    // test advances the release itself.
    let id = acme.release(2).await;
    engine.advance(&id).await.unwrap();

    // Tokens of the wrong kind are 401 on every agent route.
    for (method, uri, bearer) in [
        (Method::GET, "/v1/agent/jobs?wait_seconds=0", acme.join.as_str()),
        (Method::POST, "/v1/agent/reports", acme.join.as_str()),
        (Method::GET, "/v1/agent/jobs?wait_seconds=0", acme.token.as_str()),
        (Method::POST, "/v1/agent/register", acme.token.as_str()),
        (Method::GET, "/v1/agent/jobs?wait_seconds=0", "bht_made-up"),
    ] {
        let body = (method == Method::POST).then(|| json!({ "host": "h9" }));
        let (status, problem) = call(&router, method.clone(), uri, bearer, body).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")), "{uri}");
    }
    // A host query naming another host is refused; a host token is no credential to register
    // another host's name.
    let (status, _) = call(&router, Method::GET, "/v1/agent/jobs?host=h2&wait_seconds=0", &h1, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&router, Method::POST, "/v1/agent/register", &h1, Some(json!({ "host": "h2" }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, job) = poll(&router, &h1).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let job: Job = serde_json::from_value(job).unwrap();
    assert_eq!((job.kind, job.job_id.clone()), (JobKind::Pull, job_id(&id, "h1", JobKind::Pull)));

    // h1 cannot report h2's job, a job of another kind, a made-up one, or one of a release
    // that is not its own: each a 409 that changes nothing.
    let refusals = [
        report(job_id(&id, "h2", JobKind::Pull), &id, JobKind::Pull),
        report(job_id(&id, "h1", JobKind::Run), &id, JobKind::Pull),
        report(job.job_id.clone(), &id, JobKind::Run),
        report("pull-00000000000000000000000000000000".into(), &id, JobKind::Pull),
        report(job.job_id.clone(), &uuid::Uuid::new_v4().to_string(), JobKind::Pull),
        report(job.job_id.clone(), "not-a-uuid", JobKind::Pull),
    ];
    for body in refusals {
        let (status, problem) = send(&router, &h1, body.clone()).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("job_not_handed_out")), "{body}");
    }
    // The run job of h1 is not due while the release pulls.
    let (status, problem) = send(&router, &h1, report(job_id(&id, "h1", JobKind::Run), &id, JobKind::Run)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (_, view) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &acme.token, None).await;
    assert_eq!(view["summary"], json!({ "pulling": 2 }), "refused reports changed nothing: {view:#}");

    // The job it holds is taken once; a repeat is accepted and changes nothing.
    let (status, answer) = send(&router, &h1, report(job.job_id.clone(), &id, JobKind::Pull)).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    let (status, answer) = send(&router, &h1, report(job.job_id.clone(), &id, JobKind::Pull)).await;
    assert_eq!((status, answer["accepted"].as_bool()), (StatusCode::OK, Some(false)), "{answer}");
    // This process knows h1's pull is settled, so h1's next poll finds nothing without a read;
    // h2's pull and h1's run are not known settled.
    let plan = engine.cached_plan(&id).expect("the plan is cached");
    let (p1, p2) = (plan.host("h1").unwrap(), plan.host("h2").unwrap());
    assert!(plan.known_settled(p1, JobKind::Pull));
    assert!(!plan.known_settled(p2, JobKind::Pull) && !plan.known_settled(p1, JobKind::Run));
    assert_eq!(poll(&router, &h1).await.0, StatusCode::NO_CONTENT);

    // The join token alone does not take a live host's name over; the host's own token
    // rotates it: the old one is refused at once, though this process knows where it pointed
    // (it was just used).
    assert_eq!(poll(&router, &h2).await.0, StatusCode::OK);
    let (status, problem) =
        call(&router, Method::POST, "/v1/agent/register", &acme.join, Some(json!({ "host": "h2" }))).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("host_registered")), "{problem}");
    assert_eq!(poll(&router, &h2).await.0, StatusCode::OK, "h2 keeps working");
    let (status, rotated) = call(&router, Method::POST, "/v1/agent/register", &h2, Some(json!({ "host": "h2" }))).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let h2_new = rotated["host_token"].as_str().unwrap().to_owned();
    let (status, _) = poll(&router, &h2).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, job) = poll(&router, &h2_new).await;
    assert_eq!(status, StatusCode::OK, "{job}");

    // Log parts: only for the job handed out and due. h2's pull is due; h1's run is not yet.
    let part = |host: &str, kind: JobKind| {
        let stream = if kind == JobKind::Pull { "pull" } else { "start" };
        format!("/v1/agent/logs?release={id}&job_id={}&part=0&step={stream}&stream=stdout", job_id(&id, host, kind))
    };
    let upload = |uri: String, token: String| {
        let router = router.clone();
        async move {
            let (status, bytes) =
                common::call_bytes(&router, Method::POST, &uri, &token, Some(b"output".to_vec())).await;
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let (status, problem) = upload(part("h1", JobKind::Run), h1.clone()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("job_not_handed_out")), "{problem}");
    assert_eq!(upload(part("h2", JobKind::Pull), h2_new.clone()).await.0, StatusCode::NO_CONTENT);

    // After the release ends, a report of a job never settled is refused, and so are its log parts.
    call(&router, Method::POST, &format!("/v1/releases/{id}/cancel"), &acme.token, None).await;
    let (status, problem) = upload(part("h2", JobKind::Pull), h2_new.clone()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("job_not_handed_out")), "{problem}");
    let (status, problem) = send(&router, &h2_new, report(job_id(&id, "h2", JobKind::Pull), &id, JobKind::Pull)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("job_not_handed_out")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("ended"), "{problem}");
}

#[tokio::test]
async fn join_tokens_rotate_and_revoke_and_registered_hosts_keep_working() {
    let context = FunctionContext::ephemeral();
    let router = berth_releases::router(Engine::new(context.clone()));
    let acme = tenant(&context, &router, "acme").await;
    let h1 = acme.register("h1").await;
    let uri = "/v1/applications/app/groups/g/join-token";
    let (status, rotated) = call(&router, Method::POST, uri, &acme.token, None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["join_token"].as_str().unwrap().to_owned();
    assert!(new.starts_with("bjt_") && new != acme.join);
    let register = |join: String| {
        let router = router.clone();
        async move { call(&router, Method::POST, "/v1/agent/register", &join, Some(json!({ "host": "h2" }))).await.0 }
    };
    assert_eq!(register(acme.join.clone()).await, StatusCode::UNAUTHORIZED, "the old join token is refused at once");
    assert_eq!(register(new.clone()).await, StatusCode::OK);
    let (status, _) = call(&router, Method::DELETE, uri, &acme.token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(register(new).await, StatusCode::UNAUTHORIZED, "a revoked join token registers nobody");
    assert_eq!(poll(&router, &h1).await.0, StatusCode::NO_CONTENT, "h1 keeps its own host token");
    // Another account cannot rotate or revoke it: the group is absent for them.
    let bravo = context.account_keys.issue(&AccountId::parse("bravo").unwrap(), 600).unwrap();
    for method in [Method::POST, Method::DELETE] {
        let (status, _) = call(&router, method, uri, &bravo, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // The group's listing shows hosts without any token material.
    let (_, group) = call(&router, Method::GET, "/v1/applications/app/groups/g", &acme.token, None).await;
    assert_eq!(group["instances"].as_array().unwrap().len(), 2, "{group}");
    assert!(!group.to_string().contains("sha256") && !group.to_string().contains("token"), "{group}");
}

/// The reproduced halt: a plan whose image is the namespace itself (as an older Berth
/// accepted) made minting a pull key panic under the engine's lock, and every later poll of
/// every tenant in the process failed. Now that tenant's poll is a 500 problem, and the
/// other tenant's polls go on answering jobs.
#[tokio::test]
async fn one_tenants_bad_plan_never_stops_another_tenants_polls() {
    let context = FunctionContext::ephemeral();
    let engine = Engine::new(context.clone());
    let router = berth_shared::platform::runtime::finish(berth_releases::router(engine.clone()), vec!["releases"]);
    let registry = context.config.registry.host.clone();
    let acme = tenant(&context, &router, "acme").await;
    let bravo = tenant(&context, &router, "bravo").await;

    // The entry points refuse the namespace itself as an image repository.
    let deployment = json!({
        "name": "root", "image": { "address": format!("{registry}/acme:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    let (status, problem) =
        call(&router, Method::POST, "/v1/applications/app/deployments", &acme.token, Some(deployment)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("repository_is_namespace")));
    assert_eq!(problem["field"], "image");

    // A deployment stored by an older Berth with exactly that image.
    let path = "accounts/acme/applications/app/deployments/d.json";
    let mut stored = context.store.get::<Value>(path).await.unwrap().unwrap();
    stored.value["image"]["repository"] = json!("acme");
    context.store.update(path, &stored.value, &stored.version).await.unwrap();

    let a1 = acme.register("h1").await;
    let b1 = bravo.register("h1").await;
    for id in [acme.release(1).await, bravo.release(1).await] {
        engine.advance(&id).await.unwrap();
    }
    for _ in 0..3 {
        let (status, problem) = poll(&router, &a1).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{problem}");
        assert_eq!(problem["code"], "internal");
        let (status, job) = poll(&router, &b1).await;
        assert_eq!(status, StatusCode::OK, "bravo's host still gets its job: {job}");
        assert_eq!(job["image"], format!("{registry}/bravo/app:v1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_did_not_plan_a_release_reads_its_plan_once_for_all_its_polls() {
    // A local store: its reads go to a blocking thread, so polls that miss together overlap.
    let dir = tempfile::tempdir().unwrap();
    let store = berth_shared::platform::store::DocumentStore::local(dir.path().to_path_buf()).unwrap();
    let context = FunctionContext { store, ..FunctionContext::ephemeral() };
    let planner = Engine::new(context.clone());
    let router = berth_releases::router(planner.clone());
    let acme = tenant(&context, &router, "acme").await;
    for n in 0..8 {
        acme.register(&format!("h{n}")).await;
    }
    let id = acme.release(2).await;
    assert!(planner.cached_plan(&id).is_some(), "the process that planned it keeps it");

    // Another process (restarted, say) is asked for it by many polls at once: one read
    // answers them all, so they share one plan.
    let other = Engine::new(context.clone());
    let plans = futures::future::join_all((0..64).map(|_| other.plan(&id))).await;
    let first = plans[0].as_ref().unwrap().as_ref().unwrap().clone();
    for plan in &plans {
        assert!(std::sync::Arc::ptr_eq(plan.as_ref().unwrap().as_ref().unwrap(), &first), "read more than once");
    }
    assert_eq!(first.batch_of("h3").map(|b| b < 2), Some(true));
    // An id that names no plan is answered None, to every poll that asks.
    let none = uuid::Uuid::new_v4().to_string();
    let answers = futures::future::join_all((0..8).map(|_| other.plan(&none))).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(None))));
}

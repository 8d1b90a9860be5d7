//! The scaling pause is recorded as suspended only once the adapter confirmed it, and until
//! then no host of the release is stopped; a failed suspend is retried by the next advance.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use berth_releases::engine::Engine;
use berth_releases::scaling::{PerGroup, ScalingAdapter, ScalingError, ScalingTarget};
use berth_shared::names::AccountId;
use berth_shared::platform::context::FunctionContext;
use berth_shared::release::GroupMember;
use common::call;
use serde_json::{Value, json};

/// Refuses the first `failures` suspends, as a scaling API that is down for a while would.
struct Flaky {
    failures: u32,
    suspends: AtomicU32,
}

#[async_trait]
impl ScalingAdapter for Flaky {
    async fn suspend(&self, _: &ScalingTarget) -> Result<(), ScalingError> {
        let n = self.suspends.fetch_add(1, Ordering::SeqCst);
        if n < self.failures { Err(ScalingError::Backend("Throttling: rate exceeded".into())) } else { Ok(()) }
    }

    async fn resume(&self, _: &ScalingTarget) -> Result<(), ScalingError> {
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

/// Stands in for AWS Auto Scaling: records what it was asked for, fails while told to, and
/// lists the instances it is given.
#[derive(Default)]
struct FakeAws {
    calls: parking_lot::Mutex<Vec<(String, Option<String>)>>,
    failing: parking_lot::Mutex<Option<ScalingError>>,
    members: parking_lot::Mutex<Vec<GroupMember>>,
}

impl FakeAws {
    fn record(&self, call: &str, target: &ScalingTarget) -> Result<(), ScalingError> {
        self.calls.lock().push((call.to_owned(), target.auto_scaling_group.clone()));
        match self.failing.lock().clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn calls(&self) -> Vec<(String, Option<String>)> {
        self.calls.lock().clone()
    }
}

#[async_trait]
impl ScalingAdapter for FakeAws {
    async fn suspend(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        self.record("suspend", target)
    }

    async fn resume(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        self.record("resume", target)
    }

    async fn members(&self, _: &ScalingTarget) -> Result<Option<Vec<GroupMember>>, ScalingError> {
        Ok(Some(self.members.lock().clone()))
    }

    fn reaches_auto_scaling(&self) -> bool {
        true
    }
}

/// A scaling group `g` naming `web-asg` (when `asg`), one deployment, and hosts registered with
/// the given instance ids. Returns the router, the account token and each host's token.
async fn fleet(engine: &Engine, asg: bool, hosts: &[(&str, Option<&str>)]) -> (axum::Router, String, Vec<String>) {
    let context = &engine.context;
    let router = berth_releases::router(engine.clone());
    let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
    let registry = &context.config.registry.host;
    call(&router, Method::POST, "/v1/applications", &token, Some(json!({ "name": "app" }))).await;
    let mut body = json!({ "name": "g", "kind": "scaling" });
    if asg {
        body["auto_scaling_group"] = json!("web-asg");
    }
    let (status, group) = call(&router, Method::POST, "/v1/applications/app/groups", &token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["auto_scaling_group"], if asg { json!("web-asg") } else { Value::Null });
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    call(&router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;
    let join = group["join_token"].as_str().unwrap();
    let mut tokens = Vec::new();
    for (host, instance) in hosts {
        let mut body = json!({ "host": host });
        if let Some(id) = instance {
            body["instance_id"] = json!(id);
        }
        let (status, registered) = call(&router, Method::POST, "/v1/agent/register", join, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{registered}");
        tokens.push(registered["host_token"].as_str().unwrap().to_owned());
    }
    (router, token, tokens)
}

#[tokio::test]
async fn an_auto_scaling_error_leaves_the_lease_unsuspended_shows_its_reason_and_is_retried() {
    let aws = Arc::new(FakeAws::default());
    let engine = Engine::with_scaling(FunctionContext::ephemeral(), Arc::new(PerGroup::new(Some(aws.clone()))));
    let (router, token, hosts) = fleet(&engine, true, &[("h1", Some("i-0123456789abcdef0"))]).await;
    aws.members
        .lock()
        .push(GroupMember { instance_id: "i-0123456789abcdef0".into(), lifecycle_state: "InService".into() });
    *aws.failing.lock() = Some(ScalingError::NotFound("web-asg".into()));
    let body = json!({ "application": "app", "deployment": "d", "group": "g", "pull_first": false });
    let (status, release) = call(&router, Method::POST, "/v1/releases", &token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    let id = release["id"].as_str().unwrap().to_owned();

    let error = engine.advance(&id).await.expect_err("the suspend failed");
    assert!(error.to_string().contains("web-asg"), "{error}");
    let state = scaling(&router, &token).await;
    assert_eq!((state["paused"].as_bool(), state["suspended"].as_bool()), (Some(true), Some(false)), "{state}");
    assert_eq!(state["lease"]["auto_scaling_group"], "web-asg", "{state}");
    assert!(state["error"].as_str().unwrap().contains("AWS Auto Scaling group 'web-asg' does not exist"), "{state}");
    let (_, shown) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
    assert!(shown["scaling_error"].as_str().unwrap().contains("does not exist"), "{shown}");
    let (status, _) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &hosts[0], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "no host is stopped before the suspend");

    // AWS answers again: the next advance suspends, clears the reason and hands out the job.
    *aws.failing.lock() = None;
    engine.advance(&id).await.unwrap();
    let state = scaling(&router, &token).await;
    assert_eq!((state["suspended"].as_bool(), state.get("error")), (Some(true), None), "{state}");
    let (_, shown) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
    assert_eq!(shown["scaling_error"], Value::Null, "{shown}");
    let (status, _) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &hosts[0], None).await;
    assert_eq!(status, StatusCode::OK);

    // A cancel resumes; a failed resume keeps the lease (and says why) until one succeeds.
    *aws.failing.lock() = Some(ScalingError::Backend("Throttling: Rate exceeded".into()));
    let (status, _) = call(&router, Method::POST, &format!("/v1/releases/{id}/cancel"), &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(engine.advance(&id).await.is_err(), "the resume failed");
    let state = scaling(&router, &token).await;
    assert_eq!(state["paused"], true, "{state}");
    assert!(state["error"].as_str().unwrap().contains("could not be resumed"), "{state}");
    *aws.failing.lock() = None;
    engine.sweep().await.unwrap();
    let state = scaling(&router, &token).await;
    assert_eq!((state["paused"].as_bool(), state["resumes"].as_u64()), (Some(false), Some(1)), "{state}");
    assert!(state.get("lease").is_none() && state.get("error").is_none(), "{state}");
    let calls: Vec<_> = aws.calls().into_iter().map(|(call, asg)| (call, asg.unwrap())).collect();
    let want = |c: &[&str]| c.iter().map(|c| (c.to_string(), "web-asg".to_string())).collect::<Vec<_>>();
    assert_eq!(
        calls,
        want(&["suspend", "suspend", "resume", "resume", "resume"]),
        "two failed resumes (cancel, advance), then the sweep's; each named the ASG"
    );
}

#[tokio::test]
async fn hosts_whose_instance_left_the_auto_scaling_group_are_not_planned() {
    let aws = Arc::new(FakeAws::default());
    let engine = Engine::with_scaling(FunctionContext::ephemeral(), Arc::new(PerGroup::new(Some(aws.clone()))));
    let hosts = [
        ("in", Some("i-00000000000000001")),
        ("leaving", Some("i-00000000000000002")),
        ("gone", Some("i-00000000000000003")),
        ("unknown", None),
    ];
    let (router, token, _) = fleet(&engine, true, &hosts).await;
    for (id, state) in [("i-00000000000000001", "InService"), ("i-00000000000000002", "Terminating")] {
        aws.members.lock().push(GroupMember { instance_id: id.into(), lifecycle_state: state.into() });
    }
    let (_, group) = call(&router, Method::GET, "/v1/applications/app/groups/g", &token, None).await;
    assert_eq!(group["instances"][0]["instance_id"], "i-00000000000000003", "{group}");
    let body = json!({ "application": "app", "deployment": "d", "group": "g" });
    let (status, plan) = call(&router, Method::POST, "/v1/releases?dry_run=true", &token, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["batches"], json!([["in", "unknown"]]), "{plan}");
    // Nothing in the group any more but a host without an instance id.
    aws.members.lock().clear();
    let body = json!({ "application": "app", "deployment": "d", "group": "g" });
    let (_, plan) = call(&router, Method::POST, "/v1/releases?dry_run=true", &token, Some(body)).await;
    assert_eq!(plan["batches"], json!([["unknown"]]), "{plan}");
}

#[tokio::test]
async fn groups_name_an_auto_scaling_group_only_when_scaling_and_aws_is_reached() {
    let problem = |engine: Engine, body: Value| async move {
        let (router, token, _) = fleet(&engine, false, &[]).await;
        let (status, problem) = call(&router, Method::POST, "/v1/applications/app/groups", &token, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["field"], "auto_scaling_group", "{problem}");
        problem["code"].as_str().unwrap().to_owned()
    };
    let aws = || {
        Engine::with_scaling(FunctionContext::ephemeral(), Arc::new(PerGroup::new(Some(Arc::new(FakeAws::default())))))
    };
    let recorded = Engine::new(FunctionContext::ephemeral());
    let named = json!({ "name": "h", "kind": "scaling", "auto_scaling_group": "web" });
    assert_eq!(problem(recorded, named).await, "auto_scaling_unavailable");
    let static_group = json!({ "name": "h", "kind": "static", "auto_scaling_group": "web" });
    assert_eq!(problem(aws(), static_group).await, "requires_scaling_kind");
    let long = json!({ "name": "h", "kind": "scaling", "auto_scaling_group": "a".repeat(256) });
    assert_eq!(problem(aws(), long).await, "out_of_range");
    let arn = json!({ "name": "h", "kind": "scaling", "auto_scaling_group": "arn:aws:autoscaling:x" });
    assert_eq!(problem(aws(), arn).await, "invalid_name");

    let engine = aws();
    let (router, _, _) = fleet(&engine, true, &[]).await;
    let token = engine.context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
    let (_, group) = call(&router, Method::GET, "/v1/applications/app/groups/g", &token, None).await;
    let join = group["join_token"].as_str();
    assert!(join.is_none(), "no token material in the view");
    let (_, created) = call(&router, Method::POST, "/v1/applications/app/groups/g/join-token", &token, None).await;
    let join = created["join_token"].as_str().unwrap();
    let (status, problem) =
        call(&router, Method::POST, "/v1/agent/register", join, Some(json!({ "host": "h1", "instance_id": "i-xyz" })))
            .await;
    assert_eq!(
        (status, problem["field"].as_str(), problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("instance_id"), Some("invalid_instance_id")),
        "{problem}"
    );
}

/// Stands in for a load balancer that refuses the first `failures` drains: records each call
/// with its hosts.
struct Balancer {
    failures: u32,
    drains: AtomicU32,
    calls: parking_lot::Mutex<Vec<String>>,
}

#[async_trait]
impl berth_releases::balancer::BalancerAdapter for Balancer {
    async fn drain(&self, _: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        if self.drains.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(BalancerError::Backend("HAProxy runtime API: connection refused".into()));
        }
        self.record("drain", hosts)
    }
    async fn drained(&self, _: &LoadBalancer, hosts: &[Member]) -> Result<bool, BalancerError> {
        self.record("drained", hosts).map(|()| true)
    }
    async fn take_out(&self, _: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        self.record("take_out", hosts)
    }
    async fn put_back(&self, _: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        self.record("put_back", hosts)
    }
    fn reaches(&self, _: &LoadBalancer) -> Result<(), BalancerError> {
        Ok(())
    }
}

impl Balancer {
    fn record(&self, call: &str, hosts: &[Member]) -> Result<(), BalancerError> {
        let hosts: Vec<&str> = hosts.iter().map(|m| m.host.as_str()).collect();
        self.calls.lock().push(format!("{call} {}", hosts.join(",")));
        Ok(())
    }
}

use berth_releases::balancer::{BalancerError, Member};
use berth_shared::release::LoadBalancer;

#[tokio::test]
async fn no_host_is_stopped_before_the_load_balancer_took_it_out_and_it_goes_back_once_it_succeeded() {
    use berth_shared::release::{JobKind, Report};
    let context = FunctionContext::ephemeral();
    let balancer = Arc::new(Balancer { failures: 1, drains: AtomicU32::new(0), calls: Default::default() });
    let engine = Engine::with_adapters(
        context.clone(),
        Arc::new(PerGroup::new(None)),
        berth_releases::alarms::for_config(&context.config),
        balancer.clone(),
    );
    let router = berth_releases::router(engine.clone());
    let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
    let registry = &context.config.registry.host;
    call(&router, Method::POST, "/v1/applications", &token, Some(json!({ "name": "app" }))).await;
    let lb = json!({ "haproxy": { "runtime_api": "127.0.0.1:9999", "backend": "web" }, "drain_seconds": 30 });
    let (status, group) = call(
        &router,
        Method::POST,
        "/v1/applications/app/groups",
        &token,
        Some(json!({ "name": "g", "load_balancer": lb })),
    )
    .await;
    assert_eq!((status, &group["load_balancer"]), (StatusCode::CREATED, &lb), "{group}");
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    call(&router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;
    let join = group["join_token"].as_str().unwrap();
    let (_, registered) = call(&router, Method::POST, "/v1/agent/register", join, Some(json!({ "host": "h1" }))).await;
    let host = registered["host_token"].as_str().unwrap().to_owned();
    let body = json!({ "application": "app", "deployment": "d", "group": "g", "pull_first": false });
    let (status, release) = call(&router, Method::POST, "/v1/releases", &token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    let id = release["id"].as_str().unwrap().to_owned();
    let get = || async {
        let (_, release) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
        release
    };

    // The load balancer refuses: shown on the release, retried, and no job is handed out.
    let error = engine.advance(&id).await.expect_err("the drain failed");
    assert!(error.to_string().contains("connection refused"), "{error}");
    let (status, job) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &host, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "no job before the host is out: {job}");
    let shown = get().await;
    assert_eq!(shown["phase"], json!({ "step": "draining", "batch": 0 }), "{shown}");
    assert!(shown["load_balancer"]["error"].as_str().unwrap().contains("connection refused"), "{shown}");

    // Drained (the load balancer shows no connection left, well before drain_seconds): out.
    engine.advance(&id).await.unwrap();
    assert_eq!(balancer.calls.lock().clone(), ["drain h1", "drained h1", "take_out h1"]);
    let shown = get().await;
    assert_eq!(shown["batches"][0]["hosts"][0]["load_balancer"]["state"], "out", "{shown}");
    assert!(shown["load_balancer"]["error"].is_null(), "the error is cleared: {shown}");
    let (status, job) = call(&router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &host, None).await;
    assert_eq!((status, job["kind"].as_str()), (StatusCode::OK, Some("run")), "{job}");
    let report = Report::succeeded(job["job_id"].as_str().unwrap().to_owned(), id.clone(), JobKind::Run);
    let (status, _) =
        call(&router, Method::POST, "/v1/agent/reports", &host, Some(serde_json::to_value(report).unwrap())).await;
    assert!(status.is_success(), "{status}");
    engine.advance(&id).await.unwrap();
    let shown = get().await;
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["batches"][0]["hosts"][0]["load_balancer"]["state"], "back", "{shown}");
    assert_eq!(balancer.calls.lock().last().map(String::as_str), Some("put_back h1"), "put back once");
    assert_eq!(balancer.calls.lock().iter().filter(|c| c.starts_with("put_back")).count(), 1);
}

//! A living fleet in one process (the real router and engine over a memory store, agents
//! played by the test): revisions and each host's ledger, rollback by hand and on failure,
//! convergence of hosts that join or come back, removal, stale hosts, listings and deletes.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use berth_releases::engine::Engine;
use berth_releases::store_layout::{self as layout, GroupRef, HostRecord};
use berth_shared::names::AccountId;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::release::{HostLogs, Job, Report, Step};
use common::call;
use serde_json::{Value, json};

struct Fleet {
    context: FunctionContext,
    engine: Engine,
    router: axum::Router,
    token: String,
    join: String,
    hosts: BTreeMap<String, String>,
    /// Hosts whose next run job fails at its start script.
    failing: Vec<String>,
    /// When set, they fail only in this release.
    failing_in: Option<String>,
}

fn deployment(registry: &str, tag: &str) -> Value {
    json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:{tag}") }, "working_directory": "/srv",
        "start_script": format!("echo start {tag}"), "stop_script": "true",
    })
}

impl Fleet {
    async fn new() -> Self {
        let context = FunctionContext::ephemeral();
        let engine = Engine::new(context.clone());
        let router = berth_releases::router(engine.clone());
        let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
        let mut fleet = Self {
            context,
            engine,
            router,
            token,
            join: String::new(),
            hosts: BTreeMap::new(),
            failing: Vec::new(),
            failing_in: None,
        };
        fleet.must(Method::POST, "/v1/applications", Some(json!({ "name": "app" }))).await;
        let group = fleet
            .must(Method::POST, "/v1/applications/app/groups", Some(json!({ "name": "g", "stale_after_seconds": 300 })))
            .await;
        assert_eq!(group["stale_after_seconds"], 300);
        fleet.join = group["join_token"].as_str().unwrap().to_owned();
        let registry = fleet.context.config.registry.host.clone();
        let d = fleet.must(Method::POST, "/v1/applications/app/deployments", Some(deployment(&registry, "v1"))).await;
        assert_eq!(d["revision"], 1);
        fleet
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        call(&self.router, method, path, &self.token, body).await
    }

    async fn must(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    async fn register(&mut self, host: &str) -> (StatusCode, Value) {
        let (status, answer) =
            call(&self.router, Method::POST, "/v1/agent/register", &self.join, Some(json!({ "host": host }))).await;
        if status == StatusCode::OK {
            self.hosts.insert(host.to_owned(), answer["host_token"].as_str().unwrap().to_owned());
        }
        (status, answer)
    }

    async fn revise(&self, tag: &str) -> Value {
        let registry = self.context.config.registry.host.clone();
        self.must(Method::PUT, "/v1/applications/app/deployments/d", Some(deployment(&registry, tag))).await
    }

    /// Plays every agent until release `id` ends: advance, poll, run, report.
    async fn drive(&self, id: &str) -> Value {
        for _ in 0..200 {
            self.engine.advance(id).await.unwrap();
            for (host, token) in &self.hosts {
                let (status, job) = call(&self.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", token, None).await;
                if status != StatusCode::OK {
                    continue;
                }
                let job: Job = serde_json::from_value(job).unwrap();
                let fails = job.kind == berth_shared::release::JobKind::Run
                    && self.failing.contains(host)
                    && self.failing_in.as_ref().is_none_or(|r| *r == job.release);
                let report = Report {
                    job_id: job.job_id.clone(),
                    release: job.release.clone(),
                    kind: job.kind,
                    ok: !fails,
                    step: Step::Start,
                    exit_code: Some(if fails { 1 } else { 0 }),
                    reason: None,
                    logs: HostLogs::default(),
                    log_parts: None,
                };
                let (status, answer) = call(
                    &self.router,
                    Method::POST,
                    "/v1/agent/reports",
                    token,
                    Some(serde_json::to_value(&report).unwrap()),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{answer}");
            }
            let release = self.must(Method::GET, &format!("/v1/releases/{id}"), None).await;
            if release["status"] != "running" {
                return release;
            }
        }
        panic!("release {id} never ended");
    }

    async fn release(&self, extra: Value) -> Value {
        let mut body = json!({ "application": "app", "deployment": "d", "group": "g" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.must(Method::POST, "/v1/releases", Some(body)).await
    }

    async fn group(&self) -> Value {
        self.must(Method::GET, "/v1/applications/app/groups/g", None).await
    }

    async fn runs(&self, host: &str) -> (u64, String) {
        let group = self.group().await;
        let instance = group["instances"].as_array().unwrap().iter().find(|i| i["host"] == host).unwrap().clone();
        (instance["runs"]["revision"].as_u64().unwrap_or(0), instance["runs"]["release"].as_str().unwrap_or("").into())
    }

    fn group_ref() -> GroupRef {
        GroupRef { account: AccountId::parse("acme").unwrap(), application: "app".into(), group: "g".into() }
    }

    /// Makes a host look unseen for `ago` seconds, as a host that stopped polling would.
    async fn age(&self, host: &str, ago: u64) {
        let path = layout::host_record(&Self::group_ref(), host);
        let mut instance = self.context.store.get::<HostRecord>(&path).await.unwrap().unwrap().value;
        instance.registered_at = unix_now() - ago;
        instance.last_seen = Some(unix_now() - ago);
        self.put_record(&path, &instance).await;
    }

    /// Writes a host's record behind the engine, as another process would: its next request
    /// here sees it once the record read for its token lapses (100 ms, `engine::tokens`).
    async fn put_record(&self, path: &str, record: &HostRecord) {
        self.context.store.put(path, record).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    }
}

#[tokio::test]
async fn revisions_ledgers_rollbacks_and_convergence() {
    let mut f = Fleet::new().await;
    f.register("h1").await;
    f.register("h2").await;

    let r1 = f.release(json!({})).await;
    assert_eq!((r1["revision"].as_u64(), r1["trigger"]["kind"].as_str()), (Some(1), Some("manual")));
    let r1 = f.drive(r1["id"].as_str().unwrap()).await;
    assert_eq!(r1["status"], "succeeded", "{r1}");
    assert_eq!(f.runs("h1").await.0, 1);

    // A new revision; the old one stays readable.
    let d2 = f.revise("v2").await;
    assert_eq!(d2["revision"], 2);
    let revisions = f.must(Method::GET, "/v1/applications/app/deployments/d/revisions", None).await;
    let numbers: Vec<u64> =
        revisions["revisions"].as_array().unwrap().iter().map(|r| r["revision"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [2, 1], "newest first");
    let one = f.must(Method::GET, "/v1/applications/app/deployments/d/revisions/1", None).await;
    assert!(one["image"]["reference"].as_str().unwrap().ends_with("v1"), "{one}");
    let (status, _) = f.call(Method::GET, "/v1/applications/app/deployments/d/revisions/9", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let r2 = f.release(json!({ "batches": 2 })).await;
    let r2_id = r2["id"].as_str().unwrap().to_owned();
    assert_eq!(f.drive(&r2_id).await["status"], "succeeded");
    let group = f.group().await;
    let h1 = &group["instances"][0];
    assert_eq!((h1["runs"]["revision"].as_u64(), h1["ran_before"]["revision"].as_u64()), (Some(2), Some(1)), "{h1}");
    assert_eq!(group["last_release"]["id"], r2_id.as_str());

    // Rolling r2 back puts both hosts on revision 1 again, once.
    let (status, rollback) = f.call(Method::POST, &format!("/v1/releases/{r2_id}/rollback"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{rollback}");
    assert_eq!((rollback["revision"].as_u64(), rollback["trigger"]["of"].as_str()), (Some(1), Some(r2_id.as_str())));
    let rollback_id = rollback["id"].as_str().unwrap().to_owned();
    let (status, again) = f.call(Method::POST, &format!("/v1/releases/{r2_id}/rollback"), None).await;
    assert_eq!((status, again["code"].as_str()), (StatusCode::CONFLICT, Some("already_rolled_back")));
    assert_eq!(f.drive(&rollback_id).await["status"], "succeeded");
    assert_eq!(f.runs("h1").await, (1, rollback_id.clone()));
    assert_eq!(f.runs("h2").await.0, 1);
    assert_eq!(f.must(Method::GET, &format!("/v1/releases/{r2_id}"), None).await["rollback"], rollback_id.as_str());

    // A host that joins now converges to the last good release (the rollback: revision 1),
    // however often it registers within one second.
    f.register("h3").await;
    let conv = f.group().await["instances"][2]["convergence"].as_str().unwrap().to_owned();
    f.hosts.insert("h3-twin".into(), f.hosts["h3"].clone());
    let converged = f.drive(&conv).await;
    f.hosts.remove("h3-twin");
    assert_eq!(
        (converged["status"].as_str(), converged["trigger"]["kind"].as_str()),
        (Some("succeeded"), Some("convergence"))
    );
    assert_eq!(f.runs("h3").await, (1, conv.clone()));
    let listed = f.must(Method::GET, "/v1/applications/app/groups/g/releases?page_size=2", None).await;
    let ids: Vec<&str> = listed["releases"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [conv.as_str(), rollback_id.as_str()], "newest first: {listed}");
    let token = listed["next_page_token"].as_str().unwrap();
    let rest = f.must(Method::GET, &format!("/v1/applications/app/groups/g/releases?page_token={token}"), None).await;
    assert_eq!(rest["releases"].as_array().unwrap().len(), 2);
    assert!(rest["next_page_token"].is_null());

    // A host back after being stale, not on the last good revision (it missed the rollback),
    // converges by itself.
    f.age("h2", 1000).await;
    let path = layout::host_record(&Fleet::group_ref(), "h2");
    let mut h2 = f.context.store.get::<HostRecord>(&path).await.unwrap().unwrap().value;
    h2.ledger.current = h2.ledger.previous.take();
    assert_eq!(h2.ledger.current.as_ref().unwrap().revision.revision, 2);
    f.put_record(&path, &h2).await;
    let (status, job) = call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h2"], None).await;
    assert_eq!(status, StatusCode::OK, "the convergence job is handed out at once");
    let conv2 = f.group().await["instances"][1]["convergence"].as_str().unwrap().to_owned();
    assert_eq!(job["release"], conv2.as_str());
    assert_ne!(conv2, conv);
    assert_eq!(f.drive(&conv2).await["status"], "succeeded");
    assert_eq!(f.runs("h2").await, (1, conv2.clone()));

    // A failing release with auto_rollback: the failed host and the one that started go back.
    f.revise("v3").await;
    f.failing.push("h1".into());
    let r3 = f.release(json!({ "auto_rollback": true, "max_failures": 0 })).await;
    let r3_id = r3["id"].as_str().unwrap().to_owned();
    let failed = f.drive(&r3_id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let auto = failed["rollback"].as_str().expect("rolled back automatically").to_owned();
    f.failing.clear();
    let back = f.drive(&auto).await;
    assert_eq!(
        (back["status"].as_str(), back["trigger"]["automatic"].as_bool()),
        (Some("succeeded"), Some(true)),
        "{back}"
    );
    for host in ["h1", "h2", "h3"] {
        assert_eq!(f.runs(host).await.0, 1, "{host} is back on revision 1");
    }
}

#[tokio::test]
async fn removal_stale_hosts_listings_and_deletes() {
    let mut f = Fleet::new().await;
    f.register("h1").await;
    f.register("h2").await;
    f.register("h3").await;

    // Removed: its token is refused at once, its agent cannot register back with the same
    // join token, and the next plan leaves it out.
    let (status, _) = f.call(Method::DELETE, "/v1/applications/app/groups/g/instances/h2", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h2"], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = f.register("h2").await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::CONFLICT, Some("host_removed")), "{answer}");
    let (status, _) = f.call(Method::DELETE, "/v1/applications/app/groups/g/instances/h2", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.hosts.remove("h2");

    // Stale: skipped and shown so, not failed.
    f.age("h3", 301).await;
    let plan = f.release(json!({ "batches": 3 })).await;
    let id = plan["id"].as_str().unwrap().to_owned();
    assert_eq!(plan["batches"].as_array().unwrap().len(), 1, "only h1 is planned: {plan}");
    assert_eq!(plan["skipped_hosts"][0]["host"], "h3");
    assert_eq!(plan["skipped_hosts"][0]["state"], "skipped");
    assert!(plan["skipped_hosts"][0]["reason"].as_str().unwrap().contains("stale_after_seconds"));

    // 409 while it runs, for the group, its deployment and the application.
    for path in ["/v1/applications/app/groups/g", "/v1/applications/app/deployments/d", "/v1/applications/app"] {
        let (status, answer) = f.call(Method::DELETE, path, None).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::CONFLICT, Some("release_in_progress")), "{path}");
    }
    let done = f.drive(&id).await;
    assert_eq!((done["status"].as_str(), done["summary"]["skipped"].as_u64()), (Some("succeeded"), Some(1)), "{done}");

    // Listings, newest first (by the second they were made, then by name), paged.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    f.must(Method::POST, "/v1/applications", Some(json!({ "name": "app2" }))).await;
    let apps = f.must(Method::GET, "/v1/applications?page_size=1", None).await;
    assert_eq!(apps["applications"][0]["name"], "app2");
    let token = apps["next_page_token"].as_str().unwrap();
    let rest = f.must(Method::GET, &format!("/v1/applications?page_size=1&page_token={token}"), None).await;
    assert_eq!((rest["applications"][0]["name"].as_str(), rest["next_page_token"].as_str()), (Some("app"), None));
    let (status, bad) = f.call(Method::GET, "/v1/applications?page_size=0", None).await;
    assert_eq!((status, bad["field"].as_str()), (StatusCode::BAD_REQUEST, Some("page_size")));
    let groups = f.must(Method::GET, "/v1/applications/app/groups", None).await;
    assert_eq!(groups["groups"][0]["name"], "g");
    assert!(groups["groups"][0].get("instances").is_none());
    let deployments = f.must(Method::GET, "/v1/applications/app/deployments", None).await;
    assert_eq!(
        (deployments["deployments"][0]["name"].as_str(), deployments["deployments"][0]["revisions"].as_u64()),
        (Some("d"), Some(1))
    );

    // Deletes once nothing runs.
    let (status, _) = f.call(Method::DELETE, "/v1/applications/app/deployments/d", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // h1 polls just before: the record read for its token is not what answers after.
    call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h1"], None).await;
    let (status, _) = f.call(Method::DELETE, "/v1/applications/app/groups/g", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h1"], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a deleted group's hosts are refused at once");
    let (status, _) = f.call(Method::DELETE, "/v1/applications/app", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.call(Method::GET, "/v1/applications/app", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The release stays readable by id.
    f.must(Method::GET, &format!("/v1/releases/{id}"), None).await;
}

#[tokio::test]
async fn a_convergence_a_later_release_overtook_is_never_handed_out() {
    let mut f = Fleet::new().await;
    f.register("h1").await;
    let r1 = f.release(json!({})).await;
    assert_eq!(f.drive(r1["id"].as_str().unwrap()).await["status"], "succeeded");
    // h1 comes back from being stale, not running r1's revision: its convergence job is
    // handed out, and the agent never reports it.
    f.age("h1", 1000).await;
    let path = layout::host_record(&Fleet::group_ref(), "h1");
    let mut h1 = f.context.store.get::<HostRecord>(&path).await.unwrap().unwrap().value;
    h1.ledger = Default::default();
    f.put_record(&path, &h1).await;
    let (status, job) = call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h1"], None).await;
    assert_eq!(status, StatusCode::OK);
    let conv = job["release"].as_str().unwrap().to_owned();
    f.revise("v2").await;
    let r2 = f.release(json!({})).await;
    assert_eq!(f.drive(r2["id"].as_str().unwrap()).await["status"], "succeeded");
    let (status, _) = call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h1"], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "r2's revision, not r1's, is what h1 runs now");
    f.engine.advance(&conv).await.unwrap();
    let ended = f.must(Method::GET, &format!("/v1/releases/{conv}"), None).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    assert_eq!(f.runs("h1").await.0, 2);
}

#[tokio::test]
async fn a_host_behind_the_last_good_release_converges_once_when_it_polls() {
    let mut f = Fleet::new().await;
    f.register("h1").await;
    f.register("h2").await;
    let r1 = f.release(json!({})).await;
    assert_eq!(f.drive(r1["id"].as_str().unwrap()).await["status"], "succeeded");

    // Revision 2 succeeds within its budget without h2 (its start fails there): h2 is behind
    // it, and its next poll converges it to revision 2 by itself.
    f.revise("v2").await;
    let r2 = f.release(json!({ "max_failures": 1 })).await;
    let r2_id = r2["id"].as_str().unwrap().to_owned();
    f.failing = vec!["h2".into()];
    f.failing_in = Some(r2_id.clone());
    assert_eq!(f.drive(&r2_id).await["status"], "succeeded");
    let (status, job) = call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h2"], None).await;
    let conv = f.group().await["instances"][1]["convergence"].as_str().expect("h2 converges").to_owned();
    // (The test's own drive may have taken the job on its last round, as an agent would.)
    if status == StatusCode::OK {
        assert_eq!(job["release"], conv.as_str());
    }
    let converged = f.drive(&conv).await;
    assert_eq!(
        (converged["status"].as_str(), converged["trigger"]["of"].as_str()),
        (Some("succeeded"), Some(r2_id.as_str()))
    );
    assert_eq!(f.runs("h2").await, (2, conv.clone()));
    assert_eq!(f.runs("h1").await.0, 2);

    // Once per release: a host whose convergence failed is not converged again and again.
    f.revise("v3").await;
    let r3 = f.release(json!({ "max_failures": 1 })).await;
    let r3_id = r3["id"].as_str().unwrap().to_owned();
    f.failing_in = None;
    assert_eq!(f.drive(&r3_id).await["status"], "succeeded");
    call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h2"], None).await;
    let conv3 = f.group().await["instances"][1]["convergence"].as_str().unwrap().to_owned();
    assert_ne!(conv3, conv);
    assert_eq!(f.drive(&conv3).await["status"], "failed");
    for _ in 0..3 {
        let (status, job) = call(&f.router, Method::GET, "/v1/agent/jobs?wait_seconds=0", &f.hosts["h2"], None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "no second convergence to the same release: {job}");
    }
    assert_eq!(f.group().await["instances"][1]["convergence"], conv3.as_str());
    assert_eq!(f.runs("h2").await.0, 2, "h2 still runs revision 2");
}

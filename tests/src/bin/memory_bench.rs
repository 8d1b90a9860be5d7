//! `make bench` part: peak RSS of the release `berth serve` under hostile input, with
//! `/healthz` asked every 50 ms throughout:
//! (a) 8 concurrent renders of a 10 MiB template made of `{{computenest::` repeated (each a 422),
//! (b) 4 agents at once each sending 256 MiB of output (512 log parts and a report),
//! (c) the publish check of a manifest whose config names a 1 GiB blob in the real registry.
//! The peak is reset between scenarios (`/proc/PID/clear_refs`), so each figure is its own.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_shared::platform::digest::sha256_hex;
use berth_shared::release::{LOG_PART_BYTES, MAX_LOG_PARTS};
use berth_tests::berth::BerthServe;
use berth_tests::registry::{Registry, SERVICE};
use serde_json::{Value, json};

const GOAL_MIB: u64 = 256;

struct Bench {
    berth: BerthServe,
    registry: Registry,
    http: reqwest::Client,
    token: String,
}

impl Bench {
    async fn call(&self, method: reqwest::Method, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.berth.url)).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("berth answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.berth.pid()), "5").expect("reset the peak RSS (root)");
    }

    fn peak(&self) -> u64 {
        berth_tests::peak_rss_mib_of(self.berth.pid()).expect("berth serve's /proc status")
    }
}

/// Asks `/healthz` every 50 ms until stopped; counts answers that were not a 200 within 2 s.
fn watch_health(url: String, stop: Arc<AtomicBool>, bad: Arc<AtomicU64>, asked: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        while !stop.load(Ordering::Relaxed) {
            let ok = matches!(http.get(format!("{url}/healthz")).send().await, Ok(r) if r.status() == 200);
            asked.fetch_add(1, Ordering::Relaxed);
            if !ok {
                bad.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

async fn scenario<F: std::future::Future<Output = String>>(bench: &Bench, name: &str, run: F) {
    bench.reset_peak();
    let (stop, bad, asked) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    watch_health(bench.berth.url.clone(), stop.clone(), bad.clone(), asked.clone());
    let started = Instant::now();
    let what = run.await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = bench.peak();
    let (bad, asked) = (bad.load(Ordering::Relaxed), asked.load(Ordering::Relaxed));
    let verdict = if peak <= GOAL_MIB { "meets" } else { "MISSES" };
    println!(
        "{name:<44} peak RSS {peak:>4} MiB   goal <= {GOAL_MIB} MiB ({verdict}); /healthz {}/{asked} ok; {what}; {took:.1?}",
        asked - bad
    );
}

async fn hostile_renders(bench: &Bench) -> String {
    let template = "{{computenest::".repeat((10 << 20) / "{{computenest::".len());
    let body = Arc::new(json!({ "template": template, "relations": {} }));
    let renders = (0..8).map(|_| {
        let body = body.clone();
        async move { bench.call(reqwest::Method::POST, "/v1/render", &bench.token, Some((*body).clone())).await.0 }
    });
    let statuses = futures::future::join_all(renders).await;
    format!("statuses {statuses:?}")
}

async fn big_reports(bench: &Bench) -> String {
    use reqwest::Method;
    let token = &bench.token;
    bench.call(Method::POST, "/v1/applications", token, Some(json!({ "name": "mem" }))).await;
    let (_, group) = bench.call(Method::POST, "/v1/applications/mem/groups", token, Some(json!({ "name": "g" }))).await;
    let deployment = json!({
        "name": "d", "image": { "address": format!("{}/bench/app:v1", bench.registry.host) },
        "working_directory": "/srv", "start_script": "true", "stop_script": "true",
    });
    bench.call(Method::POST, "/v1/applications/mem/deployments", token, Some(deployment)).await;
    let join = group["join_token"].as_str().expect("join token").to_owned();
    let mut hosts = Vec::new();
    for i in 0..4 {
        let (_, registered) =
            bench.call(Method::POST, "/v1/agent/register", &join, Some(json!({ "host": format!("m{i}") }))).await;
        hosts.push(registered["host_token"].as_str().expect("host token").to_owned());
    }
    let body = json!({ "application": "mem", "deployment": "d", "group": "g", "pull_first": false });
    let (status, release) = bench.call(Method::POST, "/v1/releases", token, Some(body)).await;
    assert_eq!(status, 201, "{release}");
    let text = "x".repeat(LOG_PART_BYTES);
    let agents = hosts.iter().map(|host| {
        let text = text.clone();
        async move {
            let job = loop {
                let (status, job) = bench.call(Method::GET, "/v1/agent/jobs?wait_seconds=5", host, None).await;
                if status == 200 {
                    break job;
                }
            };
            let (release, job_id) = (job["release"].as_str().unwrap(), job["job_id"].as_str().unwrap());
            for part in 0..MAX_LOG_PARTS {
                let response = bench
                    .http
                    .post(format!("{}/v1/agent/logs", bench.berth.url))
                    .bearer_auth(host)
                    .query(&[("release", release), ("job_id", job_id), ("step", "start"), ("stream", "stdout")])
                    .query(&[("part", part)])
                    .body(text.clone())
                    .send()
                    .await
                    .expect("berth answers");
                assert_eq!(response.status(), 204, "part {part}");
            }
            let report = json!({
                "job_id": job_id, "release": release, "kind": "run", "ok": true, "step": "start",
                "exit_code": 0, "logs": { "stop": {}, "start": {} }, "log_parts": MAX_LOG_PARTS,
            });
            bench.call(Method::POST, "/v1/agent/reports", host, Some(report)).await.0
        }
    });
    let statuses = futures::future::join_all(agents).await;
    let mib = (MAX_LOG_PARTS * LOG_PART_BYTES) >> 20;
    format!("4 x {mib} MiB of output, reports {statuses:?}")
}

/// Pushes, straight through the registry API, a manifest whose config is a 1 GiB blob.
async fn push_huge_config(bench: &Bench) {
    let http = &bench.http;
    let (_, key) = bench
        .call(reqwest::Method::POST, "/v1/registry/credentials", &bench.token, Some(json!({ "purpose": "push" })))
        .await;
    let (user, password) = (key["username"].as_str().unwrap(), key["password"].as_str().unwrap());
    let scope = "repository:bench/huge:push,pull";
    let token: Value = http
        .get(format!("{}/v1/registry/token", bench.berth.url))
        .basic_auth(user, Some(password))
        .query(&[("service", SERVICE), ("scope", scope)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["token"].as_str().expect("registry token").to_owned();
    let registry = format!("http://{}", bench.registry.host);
    let size: u64 = 1 << 30;
    let zeros = vec![0u8; 1 << 20];
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for _ in 0..(size >> 20) {
        hasher.update(&zeros);
    }
    let digest = format!("sha256:{}", berth_shared::platform::digest::lower_hex(hasher.finish().as_ref()));
    let upload = |body: reqwest::Body, digest: &str| {
        let (registry, bearer, digest) = (registry.clone(), bearer.clone(), digest.to_owned());
        async move {
            let started = http
                .post(format!("{registry}/v2/bench/huge/blobs/uploads/"))
                .bearer_auth(&bearer)
                .send()
                .await
                .unwrap();
            let location = started.headers()["location"].to_str().unwrap().to_owned();
            let location = if location.starts_with("http") { location } else { format!("{registry}{location}") };
            let sep = if location.contains('?') { '&' } else { '?' };
            let done = http
                .put(format!("{location}{sep}digest={digest}"))
                .bearer_auth(&bearer)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(done.status(), 201, "blob upload: {}", done.text().await.unwrap_or_default());
        }
    };
    let chunks = futures::stream::iter((0..(size >> 20)).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1 << 20])));
    upload(reqwest::Body::wrap_stream(chunks), &digest).await;
    let layer = b"layer".to_vec();
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    upload(reqwest::Body::from(layer.clone()), &layer_digest).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len() }]
    });
    let put = http
        .put(format!("{registry}/v2/bench/huge/manifests/v1"))
        .bearer_auth(&bearer)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "manifest: {}", put.text().await.unwrap_or_default());
}

async fn huge_config_check(bench: &Bench) -> String {
    use reqwest::Method;
    let body = json!({
        "name": "huge", "description": "a config of a gigabyte", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "bench/huge", "tag": "v1" }] }
    });
    let (status, created) = bench.call(Method::POST, "/v1/packages", &bench.token, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let started = Instant::now();
    loop {
        let (_, version) = bench.call(Method::GET, "/v1/packages/huge/versions/v_1", &bench.token, None).await;
        if version["status"] != "Creating" {
            let reason = version["reason"].as_str().unwrap_or("").chars().take(90).collect::<String>();
            return format!("settled {} ({reason})", version["status"]);
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the check did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = Registry::pick_port();
    let host = format!("127.0.0.1:{port}");
    let binary = berth_tests::workspace_root().join("target/release/berth");
    assert!(binary.exists(), "build the release binaries first (make bench does)");
    let env = [("BERTH_REGISTRY_HOST", host.as_str()), ("BERTH_REGISTRY_SERVICE", SERVICE), ("RUST_LOG", "warn")];
    let berth = BerthServe::start_binary(&binary, &dir.path().join("data"), &dir.path().join("berth.log"), 0, &env);
    let realm = format!("{}/v1/registry/token", berth.url);
    let registry = Registry::start(dir.path(), port, &realm, &berth.signing_certificate());
    let token = berth.dev_token("bench");
    let bench = Bench { berth, registry, http: reqwest::Client::new(), token };
    println!("berth serve (release) at start: {} MiB", bench.peak());
    scenario(&bench, "(a) 8 concurrent hostile 10 MiB renders", hostile_renders(&bench)).await;
    scenario(&bench, "(b) 4 concurrent 256 MiB agent reports", big_reports(&bench)).await;
    push_huge_config(&bench).await;
    scenario(&bench, "(c) publish check of a 1 GiB config blob", huge_config_check(&bench)).await;
}

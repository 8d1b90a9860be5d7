//! The agent's delivery of a job's outcome against a Berth that refuses it for a while: the
//! output travels in parts, the report is retried with backoff (across a `kill -9` and a
//! restart of the agent), and the job's scripts run exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_shared::release::{Job, JobKind, Report, Step};

/// Parts received, by index: (stream, bytes of text).
#[derive(Default)]
struct Parts(std::sync::Mutex<std::collections::BTreeMap<usize, (String, usize)>>);

const OUTPUT_BYTES: usize = 3_000_000;

/// A stand-in for Berth's agent routes: hands out one job until it takes a report, and
/// refuses log parts and reports with 503 until told to take them.
struct FakeBerth {
    job: Job,
    accepting: AtomicBool,
    parts_refused: AtomicUsize,
    report_attempts: AtomicUsize,
    reported: std::sync::Mutex<Option<Report>>,
    parts: Parts,
}

impl FakeBerth {
    /// Hands out `job`; takes reports when `accepting`. Log parts are refused until two were
    /// (`parts_refused` 0: the first two; 2: none).
    fn new(job: Job, accepting: bool, parts_refused: usize) -> Arc<Self> {
        Arc::new(Self {
            job,
            accepting: AtomicBool::new(accepting),
            parts_refused: AtomicUsize::new(parts_refused),
            report_attempts: AtomicUsize::new(0),
            reported: std::sync::Mutex::new(None),
            parts: Parts::default(),
        })
    }
}

/// Serves `berth`'s agent routes on a loopback port; its URL.
async fn serve(berth: &Arc<FakeBerth>) -> String {
    let router = axum::Router::new()
        .route("/v1/agent/jobs", get(jobs))
        .route("/v1/agent/logs", post(logs))
        .route("/v1/agent/reports", post(reports))
        .with_state(berth.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

async fn jobs(State(berth): State<Arc<FakeBerth>>) -> Response {
    if berth.reported.lock().unwrap().is_some() {
        return StatusCode::NO_CONTENT.into_response();
    }
    Json(berth.job.clone()).into_response()
}

async fn logs(
    State(berth): State<Arc<FakeBerth>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: String,
) -> StatusCode {
    // The first two parts sent are refused once each, as a Berth restarting would.
    if berth.parts_refused.fetch_add(1, Ordering::SeqCst) < 2 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let index: usize = query["part"].parse().unwrap();
    assert_eq!(query["job_id"], berth.job.job_id);
    berth.parts.0.lock().unwrap().insert(index, (query["stream"].clone(), body.len()));
    StatusCode::NO_CONTENT
}

async fn reports(State(berth): State<Arc<FakeBerth>>, Json(report): Json<Report>) -> Response {
    berth.report_attempts.fetch_add(1, Ordering::SeqCst);
    if !berth.accepting.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "restarting").into_response();
    }
    *berth.reported.lock().unwrap() = Some(report);
    Json(serde_json::json!({ "accepted": true })).into_response()
}

fn agent(url: &str, state: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_berth-agent"))
        .args(["--berth-url", url, "--host-id", "h1", "--poll-seconds", "1", "--state-dir"])
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start berth-agent")
}

/// Host h1's run job in `release`, running `start_script` in `work`.
fn run_job(release: &str, work: &std::path::Path, start_script: String) -> Job {
    Job {
        job_id: berth_shared::release::job_id(release, "h1", JobKind::Run),
        release: release.into(),
        kind: JobKind::Run,
        pull: false,
        image: "127.0.0.1:5000/acme/app:v1".into(),
        registry: "127.0.0.1:5000".into(),
        username: "u".into(),
        password: "p".into(),
        working_directory: work.display().to_string(),
        stop_script: "true".into(),
        start_script,
        step_timeout_seconds: 30,
        health: None,
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_is_retried_across_a_restart_and_the_job_never_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (state, work, marker) = (dir.path().join("state"), dir.path().join("work"), dir.path().join("ran"));
    std::fs::create_dir_all(&state).unwrap();
    // A saved host token: the agent does not register.
    std::fs::write(state.join("host-token.json"), r#"{"host":"h1","host_token":"bht_test"}"#).unwrap();
    let release = "0b3c3a5e-8d7f-4a59-9a51-3d2f5d8e1c01";
    let start = format!("echo ran >> {}; head -c {OUTPUT_BYTES} /dev/zero | tr '\\0' y", marker.display());
    let job = run_job(release, &work, start);
    let berth = FakeBerth::new(job, false, 0);
    let url = serve(&berth).await;

    let mut first = agent(&url, &state);
    until("two refused reports", || berth.report_attempts.load(Ordering::SeqCst) >= 2).await;
    first.kill().unwrap();
    first.wait().unwrap();
    // Berth takes reports again; a new agent on the same state delivers the one it kept.
    berth.accepting.store(true, Ordering::SeqCst);
    let mut second = agent(&url, &state);
    until("the report", || berth.reported.lock().unwrap().is_some()).await;
    // A few more polls: Berth answers no job now, and nothing runs again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n", "the scripts ran once");
    let report = berth.reported.lock().unwrap().clone().unwrap();
    assert!(report.ok, "{:?}", report.reason);
    let parts = berth.parts.0.lock().unwrap();
    assert_eq!(report.log_parts, Some(parts.len()), "the report counts the parts it sent");
    assert_eq!(parts.keys().copied().collect::<Vec<_>>(), (0..parts.len()).collect::<Vec<_>>());
    let stdout: usize = parts.values().filter(|(stream, _)| stream == "stdout").map(|(_, len)| len).sum();
    assert_eq!(stdout, OUTPUT_BYTES, "the whole output arrived");
    assert_eq!(report.logs.start.as_ref().map(|o| o.stdout.as_str()), Some(""), "its text went as parts");
    assert!(!state.join("pending-report.json").exists(), "nothing left to deliver");
    assert!(std::fs::read_dir(state.join("spool")).unwrap().next().is_none(), "the spool was emptied");
}

/// A stand-in registry holding sigstore signatures, behind a token endpoint as Berth's
/// registry is: `manifests` maps a tag to its manifest, `blobs` a digest to its bytes.
struct FakeRegistry {
    manifests: std::collections::HashMap<String, Vec<u8>>,
    blobs: std::collections::HashMap<String, Vec<u8>>,
    base: String,
}

async fn registry_read(
    State(registry): State<Arc<FakeRegistry>>,
    axum::extract::Path((kind, reference)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
        let challenge =
            format!(r#"Bearer realm="{}/token",service="reg",scope="repository:acme/app:pull""#, registry.base);
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response();
    }
    let found = if kind == "manifests" { registry.manifests.get(&reference) } else { registry.blobs.get(&reference) };
    match found {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn registry_token(headers: axum::http::HeaderMap) -> Response {
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:p"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(serde_json::json!({ "token": "t0k" })).into_response()
}

/// A signature manifest of `digest` (as skopeo and cosign store it) signed by `key`.
fn signature_of(registry: &mut FakeRegistry, host: &str, digest: &str, key: &aws_lc_rs::signature::EcdsaKeyPair) {
    use base64::Engine;
    let payload = serde_json::json!({ "critical": {
        "identity": { "docker-reference": format!("{host}/acme/app:v1") },
        "image": { "docker-manifest-digest": digest }, "type": "cosign container image signature" },
        "optional": null })
    .to_string()
    .into_bytes();
    let signature = key.sign(&aws_lc_rs::rand::SystemRandom::new(), &payload).unwrap();
    let payload_digest = berth_shared::platform::digest::oci_digest(&payload);
    let manifest = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": payload_digest, "size": 2 },
        "layers": [{ "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": payload_digest,
            "size": payload.len(),
            "annotations": { "dev.cosignproject.cosign/signature":
                base64::engine::general_purpose::STANDARD.encode(signature.as_ref()) } }] });
    registry.manifests.insert(format!("{}.sig", digest.replacen(':', "-", 1)), manifest.to_string().into_bytes());
    registry.blobs.insert(payload_digest, payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trusted_keys_an_image_not_signed_by_one_of_them_never_runs() {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ours = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let attacker = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let spki: PublicKeyX509Der = ours.public_key().as_der().unwrap();
    let keys = dir.path().join("trusted.pem");
    std::fs::write(&keys, berth_shared::platform::pem::pem_encode("PUBLIC KEY", spki.as_ref())).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (signed, swapped) = (format!("sha256:{}", "a".repeat(64)), format!("sha256:{}", "b".repeat(64)));
    let mut registry =
        FakeRegistry { manifests: Default::default(), blobs: Default::default(), base: format!("http://{host}") };
    signature_of(&mut registry, &host, &signed, &ours);
    signature_of(&mut registry, &host, &swapped, &attacker);
    let router = axum::Router::new()
        .route("/v2/acme/app/{kind}/{reference}", get(registry_read))
        .route("/token", get(registry_token))
        .with_state(Arc::new(registry));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // The same job twice, once per digest: only the signed one runs its scripts.
    for (digest, runs) in [(&signed, true), (&swapped, false)] {
        let (state, marker) = (dir.path().join(format!("state-{runs}")), dir.path().join(format!("ran-{runs}")));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("host-token.json"), r#"{"host":"h1","host_token":"bht_test"}"#).unwrap();
        let release = "0b3c3a5e-8d7f-4a59-9a51-3d2f5d8e1c02";
        let job = Job {
            job_id: berth_shared::release::job_id(release, "h1", JobKind::Run),
            release: release.into(),
            kind: JobKind::Run,
            pull: false,
            image: format!("{host}/acme/app@{digest}"),
            registry: host.clone(),
            username: "u".into(),
            password: "p".into(),
            working_directory: dir.path().join("work").display().to_string(),
            stop_script: format!("touch {}", marker.display()),
            start_script: format!("echo \"$BERTH_IMAGE\" > {}", marker.display()),
            step_timeout_seconds: 30,
            health: None,
        };
        // Parts and reports are taken at once.
        let berth = FakeBerth::new(job, true, 2);
        let url = serve(&berth).await;
        let mut agent = Command::new(env!("CARGO_BIN_EXE_berth-agent"))
            .args(["--berth-url", &url, "--host-id", "h1", "--poll-seconds", "1", "--trusted-keys"])
            .arg(&keys)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start berth-agent");
        until("the report", || berth.reported.lock().unwrap().is_some()).await;
        agent.kill().unwrap();
        agent.wait().unwrap();
        let report = berth.reported.lock().unwrap().clone().unwrap();
        assert_eq!(report.ok, runs, "{digest}: {:?}", report.reason);
        if runs {
            let image = std::fs::read_to_string(&marker).unwrap();
            assert_eq!(image.trim(), format!("{host}/acme/app@{digest}"), "the scripts see the verified digest");
        } else {
            assert_eq!(report.step, Step::Pull);
            let reason = report.reason.unwrap_or_default();
            assert!(reason.contains("signature_untrusted"), "{reason}");
            assert!(!marker.exists(), "nothing of the job ran");
        }
    }
}

/// A stand-in for Berth that hands out hostile jobs, one per poll, then nothing.
#[derive(Default)]
struct HostileBerth {
    bodies: std::sync::Mutex<std::collections::VecDeque<String>>,
    reports: std::sync::Mutex<Vec<Report>>,
}

async fn hostile_jobs(State(berth): State<Arc<HostileBerth>>) -> Response {
    match berth.bodies.lock().unwrap().pop_front() {
        Some(body) => ([("content-type", "application/json")], body).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn hostile_reports(State(berth): State<Arc<HostileBerth>>, Json(report): Json<Report>) -> Response {
    berth.reports.lock().unwrap().push(report);
    Json(serde_json::json!({ "accepted": true })).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_fed_hostile_jobs_runs_none_of_them_and_touches_nothing_outside_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let (state, work, marks) = (dir.path().join("state"), dir.path().join("work"), dir.path().join("marks"));
    std::fs::create_dir_all(state.join("spool")).unwrap();
    std::fs::create_dir_all(&marks).unwrap();
    // What `../../x` from the spool names: it must survive.
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    std::fs::write(dir.path().join("x/keep"), "mine").unwrap();
    std::fs::write(state.join("host-token.json"), r#"{"host":"h1","host_token":"bht_test"}"#).unwrap();
    let job = |release: &str, mark: &str| run_job(release, &work, format!("touch {}/{mark}", marks.display()));
    let release = |n: u8| format!("0b3c3a5e-8d7f-4a59-9a51-3d2f5d8e1c0{n}");
    let mut traversal = job(&release(1), "traversal");
    traversal.job_id = "../../x".into();
    let mut huge = job(&release(2), "huge");
    huge.start_script = format!("true # {}", "y".repeat(1 << 20));
    let mut endless = serde_json::to_value(job(&release(3), "endless")).unwrap();
    endless["step_timeout_seconds"] = serde_json::json!(u64::MAX);
    let mut elsewhere = job(&release(4), "elsewhere");
    elsewhere.image = "127.0.0.1:5000/acme/app:v1 --privileged".into();
    let mut outside = job(&release(5), "outside");
    outside.working_directory = format!("{}/../x", work.display());
    let good = job(&release(6), "good");
    let bodies = [
        serde_json::to_string(&traversal).unwrap(),
        serde_json::to_string(&huge).unwrap(),
        endless.to_string(),
        serde_json::to_string(&elsewhere).unwrap(),
        serde_json::to_string(&outside).unwrap(),
        serde_json::to_string(&good).unwrap(),
    ];
    let berth = Arc::new(HostileBerth { bodies: std::sync::Mutex::new(bodies.into()), ..Default::default() });
    let router = axum::Router::new()
        .route("/v1/agent/jobs", get(hostile_jobs))
        .route("/v1/agent/reports", post(hostile_reports))
        .with_state(berth.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut agent = agent(&url, &state);
    until("the good job's report", || berth.reports.lock().unwrap().iter().any(|r| r.release == release(6))).await;
    agent.kill().unwrap();
    agent.wait().unwrap();

    let ran: Vec<String> =
        std::fs::read_dir(&marks).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(ran, ["good"], "only the sound job ran");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x/keep")).unwrap(),
        "mine",
        "nothing outside the state dir went"
    );
    let reports = berth.reports.lock().unwrap().clone();
    let reason = |n: u8| {
        let report = reports.iter().find(|r| r.release == release(n)).unwrap_or_else(|| panic!("no report {n}"));
        assert!(!report.ok || n == 6, "{report:?}");
        report.reason.clone().unwrap_or_default()
    };
    // This host's jobs with a bad field are reported failed, naming it; nothing else is reported.
    assert!(reason(3).contains("step_timeout_seconds"), "{}", reason(3));
    assert!(reason(4).contains("image"), "{}", reason(4));
    assert!(reason(5).contains("working_directory"), "{}", reason(5));
    assert_eq!(reason(6), "");
    assert_eq!(reports.len(), 4, "neither the job of another id nor the oversized one was reported: {reports:?}");
}

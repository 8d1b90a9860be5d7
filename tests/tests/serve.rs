//! `berth serve` as a user runs it: every function in one process, dev tokens, problem+json
//! errors, request ids in logs, no secret in logs, saved events restored, graceful shutdown.

use berth_shared::platform::queue::Envelope;
use berth_tests::berth::BerthServe;
use serde_json::{Value, json};

async fn problem(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
}

#[tokio::test]
async fn serve_mounts_every_function_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    // An event saved by an earlier shutdown is queued again and handled at start.
    std::fs::create_dir_all(data.join("queue")).unwrap();
    let saved = data.join("queue/packages.json");
    std::fs::write(&saved, serde_json::to_vec(&[Envelope::new("berth.ping", None, json!({}))]).unwrap()).unwrap();

    let serve = BerthServe::start(&data, &log, 0, &[]);
    let base = serve.url.clone();
    let http = reqwest::Client::new();

    let health: Value = http.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({ "status": "ok", "functions": ["credentials", "packages", "render", "releases"] }));

    let token = serve.dev_token("acme");
    let me = http
        .get(format!("{base}/v1/account"))
        .bearer_auth(&token)
        .header("x-request-id", "req-test-42")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["x-request-id"], "req-test-42", "the caller's request id comes back");
    assert_eq!(me.json::<Value>().await.unwrap(), json!({ "account": "acme", "namespace": "acme" }));

    problem(http.get(format!("{base}/v1/account")).send().await.unwrap(), 401, "unauthenticated").await;
    problem(
        http.get(format!("{base}/v1/account")).bearer_auth("eyJhbGciOiJFUzI1NiJ9.e30.c2ln").send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    problem(http.get(format!("{base}/no/such/route")).send().await.unwrap(), 404, "not_found").await;
    // axum's own rejections come back as problem+json too, naming the part at fault.
    problem(
        http.delete(format!("{base}/v1/account")).bearer_auth(&token).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    let field = |response: reqwest::Response, status: u16, code: &'static str, field: &'static str| async move {
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let body: Value = response.json().await.unwrap();
        assert_eq!((body["code"].as_str(), body["field"].as_str()), (Some(code), Some(field)), "{body}");
    };
    field(
        http.get(format!("{base}/v1/packages/%FF")).bearer_auth(&token).send().await.unwrap(),
        400,
        "invalid_path",
        "path",
    )
    .await;
    field(
        http.post(format!("{base}/v1/releases?dry_run=maybe"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_query",
        "query",
    )
    .await;

    serve.stop();
    assert!(!saved.exists(), "the restored event was handled, so nothing is saved again");

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains(&token), "the account token reached the log");
    let lines: Vec<Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    let served: Vec<&Value> = lines.iter().filter(|l| l["message"] == "served").collect();
    assert_eq!(served.len(), 8, "one line per request");
    for line in &served {
        assert!(line["span"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "no request id: {line}");
    }
    assert!(served.iter().any(|l| l["span"]["request_id"] == "req-test-42"));

    // The data directory is reusable: same key, so the earlier token still works.
    let serve = BerthServe::start(&data, &dir.path().join("serve2.log"), 0, &[]);
    let again = http.get(format!("{}/v1/account", serve.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(again.status(), 200);
    serve.stop();
}

/// Issue 24's availability attacks on `berth serve`, one after another, attackers on other
/// loopback addresses than the honest clients measuring meanwhile (`/healthz` every 50 ms and
/// authenticated renders, each on a new connection): during each, honest answers come within
/// 1 s at p99 (asserted generously: 2 s), none fails, and the server's peak RSS stays within
/// 256 MiB. `make bench`'s
/// `stall-bench` prints the same figures for any build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_stalls_berth() {
    use berth_tests::attack::{self, ATTACKERS, Figures, Target, during};
    use std::time::Duration;
    attack::raise_open_files(8192);
    let dir = tempfile::tempdir().unwrap();
    // A short write timeout keeps the unread-answers attack short.
    let serve = BerthServe::start(
        &dir.path().join("data"),
        &dir.path().join("serve.log"),
        0,
        &[("BERTH_HTTP_WRITE_TIMEOUT_SECONDS", "3")],
    );
    let target = Target {
        url: serve.url.clone(),
        address: serve.url.trim_start_matches("http://").parse().unwrap(),
        pid: serve.pid(),
        honest_token: serve.dev_token("acme"),
        attacker_token: serve.dev_token("mallory"),
    };
    let check = |figures: &Figures| {
        eprintln!("{figures}");
        for (what, seen) in [("/healthz", &figures.health), ("render", &figures.render)] {
            assert!(seen.samples.len() >= 10, "{}: too few {what} probes: {figures}", figures.attack);
            assert_eq!(seen.failures, 0, "{}: {what} failed: {figures}", figures.attack);
            // The goal is 1 s; twice that here, generously, for a loaded test machine.
            assert!(seen.p99() < Duration::from_secs(2), "{}: {what} p99 over 2 s: {figures}", figures.attack);
        }
        assert!(figures.peak_rss_mib <= 256, "{}: peak RSS over 256 MiB: {figures}", figures.attack);
    };

    let nested = during(
        &target,
        "nested YAML (depth 100,000), 4 at once",
        attack::nested_yaml(&target, 100_000, Duration::from_secs(6), Duration::from_secs(30)),
    )
    .await;
    check(&nested);
    assert!(!nested.detail.contains("no answer") && nested.detail.contains("\"400\""), "{}", nested.detail);

    let slow = during(
        &target,
        "1,100 slow bodies to POST /",
        attack::slow_bodies(&target, 1100, &ATTACKERS[..4], Duration::from_secs(14)),
    )
    .await;
    check(&slow);
    assert!(!slow.detail.contains(" 0 answered 408"), "the whole-body deadline answered: {}", slow.detail);

    let idle = during(
        &target,
        "2,000 idle connections",
        attack::idle_connections(&target, 2000, &ATTACKERS, Duration::from_secs(12)),
    )
    .await;
    check(&idle);

    let mut unread = None;
    let answers = during(&target, "10 unread answers of 9 MiB", async {
        let seen = attack::unread_answers(&target, 10, 9, Duration::from_secs(40)).await;
        unread = Some(seen);
        seen.to_string()
    })
    .await;
    check(&answers);
    let unread = unread.unwrap();
    assert!(unread.dropped > 0, "answers the socket buffers could not hold were dropped: {unread}");
    assert!(unread.rss_after_mib <= unread.rss_before_mib + 32, "their memory was freed: {unread}");
    assert!(unread.freed_after.is_some(), "the connections' sockets were freed: {unread}");
    serve.stop();
}

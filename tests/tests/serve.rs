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
/// 1 s at p99, none fails, and the server's peak RSS stays within
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
            // The goal: 1 s. A debug build on a 2-core machine at load 16 kept p99 within 140 ms.
            assert!(seen.p99() < Duration::from_secs(1), "{}: {what} p99 over 1 s: {figures}", figures.attack);
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

/// A Compute Nest call to `base` signed with `key` (ACS3-HMAC-SHA256, as Alibaba Cloud's SDK
/// signs it): the status and the JSON answer.
async fn computenest(base: &str, key: &Value, action: &str, query: &str) -> (u16, Value) {
    use berth_packages::computenest::signature;
    let empty = signature::sha256_hex(b"");
    let now = berth_shared::platform::clock::rfc3339(berth_shared::platform::clock::unix_now());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let host = base.trim_start_matches("http://");
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in [
        ("host", host),
        ("x-acs-action", action),
        ("x-acs-content-sha256", &empty),
        ("x-acs-date", &now),
        ("x-acs-signature-nonce", &nonce),
        ("x-acs-version", "2021-05-21"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let signed: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
    let parameters = signature::parse_query(query).unwrap();
    let canonical = signature::canonical_request("POST", "/", &parameters, &headers, &signed, &empty);
    let authorization = format!(
        "{} Credential={},SignedHeaders={},Signature={}",
        signature::ALGORITHM,
        key["access_key_id"].as_str().unwrap(),
        signed.join(";"),
        signature::sign(key["access_key_secret"].as_str().unwrap(), &canonical)
    );
    let mut request = reqwest::Client::new().post(format!("{base}/?{query}")).header("authorization", authorization);
    for (name, value) in &headers {
        if name != "host" {
            request = request.header(name.as_str(), value.to_str().unwrap());
        }
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn generate_key(dir: &std::path::Path) -> (String, String) {
    let status = std::process::Command::new(berth_tests::berth_bin("berth"))
        .args(["keys", "generate", "--out"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let path = |name: &str| dir.join(name).display().to_string();
    (path("signing.key.pem"), path("signing.crt.pem"))
}

/// Two `berth serve` processes on one store: refused with in-process queues, sharing one SQS
/// queue (moto) otherwise, with one account key file; then a signing key rotated across them in
/// the documented order (the new key verify-only everywhere first, then signing): in the
/// middle of it one process signs with the new key and the other with the old, and each takes
/// the other's access keys, account tokens and template URLs. A process that was never told
/// of the new key (the wrong order) refuses an access key made with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_store_and_a_queue_and_rotate_signing_keys_in_the_documented_order() {
    let moto = berth_tests::Moto::start();
    // A registry that has nothing: a publish check settles `Failed` (not_found) at its first delivery.
    let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_host = registry.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let empty = axum::Router::new().fallback(|| async { axum::http::StatusCode::NOT_FOUND });
        axum::serve(registry, empty).await.unwrap()
    });
    // A delivery a killed process held comes back after 2 s.
    let visibility = aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout;
    let created = moto.sqs().create_queue().queue_name("berth-shared").attributes(visibility, "2").send().await;
    let queue = created.unwrap().queue_url.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let account_key = berth_tests::write_account_key(dir.path());
    let (old_key, old_cert) = generate_key(&dir.path().join("old"));
    let (new_key, new_cert) = generate_key(&dir.path().join("new"));
    let store = format!("file://{}", dir.path().join("store").display());
    let account_key = account_key.display().to_string();
    let common = [
        ("BERTH_STORE_URL", store.as_str()),
        ("BERTH_ACCOUNT_KEY_FILE", account_key.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("BERTH_QUEUE_VISIBILITY_SECONDS", "2"),
        ("BERTH_QUEUE_MAX_ATTEMPTS", "2"),
        ("BERTH_REGISTRY_HOST", registry_host.as_str()),
    ];
    let env = |sign: (&str, &str), previous: Option<&str>, queue: Option<&str>| {
        let mut env: Vec<(String, String)> = common.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.push(("BERTH_SIGNING_KEY_FILE".into(), sign.0.into()));
        env.push(("BERTH_SIGNING_CERT_FILE".into(), sign.1.into()));
        if let Some(previous) = previous {
            env.push(("BERTH_PREVIOUS_SIGNING_KEY_FILES".into(), previous.into()));
        }
        if let Some(queue) = queue {
            env.push(("BERTH_QUEUE_URL".into(), queue.into()));
        }
        env
    };
    let start = |name: &str, env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        BerthServe::start(&dir.path().join(name), &dir.path().join(format!("{name}.log")), 0, &env)
    };

    // In-process queues on a shared store: the second process is refused, saying why.
    let first = start("a0", &env((&old_key, &old_cert), None, None));
    let refused = std::process::Command::new(berth_tests::berth_bin("berth"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", berth_tests::free_port()), "--data-dir"])
        .arg(dir.path().join("b0"))
        .envs(env((&old_key, &old_cert), None, None))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("in-process queue") && stderr.contains("BERTH_QUEUE_URL"), "{stderr}");
    first.stop();

    // Mid-rotation, in the documented order: `a` signs with the new key (the old one verifies),
    // `b` still signs with the old one and already verifies the new one. One SQS queue.
    let a = start("a", &env((&new_key, &new_cert), Some(&old_key), Some(&queue)));
    let b = start("b", &env((&old_key, &old_cert), Some(&new_key), Some(&queue)));
    let keys = berth_shared::platform::http::account::AccountKeys::load(
        std::path::Path::new(&account_key),
        berth_shared::platform::config::DEFAULT_ACCOUNT_ISSUER,
    )
    .unwrap();
    let token = keys.issue(&berth_shared::names::AccountId::parse("acme").unwrap(), 600).unwrap();
    let http = reqwest::Client::new();
    for serve in [&a, &b] {
        let me = http.get(format!("{}/v1/account", serve.url)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(me.status(), 200, "BERTH_ACCOUNT_KEY_FILE is the key of both");
    }
    let post = |base: String, path: &'static str, body: Value| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let response = http.post(format!("{base}{path}")).bearer_auth(&token).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, key_a) = post(a.url.clone(), "/v1/access-keys", json!({})).await;
    assert_eq!(status, 201, "{key_a}");
    let (status, key_b) = post(b.url.clone(), "/v1/access-keys", json!({})).await;
    assert_eq!(status, 201, "{key_b}");
    for (base, key) in [(&b.url, &key_a), (&a.url, &key_b)] {
        let (status, answer) = computenest(base, key, "ListArtifacts", "MaxResults=10").await;
        assert_eq!(status, 200, "a key made by the other process: {answer}");
    }
    // Template URLs GetService hands out on one process open on the other.
    let service = json!({ "templates": { "t.yaml": "a: b\n" } });
    let response =
        http.put(format!("{}/v1/services/shop", a.url)).bearer_auth(&token).json(&service).send().await.unwrap();
    assert_eq!(response.status(), 201);
    for (asked, fetched, key) in [(&a, &b, &key_a), (&b, &a, &key_b)] {
        let (status, got) = computenest(&asked.url, key, "GetService", "ServiceId=shop").await;
        assert_eq!(status, 200, "{got}");
        let url = got.to_string();
        let path =
            url.split(&asked.url).nth(1).and_then(|rest| rest.split(['"', '\\']).next()).expect("a template URL");
        let body = http.get(format!("{}{path}", fetched.url)).send().await.unwrap();
        assert_eq!(body.status(), 200, "{path}");
        assert_eq!(body.text().await.unwrap(), "a: b\n");
    }
    // One queue: an event sent by `b`, which dies at once, is handled by `a` (the sweep, at
    // 30 s at the earliest, would be too late).
    let package = json!({
        "name": "web", "description": "the web front end", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] }
    });
    let (status, created) = post(b.url.clone(), "/v1/packages", package).await;
    assert_eq!(status, 201, "{created}");
    let b_log = b.log.clone();
    drop(b);
    let started = std::time::Instant::now();
    loop {
        let got: Value = http
            .get(format!("{}/v1/packages/web/versions/v_1", a.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if got["status"] != "Creating" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(25),
            "the check was not taken over: {got}\n{}",
            [&a.log, &b_log]
                .iter()
                .flat_map(|log| std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>())
                .filter(|line| !line.contains("\"served\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The wrong order: a process that does not know the new key refuses what it signed.
    a.stop();
    let stale = start("c", &env((&old_key, &old_cert), None, Some(&queue)));
    let (status, answer) = computenest(&stale.url, &key_a, "ListArtifacts", "MaxResults=10").await;
    assert!((400..500).contains(&status), "{status} {answer}");
    let (status, answer) = computenest(&stale.url, &key_b, "ListArtifacts", "MaxResults=10").await;
    assert_eq!(status, 200, "{answer}");
    // Listed as they act there: the new key's access key is Expired, not Active.
    let listed: Value = http
        .get(format!("{}/v1/access-keys", stale.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status_of = |key: &Value| {
        listed["access_keys"].as_array().unwrap().iter().find(|k| k["access_key_id"] == key["access_key_id"]).unwrap()
            ["status"]
            .clone()
    };
    assert_eq!((status_of(&key_a), status_of(&key_b)), (json!("Expired"), json!("Active")), "{listed}");
    stale.stop();
}

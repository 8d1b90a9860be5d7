//! `berth serve` as a user runs it: every function in one process, dev tokens, problem+json
//! errors, request ids in logs, no secret in logs, saved events restored, graceful shutdown.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_shared::queue::Envelope;
use berth_tests::{ChildGuard, berth_bin, free_port, wait_for_port};
use serde_json::{Value, json};

fn start(data: &Path, port: u16, log: &Path) -> ChildGuard {
    let child = Command::new(berth_bin("berth"))
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("BERTH_LOG_FORMAT", "json")
        .env_remove("BERTH_ACCOUNT_KEY_FILE")
        .env_remove("BERTH_STORE_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start berth serve");
    wait_for_port(port, Duration::from_secs(10), "berth serve");
    ChildGuard(child)
}

fn stop(mut serve: ChildGuard) {
    let pid = serve.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let start = Instant::now();
    loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            assert!(status.success(), "berth serve exited with {status} after SIGTERM");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "berth serve did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dev_token(data: &Path, account: &str) -> String {
    let output = Command::new(berth_bin("berth"))
        .args(["dev-token", "--account", account, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(output.status.success(), "dev-token: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

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

    let port = free_port();
    let serve = start(&data, port, &log);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let health: Value = http.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({ "status": "ok", "functions": ["credentials", "packages", "render", "releases"] }));

    let token = dev_token(&data, "acme");
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

    stop(serve);
    assert!(!saved.exists(), "the restored event was handled, so nothing is saved again");

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains(&token), "the account token reached the log");
    let lines: Vec<Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    let served: Vec<&Value> = lines.iter().filter(|l| l["message"] == "served").collect();
    assert_eq!(served.len(), 5, "one line per request");
    for line in &served {
        assert!(line["span"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "no request id: {line}");
    }
    assert!(served.iter().any(|l| l["span"]["request_id"] == "req-test-42"));

    // The data directory is reusable: same key, so the earlier token still works.
    let port = free_port();
    let serve = start(&data, port, &dir.path().join("serve2.log"));
    let again = http.get(format!("http://127.0.0.1:{port}/v1/account")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(again.status(), 200);
    stop(serve);
}

//! Release gates with real parts: CloudWatch alarms in moto_server and a Debian `prometheus`
//! scraping a metrics endpoint the test controls. (The zero-downtime test through HAProxy is
//! on branch `gates-zero-downtime`: it fails since the health-check merge, see the report.)

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_tests::{Moto, wait_for_port};

/// A metrics endpoint whose one gauge the test sets: `berth_test_errors VALUE`.
struct Metrics {
    port: u16,
    value: Arc<AtomicU64>,
}

impl Metrics {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let value = Arc::new(AtomicU64::new(0));
        let shown = value.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let body = format!("berth_test_errors {}\n", shown.load(Ordering::SeqCst));
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Self { port, value }
    }
}

/// Debian's prometheus scraping `target` every second.
fn prometheus(dir: &Path, target: u16) -> (ChildGuard, String) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: gates\n    \
             static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus is missing: run `make deps`");
    wait_for_port(port, Duration::from_secs(30), "prometheus");
    (ChildGuard(child), format!("http://127.0.0.1:{port}"))
}

/// The query protocol's form call to moto's CloudWatch (moto reads the service from the
/// credential scope).
async fn cloudwatch(moto: &Moto, form: &[(&str, &str)]) {
    let response = reqwest::Client::new()
        .post(&moto.endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&[[("Version", "2010-08-01")].as_slice(), form].concat()))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(status.is_success(), "CloudWatch on moto: {status} {}", response.text().await.unwrap());
}

/// A form body (`application/x-www-form-urlencoded`), as the AWS query protocol sends it.
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// Creates a release; a `409 group_changed` (the previous release freeing the group at the
/// same moment) is tried again, as the answer asks.
async fn start_release(s: &Setup, body: Value) -> String {
    for _ in 0..50 {
        let (status, answer) = s.call(reqwest::Method::POST, "/v1/releases", Some(body.clone())).await;
        if status == 409 && answer["code"] == "group_changed" {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(status, 201, "POST /v1/releases: {answer}");
        return answer["id"].as_str().unwrap().to_owned();
    }
    panic!("the group kept changing");
}

/// Waits until a release is in `step` (its phase).
async fn wait_phase(s: &Setup, id: &str, step: &str) -> Value {
    s.wait_release(id, step, |r| r["phase"]["step"] == step || r["status"] != "running").await
}

/// Waits for the automatic rollback of a failed release and checks it ran the previous
/// revision's start script on the hosts.
async fn rolled_back(s: &Setup, failed: &Value, markers: &Path, hosts: &[&str]) {
    let rollback = s.wait_release(failed["id"].as_str().unwrap(), "its rollback", |r| r["rollback"].is_string()).await
        ["rollback"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = s.finished(&rollback).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    for host in hosts {
        let ran = std::fs::read_to_string(markers.join(format!("ran-{host}"))).unwrap_or_default();
        assert_eq!(ran.trim(), format!("v1 {rollback}"), "{host} runs the previous revision again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_alarm_or_a_prometheus_alert_fails_the_release_and_rolls_it_back() {
    let moto = Moto::start();
    let metrics = Metrics::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let (_prometheus, prometheus_url) = prometheus(scratch.path(), metrics.port);
    let mut s = Setup::start(&[
        ("BERTH_ALARMS", "aws"),
        ("AWS_ENDPOINT_URL_CLOUDWATCH", &moto.endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("BERTH_PROMETHEUS_URL", &prometheus_url),
    ]);
    cloudwatch(
        &moto,
        &[
            ("Action", "PutMetricAlarm"),
            ("AlarmName", "gates-5xx"),
            ("MetricName", "5xx"),
            ("Namespace", "Berth/Tests"),
            ("Statistic", "Sum"),
            ("Period", "60"),
            ("EvaluationPeriods", "1"),
            ("Threshold", "1"),
            ("ComparisonOperator", "GreaterThanThreshold"),
        ],
    )
    .await;
    let image = s.push_image("gated", "v1", "gated\n");
    let markers = s.dir.path().join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    s.post("/v1/applications", json!({ "name": "gated" })).await;
    let group = s.post("/v1/applications/gated/groups", json!({ "name": "web" })).await;
    for version in ["v1", "v2"] {
        s.post(
            "/v1/applications/gated/deployments",
            json!({
                "name": format!("app-{version}"), "image": { "address": image },
                "working_directory": s.dir.path().join("work"),
                "stop_script": "true",
                "start_script": format!("echo \"{version} $BERTH_RELEASE_ID\" > {}/ran-$BERTH_HOST\n", markers.display()),
                "step_timeout_seconds": 60,
            }),
        )
        .await;
    }
    let join = group["join_token"].as_str().unwrap().to_owned();
    for host in ["a1", "a2"] {
        s.start_agent(&join, host);
    }
    s.wait_for_hosts("gated", "web", 2).await;
    let first = start_release(&s, json!({ "application": "gated", "deployment": "app-v1", "group": "web" })).await;
    assert_eq!(s.finished(&first).await["status"], "succeeded");

    // A CloudWatch alarm turns to ALARM while the release waits for confirmation: it fails
    // with the alarm's name, and the hosts of batch 1 go back to v1.
    let gated = |alarms: Value| {
        json!({
            "application": "gated", "deployment": "app-v2", "group": "web", "batches": 2, "pause": "manual",
            "auto_rollback": true, "alarms": alarms,
        })
    };
    let id = start_release(&s, gated(json!(["gates-5xx"]))).await;
    let paused = wait_phase(&s, &id, "awaiting_confirm").await;
    assert_eq!(paused["status"], "running", "{paused:#}");
    let first_batch = paused["batches"][0]["hosts"][0]["host"].as_str().unwrap().to_owned();
    cloudwatch(
        &moto,
        &[("Action", "SetAlarmState"), ("AlarmName", "gates-5xx"), ("StateValue", "ALARM"), ("StateReason", "test")],
    )
    .await;
    let failed = s.finished(&id).await;
    assert_eq!((failed["status"].as_str(), failed["reason"].as_str()), (Some("failed"), Some("alarm: gates-5xx")));
    rolled_back(&s, &failed, &markers, &[&first_batch]).await;

    // A Prometheus expression whose result turns non-empty does the same.
    let expression = "berth_test_errors > 0";
    let id = start_release(&s, gated(json!([{ "prometheus": expression }]))).await;
    let paused = wait_phase(&s, &id, "awaiting_confirm").await;
    assert_eq!(paused["status"], "running", "the expression is empty so far: {paused:#}");
    let first_batch = paused["batches"][0]["hosts"][0]["host"].as_str().unwrap().to_owned();
    metrics.value.store(3, Ordering::SeqCst);
    let failed = s.finished(&id).await;
    assert_eq!(failed["reason"].as_str(), Some(format!("alarm: {expression}").as_str()), "{failed:#}");
    rolled_back(&s, &failed, &markers, &[&first_batch]).await;

    // An alarm CloudWatch does not know is never a pass: shown, retried, then the release
    // fails before any batch starts.
    let body = json!({
        "application": "gated", "deployment": "app-v2", "group": "web",
        "alarms": ["no-such-alarm"], "alarm_unreachable_seconds": 4,
    });
    let id = start_release(&s, body).await;
    let held = s.wait_release(&id, "the alarm source shown unreachable", |r| r["alarms_unreachable"].is_object()).await;
    assert!(
        held["alarms_unreachable"]["error"].as_str().unwrap().contains("no alarm named 'no-such-alarm'"),
        "{held:#}"
    );
    let failed = s.finished(&id).await;
    assert!(failed["reason"].as_str().unwrap().starts_with("alarm source unreachable for "), "{failed:#}");
    assert_eq!(failed["summary"], json!({ "skipped": 2 }), "no host was stopped: {failed:#}");

    // Alarms of a kind this Berth has no source for are refused up front, naming the alarm.
    let (status, problem) = s
        .call(
            reqwest::Method::POST,
            "/v1/releases",
            Some(json!({ "application": "gated", "deployment": "app-v2", "group": "web", "alarms": ["", "x"] })),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("alarms[0]")), "{problem}");
}

//! Release gates with real parts: CloudWatch alarms in moto_server, a Debian `prometheus`
//! scraping a metrics endpoint the test controls, and a Debian `haproxy` in front of three
//! hosts' containers (FROM-scratch busybox images in the Docker engine) with a bounded load
//! of requests through it for a whole release, without and with draining.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use berth_tests::prometheus::Prometheus;
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

/// Creates a release. The previous release may be freeing the group at this moment (a
/// client that saw it end starts the next at once): Berth claims the group again then, so
/// this is one request, answered 201.
async fn start_release(s: &Setup, body: Value) -> String {
    let (status, answer) = s.call(reqwest::Method::POST, "/v1/releases", Some(body)).await;
    assert_eq!(status, 201, "POST /v1/releases: {answer}");
    answer["id"].as_str().unwrap().to_owned()
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
    let prometheus = Prometheus::start(scratch.path(), metrics.port);
    let prometheus_url = prometheus.url.clone();
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

/// HAProxy in front of `hosts`, its runtime API on TCP.
fn haproxy(dir: &Path, hosts: &[(String, u16)]) -> (ChildGuard, u16, u16) {
    let (front, api) = (free_port(), free_port());
    let servers: String = hosts.iter().map(|(h, p)| format!("  server {h} 127.0.0.1:{p}\n")).collect();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  stats socket ipv4@127.0.0.1:{api} level admin\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             frontend fe\n  bind 127.0.0.1:{front}\n  default_backend web\n\
             backend web\n  balance roundrobin\n{servers}"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("haproxy is missing: run `make deps`");
    wait_for_port(front, Duration::from_secs(30), "haproxy");
    wait_for_port(api, Duration::from_secs(30), "haproxy runtime API");
    (ChildGuard(child), front, api)
}

/// Requests through the load balancer until `stop`: (sent, failed), at most 100,000 of them.
async fn load(url: String, stop: Arc<AtomicBool>) -> (u64, u64) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap();
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (http, url, stop, sent, failed) =
                (http.clone(), url.clone(), stop.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) && sent.fetch_add(1, Ordering::SeqCst) < 100_000 {
                    let outcome = match http.get(&url).send().await {
                        Ok(r) if r.status().is_success() => match r.text().await {
                            Ok(text) if text.starts_with("page") => None,
                            other => Some(format!("body {other:?}")),
                        },
                        Ok(r) => Some(format!("HTTP {}", r.status())),
                        Err(e) => Some(format!("{e}")),
                    };
                    if let Some(why) = outcome
                        && failed.fetch_add(1, Ordering::SeqCst) < 3
                    {
                        eprintln!("a failed request: {why}");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_from_haproxy_keeps_every_request_answered_through_a_release() {
    let mut s = Setup::start(&[]);
    let hosts: Vec<(String, u16)> = ["h1", "h2", "h3"].iter().map(|h| (h.to_string(), free_port())).collect();
    let (_haproxy, front, api) = haproxy(s.dir.path(), &hosts);
    let prefix = format!("berth-gates-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let _leftovers = berth_tests::docker::DockerLeftovers {
        containers: hosts.iter().map(|(h, _)| format!("{prefix}-{h}")).collect(),
        images: Vec::new(),
    };
    s.post("/v1/applications", json!({ "name": "shop" })).await;
    let group = s.post("/v1/applications/shop/groups", json!({ "name": "web" })).await;
    let ports: String = hosts.iter().map(|(h, p)| format!("[{h}]={p} ")).collect();
    for version in ["v1", "v2", "v3"] {
        let image = s.push_image("zero", version, &format!("page {version}\n"));
        // The start script returns once the container answers (a health check of its own).
        let start = format!(
            "declare -A ports=({ports})\nport=${{ports[$BERTH_HOST]}}\n\
             docker run -d -p 127.0.0.1:$port:8080 --name {prefix}-$BERTH_HOST {image}\n\
             for i in $(seq 200); do busybox wget -q -O /dev/null http://127.0.0.1:$port/hello && exit 0; sleep 0.05; done\n\
             echo 'the container does not answer' >&2; exit 1\n"
        );
        s.post(
            "/v1/applications/shop/deployments",
            json!({
                "name": format!("web-{version}"), "image": { "address": image },
                "working_directory": s.dir.path().join("work"),
                "stop_script": format!("docker rm -f {prefix}-$BERTH_HOST || true\n"),
                "start_script": start, "step_timeout_seconds": 60,
            }),
        )
        .await;
    }
    let join = group["join_token"].as_str().unwrap().to_owned();
    for (host, _) in &hosts {
        s.start_agent(&join, host);
    }
    s.wait_for_hosts("shop", "web", 3).await;
    let first = start_release(&s, json!({ "application": "shop", "deployment": "web-v1", "group": "web" })).await;
    assert_eq!(s.finished(&first).await["status"], "succeeded");

    let url = format!("http://127.0.0.1:{front}/hello");
    let measured = |deployment: &'static str| {
        let s = &s;
        let url = url.clone();
        async move {
            let stop = Arc::new(AtomicBool::new(false));
            let load = tokio::spawn(load(url, stop.clone()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let body = json!({ "application": "shop", "deployment": deployment, "group": "web", "batches": 3 });
            let id = start_release(s, body).await;
            let done = s.finished(&id).await;
            stop.store(true, Ordering::SeqCst);
            let (sent, failed) = load.await.unwrap();
            assert_eq!(done["status"], "succeeded", "{done:#}");
            (done, sent, failed)
        }
    };
    let (_, sent_plain, failed_plain) = measured("web-v2").await;

    let lb = json!({ "haproxy": { "runtime_api": format!("127.0.0.1:{api}"), "backend": "web" }, "drain_seconds": 1 });
    let (status, changed) =
        s.call(reqwest::Method::PATCH, "/v1/applications/shop/groups/web", Some(json!({ "load_balancer": lb }))).await;
    assert_eq!((status, &changed["load_balancer"]), (200, &lb), "{changed}");
    let (done, sent_drained, failed_drained) = measured("web-v3").await;
    println!(
        "zero downtime through HAProxy, 3 hosts one at a time: without draining {failed_plain} of {sent_plain} \
         requests failed; with draining {failed_drained} of {sent_drained}"
    );
    if failed_drained > 0 {
        let log = std::fs::read_to_string(&s.berth().log).unwrap_or_default();
        let moves: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("load balancer")
                    || l.contains("draining")
                    || l.contains("release moved")
                    || l.contains("put-back")
            })
            .collect();
        eprintln!("{done:#}\n{}", moves.join("\n"));
    }
    assert_eq!(failed_drained, 0, "with draining every request is answered");
    assert!(sent_drained > 100, "the load ran through the release: {sent_drained} requests");
    for batch in done["batches"].as_array().unwrap() {
        let host = &batch["hosts"][0];
        assert_eq!(host["load_balancer"]["state"], "back", "each host was put back: {done:#}");
    }
    let answer = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(answer, "page v3\n");
}

//! `GET /metrics` as an operator scrapes it: `berth serve` with `BERTH_METRICS_LISTEN`, a few
//! requests, and Debian's real `prometheus` scraping it; the series are read back through
//! prometheus' HTTP API.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use berth_tests::berth::BerthServe;
use berth_tests::free_port;
use berth_tests::prometheus::Prometheus;
use serde_json::{Value, json};

#[tokio::test]
async fn prometheus_scrapes_requests_store_and_queue_requests_and_polling_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let serve = BerthServe::start(
        &dir.path().join("data"),
        &dir.path().join("serve.log"),
        0,
        &[("BERTH_METRICS_LISTEN", &metrics_listen)],
    );
    let (base, http) = (serve.url.clone(), reqwest::Client::new());
    let prometheus = Prometheus::start(dir.path(), metrics_port);

    // Not on the public address: the figures are the operator's.
    assert_eq!(http.get(format!("{base}/metrics")).send().await.unwrap().status(), 404);

    for _ in 0..3 {
        assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    }
    let token = serve.dev_token("acme");
    let post = |path: &'static str, bearer: String, body: Value| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let answer = http.post(format!("{base}{path}")).bearer_auth(bearer).json(&body).send().await.unwrap();
            assert!(answer.status().is_success(), "POST {path}: {}", answer.status());
            answer.json::<Value>().await.unwrap()
        }
    };
    post("/v1/applications", token.clone(), json!({ "name": "shop" })).await;
    let group = post("/v1/applications/shop/groups", token.clone(), json!({ "name": "prod" })).await;
    let join_token = group["join_token"].as_str().expect("a join token").to_owned();
    let registered = post("/v1/agent/register", join_token, json!({ "host": "h1" })).await;
    let host_token = registered["host_token"].as_str().expect("a host token").to_owned();
    // Tenant ids and tokens in paths never become labels: these two count under one template.
    for secret in ["tenant-secret-1", "tenant-secret-2"] {
        let answer = http.get(format!("{base}/v1/applications/{secret}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(answer.status(), 404);
    }

    let value = |expression: &'static str| {
        let prometheus = &prometheus;
        async move {
            let found = prometheus.query(expression).await;
            assert!(found.len() <= 1, "{expression}: {found:?}");
            found.first().map(|(_, value)| *value)
        }
    };
    let one = |expression: &'static str| {
        let value = &value;
        async move { value(expression).await.unwrap_or_else(|| panic!("no series {expression}")) }
    };
    // The last requests' series, once scraped, says every earlier one was scraped too.
    let app = r#"berth_http_requests_total{method="GET",route="/v1/applications/{app}",status="404"}"#;
    let started = Instant::now();
    while value(app).await != Some(2.0) {
        assert!(started.elapsed() < Duration::from_secs(20), "prometheus never scraped the requests");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let healthz = prometheus.query(r#"berth_http_requests_total{route="/healthz"}"#).await;
    assert_eq!(healthz.len(), 1, "{healthz:?}");
    assert_eq!(healthz[0].1, 3.0, "three /healthz answers: {healthz:?}");
    assert_eq!(
        (&healthz[0].0["job"], &healthz[0].0["method"], &healthz[0].0["status"]),
        (&json!("berth"), &json!("GET"), &json!("200"))
    );
    assert_eq!(one(r#"berth_http_requests_total{route="/v1/applications",status="201"}"#).await, 1.0);
    assert_eq!(one(r#"berth_http_requests_total{route="/v1/agent/register",status="200"}"#).await, 1.0);
    let labels = prometheus.query("berth_http_requests_total").await;
    assert!(!format!("{labels:?}").contains("tenant-secret"), "a raw path is a label: {labels:?}");
    // The writes went to the store; the functions' consumers wait on their queues.
    assert!(one(r#"berth_store_requests_total{kind="put"}"#).await >= 3.0);
    assert!(one(r#"berth_store_requests_total{kind="get"}"#).await >= 1.0);
    assert!(one(r#"berth_queue_requests_total{kind="receive"}"#).await >= 1.0);

    // A held poll, with no job for the host: it counts as polling while held, not after.
    let poll = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}/v1/agent/jobs?wait_seconds=5&host=h1")).bearer_auth(host_token).send().await }
    });
    let started = Instant::now();
    while value("berth_hosts_polling").await != Some(1.0) {
        assert!(started.elapsed() < Duration::from_secs(4), "the held poll never counted as polling");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let answer = poll.await.unwrap().unwrap();
    assert_eq!(answer.status(), 204, "no job for the host");
    let started = Instant::now();
    while one("berth_hosts_polling").await != 0.0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the answered poll still counts as polling");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    serve.stop();
}

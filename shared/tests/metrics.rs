//! What the metrics count, through the public API: requests by route template and status
//! through a finished router, store requests by kind through every store. (Here rather than
//! in the modules: the counting is wired into `store` and `runtime`, which `metrics` may not
//! import back.)

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use berth_shared::platform::metrics::prometheus_builder;
use berth_shared::platform::runtime::finish;
use berth_shared::platform::store::DocumentStore;
use tower::ServiceExt as _;

async fn boom() -> &'static str {
    panic!("boom")
}

#[tokio::test]
async fn answers_are_counted_by_route_template_and_status_never_by_raw_path() {
    let recorder = prometheus_builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let router = finish(
        Router::new().route("/v1/releases/{id}", get(|| async { "ok" })).route("/boom", get(boom)),
        vec!["test"],
    );
    for uri in ["/v1/releases/tenant-secret-1", "/v1/releases/tenant-secret-2", "/nowhere/token-xyz", "/boom"] {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        router.clone().oneshot(request).await.unwrap();
    }
    let request = Request::builder().method("FOO").uri("/v1/releases/x").body(Body::empty()).unwrap();
    router.clone().oneshot(request).await.unwrap();
    let text = handle.render();
    for line in [
        r#"berth_http_requests_total{method="GET",route="/v1/releases/{id}",status="200"} 2"#,
        r#"berth_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"berth_http_requests_total{method="GET",route="/boom",status="500"} 1"#,
        r#"berth_http_requests_total{method="other",route="/v1/releases/{id}",status="405"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    for leaked in ["tenant-secret", "token-xyz", "nowhere", "FOO"] {
        assert!(!text.contains(leaked), "{leaked} is a label: {text}");
    }
}

#[tokio::test]
async fn every_store_request_is_counted_by_kind() {
    let recorder = prometheus_builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let dir = tempfile::tempdir().unwrap();
    for store in [DocumentStore::in_memory(), DocumentStore::local(dir.path().to_path_buf()).unwrap()] {
        let version = store.create("a/b.json", &1).await.unwrap();
        store.update("a/b.json", &2, &version).await.unwrap();
        store.get::<u32>("a/b.json").await.unwrap();
        store.list::<u32>("a").await.unwrap();
        store.delete("a/b.json").await.unwrap();
    }
    let text = handle.render();
    // Per store: create and update are puts; the get and the listing's get are gets.
    for (kind, count) in [("put", 4), ("get", 4), ("list", 2), ("delete", 2)] {
        let line = format!("berth_store_requests_total{{kind=\"{kind}\"}} {count}\n");
        assert!(text.contains(&line), "{line} in {text}");
    }
}

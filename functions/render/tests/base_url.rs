//! Where `file::` download URLs point, through the render router: `BERTH_PUBLIC_URL` when set,
//! else `X-Forwarded-*` only when `BERTH_TRUST_FORWARDED=true`, else `Host`. And the error
//! bodies of the router stay small whatever the request sends.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_shared::names::AccountId;
use berth_shared::package::{FileRecord, PackageType, PackageVersion, VersionStatus, package_path, version_path};
use berth_shared::platform::config::Config;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::in_process;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn acme() -> AccountId {
    AccountId::parse("acme").unwrap()
}

/// A context whose configuration `change` adjusts, with a File package `bundle` uploaded.
async fn context(change: impl FnOnce(&mut Config)) -> FunctionContext {
    let mut context = FunctionContext::ephemeral();
    let mut config = (*context.config).clone();
    change(&mut config);
    context.config = Arc::new(config);
    let store = &context.store;
    store.put(&package_path(&acme(), "bundle"), &json!({ "name": "bundle" })).await.unwrap();
    let version = PackageVersion {
        package: "bundle".into(),
        version: "v_1".into(),
        number: 1,
        package_type: PackageType::File,
        status: VersionStatus::Available,
        images: Vec::new(),
        file: Some(FileRecord { file_name: "app.tar.gz".into(), size: Some(5), digest: Some(DIGEST.into()) }),
        reason: None,
        label: None,
        created_at: String::new(),
        updated_at: String::new(),
        untrusted: None,
    };
    store.put(&version_path(&acme(), "bundle", "v_1"), &version).await.unwrap();
    context
}

async fn call(context: &FunctionContext, request: Request<Body>) -> (StatusCode, Value, usize) {
    let answer = in_process::send(&berth_render::router(context.clone()), request).await;
    (answer.status, answer.json(), answer.body.len())
}

/// `POST /v1/render` of a template holding one `file::` identifier, with `headers`.
fn render(context: &FunctionContext, headers: &[(&str, &str)], body: Option<String>) -> Request<Body> {
    let token = context.account_keys.issue(&acme(), 60).unwrap();
    let body = body.unwrap_or_else(|| {
        json!({
            "template": "url: {{ computenest::file::bundle }}",
            "relations": { "computenest::file::bundle": { "package": "bundle", "version": "latest" } },
        })
        .to_string()
    });
    let mut request = Request::post("/v1/render")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(body)).unwrap()
}

/// The base of the download URL a render with `headers` hands out.
async fn base(context: &FunctionContext, headers: &[(&str, &str)]) -> String {
    let (status, answer, _) = call(context, render(context, headers, None)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let url = answer["rendered"].as_str().unwrap().strip_prefix("url: ").unwrap();
    let (base, rest) = url.split_once("/v1/downloads/").expect("a download URL");
    assert!(rest.ends_with("/app.tar.gz"), "{url}");
    base.to_owned()
}

const FORWARDED: [(&str, &str); 3] =
    [("host", "berth.internal:8080"), ("x-forwarded-host", "evil.test"), ("x-forwarded-proto", "https")];

#[tokio::test]
async fn by_default_the_host_header_is_used_and_forwarded_headers_are_ignored() {
    let context = context(|_| {}).await;
    assert_eq!(base(&context, &[("host", "berth.test:8080")]).await, "http://berth.test:8080");
    assert_eq!(base(&context, &FORWARDED).await, "http://berth.internal:8080");
    // A Host that would change what the URL means is refused, never spliced in.
    for host in ["evil.test/x?", "user@evil.test", "evil.test#", "a b"] {
        let (status, problem, _) = call(&context, render(&context, &[("host", host)], None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {problem}");
        assert_eq!((problem["code"].as_str(), problem["field"].as_str()), (Some("invalid_host"), Some("Host")));
    }
}

#[tokio::test]
async fn forwarded_headers_are_used_only_when_trusted() {
    let context = context(|c| c.trust_forwarded = true).await;
    assert_eq!(base(&context, &FORWARDED).await, "https://evil.test");
    // The first entry of a proxy chain; a proto other than http(s) is http; no X-Forwarded-Host: Host.
    let chain = [("host", "b.test"), ("x-forwarded-host", "a.test, proxy.test"), ("x-forwarded-proto", "https,http")];
    assert_eq!(base(&context, &chain).await, "https://a.test");
    assert_eq!(base(&context, &[("host", "b.test"), ("x-forwarded-proto", "gopher")]).await, "http://b.test");
    assert_eq!(base(&context, &[("host", "b.test"), ("x-forwarded-proto", "https")]).await, "https://b.test");
    let (status, problem, _) =
        call(&context, render(&context, &[("host", "b.test"), ("x-forwarded-host", "evil.test/x")], None)).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::BAD_REQUEST, Some("X-Forwarded-Host")));
}

#[tokio::test]
async fn a_public_url_always_wins() {
    let context = context(|c| {
        c.public_url = Some("https://berth.example.com/prod".into());
        c.trust_forwarded = true;
    })
    .await;
    assert_eq!(base(&context, &FORWARDED).await, "https://berth.example.com/prod");
    assert_eq!(base(&context, &[("host", "berth.test")]).await, "https://berth.example.com/prod");
    // Whatever Host says, even one that would be refused otherwise.
    assert_eq!(base(&context, &[("host", "evil.test/x?")]).await, "https://berth.example.com/prod");
    // It is what the configuration reads, too.
    let config = Config::from_lookup(|name| (name == "BERTH_PUBLIC_URL").then(|| "https://b.example.com/".into()));
    assert_eq!(config.unwrap().public_url.as_deref(), Some("https://b.example.com"));
}

#[tokio::test]
async fn a_huge_wrong_typed_field_answers_a_small_problem() {
    let context = context(|_| {}).await;
    let huge = "A".repeat(10 << 20);
    for (body, field) in [
        (format!(r#"{{"template": "x", "dry_run": "{huge}"}}"#), "dry_run"),
        (format!(r#"{{"template": "x", "relations": {{"{huge}": 1}}}}"#), ""),
        // An unknown field is named by its (cut) name.
        (format!(r#"{{"template": "x", "{huge}": 1}}"#), ""),
    ] {
        let (status, problem, length) = call(&context, render(&context, &[("host", "b.test")], Some(body))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert!(length < 2048, "{length} bytes: {problem}");
        if !field.is_empty() {
            assert_eq!(problem["field"], field, "{problem}");
        }
        assert!(!problem.to_string().contains(&"A".repeat(201)), "{problem}");
    }
    // Past the body limit: a 413 as small.
    let body = format!(r#"{{"template": "x", "dry_run": "{}"}}"#, "A".repeat(20 << 20));
    let (status, problem, length) = call(&context, render(&context, &[("host", "b.test")], Some(body))).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body")));
    assert!(length < 2048, "{length} bytes");
}

#[tokio::test]
async fn a_download_of_another_huge_file_name_is_a_small_problem() {
    let context = context(|_| {}).await;
    let (status, answer, _) = call(&context, render(&context, &[("host", "b.test")], None)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let url = answer["rendered"].as_str().unwrap().strip_prefix("url: http://b.test").unwrap().to_owned();
    let path = url.replace("/app.tar.gz", &format!("/{}", "n".repeat(30_000)));
    let (status, problem, length) = call(&context, Request::get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert!(length < 2048, "{length} bytes");
}

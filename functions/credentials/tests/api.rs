//! The credentials API in-process: shapes, rules and problem+json errors.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_shared::names::AccountId;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::in_process;
use serde_json::{Value, json};

async fn call(context: &FunctionContext, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let answer = in_process::send(&berth_credentials::router(context.clone()), request).await;
    (answer.status, answer.content_type.clone(), answer.json())
}

fn post_key(context: &FunctionContext, account: &str, body: &str) -> Request<Body> {
    let token = context.account_keys.issue(&AccountId::parse(account).unwrap(), 60).unwrap();
    Request::post("/v1/registry/credentials")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn a_push_key_has_everything_a_provider_needs() {
    let context = FunctionContext::ephemeral();
    let (status, _, key) = call(&context, post_key(&context, "acme", r#"{"purpose":"push","ttl_seconds":600}"#)).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    assert_eq!(key["namespace"], "acme");
    assert_eq!(key["username"], "acme");
    assert_eq!(key["registry"], "127.0.0.1:5000");
    assert_eq!(key["docker_login"], "docker login --username acme --password-stdin 127.0.0.1:5000");
    assert_eq!(key["available_resources"], json!([{ "repository_name": "*", "path": "127.0.0.1:5000/acme/*" }]));
    let config: Value =
        serde_json::from_slice(&STANDARD.decode(key["dockerconfigjson"].as_str().unwrap()).unwrap()).unwrap();
    let entry = &config["auths"]["127.0.0.1:5000"];
    assert_eq!(entry["username"], "acme");
    assert_eq!(entry["password"], key["password"]);
    assert_eq!(
        STANDARD.decode(entry["auth"].as_str().unwrap()).unwrap(),
        format!("acme:{}", key["password"].as_str().unwrap()).into_bytes()
    );
    assert!(key["expires_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn every_rule_violation_is_a_problem_naming_its_field() {
    let context = FunctionContext::ephemeral();
    let cases = [
        (r#"{"purpose":"admin"}"#, "purpose", "invalid_field"),
        (r#"{}"#, "purpose", "required"),
        (r#"{"purpose":"push","ttl_seconds":59}"#, "ttl_seconds", "out_of_range"),
        (r#"{"purpose":"push","ttl_seconds":43201}"#, "ttl_seconds", "out_of_range"),
        (r#"{"purpose":"push","ttl_seconds":-1}"#, "ttl_seconds", "invalid_field"),
        (r#"{"purpose":"pull","repositories":[]}"#, "repositories", "empty"),
        (r#"{"purpose":"pull","repositories":["ok","../etc"]}"#, "repositories[1]", "invalid_repository"),
        (r#"{"purpose":"pull","repositories":["App"]}"#, "repositories[0]", "invalid_repository"),
        (r#"{"purpose":"pull","repositories":["a%2Fb"]}"#, "repositories[0]", "invalid_repository"),
        (r#"{"purpose":"pull","namespace":"bravo"}"#, "namespace", "invalid_field"),
        (r#"{"purpose":"pull""#, "body", "malformed_json"),
    ];
    for (body, field, code) in cases {
        let (status, content_type, problem) = call(&context, post_key(&context, "acme", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{body}");
        assert_eq!(
            (problem["field"].as_str(), problem["code"].as_str()),
            (Some(field), Some(code)),
            "{body}: {problem}"
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("r{i}")).collect();
    let body = json!({ "purpose": "pull", "repositories": many }).to_string();
    let (status, _, problem) = call(&context, post_key(&context, "acme", &body)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("too_many")));
    let huge = format!(r#"{{"purpose":"pull","repositories":["{}"]}}"#, "a".repeat(2 << 20));
    let (status, _, problem) = call(&context, post_key(&context, "acme", &huge)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")));
}

#[tokio::test]
async fn keys_need_an_account_token_and_the_token_endpoint_basic_credentials() {
    let context = FunctionContext::ephemeral();
    let request = Request::post("/v1/registry/credentials")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"purpose":"push"}"#))
        .unwrap();
    let (status, content_type, problem) = call(&context, request).await;
    assert_eq!(
        (status, content_type.as_deref(), problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("application/problem+json"), Some("unauthenticated"))
    );
    let (status, _, _) =
        call(&context, Request::get("/v1/registry/token?service=berth-registry").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, jwks) = call(&context, Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kid"], context.signing.current().kid());
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
}

/// A repository named like the namespace is refused where it can be named: a key cannot be
/// limited to it, and the token endpoint answers a 400 naming the scope instead of granting it.
#[tokio::test]
async fn the_namespace_itself_is_not_a_repository() {
    let context = FunctionContext::ephemeral();
    let (status, _, problem) =
        call(&context, post_key(&context, "acme", r#"{"purpose":"pull","repositories":[""]}"#)).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::BAD_REQUEST, Some("repositories[0]")), "{problem}");
    let (_, _, key) = call(&context, post_key(&context, "acme", r#"{"purpose":"push"}"#)).await;
    let basic = STANDARD.encode(format!("acme:{}", key["password"].as_str().unwrap()));
    let token = |scope: &str| {
        Request::get(format!("/v1/registry/token?service=berth-registry&scope={scope}"))
            .header("authorization", format!("Basic {basic}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, problem) = call(&context, token("repository:acme:pull")).await;
    assert_eq!(
        (status, problem["field"].as_str(), problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scope"), Some("repository_is_namespace")),
        "{problem}"
    );
    let (status, _, answer) = call(&context, token("repository:acme/app:pull")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

//! What the engine test and the fan-out benchmark share: a call into the router in process.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// `method uri` as `bearer`, with a JSON body if given; the status and the JSON answer
/// (`Null` when the answer is not JSON).
pub async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, bytes) = call_bytes(router, method, uri, bearer, body.map(|b| b.to_string().into_bytes())).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// [`call`] with the JSON body already serialized, answering the body's bytes: the fan-out
/// benchmark's agents parse their jobs straight into typed values, as real agents do.
pub async fn call_bytes(
    router: &axum::Router,
    method: Method,
    uri: &str,
    bearer: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, axum::body::Bytes) {
    let mut request = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {bearer}"));
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body)
        }
        None => Body::empty(),
    };
    let response = router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    (status, axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap())
}

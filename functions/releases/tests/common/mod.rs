//! What the engine test and the fan-out benchmark share: a call into the router in process.

use axum::http::{Method, StatusCode};
use berth_shared::platform::http::in_process;
use serde_json::Value;

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
    let answer = in_process::send(router, in_process::request(method, uri, bearer, body)).await;
    (answer.status, answer.body)
}

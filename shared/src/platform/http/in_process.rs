//! Calling a router in process, as the functions' in-process tests do: one request in, the
//! whole answer out. Built for this crate's tests and, with the `testing` feature, for the
//! other crates' tests; never part of a function.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// The most of an answer a test reads (the fan-out tests' job lists are the largest).
const MAX_ANSWER_BYTES: usize = 1 << 30;

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The `content-type` header, if it is one and readable.
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; `Null` when it is not JSON (an empty body, bytes of a file).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `request` to `router` and reads its answer.
pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let Ok(response) = router.clone().oneshot(request).await;
    let status = response.status();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES).await.expect("the answer is read whole");
    Answer { status, content_type, body }
}

/// `method uri` as `bearer`, with a JSON body if given.
pub fn request(method: Method, uri: &str, bearer: &str, json: Option<Vec<u8>>) -> Request<Body> {
    let builder = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {bearer}"));
    let request = match json {
        Some(json) => builder.header("content-type", "application/json").body(Body::from(json)),
        None => builder.body(Body::empty()),
    };
    request.expect("a test builds a valid request")
}

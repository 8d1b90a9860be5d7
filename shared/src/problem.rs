//! RFC 9457 problem details: the one shape every Berth API error takes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An API error as the caller sees it: status, a stable machine `code`, a human `detail`,
/// and the request field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A URI naming the problem type; stable per `code`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code, repeated in the body as RFC 9457 asks.
    pub status: u16,
    /// Explanation of this occurrence; never contains a secret.
    pub detail: String,
    /// Stable code for programs to match on, e.g. `invalid_field`.
    pub code: String,
    /// The offending request field (JSON pointer-ish dotted path), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every occurrence when a request has several faults at once (a template's identifiers),
    /// each an object with at least `code` and `message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<serde_json::Value>,
}

impl Problem {
    /// A problem with the given status, stable code and detail.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:berth:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            field: None,
            problems: Vec::new(),
        }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Lists every fault of the request.
    pub fn with_problems(mut self, problems: Vec<serde_json::Value>) -> Self {
        self.problems = problems;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problem_is_problem_json_with_code_and_field() {
        let response = Problem::new(StatusCode::BAD_REQUEST, "invalid_field", "ttl too long")
            .with_field("ttl_seconds")
            .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["code"], "invalid_field");
        assert_eq!(value["field"], "ttl_seconds");
        assert_eq!(value["status"], 400);
        assert_eq!(value["type"], "urn:berth:problem:invalid_field");
    }
}

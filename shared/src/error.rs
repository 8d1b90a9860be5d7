//! `ApiError`: the one error type at the HTTP boundary, mapped once to a [`Problem`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Everything a handler can fail with. Each variant maps to exactly one status and code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or bad credentials (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// A request field breaks a rule (400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// Stable code of the rule broken.
        code: &'static str,
        /// What is wrong, for humans.
        message: String,
    },
    /// The named thing does not exist in the caller's namespace (404).
    #[error("{0} not found")]
    NotFound(String),
    /// The route exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The state does not allow it now (409).
    #[error("{message}")]
    Conflict {
        /// Stable code, e.g. `already_exists`.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// A body or field over its limit (413).
    #[error("{field} is larger than {limit} bytes")]
    TooLarge {
        /// The field or `body`.
        field: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A template cannot be rendered: every offending identifier with its line:column (422).
    #[error("{field}: {} problem(s)", problems.len())]
    Template {
        /// The template field or name.
        field: String,
        /// Every problem, in template order.
        problems: Vec<crate::template::TemplateProblem>,
    },
    /// A backing service (store, queue, registry) did not answer (503).
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// A bug: the detail is logged, the caller gets a generic message (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming the field, the rule's code and the reason.
    pub fn invalid(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), code, message: message.into() }
    }

    /// The problem document for this error.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Unauthenticated(m) => Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", m),
            Self::Forbidden(m) => Problem::new(StatusCode::FORBIDDEN, "forbidden", m),
            Self::Invalid { field, code, message } => {
                Problem::new(StatusCode::BAD_REQUEST, code, message).with_field(field)
            }
            Self::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found")),
            Self::MethodNotAllowed => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take this method; see infra/openapi.yaml",
            ),
            Self::Conflict { code, message } => Problem::new(StatusCode::CONFLICT, code, message),
            Self::TooLarge { field, limit } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("{field} is larger than the limit of {limit} bytes"),
            )
            .with_field(field),
            Self::Template { field, problems } => template_problem(field, problems),
            Self::Unavailable(what) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{what} is unavailable; retry later"),
            ),
            Self::Internal(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; it has been logged")
            }
        }
    }
}

/// Most template problems listed in one answer; the detail counts the rest.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

fn template_problem(field: &str, problems: &[crate::template::TemplateProblem]) -> Problem {
    let shown: Vec<String> = problems.iter().take(3).map(ToString::to_string).collect();
    let more = problems.len().saturating_sub(shown.len());
    let mut detail = format!("{} identifier problem(s) in {field}: {}", problems.len(), shown.join("; "));
    if more > 0 {
        detail.push_str(&format!("; and {more} more"));
    }
    let listed = problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(|p| {
            serde_json::json!({
                "line": p.position.line, "column": p.position.column, "code": p.code,
                "identifier": p.identifier, "message": p.message,
            })
        })
        .collect();
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "template_problems", detail).with_field(field).with_problems(listed)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let unauthenticated = matches!(self, Self::Unauthenticated(_));
        let mut response = self.to_problem().into_response();
        if unauthenticated {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"berth\""));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(path) => Self::NotFound(path),
            StoreError::AlreadyExists(path) => {
                Self::Conflict { code: "already_exists", message: format!("{path} already exists") }
            }
            StoreError::Conflict(path) => Self::Conflict {
                code: "concurrent_update",
                message: format!("{path} was changed by another request; retry"),
            },
            StoreError::Backend(e) => {
                tracing::error!(error = %e, "object store failed");
                Self::Unavailable("object store")
            }
            e @ StoreError::Corrupt { .. } => Self::Internal(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        tracing::error!(error = %error, "event queue failed");
        Self::Unavailable("event queue")
    }
}

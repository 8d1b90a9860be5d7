//! `ApiError`: the one error type at the HTTP boundary, mapped once to a [`Problem`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::platform::http::problem::{MAX_SHOWN_CHARS, Problem, bounded_text, shown};
use crate::platform::queue::QueueError;
use crate::platform::store::StoreError;

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
    /// The request's body did not arrive in time (408): the whole of it is due within the
    /// request deadline, shorter before the caller is authenticated.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// A template cannot be rendered: every offending identifier with its line:column (422).
    #[error("{field}: {} problem(s)", problems.total())]
    Template {
        /// The template field or name.
        field: String,
        /// Every problem, in template order.
        problems: crate::platform::http::problem::TextProblems,
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
            Self::NotFound(what) => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{} not found", bounded_text(what, MAX_SHOWN_CHARS)),
            ),
            Self::MethodNotAllowed => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take this method; see infra/openapi.yaml",
            ),
            Self::Conflict { code, message } => Problem::new(StatusCode::CONFLICT, code, message),
            Self::TooLarge { field, limit } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("{} is larger than the limit of {limit} bytes", shown(field)),
            )
            .with_field(field),
            Self::RequestTimeout => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive within the request deadline; send it whole, without pauses",
            )
            .with_field("body"),
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

/// Most characters of one listed template problem's message.
const MAX_PROBLEM_MESSAGE_CHARS: usize = 500;

fn template_problem(field: &str, problems: &crate::platform::http::problem::TextProblems) -> Problem {
    // Identifiers are the template's text: shown bounded, like any request value.
    let message = |p: &crate::platform::http::problem::TextProblem| {
        bounded_text(&p.message, MAX_PROBLEM_MESSAGE_CHARS).into_owned()
    };
    let first: Vec<String> =
        problems.iter().take(3).map(|p| format!("{}: {}: {}", p.position, shown(&p.identifier), message(p))).collect();
    let more = problems.total().saturating_sub(first.len());
    let mut detail = format!("{} identifier problem(s) in {}: {}", problems.total(), shown(field), first.join("; "));
    if more > 0 {
        detail.push_str(&format!("; and {more} more"));
    }
    let listed = problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "line": p.position.line, "column": p.position.column, "code": p.code,
                "identifier": shown(&p.identifier), "message": message(p),
            })
        })
        .collect();
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "template_problems", detail).with_field(field).with_problems(listed)
}

impl From<crate::platform::work::Busy> for ApiError {
    fn from(_: crate::platform::work::Busy) -> Self {
        Self::Unavailable("the request parser")
    }
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

/// Store errors name internal object paths (`accounts/acme/packages/web.json`): the path is
/// logged, the caller gets the status and code with a message that names no path.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(path) => {
                tracing::info!(path = %path, "store: document not found");
                Self::NotFound("the resource".into())
            }
            StoreError::AlreadyExists(path) => {
                tracing::info!(path = %path, "store: document already exists");
                Self::Conflict { code: "already_exists", message: "the resource already exists".into() }
            }
            StoreError::Conflict(path) => {
                tracing::info!(path = %path, "store: concurrent update");
                Self::Conflict {
                    code: "concurrent_update",
                    message: "the resource was changed by another request; retry".into(),
                }
            }
            e if e.is_unavailable() => {
                tracing::error!(error = %e, "object store failed");
                Self::Unavailable("object store")
            }
            // Internal: the detail (with the path) is logged, the body is generic.
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        tracing::error!(error = %error, "event queue failed");
        Self::Unavailable("event queue")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn store_errors_never_show_their_path() {
        let path = "accounts/acme/packages/web.json";
        let errors = [
            StoreError::NotFound(path.into()),
            StoreError::AlreadyExists(path.into()),
            StoreError::Conflict(path.into()),
            StoreError::Corrupt { path: path.into(), reason: "expected value at line 1".into() },
            StoreError::Backend(format!("{path}: permission denied")),
        ];
        let expected = [
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::CONFLICT, "already_exists"),
            (StatusCode::CONFLICT, "concurrent_update"),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ];
        for (error, (status, code)) in errors.into_iter().zip(expected) {
            let response = ApiError::from(error).into_response();
            assert_eq!(response.status(), status);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(!body.contains("accounts/") && !body.contains("web.json"), "{body}");
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(value["code"], code, "{body}");
        }
    }

    #[test]
    fn echoed_values_are_bounded() {
        let huge = "v".repeat(1 << 20);
        for error in [
            ApiError::NotFound(format!("service {huge}")),
            ApiError::invalid(format!("relations.{huge}"), "invalid_field", format!("'{huge}' is not valid")),
            ApiError::TooLarge { field: huge.clone(), limit: 10 },
            ApiError::Conflict { code: "already_exists", message: format!("package '{huge}' already exists") },
        ] {
            let problem = error.to_problem();
            let shown = serde_json::to_string(&problem).unwrap();
            assert!(shown.len() < 2048, "{} bytes", shown.len());
            assert!(!shown.contains(&"v".repeat(MAX_SHOWN_CHARS + 1)), "{shown}");
        }
    }

    #[test]
    fn template_problems_are_bounded() {
        let problem = crate::platform::http::problem::TextProblem {
            position: crate::platform::http::problem::Position { line: 1, column: 1 },
            code: "unknown_kind",
            identifier: format!("{{{{ computenest::{}", "\u{202e}".repeat(300)),
            message: format!("unknown kind '{}'", "k".repeat(10_000)),
        };
        let shown = serde_json::to_string(&template_problem("template", &{
            let mut problems = crate::platform::http::problem::TextProblems::default();
            for _ in 0..5 {
                problems.push(problem.clone());
            }
            problems
        }))
        .unwrap();
        assert!(shown.len() < 16 << 10, "{} bytes", shown.len());
        assert!(!shown.contains('\u{202e}') && !shown.contains(&"k".repeat(MAX_SHOWN_CHARS + 1)));
    }
}

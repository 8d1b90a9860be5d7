//! `CnError`: the one error type of the Compute Nest API boundary, answered as Alibaba Cloud's
//! SDKs expect: a 4xx/5xx with `{"Code", "Message", "RequestId"}`. Callers (computenest-cli)
//! branch on `Code`, so each refusal has the code Compute Nest gives it.

use axum::http::StatusCode;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::problem::bounded_text;
use berth_shared::platform::store::StoreError;
use serde::Serialize;

/// Longest message of an error answer (characters).
const MAX_MESSAGE_CHARS: usize = 1000;

/// A refusal: status, Compute Nest code, message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CnError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl CnError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: bounded_text(&message.into(), MAX_MESSAGE_CHARS).into_owned() }
    }

    /// A required parameter is absent (400 `MissingParameter`).
    pub fn missing(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }

    /// A parameter breaks a rule (400 `InvalidParameter`).
    pub fn invalid(name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameter", format!("The parameter \"{name}\" is invalid: {why}"))
    }

    /// The named thing does not exist (404 `EntityNotExist.<what>`).
    pub fn not_found(what: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("EntityNotExist.{what}"), message)
    }

    /// A refusal of the signature or key (`code` as Compute Nest names it).
    pub fn auth(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::new(status, code, message)
    }

    /// A state that does not allow the operation (400 `OperationDenied.<what>`).
    pub fn denied(what: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("OperationDenied.{what}"), message)
    }

    /// A bug or a backend that failed: logged here, the caller gets no detail.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "Compute Nest request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "The request processing has failed due to some unknown error.",
        )
    }
}

impl From<StoreError> for CnError {
    fn from(error: StoreError) -> Self {
        if !error.is_unavailable() {
            return Self::internal(error);
        }
        tracing::warn!(%error, "store unavailable");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "The store is unavailable; retry later.")
    }
}

/// Berth's own refusals (a package rule, a service import) in Compute Nest's terms.
impl From<ApiError> for CnError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Invalid { field, message, .. } => Self::invalid(&field, message),
            ApiError::NotFound(what) => Self::new(StatusCode::NOT_FOUND, "EntityNotExist", format!("{what} not found")),
            ApiError::Conflict { code, message } => {
                Self::new(StatusCode::CONFLICT, format!("OperationDenied.{code}"), message)
            }
            ApiError::TooLarge { field, limit } => Self::invalid(&field, format!("larger than {limit} bytes")),
            ApiError::RequestTimeout => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                "The request did not arrive in time; send it whole, without pauses.",
            ),
            ApiError::Unavailable(what) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!("{what} is unavailable; retry later."),
            ),
            other => Self::internal(other),
        }
    }
}

/// The body of an error answer.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    #[serde(rename = "Code")]
    pub code: &'a str,
    #[serde(rename = "Message")]
    pub message: &'a str,
    #[serde(rename = "RequestId")]
    pub request_id: &'a str,
}

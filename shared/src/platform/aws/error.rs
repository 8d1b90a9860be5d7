//! Why an AWS call did not succeed, and reading the services' error answers.

use std::time::Duration;

use super::{Answer, EndpointError};

/// Longest code or message kept from an error answer.
const MAX_ERROR_CHARS: usize = 1000;

/// Codes of a throttled call.
const THROTTLING: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
];

/// Why a call did not succeed. Displays as one line that starts with the operation.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The endpoint configured is not one to call.
    #[error("{operation}: {source}")]
    Endpoint {
        /// The operation.
        operation: &'static str,
        #[source]
        source: EndpointError,
    },
    /// No credentials could be had.
    #[error("{operation}: credentials: {reason}")]
    Credentials {
        /// The operation.
        operation: &'static str,
        /// The provider's error and its causes, as one line.
        reason: String,
        #[source]
        source: object_store::Error,
    },
    /// The request could not be made or signed.
    #[error("{operation}: {reason}")]
    Request {
        /// The operation.
        operation: &'static str,
        /// Why, as one line.
        reason: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer: no connection, or the connection failed.
    #[error("{operation}: {reason}")]
    Transport {
        /// The operation.
        operation: &'static str,
        /// The HTTP client's error and its causes, as one line.
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    /// No answer within the call's time, retries included.
    #[error("{operation}: no answer within {timeout:?}")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// The call's bound.
        timeout: Duration,
    },
    /// The service refused the call.
    #[error("{operation}: HTTP {status}: {code}: {message}")]
    Service {
        /// The operation.
        operation: &'static str,
        /// The answer's HTTP status.
        status: u16,
        /// The service's error code (`QueueDoesNotExist`, `ValidationError`, `GoneException`).
        code: String,
        /// The service's message.
        message: String,
    },
    /// An answer that could not be read (too large, not UTF-8, not the expected document).
    #[error("{operation}: HTTP {status}: {reason}")]
    Answer {
        /// The operation.
        operation: &'static str,
        /// The answer's HTTP status.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
}

impl AwsError {
    /// The service's error code, when it refused the call.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The answer's HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. } | Self::Answer { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether another attempt may succeed: throttled, a server error, or no connection.
    pub(super) fn retryable(&self) -> bool {
        match self {
            Self::Service { status, code, .. } => {
                matches!(status, 429 | 500 | 502 | 503 | 504) || THROTTLING.contains(&code.as_str())
            }
            Self::Answer { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            Self::Transport { source, .. } => source.is_connect(),
            _ => false,
        }
    }
}

/// An error and the errors that caused it, as one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(super) fn clip(text: &str) -> String {
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// The answer's body as text.
pub(super) fn into_text(operation: &'static str, answer: Answer) -> Result<String, AwsError> {
    let status = answer.status.as_u16();
    String::from_utf8(answer.body).map_err(|_| AwsError::Answer {
        operation,
        status,
        reason: "an answer that is not UTF-8".into(),
    })
}

/// The code and message of a JSON error answer: the code from the `x-amzn-errortype` header or
/// the body's `__type` / `code` (without a namespace `ns#` or a suffix `:…`), the message from
/// `message` / `Message`.
pub(super) fn json_error(error_type: Option<&str>, body: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(rename = "__type", alias = "code", alias = "Code", default)]
        kind: Option<String>,
        #[serde(alias = "Message", default)]
        message: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let raw = error_type.map(str::to_owned).or(parsed.kind)?;
    let code = raw.rsplit_once('#').map_or(raw.as_str(), |(_, code)| code);
    let code = code.split_once(':').map_or(code, |(code, _)| code).trim();
    if code.is_empty() {
        return None;
    }
    Some((code.to_owned(), parsed.message.unwrap_or_default()))
}

//! Request extractors whose rejections are problem+json naming the field at fault.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;

use crate::platform::http::error::ApiError;
use crate::platform::http::problem::{MAX_DETAIL_CHARS, bounded_text, shown};
use crate::platform::secret::Secret;

/// Largest JSON body accepted by default.
pub const MAX_JSON_BODY: usize = 1 << 20;

/// A JSON body. A syntax error, a wrong type or an unknown value is a 400 naming the field
/// (`repositories[2]`); a body over [`MAX_JSON_BODY`] is a 413, one that does not arrive in
/// time a 408 (see [`read_body`]).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send + 'static> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if let Some(content_type) = content_type
            && !content_type.starts_with("application/json")
        {
            return Err(ApiError::invalid("body", "unsupported_media_type", "send the body as application/json"));
        }
        let bytes = read_body(request.into_body(), MAX_JSON_BODY).await?;
        if bytes.len() <= INLINE_PARSE_BYTES {
            return parse_json(&bytes).map(ApiJson);
        }
        crate::platform::work::off_workers(move || parse_json(&bytes)).await?.map(ApiJson)
    }
}

/// Largest JSON body parsed on the async worker that read it (well under a millisecond); a
/// larger one is parsed by [`crate::platform::work::off_workers`]. serde_json refuses
/// nesting deeper than 128 levels as it parses, so every parse is linear in the body.
pub const INLINE_PARSE_BYTES: usize = 64 << 10;

/// Reads a whole body of at most `limit` bytes: a longer one is a 413 (at once when its
/// `Content-Length` says so), one that misses its deadline or stalls a 408
/// ([`ApiError::RequestTimeout`]), one the client broke off a 400.
pub async fn read_body(mut body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    let too_large = || ApiError::TooLarge { field: "body".into(), limit };
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if declared > limit {
        return Err(too_large());
    }
    // One buffer of the declared size: collecting frames and joining them held a body twice.
    let mut buffer = Vec::with_capacity(declared);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| match is_timeout(&error) {
            true => ApiError::RequestTimeout,
            false => ApiError::invalid("body", "body_unreadable", "the request body broke off"),
        })?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(too_large());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.into())
}

/// Whether a body error, or one it wraps, is a deadline or an idle timeout.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<tower_http::timeout::TimeoutError>() || error.is::<crate::platform::serve::BodyDeadline>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// A raw body of at most `MAX` bytes, read with the limit (a longer one is a 413 problem naming
/// `body`), for routes that take more than [`MAX_JSON_BODY`] or parse it themselves.
#[derive(Debug, Clone)]
pub struct LimitedBody<const MAX: usize>(pub axum::body::Bytes);

impl<S: Send + Sync, const MAX: usize> FromRequest<S> for LimitedBody<MAX> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_body(request.into_body(), MAX).await.map(Self)
    }
}

/// Path parameters. A segment that does not decode (bad percent-encoding, not UTF-8) is a 400
/// with field `path`, as problem+json like every other error, not axum's plain text; a route
/// whose parameters do not fit `T` is a bug of ours (500).
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| match rejection.status().is_client_error() {
                // axum's text quotes the segment: bounded, like every echoed value.
                true => ApiError::invalid("path", "invalid_path", parser_message(&rejection.body_text())),
                false => ApiError::Internal(parser_message(&rejection.body_text())),
            })
    }
}

/// A query string. One that does not fit `T` is a 400 with field `query`, as problem+json.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::invalid("query", "invalid_query", parser_message(&rejection.body_text())))
    }
}

/// A parser's error message (serde, axum), which quotes the rejected value whole: every quoted
/// value cut to [`crate::platform::http::problem::MAX_SHOWN_CHARS`] characters, the whole to [`MAX_DETAIL_CHARS`].
fn parser_message(message: &str) -> String {
    bounded_text(message, MAX_DETAIL_CHARS).into_owned()
}

/// Parses JSON into `T`, naming the field at fault on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs every body; only one that fails is parsed again to find it.
    serde_json::from_slice(bytes).map_err(|error| error_at_field::<T>(bytes, &error))
}

/// The problem of a body that did not parse as `T`, naming the field at fault.
fn error_at_field<T: DeserializeOwned>(bytes: &[u8], error: &serde_json::Error) -> ApiError {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => error,
        // Only what follows the value failed.
        Ok(_) => return ApiError::invalid("body", "malformed_json", parser_message(&error.to_string())),
    };
    // The path holds the request's map keys and the message quotes the rejected value
    // (a 20 MiB string comes back whole): both are bounded before anything keeps them.
    let path = shown(&error.path().to_string()).into_owned();
    let inner = error.into_inner();
    let message = parser_message(&inner.to_string());
    let at_root = path == "." || path == "?" || path.is_empty() || inner.is_syntax() || inner.is_eof();
    // serde reports a missing field at its parent; name the field itself.
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(name, _)| name);
    let field = match (missing, at_root) {
        (Some(name), true) => name.to_owned(),
        (Some(name), false) => format!("{path}.{name}"),
        (None, true) => "body".to_owned(),
        (None, false) => path,
    };
    let code = if inner.is_syntax() || inner.is_eof() {
        "malformed_json"
    } else if missing.is_some() {
        "required"
    } else {
        "invalid_field"
    };
    // serde's message names the expected type or variants, never echoes secrets of ours.
    ApiError::invalid(field, code, message)
}

/// HTTP Basic credentials (a registry client logging in with a temporary key).
#[derive(Debug)]
pub struct BasicAuth {
    pub username: String,
    /// The password. Never logged.
    pub password: Secret<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for BasicAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let missing = || ApiError::Unauthenticated("Basic credentials (a temporary key) are required".into());
        let value = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(missing)?;
        let encoded = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
            .ok_or_else(missing)?;
        let decoded =
            STANDARD.decode(encoded.trim()).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(missing)?;
        let (username, password) = decoded.split_once(':').ok_or_else(missing)?;
        Ok(Self { username: username.to_owned(), password: Secret::new(password.to_owned()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use tower::ServiceExt;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body1 {
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        purpose: Option<Purpose>,
        #[serde(default)]
        relations: BTreeMap<String, u64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Purpose {
        Push,
    }

    fn detail(error: ApiError) -> (String, String) {
        let problem = error.to_problem();
        (problem.field.unwrap_or_default(), problem.detail)
    }

    #[test]
    fn a_huge_wrong_typed_value_is_not_echoed_whole() {
        let huge = "A".repeat(20 << 20);
        for body in [
            format!(r#"{{"dry_run": "{huge}"}}"#),
            format!(r#"{{"purpose": "{huge}"}}"#),
            format!(r#"{{"relations": {{"{huge}": "x"}}}}"#),
            format!(r#"{{"{huge}": 1}}"#),
        ] {
            let error = parse_json::<Body1>(body.as_bytes()).map(|_| ()).unwrap_err();
            let (field, detail) = detail(error);
            assert!(field.len() + detail.len() < 1024, "field {} bytes, detail {} bytes", field.len(), detail.len());
            assert!(!detail.contains(&"A".repeat(201)) && !field.contains(&"A".repeat(201)));
        }
        let (field, detail) = detail(parse_json::<Body1>(br#"{"dry_run": "yes"}"#).map(|_| ()).unwrap_err());
        assert_eq!(field, "dry_run");
        assert!(detail.contains("invalid type: string \"yes\", expected a boolean"), "{detail}");
    }

    #[test]
    fn a_failing_body_names_its_field_and_what_follows_a_value_is_refused() {
        let parsed = parse_json::<Body1>(br#"{"dry_run": true, "relations": {"a": 1}} "#).unwrap();
        assert!(parsed.dry_run && parsed.relations["a"] == 1);
        let problem = |body: &[u8]| {
            let problem = parse_json::<Body1>(body).map(|_| ()).unwrap_err().to_problem();
            (problem.field.unwrap_or_default(), problem.code)
        };
        assert_eq!(problem(br#"{"relations": {"a": -1}}"#), ("relations.a".into(), "invalid_field".into()));
        assert_eq!(problem(br#"{"purpose": "pull"}"#), ("purpose".into(), "invalid_field".into()));
        assert_eq!(problem(br#"{"dry_run": tru"#), ("body".into(), "malformed_json".into()));
        assert_eq!(problem(br#"{"dry_run": true} {"dry_run": false}"#), ("body".into(), "malformed_json".into()));
        assert_eq!(problem(br#"{} x"#), ("body".into(), "malformed_json".into()));
    }

    #[tokio::test]
    async fn api_json_rejections_are_small_problems() {
        let router = Router::new().route("/", post(|ApiJson(_): ApiJson<Body1>| async { "ok" }));
        let huge = "A".repeat(MAX_JSON_BODY - 64);
        let request = Request::post("/")
            .header("content-type", "application/json")
            .body(Body::from(format!(r#"{{"dry_run": "{huge}"}}"#)))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert!(body.len() < 2048, "{} bytes", body.len());
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["field"], "dry_run");
        assert_eq!(value["code"], "invalid_field");
    }

    #[tokio::test]
    async fn path_and_query_rejections_are_bounded() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Query1 {
            n: u64,
        }
        let router = Router::new()
            .route("/q", axum::routing::get(|ApiQuery(_): ApiQuery<Query1>| async { "ok" }))
            .route("/p/{n}", axum::routing::get(|ApiPath(_): ApiPath<u64>| async { "ok" }));
        let huge = "B".repeat(30_000);
        for uri in [format!("/q?n={huge}"), format!("/p/{huge}")] {
            let response = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            assert!(body.len() < 2048, "{} bytes", body.len());
            assert!(!String::from_utf8_lossy(&body).contains(&"B".repeat(201)));
        }
    }
}

//! Logging: `tracing` to stderr, JSON when stderr is not a terminal, every line passed
//! through the redaction rule, and a request id on every line logged while serving a request.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request, Response, header};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::platform::config::LogFormat;
use crate::platform::secret::redact;

/// Header carrying the request id (taken from the caller if present, else generated).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Writes each log line through [`redact`].
#[derive(Clone)]
pub struct RedactingWriter<M> {
    inner: M,
}

impl<M> RedactingWriter<M> {
    /// Wraps a writer factory.
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

/// One log line being written; redacted and passed on when dropped.
pub struct RedactedLine<W: Write> {
    buffer: Vec<u8>,
    out: W,
}

impl<W: Write> Write for RedactedLine<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let result = self.out.write_all(redact(&text).as_bytes());
        self.buffer.clear();
        result.and_then(|_| self.out.flush())
    }
}

impl<W: Write> Drop for RedactedLine<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = RedactedLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine { buffer: Vec::with_capacity(256), out: self.inner.make_writer() }
    }
}

/// Installs the global subscriber writing to stderr. Level from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // A second init (tests, or serve plus a library) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber(json, std::io::stderr));
}

/// The subscriber Berth logs through: filtered by `RUST_LOG` (default `info`), redacting, JSON or text, to `writer`.
pub fn subscriber<W>(json: bool, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // `Targets` takes RUST_LOG's `target=level` directives; unlike `EnvFilter` it needs no
    // regex engine, which kept about half a megabyte out of every binary.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let layer = tracing_subscriber::fmt::layer().with_writer(RedactingWriter::new(writer));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        Box::new(registry.with(layer.json().flatten_event(true).with_current_span(true).with_span_list(false)))
    } else {
        Box::new(registry.with(layer.compact()))
    }
}

/// Adds request ids, redacted sensitive headers and a request span to a router.
/// Every line logged while serving carries the request's `request_id`.
pub fn traced(router: Router) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or("-")
                .to_owned();
            tracing::info_span!("request", request_id = %request_id, method = %request.method(), path = %request.uri().path())
        })
        .on_request(())
        .on_response(|response: &Response<_>, latency: Duration, _span: &Span| {
            tracing::info!(status = response.status().as_u16(), latency_ms = latency.as_secs_f64() * 1e3, "served");
        });
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_request_id))
}

/// Longest caller-chosen request id kept; a longer or unprintable one is replaced by a new
/// one, so a caller cannot put arbitrary text into every log line and the answer.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

async fn drop_unusable_request_id<B>(mut request: Request<B>) -> Request<B> {
    let usable = request
        .headers()
        .get(&REQUEST_ID)
        .is_none_or(|id| id.len() <= MAX_REQUEST_ID_BYTES && id.as_bytes().iter().all(|b| b.is_ascii_graphic()));
    if !usable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_callers_request_id_is_kept_only_when_short_and_printable() {
        use tower::ServiceExt as _;
        let router = traced(Router::new().route("/", axum::routing::get(|| async { "ok" })));
        let answer = |id: &str| {
            let request = Request::get("/").header("x-request-id", id).body(axum::body::Body::empty()).unwrap();
            let router = router.clone();
            async move { router.oneshot(request).await.unwrap().headers()["x-request-id"].to_str().unwrap().to_owned() }
        };
        assert_eq!(answer("abc-123").await, "abc-123");
        for bad in ["x".repeat(MAX_REQUEST_ID_BYTES + 1), "with space".into(), "tab\there".into()] {
            let kept = answer(&bad).await;
            assert_ne!(kept, bad);
            assert_eq!(kept.len(), 36, "a fresh uuid: {kept}");
        }
    }
    use crate::platform::secret::Secret;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn secrets_logged_by_mistake_do_not_reach_the_log() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA";
        for json in [true, false] {
            let out = Captured::default();
            let sink = out.clone();
            tracing::subscriber::with_default(subscriber(json, move || sink.clone()), || {
                let password = Secret::new("hunter2-pass".to_string());
                tracing::info!(%password, "minted a key");
                tracing::info!(password = "plain-hunter2", "field named password");
                tracing::warn!("token was {jwt}");
                tracing::info!(header = %format!("Bearer {jwt}"), "auth header");
                tracing::info!(body = r#"{"dockerconfigjson":"ZG9ja2VyLXNlY3JldA=="}"#, "response body");
            });
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert_eq!(text.lines().count(), 5, "{text}");
            for secret in ["hunter2-pass", "plain-hunter2", "c2lnbmF0dXJlLXNlY3JldA", "ZG9ja2VyLXNlY3JldA"] {
                assert!(!text.contains(secret), "json={json}: {secret} leaked in:\n{text}");
            }
            assert!(text.contains("minted a key"), "the rest of the line stays");
        }
    }
}

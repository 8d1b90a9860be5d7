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
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;
use crate::secret::redact;

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
    init_with_writer(format, std::io::stderr);
}

/// Installs the global subscriber writing through `writer` (tests capture logs this way).
pub fn init_with_writer<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingWriter::new(writer));
    // A second init (tests, or serve plus a library) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.compact().try_init()
    };
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
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE, header::PROXY_AUTHORIZATION]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

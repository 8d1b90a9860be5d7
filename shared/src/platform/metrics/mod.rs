//! What an operator can scrape: the names of Berth's metrics, the functions that record them,
//! and their two ways out.
//!
//! - Standalone and in `berth serve`: `GET /metrics` in Prometheus' text format, on its own
//!   address (`BERTH_METRICS_LISTEN`), never on the public one: the figures (routes hit, hosts
//!   connected) are the operator's, and a separate address is what a firewall or a Kubernetes
//!   port can keep private.
//! - Under Lambda, where no process lives long enough to be scraped: the same series as one
//!   CloudWatch Embedded Metric Format line at the end of each invocation (see [`emf`]).
//!
//! Labels are bounded: route templates (`/v1/releases/{id}`), never raw paths, tenant ids or
//! tokens. Recording before a recorder is installed (tests, `BERTH_METRICS_LISTEN` unset) costs
//! next to nothing: the `metrics` facade's no-op.

pub mod emf;
pub mod http;
pub mod store;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::platform::config::HttpLimits;

/// Requests answered, by `method`, `route` (the template) and `status`.
pub const HTTP_REQUESTS: &str = "berth_http_requests_total";
/// Requests to the document store, by `kind` (`get`, `head`, `put`, `delete`, `list`, `copy`).
pub const STORE_REQUESTS: &str = "berth_store_requests_total";
/// Requests to the event queue, by `kind` (`send`, `receive`, `ack`, `release`, `dead_letters`).
pub const QUEUE_REQUESTS: &str = "berth_queue_requests_total";
/// Agents holding a wake channel open to this process.
pub const HOSTS_CONNECTED: &str = "berth_hosts_connected";
/// Agents whose job poll this process holds.
pub const HOSTS_POLLING: &str = "berth_hosts_polling";
/// Wake messages sent to hosts, by `outcome` (`delivered`, `gone`, `failed`).
pub const WAKES_SENT: &str = "berth_wakes_sent_total";
/// From a host's job being due to its wake being sent, in seconds.
pub const WAKE_LATENCY: &str = "berth_wake_latency_seconds";
/// Releases that entered a state (`running` when created; `succeeded`, `failed`, `cancelled`
/// when they end), each counted once by the conditional write that moved it.
pub const RELEASES: &str = "berth_releases_total";
/// Releases running, as the last sweep in this process found them.
pub const RELEASES_RUNNING: &str = "berth_releases_running";
/// Hosts' final outcomes in releases, by `state` (`succeeded`, `failed`), each counted once
/// by the create-once write of the outcome.
pub const RELEASE_HOSTS: &str = "berth_release_hosts_total";

/// The wake latency histogram's buckets, in seconds (the goal is a job within 1 s of being due).
const WAKE_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// How a wake message fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeOutcome {
    /// Handed to the host's connection.
    Delivered,
    /// The connection was gone (closed, or `GoneException`): dropped.
    Gone,
    /// Sending failed otherwise.
    Failed,
}

impl WakeOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Gone => "gone",
            Self::Failed => "failed",
        }
    }
}

/// Records one wake message sent, `latency` after the job it announces became due.
pub fn wake_sent(outcome: WakeOutcome, latency: Duration) {
    metrics::counter!(WAKES_SENT, "outcome" => outcome.label()).increment(1);
    if outcome == WakeOutcome::Delivered {
        metrics::histogram!(WAKE_LATENCY).record(latency.as_secs_f64());
    }
}

/// Counts a host in [`HOSTS_CONNECTED`] while it lives: hold it as long as the connection.
#[must_use = "the host counts as connected only while this is held"]
pub fn host_connected() -> Presence {
    Presence::enter(HOSTS_CONNECTED)
}

/// Counts a host in [`HOSTS_POLLING`] while it lives: hold it across the held poll.
#[must_use = "the host counts as polling only while this is held"]
pub fn host_polling() -> Presence {
    Presence::enter(HOSTS_POLLING)
}

/// One host counted in a gauge until dropped (so an early return or a cancelled request
/// cannot leave it counted).
#[derive(Debug)]
pub struct Presence(&'static str);

impl Presence {
    fn enter(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// Records a release entering `state` (`running`, `succeeded`, `failed`, `cancelled`).
pub fn release_entered(state: &'static str) {
    metrics::counter!(RELEASES, "state" => state).increment(1);
}

/// Records the number of running releases the sweep found.
pub fn releases_running(count: usize) {
    metrics::gauge!(RELEASES_RUNNING).set(count as f64);
}

/// Records a host's final outcome in a release.
pub fn release_host_finished(ok: bool) {
    metrics::counter!(RELEASE_HOSTS, "state" => if ok { "succeeded" } else { "failed" }).increment(1);
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The Prometheus recorder, installed as the process' recorder on first call.
fn prometheus() -> Result<&'static PrometheusHandle, MetricsError> {
    if let Some(handle) = PROMETHEUS.get() {
        return Ok(handle);
    }
    let recorder = prometheus_builder().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::RecorderTaken)?;
    Ok(PROMETHEUS.get_or_init(|| handle))
}

/// Berth's Prometheus settings: histograms as buckets (aggregatable across processes), not
/// summaries.
pub fn prometheus_builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(WAKE_LATENCY.to_owned()), &WAKE_BUCKETS)
        .expect("the buckets are not empty")
}

/// Why metrics could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another recorder was installed first.
    #[error("another metrics recorder is installed")]
    RecorderTaken,
    /// The metrics address could not be listened on.
    #[error("BERTH_METRICS_LISTEN: listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Serves `GET /metrics` on `address` until `shutdown`, with the main server's connection
/// limits; returns the address bound (port 0 picks one).
pub fn serve(address: SocketAddr, limits: HttpLimits, shutdown: CancellationToken) -> Result<SocketAddr, MetricsError> {
    let handle = prometheus()?;
    let listener =
        crate::platform::serve::listen(address).map_err(|source| MetricsError::Listen { address, source })?;
    let bound = listener.local_addr().map_err(|source| MetricsError::Listen { address, source })?;
    let upkeep = shutdown.clone();
    tokio::spawn(async move {
        // Histograms are folded into their buckets by the upkeep; without it they only grow.
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = ticks.tick() => handle.run_upkeep(),
                _ = upkeep.cancelled() => return,
            }
        }
    });
    tokio::spawn(async move {
        if let Err(error) = crate::platform::serve::serve_http(router(handle), listener, shutdown, limits).await {
            tracing::error!(%error, "the metrics server stopped");
        }
    });
    tracing::info!(address = %bound, "serving metrics");
    Ok(bound)
}

/// `GET /metrics` over `handle`.
pub fn router(handle: &'static PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || async move {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
                .into_response()
        }),
    )
}

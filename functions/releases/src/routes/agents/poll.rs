//! `GET /v1/agent/jobs`: a host's poll for its next job.

use super::*;
use crate::engine::jobs::hold_for_job;

/// Longest an agent's poll is held.
pub const MAX_POLL_SECONDS: u64 = 30;
/// How long a poll is held when the agent does not say.
pub const DEFAULT_POLL_SECONDS: u64 = 20;

/// `GET /v1/agent/jobs` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    wait_seconds: Option<u64>,
    /// A release whose health check the host keeps probing: the answer says whether it still
    /// runs (header [`WATCH_HEADER`]).
    #[serde(default)]
    watch: Option<String>,
    /// The job of the host's last report Berth took: the poll need not read whether that one
    /// is reported (see [`hold_for_job`]).
    #[serde(default)]
    reported: Option<String>,
}

/// Longest `reported` a poll may name: a job id is 37 bytes.
const MAX_JOB_ID_BYTES: usize = 64;

/// Answers a poll that names a watched release: `running` while the host should keep probing
/// for it, `ended` once it should stop.
pub const WATCH_HEADER: &str = "berth-watch";

/// `GET /v1/agent/jobs?wait_seconds=N`: held until there is work for the host (200 with a
/// job) or the wait ends (204).
pub async fn poll(
    State(engine): State<Engine>,
    host: Host,
    ApiQuery(query): ApiQuery<PollQuery>,
) -> Result<Response, ApiError> {
    host.check_named(query.host.as_deref())?;
    if query.reported.as_ref().is_some_and(|j| j.len() > MAX_JOB_ID_BYTES) {
        return Err(ApiError::invalid("reported", "too_long", format!("a job id is at most {MAX_JOB_ID_BYTES} bytes")));
    }
    // Boxed, like the reads below: a convergence's writes would otherwise size every held
    // poll's state (4 KiB instead of 0.7 at 100,000 polls). And only built when there is work:
    // boxing 4 KiB was 4% of a 100,000-host dispatch's CPU.
    let returned =
        engine.seen_due(&host.host, &host.record.value) && Box::pin(engine.seen(&host.host, &host.record)).await?;
    if !returned {
        let snapshot = engine.snapshot(&host.host.group).await?;
        if crate::engine::behind(&snapshot, &host.record.value).is_some() {
            Box::pin(engine.converge_if_behind(&host.host, &host.record.value, &snapshot)).await?;
        }
    }
    // Never longer than the deployment allows: under Lambda a held poll is an invocation held
    // open (BERTH_MAX_POLL_HOLD_SECONDS, 0 there), and the agent waits on its channel instead.
    let asked = Duration::from_secs(query.wait_seconds.unwrap_or(DEFAULT_POLL_SECONDS).min(MAX_POLL_SECONDS));
    let wait = asked.min(engine.context.config.max_poll_hold);
    let until = tokio::time::Instant::now() + wait;
    let Host { host, record } = host;
    drop(record);
    let _polling = berth_shared::platform::metrics::host_polling();
    let mut answer = match hold_for_job(&engine, &host, until, query.reported.as_deref()).await? {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    if let Some(watched) = &query.watch {
        // From the group's snapshot (two seconds old at most): a watch ends that late at worst.
        let snapshot = engine.snapshot(&host.group).await?;
        let running = snapshot.active() == Some(watched.as_str())
            && snapshot.state().is_some_and(|(status, _)| !status.is_terminal());
        let value = axum::http::HeaderValue::from_static(if running { "running" } else { "ended" });
        answer.headers_mut().insert(WATCH_HEADER, value);
    }
    Ok(answer)
}

//! The agents' side: register with a join token, then poll and report with the host token.

use super::*;
use crate::engine::{GroupSnapshot, Plan};

/// Longest an agent's poll is held.
pub const MAX_POLL_SECONDS: u64 = 30;
/// How long a poll is held when the agent does not say.
pub const DEFAULT_POLL_SECONDS: u64 = 20;
/// How often a held poll of a group that is not watched (past the watch limit) looks again:
/// another process (a Lambda event handler) may move the release without waking it.
const POLL_RECHECK: Duration = Duration::from_secs(1);

/// The bearer token of a request, if it has the given kind's prefix.
pub(super) fn bearer<'a>(parts: &'a Parts, prefix: &str) -> Option<&'a str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(prefix) && t.len() <= MAX_TOKEN_BYTES)
}

/// Longest bearer token looked up (ours are 47 bytes).
const MAX_TOKEN_BYTES: usize = 128;

/// A host, authenticated by its own host token (`Authorization: Bearer bht_...`): it polls
/// and reports for itself only.
pub struct Host {
    /// The host and its group.
    pub host: HostRef,
    /// Its record as read to authenticate it (its version for a `last_seen` swap). Boxed, and
    /// dropped by a poll before it is held: 100,000 held polls do not keep 100,000 records.
    pub instance: Box<Versioned<Instance>>,
}

impl FromRequestParts<Engine> for Host {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Engine) -> Result<Self, Self::Rejection> {
        let token = bearer(parts, "bht_").ok_or_else(host_refused)?;
        // Boxed: this future's room is kept by every held poll (axum's handler future holds
        // it), while the reads need it only for a moment.
        let host = Box::pin(host_of(engine, token)).await?;
        berth_shared::platform::serve::mark_authenticated(&parts.extensions);
        Ok(host)
    }
}

fn host_refused() -> ApiError {
    ApiError::Unauthenticated(
        "a valid host token is required (Authorization: Bearer bht_..., from POST /v1/agent/register)".into(),
    )
}

async fn host_of(engine: &Engine, token: &str) -> Result<Host, ApiError> {
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    // Where the token points is read once per process; whether it still acts for that host,
    // on every request.
    if let Some(host) = engine.token_place(&digest) {
        if let Some(instance) = named_by(engine, &host, &digest).await? {
            return Ok(Host { host, instance });
        }
        engine.forget_token_place(&digest);
    }
    let store = &engine.context.store;
    let host = store.get::<HostRef>(&layout::host_token(&digest)).await?.ok_or_else(host_refused)?.value;
    let instance = named_by(engine, &host, &digest).await?.ok_or_else(host_refused)?;
    engine.remember_token_place(&digest, &host);
    Ok(Host { host, instance })
}

/// The host's record, if it names this token: only the token the record names acts for the
/// host (registering again replaces it).
async fn named_by(engine: &Engine, host: &HostRef, digest: &str) -> Result<Option<Box<Versioned<Instance>>>, ApiError> {
    let path = layout::instance(&host.group, &host.host);
    let instance = engine.context.store.get::<Instance>(&path).await?;
    Ok(instance.filter(|i| i.value.host_token_sha256.as_deref() == Some(digest)).map(Box::new))
}

impl Host {
    /// The `host` query, when an agent still sends one, must name the token's own host.
    pub(super) fn check_named(&self, named: Option<&str>) -> Result<(), ApiError> {
        match named {
            Some(name) if name != self.host.host => {
                Err(ApiError::Forbidden(format!("this host token acts for host '{}' only", self.host.host)))
            }
            _ => Ok(()),
        }
    }
}

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
}

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
    // Boxed, like the reads below: a convergence's writes would otherwise size every held
    // poll's state (4 KiB instead of 0.7 at 100,000 polls). And only built when there is work:
    // boxing 4 KiB was 4% of a 100,000-host dispatch's CPU.
    let returned =
        engine.seen_due(&host.host, &host.instance.value) && Box::pin(engine.seen(&host.host, &host.instance)).await?;
    if !returned {
        let snapshot = engine.snapshot(&host.host.group).await?;
        if crate::engine::behind(&snapshot, &host.instance.value).is_some() {
            Box::pin(engine.converge_if_behind(&host.host, &host.instance.value, &snapshot)).await?;
        }
    }
    let wait = Duration::from_secs(query.wait_seconds.unwrap_or(DEFAULT_POLL_SECONDS).min(MAX_POLL_SECONDS));
    let until = tokio::time::Instant::now() + wait;
    let Host { host, instance } = host;
    drop(instance);
    let _polling = berth_shared::platform::metrics::host_polling();
    let mut answer = match hold_for_job(&engine, &host, until).await? {
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

/// Where `host` is in `plan`, if the plan is a release of the host's own group (another
/// group's release is as absent as a missing one).
fn planned_in(plan: &Plan, host: &HostRef) -> Option<crate::engine::PlannedHost> {
    let (release, group) = (&plan.release, &host.group);
    let same_group =
        release.account == group.account && release.application == group.application && release.group == group.group;
    plan.host(&host.host).filter(|_| same_group)
}

/// Largest `POST /v1/agent/health` body.
const MAX_HEALTH_NEWS_BYTES: usize = 16 * 1024;

/// `POST /v1/agent/health` answer.
#[derive(Serialize)]
pub struct HealthNewsAccepted {
    /// Whether this news was recorded now (false: a repeat).
    accepted: bool,
}

/// `POST /v1/agent/health`: what the host's health check found in its run of a release:
/// `verifying` once its start script succeeded (its state shows it until its report), or
/// `unhealthy` once it turned unhealthy after its run succeeded, while the release still runs
/// (it then counts as a failure of its batch; 409 `release_ended` tells the agent to stop
/// watching). Each is written once per host and release.
pub async fn health_news(
    State(engine): State<Engine>,
    host: Host,
    LimitedBody(body): LimitedBody<MAX_HEALTH_NEWS_BYTES>,
) -> Result<Json<HealthNewsAccepted>, ApiError> {
    let news: release::HealthNews = berth_shared::platform::http::request::parse_json(&body)?;
    let name = host.host.host.as_str();
    let id = news.release.as_str();
    let never = || refused(format!("no job of this release was handed to host '{name}'"));
    if uuid::Uuid::parse_str(id).is_err() || news.job_id != release::job_id(id, name, JobKind::Run) {
        return Err(never());
    }
    let plan = engine.plan(id).await?.ok_or_else(never)?;
    let release = &plan.release;
    let planned = planned_in(&plan, &host.host).ok_or_else(never)?;
    if release.deployment.health.is_none() {
        return Err(refused("the release's deployment has no health check"));
    }
    let state = engine.state(id).await?.ok_or_else(never)?.value;
    if state.status.is_terminal() {
        return Err(ApiError::Conflict {
            code: "release_ended",
            message: "the release has ended: stop watching".into(),
        });
    }
    let store = &engine.context.store;
    let now = unix_now();
    let accepted = match news.news {
        release::HealthNewsKind::Verifying => {
            release::check_due(state.status, state.phase, planned.batch, JobKind::Run).map_err(refused)?;
            create_once(store, &layout::verifying_host(id, name), &release::Verifying { at: now }).await?
        }
        release::HealthNewsKind::Unhealthy => {
            let ran = store.get::<HostResult>(&layout::result(id, name)).await?;
            if !ran.is_some_and(|r| r.value.ok) {
                return Err(refused(
                    "only a host whose run succeeded is watched; its own report says how the run went",
                ));
            }
            let reason = news.reason.unwrap_or_else(|| "no reason given".into());
            let turned = release::Unhealthy {
                reason: release::truncated(&reason, release::MAX_UNHEALTHY_REASON_BYTES).to_owned(),
                batch: planned.batch,
                during: state.phase,
                at: now,
            };
            let written = create_once(store, &layout::unhealthy_host(id, name), &turned).await?;
            if written {
                tracing::warn!(release = %id, host = %name, reason = %turned.reason, "watched host turned unhealthy");
                engine.request_advance(id, &release.account).await?;
            }
            written
        }
    };
    Ok(Json(HealthNewsAccepted { accepted }))
}

/// Holds a poll until there is a job for `host` or `until`. 100,000 of these wait at once, so
/// what lives across the wait is kept small: the reads are boxed, and the group's snapshot
/// is shared.
async fn hold_for_job(engine: &Engine, host: &HostRef, until: tokio::time::Instant) -> Result<Option<Job>, ApiError> {
    // What the group's release looked like when this poll last found nothing to do.
    let mut looked_at = None;
    // While held, the group's snapshot is re-read once a second for all its polls, and a
    // change wakes them (`changed`): a waiting poll costs nothing. A host with nothing to do
    // looks at its own documents again only when the snapshot changed.
    let hold = engine.hold(&host.group);
    loop {
        // Registered before looking, so a change between the look and the wait is not missed.
        // Closing the engine notifies it too.
        let changed = engine.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let snapshot = engine.snapshot(&host.group).await?;
        if looked_at.as_ref() != Some(&snapshot) {
            if !nothing_due(engine, host, &snapshot)
                && let Some(job) = Box::pin(job_for(engine, host, &snapshot)).await?
            {
                return Ok(Some(job));
            }
            looked_at = Some(snapshot);
        }
        let now = tokio::time::Instant::now();
        if now >= until || engine.closing.is_cancelled() {
            return Ok(None);
        }
        // A group past the watch limit is not re-read for it: it looks again itself.
        let recheck = if hold.watched() { until } else { until.min(now + POLL_RECHECK) };
        tokio::select! {
            _ = &mut changed => {}
            _ = tokio::time::sleep_until(recheck) => {}
        }
    }
}

/// Whether the snapshot alone shows that `host` has nothing to do: the group's release runs,
/// and the host is outside its phase or this process knows it reported its job there. Nothing
/// is read: a host polling again right after its report (every host, in every phase) costs no
/// store read and no look of [`job_for`].
fn nothing_due(engine: &Engine, host: &HostRef, snapshot: &GroupSnapshot) -> bool {
    let (Some(id), Some((status, phase))) = (snapshot.active(), snapshot.state()) else { return false };
    let Some(plan) = engine.cached_plan(id).filter(|_| !status.is_terminal()) else { return false };
    let planned = plan.host(&host.host);
    match (release::next_job_at(status, phase, planned.map(|p| p.batch), false, false), planned) {
        (Some(kind), Some(planned)) => plan.known_settled(planned, kind),
        _ => true,
    }
}

/// The job `host` should run now in the group's active release, or else in its own
/// convergence. The group's snapshot (two seconds old at most) says whether it has anything
/// to do in the release, and the release's own state is read only to confirm one before it is
/// handed out: most looks find nothing, and then cost no read of the state.
async fn job_for(engine: &Engine, host: &HostRef, snapshot: &GroupSnapshot) -> Result<Option<Job>, ApiError> {
    let store = &engine.context.store;
    if let (Some(id), Some((status, phase))) = (snapshot.active(), snapshot.state())
        && !status.is_terminal()
    {
        let Some(plan) = engine.plan(id).await? else { return Ok(None) };
        let Some(kind) = due(engine, host, id, &plan, status, phase).await? else { return Ok(None) };
        let Some(state) = engine.state(id).await?.map(|d| d.value) else { return Ok(None) };
        if (state.status, state.phase) == (status, phase) {
            return Ok(Some(job(engine, host, id, &plan, kind)?));
        }
        if !state.status.is_terminal() {
            return job_at(engine, host, id, &plan, &state).await;
        }
        // It ended since: the host's convergence, if any, below.
    }
    // No release runs on the group: the host's own convergence, if it has one running.
    let Some(instance) = store.get::<Instance>(&layout::instance(&host.group, &host.host)).await? else {
        return Ok(None);
    };
    let Some(id) = instance.value.convergence else { return Ok(None) };
    let Some(state) = engine.state(&id).await?.map(|d| d.value) else { return Ok(None) };
    if state.status.is_terminal() {
        return Ok(None);
    }
    // A convergence a later release made pointless is not handed out (its advance ends it).
    let Some(plan) = engine.plan(&id).await? else { return Ok(None) };
    if engine.superseded(&plan.release).await?.is_some() {
        engine.request_advance(&id, &host.group.account).await?;
        return Ok(None);
    }
    job_at(engine, host, &id, &plan, &state).await
}

/// The job `host` has in release `id` at `state`, if any.
async fn job_at(
    engine: &Engine,
    host: &HostRef,
    id: &str,
    plan: &Plan,
    state: &ReleaseState,
) -> Result<Option<Job>, ApiError> {
    match due(engine, host, id, plan, state.status, state.phase).await? {
        Some(kind) => Ok(Some(job(engine, host, id, plan, kind)?)),
        None => Ok(None),
    }
}

/// Which job `host` is due in release `id` at this status and phase: a host outside the
/// phase reads nothing, one in it reads whether it already reported (unless this process
/// knows it did).
async fn due(
    engine: &Engine,
    host: &HostRef,
    id: &str,
    plan: &Plan,
    status: release::ReleaseStatus,
    phase: release::Phase,
) -> Result<Option<JobKind>, ApiError> {
    let Some(planned) = plan.host(&host.host) else { return Ok(None) };
    let Some(kind) = release::next_job_at(status, phase, Some(planned.batch), false, false) else { return Ok(None) };
    if plan.known_settled(planned, kind) || reported(engine, id, &host.host, kind).await? {
        plan.note_settled(planned, kind);
        return Ok(None);
    }
    Ok(Some(kind))
}

/// Whether the host's job of `kind` in release `id` has its result.
async fn reported(engine: &Engine, id: &str, host: &str, kind: JobKind) -> Result<bool, StoreError> {
    let store = &engine.context.store;
    Ok(match kind {
        JobKind::Pull => store.get::<PullResult>(&layout::pull(id, host)).await?.is_some(),
        JobKind::Run => store.get::<HostResult>(&layout::result(id, host)).await?.is_some(),
    })
}

/// The job of `kind` for `host` in release `id`.
fn job(engine: &Engine, host: &HostRef, id: &str, plan: &Plan, kind: JobKind) -> Result<Job, ApiError> {
    let release = &plan.release;
    let deployment = &release.deployment;
    let (username, password) = engine.pull_key(release)?;
    let (pull_registry, pull_address) = deployment.pull_address(engine.context.config.registry_private_host.as_deref());
    Ok(Job {
        job_id: release::job_id(id, &host.host, kind),
        release: id.to_owned(),
        kind,
        pull: kind == JobKind::Pull || !release.options.pull_first,
        image: pull_address,
        registry: pull_registry,
        username,
        password,
        working_directory: deployment.working_directory.clone(),
        stop_script: deployment.stop_script.clone(),
        start_script: deployment.start_script.clone(),
        step_timeout_seconds: deployment.step_timeout_seconds,
        health: deployment.health.clone(),
    })
}

/// `POST /v1/agent/reports` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    host: Option<String>,
}

/// `POST /v1/agent/reports` answer.
#[derive(Serialize)]
pub struct ReportAccepted {
    /// Whether this report settled the job (false: a repeat, which changes nothing).
    accepted: bool,
}

fn refused(why: impl std::fmt::Display) -> ApiError {
    ApiError::Conflict { code: "job_not_handed_out", message: why.to_string() }
}

/// `POST /v1/agent/reports`: the outcome of the job handed to this host. Each outcome is
/// written once; a repeated report (agent retry) is accepted and changes nothing. A report
/// that answers no job this host holds is a 409 and changes nothing.
pub async fn report(
    State(engine): State<Engine>,
    host: Host,
    ApiQuery(query): ApiQuery<ReportQuery>,
    LimitedBody(body): LimitedBody<{ release::MAX_REPORT_BYTES }>,
) -> Result<Json<ReportAccepted>, ApiError> {
    host.check_named(query.host.as_deref())?;
    // Parsed here rather than by ApiJson: a report carries whole outputs, past its 1 MiB.
    let body: Report = match body.len() <= berth_shared::platform::http::request::INLINE_PARSE_BYTES {
        true => berth_shared::platform::http::request::parse_json(&body)?,
        false => {
            berth_shared::platform::work::off_workers(move || {
                berth_shared::platform::http::request::parse_json::<Report>(&body)
            })
            .await??
        }
    };
    let name = host.host.host.as_str();
    let id = body.release.as_str();
    // Another group's release, or one that does not exist: the same answer, revealing nothing.
    let never = || refused(format!("no job of this release was handed to host '{name}'"));
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(never());
    }
    let store = &engine.context.store;
    let plan = engine.plan(id).await?.ok_or_else(never)?;
    let release = &plan.release;
    let planned = planned_in(&plan, &host.host).ok_or_else(never)?;
    let batch = planned.batch;
    release::check_job(id, name, &body).map_err(refused)?;
    // A pull's usual few lines stay in its result (one write); a long output is stored as a
    // run's is, first, so the result never outgrows a document.
    let inline = body.kind == JobKind::Pull
        && body.log_parts.is_none()
        && serde_json::to_vec(&body.logs.pull).is_ok_and(|v| v.len() <= release::INLINE_LOG_BYTES);
    let settled = || async {
        let settled = plan.known_settled(planned, body.kind) || reported(&engine, id, name, body.kind).await?;
        if settled {
            plan.note_settled(planned, body.kind);
        }
        Ok::<_, ApiError>(settled)
    };
    // An inline pull is settled by one create, which finds a repeat itself: reading first
    // would cost each of 100,000 hosts a read. Others store logs first, so they look first.
    if !inline && settled().await? {
        // A repeat, or a host the release timed out: a late run's output is still kept.
        let logs_path = layout::job_logs(body.kind, id, name);
        if body.kind == JobKind::Run && store.get::<StoredLogs>(&logs_path).await?.is_none() {
            store_logs(&engine, body.kind, id, name, &body.logs, body.log_parts).await?;
        }
        return Ok(Json(ReportAccepted { accepted: false }));
    }
    let state = engine.state(id).await?.ok_or_else(never)?.value;
    if let Err(why) = release::check_due(state.status, state.phase, batch, body.kind) {
        // A repeat of a pull settled before the release moved on changes nothing either.
        if inline && settled().await? {
            return Ok(Json(ReportAccepted { accepted: false }));
        }
        return Err(refused(why));
    }
    let now = unix_now();
    let written = match body.kind {
        JobKind::Pull => {
            let output = if inline {
                body.logs.pull.clone().unwrap_or_default()
            } else {
                store_logs(&engine, body.kind, id, name, &body.logs, body.log_parts).await?;
                release::StepOutput::default()
            };
            let pull =
                PullResult { ok: body.ok, exit_code: body.exit_code, reason: body.reason.clone(), output, at: now };
            let written = create_once(store, &layout::pull(id, name), &pull).await?;
            if written && !body.ok {
                // A host that cannot pull does not run: it fails as a pull failure.
                let result = HostResult {
                    ok: false,
                    step: Step::Pull,
                    exit_code: body.exit_code,
                    reason: body.reason.clone(),
                    at: now,
                };
                if create_once(store, &layout::result(id, name), &result).await? {
                    berth_shared::platform::metrics::release_host_finished(false);
                }
            }
            written
        }
        JobKind::Run => {
            // Logs first: once the result exists, its logs do too.
            store_logs(&engine, body.kind, id, name, &body.logs, body.log_parts).await?;
            let result = HostResult {
                ok: body.ok,
                step: body.step,
                exit_code: body.exit_code,
                reason: body.reason.clone(),
                at: now,
            };
            let written = create_once(store, &layout::result(id, name), &result).await?;
            if written {
                berth_shared::platform::metrics::release_host_finished(body.ok);
            }
            if written && body.ok {
                engine.record_run(release, name, now).await?;
            }
            written
        }
    };
    // Written now or before: either way its result is there for good.
    plan.note_settled(planned, body.kind);
    if written {
        tracing::info!(release = %id, host = %name, kind = ?body.kind, ok = body.ok, step = ?body.step, "host reported");
        let due_in = match body.kind {
            JobKind::Pull => release::Phase::Pulling,
            JobKind::Run => release::Phase::Batch { batch },
        };
        engine.note_report(id, due_in);
        engine.request_advance(id, &release.account).await?;
    }
    Ok(Json(ReportAccepted { accepted: written }))
}

/// `POST /v1/agent/logs` query: which part of which job's output the body is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPartQuery {
    release: String,
    job_id: String,
    /// From 0, in the order the text is to be read.
    part: usize,
    step: String,
    stream: String,
}

/// `POST /v1/agent/logs`: one part (at most 512 KiB of UTF-8 text) of the output of the job
/// this host holds and is due in the release's current phase, uploaded before its report
/// names how many parts there are. A part sent again replaces itself; once the job is
/// settled, parts are refused (409 `job_settled`), as are parts of a job not due or of a
/// release that ended (409 `job_not_handed_out`).
pub async fn upload_log_part(
    State(engine): State<Engine>,
    host: Host,
    ApiQuery(query): ApiQuery<LogPartQuery>,
    LimitedBody(body): LimitedBody<{ release::LOG_PART_BYTES }>,
) -> Result<StatusCode, ApiError> {
    if !release::LOG_STEPS.contains(&query.step.as_str()) {
        return Err(ApiError::invalid("step", "invalid_value", "must be pull, stop, start or health"));
    }
    if !release::LOG_STREAMS.contains(&query.stream.as_str()) {
        return Err(ApiError::invalid("stream", "invalid_value", "must be stdout or stderr"));
    }
    if query.part >= release::MAX_LOG_PARTS {
        let limit = release::MAX_LOG_PARTS;
        return Err(ApiError::invalid("part", "out_of_range", format!("must be below {limit}")));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::invalid("body", "not_utf8", "a log part is UTF-8 text"))?;
    let name = host.host.host.as_str();
    let id = query.release.as_str();
    let never = || refused(format!("no job of this release was handed to host '{name}'"));
    let kind = release::job_kind(&query.job_id).ok_or_else(never)?;
    if uuid::Uuid::parse_str(id).is_err() || query.job_id != release::job_id(id, name, kind) {
        return Err(never());
    }
    let plan = engine.plan(id).await?.ok_or_else(never)?;
    let planned = planned_in(&plan, &host.host).ok_or_else(never)?;
    if plan.known_settled(planned, kind) || reported(&engine, id, name, kind).await? {
        return Err(ApiError::Conflict { code: "job_settled", message: "the job was already reported".into() });
    }
    // Only the job due now: a part for a job of another phase, or of a release that ended,
    // would stay in the store, never read.
    let state = engine.state(id).await?.ok_or_else(never)?.value;
    release::check_due(state.status, state.phase, planned.batch, kind).map_err(refused)?;
    let part = release::LogPart { step: query.step, stream: query.stream, text };
    engine.context.store.put(&layout::job_logs_part(kind, id, name, query.part), &part).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The agents' side: register with a join token, then poll and report with the host token.

use super::*;
use crate::engine::{GroupSnapshot, Plan};
use std::sync::Arc;

/// Longest an agent's poll is held.
pub const MAX_POLL_SECONDS: u64 = 30;
/// How long a poll is held when the agent does not say.
pub const DEFAULT_POLL_SECONDS: u64 = 20;
/// How often a held poll of a group that is not watched (past the watch limit) looks again:
/// another process (a Lambda event handler) may move the release without waking it.
const POLL_RECHECK: Duration = Duration::from_secs(1);

/// The bearer token of a request, if it has the given kind's prefix.
fn bearer<'a>(parts: &'a Parts, prefix: &str) -> Option<&'a str> {
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

/// A caller holding a group's current join token (`Authorization: Bearer bjt_...`): it may
/// only register hosts.
pub struct Joining {
    /// The group the token joins.
    pub group: GroupRef,
    /// SHA-256 of the token.
    pub join_token_sha256: String,
}

impl FromRequestParts<Engine> for Joining {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Engine) -> Result<Self, Self::Rejection> {
        let refused =
            || ApiError::Unauthenticated("a valid group join token is required (Authorization: Bearer bjt_...)".into());
        let token = bearer(parts, "bjt_").ok_or_else(refused)?;
        let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
        let store = &engine.context.store;
        let group = store.get::<GroupRef>(&layout::join_token(&digest)).await?.ok_or_else(refused)?.value;
        // The group's own record decides: a rotated or revoked token is refused at once, even
        // if its index entry is still there.
        let current = store.get::<Group>(&layout::group_doc(&group)).await?.ok_or_else(refused)?.value;
        if current.join_token_sha256.as_deref() != Some(digest.as_str()) || current.deleting {
            return Err(refused());
        }
        berth_shared::platform::serve::mark_authenticated(&parts.extensions);
        Ok(Self { group, join_token_sha256: digest })
    }
}

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
    fn check_named(&self, named: Option<&str>) -> Result<(), ApiError> {
        match named {
            Some(name) if name != self.host.host => {
                Err(ApiError::Forbidden(format!("this host token acts for host '{}' only", self.host.host)))
            }
            _ => Ok(()),
        }
    }
}

fn new_host_token() -> String {
    berth_shared::platform::secret::random_token("bht_")
}

/// `POST /v1/agent/register` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    host: String,
    /// The EC2 instance the host runs on, matched against the group's Auto Scaling group.
    #[serde(default)]
    instance_id: Option<String>,
}

/// `POST /v1/agent/register` answer. The host token is shown only here.
#[derive(Serialize)]
pub struct Registered {
    application: String,
    group: String,
    host: String,
    host_token: String,
}

/// `POST /v1/agent/register`: the host joins the token's group and gets a host token of its
/// own. Registering again with the same host id rotates that host's token.
pub async fn register(
    State(engine): State<Engine>,
    joining: Joining,
    ApiJson(body): ApiJson<Registration>,
) -> Result<Json<Registered>, ApiError> {
    release::validate_name("host", &body.host)?;
    if let Some(id) = &body.instance_id {
        release::validate_instance_id("instance_id", id)?;
    }
    let token = new_host_token();
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    let reference = HostRef { group: Arc::new(joining.group.clone()), host: body.host.clone() };
    let store = &engine.context.store;
    let removed_path = layout::removed(&joining.group, &body.host);
    let removal_of = |removal: Option<Versioned<release::Removal>>| {
        removal.filter(|r| !release::may_rejoin(Some(&r.value), &joining.join_token_sha256))
    };
    let host_removed = || ApiError::Conflict {
        code: "host_removed",
        message: format!(
            "host '{}' was removed from the group: it registers again only with a join token made since (rotate it)",
            body.host
        ),
    };
    let removal = store.get::<release::Removal>(&removed_path).await?;
    if removal_of(removal.clone()).is_some() {
        return Err(host_removed());
    }
    // The index first: until the instance names this digest, the entry grants nothing.
    store.create(&layout::host_token(&digest), &reference).await?;
    let now = unix_now();
    let mut replaced = None;
    let host = body.host.clone();
    let instance_path = layout::instance(&joining.group, &body.host);
    let instance_id = body.instance_id.clone();
    store
        .modify::<Instance, StoreError, _>(&instance_path, |current| {
            replaced = current.as_ref().and_then(|i| i.host_token_sha256.clone());
            // The ledger stays: the host may still run what it ran (convergence decides).
            let kept = current.unwrap_or_default();
            Ok(Instance {
                host: host.clone(),
                registered_at: now,
                host_token_sha256: Some(digest.clone()),
                instance_id: instance_id.clone(),
                last_seen: Some(now),
                ..kept
            })
        })
        .await?;
    // A removal that raced this registration wins: look again now that the record is written.
    if removal.is_none() && removal_of(store.get::<release::Removal>(&removed_path).await?).is_some() {
        store.delete(&instance_path).await?;
        store.delete(&layout::host_token(&digest)).await?;
        return Err(host_removed());
    }
    if removal.is_some() {
        store.delete(&removed_path).await?;
    }
    // Its agent polls next, most likely here.
    engine.remember_token_place(&digest, &reference);
    engine.converge(&reference, release::Arrival::Registered, now).await?;
    if let Some(old) = replaced {
        store.delete(&layout::host_token(&old)).await?;
        tracing::info!(host = %body.host, group = %joining.group.group, "host re-registered; its old token is refused");
    } else {
        tracing::info!(host = %body.host, group = %joining.group.group, "host registered");
    }
    Ok(Json(Registered {
        application: joining.group.application,
        group: joining.group.group,
        host: body.host,
        host_token: token,
    }))
}

/// `GET /v1/agent/jobs` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

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
    Ok(match hold_for_job(&engine, &host, until).await? {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
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
    let group = &host.host.group;
    let same_group =
        release.account == group.account && release.application == group.application && release.group == group.group;
    let Some(planned) = plan.host(name).filter(|_| same_group) else { return Err(never()) };
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
                create_once(store, &layout::result(id, name), &result).await?;
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
/// this host holds, uploaded before its report names how many parts there are. A part sent
/// again replaces itself; once the job is settled, parts are refused (409 `job_settled`).
pub async fn upload_log_part(
    State(engine): State<Engine>,
    host: Host,
    ApiQuery(query): ApiQuery<LogPartQuery>,
    LimitedBody(body): LimitedBody<{ release::LOG_PART_BYTES }>,
) -> Result<StatusCode, ApiError> {
    if !release::LOG_STEPS.contains(&query.step.as_str()) {
        return Err(ApiError::invalid("step", "invalid_value", "must be pull, stop or start"));
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
    let (release, group) = (&plan.release, &host.host.group);
    let same_group =
        release.account == group.account && release.application == group.application && release.group == group.group;
    let Some(planned) = plan.host(name).filter(|_| same_group) else { return Err(never()) };
    if plan.known_settled(planned, kind) || reported(&engine, id, name, kind).await? {
        return Err(ApiError::Conflict { code: "job_settled", message: "the job was already reported".into() });
    }
    let part = release::LogPart { step: query.step, stream: query.stream, text };
    engine.context.store.put(&layout::job_logs_part(kind, id, name, query.part), &part).await?;
    Ok(StatusCode::NO_CONTENT)
}

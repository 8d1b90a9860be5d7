//! Which job a host is due, and holding its poll until there is one: the scheduling of
//! agents' polls, over the group's snapshot (see `super::watch`).

use std::time::Duration;

use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::store::StoreError;
use berth_shared::release::{self, HostResult, Job, JobKind, PullResult};

use super::{Engine, GroupSnapshot, Plan};
use crate::store_layout::{self as layout, HostRecord, HostRef, ReleaseState};

/// How often a held poll of a group that is not watched (past the watch limit) looks again:
/// another process (a Lambda event handler) may move the release without waking it.
const POLL_RECHECK: Duration = Duration::from_secs(1);

/// Holds a poll until there is a job for `host` or `until`. 100,000 of these wait at once, so
/// what lives across the wait is kept small: the reads are boxed, and the group's snapshot
/// is shared. `said_reported` is the job of the host's last report Berth took, by the host's word.
pub(crate) async fn hold_for_job(
    engine: &Engine,
    host: &HostRef,
    until: tokio::time::Instant,
    said_reported: Option<&str>,
) -> Result<Option<Job>, ApiError> {
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
                && let Some(job) = Box::pin(job_for(engine, host, &snapshot, said_reported)).await?
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
async fn job_for(
    engine: &Engine,
    host: &HostRef,
    snapshot: &GroupSnapshot,
    said_reported: Option<&str>,
) -> Result<Option<Job>, ApiError> {
    let store = &engine.context.store;
    if let (Some(id), Some((status, phase))) = (snapshot.active(), snapshot.state())
        && !status.is_terminal()
    {
        let Some(plan) = engine.plan(id).await? else { return Ok(None) };
        // A snapshot may name a release told by news: only one of the host's own group acts.
        let (release, group) = (&plan.release, &host.group);
        if (&release.account, &release.application, &release.group)
            != (&group.account, &group.application, &group.group)
        {
            return Ok(None);
        }
        let Some(kind) = due(engine, host, &plan, status, phase, said_reported).await? else { return Ok(None) };
        let Some(state) = engine.state_for_poll(&plan, (status, phase)).await? else { return Ok(None) };
        if (state.status, state.phase) == (status, phase) {
            return Ok(Some(job(engine, host, id, &plan, kind)?));
        }
        if !state.status.is_terminal() {
            return job_at(engine, host, id, &plan, &state, said_reported).await;
        }
        // It ended since: the host's convergence, if any, below.
    }
    // No release runs on the group: the host's own convergence, if it has one running.
    let Some(instance) = store.get::<HostRecord>(&layout::host_record(&host.group, &host.host)).await? else {
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
    job_at(engine, host, &id, &plan, &state, said_reported).await
}

/// The job `host` has in release `id` at `state`, if any.
async fn job_at(
    engine: &Engine,
    host: &HostRef,
    id: &str,
    plan: &Plan,
    state: &ReleaseState,
    said_reported: Option<&str>,
) -> Result<Option<Job>, ApiError> {
    match due(engine, host, plan, state.status, state.phase, said_reported).await? {
        Some(kind) => Ok(Some(job(engine, host, id, plan, kind)?)),
        None => Ok(None),
    }
}

/// Which job `host` is due in the plan's release at this status and phase: a host outside the
/// phase reads nothing, one in it reads whether it already reported (unless this process
/// knows it did, or the host says so).
async fn due(
    engine: &Engine,
    host: &HostRef,
    plan: &Plan,
    status: release::ReleaseStatus,
    phase: release::Phase,
    said_reported: Option<&str>,
) -> Result<Option<JobKind>, ApiError> {
    let Some(planned) = plan.host(&host.host) else { return Ok(None) };
    let Some(kind) = release::next_job_at(status, phase, Some(planned.batch), false, false) else { return Ok(None) };
    if plan.known_settled(planned, kind) {
        return Ok(None);
    }
    // The host's word on its last report Berth took saves the read. Believed for this poll only
    // and never noted as settled: a host that lies withholds only its own job, or is handed a
    // pull it made (it pulls what it has; its report is a repeat).
    if let Some(said) = said_reported {
        if said == release::job_id(&plan.release.id, &host.host, kind) {
            return Ok(None);
        }
        // An agent reports a job before it polls again, so one whose last report was another
        // job has not reported this pull. Never a run on its word: the release may have timed
        // the host out (its failure written for it) and a run handed out again would run.
        if kind == JobKind::Pull {
            return Ok(Some(kind));
        }
    }
    if reported(engine, plan, &host.host, kind).await? {
        plan.note_settled(planned, kind);
        return Ok(None);
    }
    Ok(Some(kind))
}

/// Whether the host's job of `kind` in the plan's release has its result (read, unless this
/// process witnessed every report of it: then it knows).
pub(crate) async fn reported(engine: &Engine, plan: &Plan, host: &str, kind: JobKind) -> Result<bool, StoreError> {
    if plan.witnessed {
        return Ok(plan.host(host).is_some_and(|planned| plan.known_settled(planned, kind)));
    }
    let store = &engine.context.store;
    let id = &plan.release.id;
    Ok(match kind {
        JobKind::Pull => {
            engine.report_kept::<PullResult>(plan, host)
                || store.get::<PullResult>(&layout::pull(id, host)).await?.is_some()
        }
        JobKind::Run => {
            engine.report_kept::<HostResult>(plan, host)
                || store.get::<HostResult>(&layout::result(id, host)).await?.is_some()
        }
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

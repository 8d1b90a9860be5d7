//! `POST /v1/agent/reports` and `POST /v1/agent/health`: what a host says of its jobs.

use super::*;
use crate::engine::jobs::reported;

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
    let Host { host, record } = host;
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
    let name = host.host.as_str();
    let id = body.release.as_str();
    // Another group's release, or one that does not exist: the same answer, revealing nothing.
    let never = || refused(format!("no job of this release was handed to host '{name}'"));
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(never());
    }
    let store = &engine.context.store;
    let plan = engine.plan(id).await?.ok_or_else(never)?;
    let release = &plan.release;
    let planned = planned_in(&plan, &host).ok_or_else(never)?;
    let batch = planned.batch;
    release::check_job(id, name, &body).map_err(refused)?;
    // A pull's usual few lines stay in its result (one write); a long output is stored as a
    // run's is, first, so the result never outgrows a document.
    let inline = body.kind == JobKind::Pull
        && body.log_parts.is_none()
        && serde_json::to_vec(&body.logs.pull).is_ok_and(|v| v.len() <= release::INLINE_LOG_BYTES);
    let settled = || async {
        let settled = plan.known_settled(planned, body.kind) || reported(&engine, &plan, name, body.kind).await?;
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
    let state = engine.state_for_report(&plan, &host.group).await?.ok_or_else(never)?;
    engine.saw(release, state.status, state.phase);
    if let Err(why) = release::check_due(state.status, state.phase, batch, body.kind) {
        // A repeat of a pull settled before the release moved on changes nothing either.
        if inline && settled().await? {
            return Ok(Json(ReportAccepted { accepted: false }));
        }
        return Err(refused(why));
    }
    let now = unix_now();
    // What this report wrote, told with the advance it asks for.
    let mut told = None;
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
            let mut failed = None;
            if written && !body.ok {
                // A host that cannot pull does not run: it fails as a pull failure.
                let result = HostResult {
                    ok: false,
                    step: Step::Pull,
                    exit_code: body.exit_code,
                    reason: body.reason.clone(),
                    at: now,
                };
                let written = create_once(store, &layout::result(id, name), &result).await?;
                plan.note_settled(planned, JobKind::Run);
                if written {
                    engine.keep_report(&plan, name, result.clone());
                    berth_shared::platform::metrics::release_host_finished(false);
                    failed = Some(result);
                }
            }
            if written {
                told = crate::engine::ToldReport::of(name, Some(&pull), failed.as_ref());
                engine.keep_report(&plan, name, pull);
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
                told = crate::engine::ToldReport::of(name, None, Some(&result));
                engine.keep_report(&plan, name, result);
                berth_shared::platform::metrics::release_host_finished(body.ok);
            }
            if written && body.ok {
                // The record read to authenticate the host saves a read, unless it changed since.
                engine.record_run(release, name, now, Some(std::sync::Arc::unwrap_or_clone(record))).await?;
                if let Some(told) = &mut told {
                    told.recorded = true;
                }
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
        engine.request_advance_after_report(id, &release.account, told).await?;
    }
    Ok(Json(ReportAccepted { accepted: written }))
}

//! `POST /v1/agent/logs`: a part of a job's output.

use super::*;
use crate::engine::jobs::reported;

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
    if plan.known_settled(planned, kind) || reported(&engine, &plan, name, kind).await? {
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

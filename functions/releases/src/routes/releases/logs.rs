//! Each host's logs of a release: stored in parts as agents report them, answered whole.

use super::*;

/// `GET /v1/releases/{id}/hosts/{host}/logs`: the full output of each step run on the host.
pub async fn host_logs(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((id, host)): ApiPath<(String, String)>,
) -> Result<Json<HostLogsView>, ApiError> {
    let release = load_release(&engine, &account, &id).await?.value;
    if release.batch_of(&host).is_none() {
        return Err(ApiError::NotFound(format!("host '{host}' in release '{id}'")));
    }
    let store = &engine.context.store;
    let pull = store.get::<PullResult>(&layout::pull(&id, &host)).await?.map(|d| d.value);
    let unhealthy = store.get::<release::Unhealthy>(&layout::unhealthy_host(&id, &host)).await?;
    let result = match unhealthy {
        Some(turned) => Some(turned.value.as_result()),
        None => store.get::<HostResult>(&layout::result(&id, &host)).await?.map(|d| d.value),
    };
    let logs = load_logs(&engine, JobKind::Run, &id, &host).await?;
    let pulled = load_logs(&engine, JobKind::Pull, &id, &host).await?.pull;
    let state = release::host_state(&release, &host, pull.as_ref(), result.as_ref());
    let verifying = release.deployment.health.is_some()
        && store.get::<release::Verifying>(&layout::verifying_host(&id, &host)).await?.is_some();
    let state = release::verifying_state(state, verifying);
    Ok(Json(HostLogsView {
        host,
        // A pull-first pull's output: a long one in its own logs, else inline in its result.
        pull: logs.pull.or(pulled).or(pull.map(|p| p.output)),
        release: id,
        result,
        start: logs.start,
        state,
        stop: logs.stop,
        health: logs.health,
    }))
}

/// `GET /v1/releases/{id}/hosts/{host}/logs` answer: each step's whole output (`None`: the
/// step did not run, or has not reported yet) and the host's outcome.
#[derive(Serialize)]
pub struct HostLogsView {
    host: String,
    /// The pull's output, from the run's logs or else from the pull-first report.
    /// The health check's probes, one line each (when the deployment has one).
    #[serde(serialize_with = "sorted_keys", skip_serializing_if = "Option::is_none")]
    health: Option<release::StepOutput>,
    #[serde(serialize_with = "sorted_keys")]
    pull: Option<release::StepOutput>,
    release: String,
    #[serde(serialize_with = "sorted_keys")]
    result: Option<HostResult>,
    #[serde(serialize_with = "sorted_keys")]
    start: Option<release::StepOutput>,
    state: release::HostState,
    #[serde(serialize_with = "sorted_keys")]
    stop: Option<release::StepOutput>,
}

/// Stores the logs of a host's job whole: inline when small, else a head and parts written
/// before it (so a head never names parts that are not there). With `uploaded`, the agent
/// sent the text as that many parts already; they must all be there.
pub(crate) async fn store_logs(
    engine: &Engine,
    kind: JobKind,
    id: &str,
    host: &str,
    logs: &HostLogs,
    uploaded: Option<usize>,
) -> Result<(), ApiError> {
    let store = &engine.context.store;
    let head = layout::job_logs(kind, id, host);
    if let Some(count) = uploaded {
        if count > release::MAX_LOG_PARTS {
            let limit = release::MAX_LOG_PARTS;
            return Err(ApiError::invalid("log_parts", "out_of_range", format!("at most {limit} parts")));
        }
        let there: std::collections::BTreeSet<String> =
            store.list_paths(&layout::job_logs_parts(kind, id, host)).await?.into_iter().collect();
        if let Some(missing) = (0..count).find(|i| !there.contains(&layout::job_logs_part(kind, id, host, *i))) {
            return Err(ApiError::Conflict {
                code: "log_parts_missing",
                message: format!("log part {missing} of the {count} the report names was not uploaded"),
            });
        }
        store.put(&head, &StoredLogs { logs: logs.clone(), parts: count }).await?;
        return Ok(());
    }
    let size = serde_json::to_vec(logs).map(|v| v.len()).unwrap_or(usize::MAX);
    if size <= release::INLINE_LOG_BYTES {
        store.put(&head, &StoredLogs { logs: logs.clone(), parts: 0 }).await?;
        return Ok(());
    }
    let (text_free, parts) = release::split_logs(logs, release::LOG_PART_BYTES);
    for (index, part) in parts.iter().enumerate() {
        store.put(&layout::job_logs_part(kind, id, host, index), part).await?;
    }
    store.put(&head, &StoredLogs { logs: text_free, parts: parts.len() }).await?;
    Ok(())
}

pub(crate) async fn load_logs(engine: &Engine, kind: JobKind, id: &str, host: &str) -> Result<HostLogs, ApiError> {
    let store = &engine.context.store;
    let Some(stored) = store.get::<StoredLogs>(&layout::job_logs(kind, id, host)).await?.map(|d| d.value) else {
        return Ok(HostLogs::default());
    };
    let mut parts = Vec::with_capacity(stored.parts);
    for index in 0..stored.parts {
        let part = store
            .get::<release::LogPart>(&layout::job_logs_part(kind, id, host, index))
            .await?
            .ok_or_else(|| ApiError::Internal(format!("log part {index} of {host} in {id} is missing")))?;
        parts.push(part.value);
    }
    Ok(release::join_logs(stored.logs, parts))
}

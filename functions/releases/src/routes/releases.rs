//! Releases: create (or plan), get, cancel, confirm, and each host's logs.

use super::*;

/// `POST /v1/releases` query.
#[derive(Deserialize)]
pub struct CreateQuery {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/releases[?dry_run=true]`: plans the batches from the group's registered hosts;
/// a dry run returns the plan and does nothing else.
pub async fn create_release(
    State(engine): State<Engine>,
    account: Account,
    ApiQuery(query): ApiQuery<CreateQuery>,
    ApiJson(body): ApiJson<ReleaseRequest>,
) -> Result<Response, ApiError> {
    let options = release::validate_options(&body)?;
    let store = &engine.context.store;
    let reference = group_ref(&account, &body.application, &body.group)?;
    let group = store
        .get::<Group>(&layout::group_doc(&reference))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("group '{}'", body.group)))?;
    let deployment = store
        .get::<release::Deployment>(&layout::deployment(&account.id, &body.application, &body.deployment))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deployment '{}'", body.deployment)))?
        .value;
    let hosts = release::unique_hosts(
        store.list_paths(&layout::instances(&reference)).await?.iter().map(|p| layout::stem(p).to_owned()),
    );
    let hosts = engine.drop_hosts_outside_auto_scaling_group(&reference, &group.value, hosts).await?;
    let batches = release::plan_batches(&hosts, &options.batching)?;
    if query.dry_run {
        let plan = DryRun { batches, dry_run: true, hosts: hosts.len(), image: deployment.image.address(), options };
        return Ok(Json(plan).into_response());
    }
    let now = unix_now();
    let id = uuid::Uuid::new_v4().to_string();
    // One release per group at a time: claim the group by compare-and-swap.
    if let Some(other) = &group.value.active_release {
        let running = engine.state(other).await?.is_some_and(|r| !r.value.status.is_terminal());
        if running {
            return Err(ApiError::Conflict {
                code: "release_in_progress",
                message: format!("release {other} is still running on group '{}'", body.group),
            });
        }
    }
    let mut claimed = group.value.clone();
    claimed.active_release = Some(id.clone());
    store.update(&layout::group_doc(&reference), &claimed, &group.version).await?;
    store.create(&layout::active(&id), &ActiveRelease { account: account.id.clone() }).await?;
    let created = Release {
        id: id.clone(),
        account: account.id.clone(),
        application: body.application.clone(),
        group: body.group.clone(),
        group_kind: group.value.kind,
        deployment,
        options,
        batches: batches.into(),
        status: ReleaseStatus::Running,
        phase: release::Phase::Starting,
        phase_started_at: now,
        reason: None,
        created_at: now,
        finished_at: None,
        host_parts: None,
    };
    // The parts before the plan that names them: a plan is never seen without its hosts.
    let (head, parts) = release::split_plan(&created);
    let paths: Vec<String> = (0..parts.len()).map(|i| layout::plan_part(&id, i)).collect();
    futures::future::try_join_all(paths.iter().zip(&parts).map(|(path, part)| store.create(path, part))).await?;
    store.create(&layout::plan(&id), &head).await?;
    store.create(&layout::release(&id), &ReleaseState::of(&created)).await?;
    engine.request_advance(&id, &account.id).await?;
    tracing::info!(release = %id, hosts = hosts.len(), "release created");
    Ok((StatusCode::CREATED, Json(view(&engine, &created).await?)).into_response())
}

/// `POST /v1/releases?dry_run=true` answer: the batches a release would run now, and nothing
/// done.
#[derive(Serialize)]
pub struct DryRun {
    batches: Vec<Vec<String>>,
    /// Always true: tells a plan from a release (whose answer has no `dry_run`).
    dry_run: bool,
    /// How many hosts the plan covers.
    hosts: usize,
    image: String,
    #[serde(serialize_with = "sorted_keys")]
    options: release::ReleaseOptions,
}

async fn load_release(
    engine: &Engine,
    account: &Account,
    id: &str,
) -> Result<berth_shared::platform::store::Versioned<Release>, ApiError> {
    let not_found = || ApiError::NotFound(format!("release '{id}'"));
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_found());
    }
    let doc = engine.load(id).await?.ok_or_else(not_found)?;
    // Another account's release is as absent as a missing one.
    if doc.value.account != account.id {
        return Err(not_found());
    }
    Ok(doc)
}

/// The release as callers see it (create, get, cancel and confirm answer it): status, phase,
/// each batch with each host's state, and a count of hosts per state.
#[derive(Serialize)]
pub struct ReleaseView {
    application: String,
    batches: Vec<BatchView>,
    created_at: u64,
    /// The deployment's name.
    deployment: String,
    finished_at: Option<u64>,
    group: String,
    id: String,
    /// The image's address at the registry's public host.
    image: String,
    #[serde(serialize_with = "sorted_keys")]
    options: release::ReleaseOptions,
    #[serde(serialize_with = "sorted_keys")]
    phase: release::Phase,
    reason: Option<String>,
    /// Why the group's scaling adapter could not suspend (or resume) for this release, while
    /// Berth retries; `null` otherwise.
    scaling_error: Option<String>,
    status: ReleaseStatus,
    /// Hosts per state, only states some host is in.
    summary: BTreeMap<String, usize>,
}

/// One batch of a release, numbered from 1.
#[derive(Serialize)]
pub struct BatchView {
    batch: usize,
    hosts: Vec<HostEntry>,
}

/// A host in a batch. Once it has a result, `step`, `exit_code` and `reason` are there (the
/// last two may be null); a host whose pull failed before any result has `step` and `reason`
/// only; any other host has neither.
#[derive(Serialize)]
pub struct HostEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<Option<i32>>,
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Option<String>>,
    state: release::HostState,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<Step>,
}

impl HostEntry {
    fn new(host: &str, state: release::HostState, pull: Option<&PullResult>, result: Option<&HostResult>) -> Self {
        let mut entry = Self { exit_code: None, host: host.to_owned(), reason: None, state, step: None };
        if let Some(r) = result {
            entry.step = Some(r.step);
            entry.exit_code = Some(r.exit_code);
            entry.reason = Some(r.reason.clone());
        } else if let Some(p) = pull.filter(|p| !p.ok) {
            entry.step = Some(Step::Pull);
            entry.reason = Some(p.reason.clone());
        }
        entry
    }
}

/// A release's [`ReleaseView`], from its plan and the outcomes its hosts wrote.
pub async fn view(engine: &Engine, release: &Release) -> Result<ReleaseView, ApiError> {
    let store = &engine.context.store;
    let pulls = read_all::<PullResult>(store, &layout::pulls(&release.id)).await?;
    let results = read_all::<HostResult>(store, &layout::results(&release.id)).await?;
    let mut states = Vec::new();
    let batches = release
        .batches
        .iter()
        .enumerate()
        .map(|(index, hosts)| {
            let hosts = hosts
                .iter()
                .map(|host| {
                    let pull = pulls.get(host);
                    let result = results.get(host);
                    let state = release::host_state_at(release, Some(index), pull, result);
                    states.push(state);
                    HostEntry::new(host, state, pull, result)
                })
                .collect();
            BatchView { batch: index + 1, hosts }
        })
        .collect();
    let summary: BTreeMap<String, usize> = release::summarize(states)
        .into_iter()
        .map(|(state, count)| {
            (serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(), count)
        })
        .collect();
    Ok(ReleaseView {
        application: release.application.clone(),
        batches,
        created_at: release.created_at,
        deployment: release.deployment.name.clone(),
        finished_at: release.finished_at,
        group: release.group.clone(),
        id: release.id.clone(),
        image: release.deployment.image.address(),
        options: release.options.clone(),
        phase: release.phase,
        reason: release.reason.clone(),
        scaling_error: scaling_error(engine, release).await?,
        status: release.status,
        summary,
    })
}

/// The scaling adapter's last failure for `release`'s lease (a scaling group's only).
async fn scaling_error(engine: &Engine, release: &Release) -> Result<Option<String>, ApiError> {
    if release.group_kind != GroupKind::Scaling {
        return Ok(None);
    }
    let group = GroupRef {
        account: release.account.clone(),
        application: release.application.clone(),
        group: release.group.clone(),
    };
    let state = engine.context.store.get::<ScalingState>(&layout::scaling(&group)).await?;
    Ok(state
        .map(|s| s.value)
        .filter(|s| s.lease.as_ref().is_some_and(|l| l.release == release.id))
        .and_then(|s| s.error))
}

/// `GET /v1/releases/{id}`.
pub async fn get_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReleaseView>, ApiError> {
    let doc = load_release(&engine, &account, &id).await?;
    Ok(Json(view(&engine, &doc.value).await?))
}

/// `POST /v1/releases/{id}/cancel`: batches not yet started never start; scaling resumes.
pub async fn cancel_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReleaseView>, ApiError> {
    load_release(&engine, &account, &id).await?;
    let now = unix_now();
    let not_found = || ApiError::NotFound(format!("release '{id}'"));
    let cancelled = engine.modify(&id, |current| release::cancel(current, now)).await?.ok_or_else(not_found)?;
    engine.moved(&cancelled).await;
    // The cancel stands even if scaling cannot be resumed right now (AWS throttling): the
    // sweep retries the clean-up, and the answer's `scaling_error` says why it is pending.
    if let Err(error) = engine.clean_up(&cancelled).await {
        tracing::warn!(release = %id, %error, "clean-up after the cancel failed; the sweep retries it");
    }
    tracing::info!(release = %id, "release cancelled");
    Ok(Json(view(&engine, &cancelled).await?))
}

/// `POST /v1/releases/{id}/confirm`: starts the next batch of a release paused for confirmation.
pub async fn confirm_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReleaseView>, ApiError> {
    load_release(&engine, &account, &id).await?;
    let now = unix_now();
    let not_found = || ApiError::NotFound(format!("release '{id}'"));
    let confirmed = engine.modify(&id, |current| release::confirm(current, now)).await?.ok_or_else(not_found)?;
    engine.moved(&confirmed).await;
    engine.request_advance(&id, &account.id).await?;
    Ok(Json(view(&engine, &confirmed).await?))
}

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
    let result = store.get::<HostResult>(&layout::result(&id, &host)).await?.map(|d| d.value);
    let logs = load_logs(&engine, JobKind::Run, &id, &host).await?;
    let pulled = load_logs(&engine, JobKind::Pull, &id, &host).await?.pull;
    let state = release::host_state(&release, &host, pull.as_ref(), result.as_ref());
    Ok(Json(HostLogsView {
        host,
        // A pull-first pull's output: a long one in its own logs, else inline in its result.
        pull: logs.pull.or(pulled).or(pull.map(|p| p.output)),
        release: id,
        result,
        start: logs.start,
        state,
        stop: logs.stop,
    }))
}

/// `GET /v1/releases/{id}/hosts/{host}/logs` answer: each step's whole output (`None`: the
/// step did not run, or has not reported yet) and the host's outcome.
#[derive(Serialize)]
pub struct HostLogsView {
    host: String,
    /// The pull's output, from the run's logs or else from the pull-first report.
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

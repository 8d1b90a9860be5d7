//! Releases: create (or plan), get, cancel, confirm, and each host's logs.

use super::*;
use berth_shared::platform::clock::unix_now_ms;

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
    let mut options = release::validate_options(&body)?;
    let store = &engine.context.store;
    let reference = group_ref(&account, &body.application, &body.group)?;
    let group = load_group(&engine, &reference).await?;
    let deployment = store
        .get::<release::Deployment>(&layout::deployment(&account.id, &body.application, &body.deployment))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deployment '{}'", body.deployment)))?
        .value;
    // A digest whose signing key was revoked since its publish check is not rolled out.
    berth_shared::signing::refuse_revoked_digest(store, &account.id, &deployment.image.address()).await?;
    let now = unix_now();
    // Hosts not seen for the group's stale_after_seconds are left out (shown as skipped).
    let (hosts, stale, stale_count) = engine.live_hosts(&reference, group.value.stale_after_seconds, now).await?;
    // Hosts whose instance left the group's Auto Scaling group are not planned either.
    let hosts = engine.drop_hosts_outside_auto_scaling_group(&reference, &group.value, hosts).await?;
    let batches = release::plan_batches(&hosts, &options.batching)?;
    release::resolve_budgets(&mut options, &batches);
    engine.check_gates(&options, group.value.load_balancer.as_ref(), hosts.len())?;
    if query.dry_run {
        let plan = DryRun {
            batches,
            dry_run: true,
            hosts: hosts.len(),
            image: deployment.image.address(),
            options,
            revision: deployment.revision,
            stale: stale.into_iter().map(|s| s.host).collect(),
        };
        return Ok(Json(plan).into_response());
    }
    let id = uuid::Uuid::new_v4().to_string();
    // One release per group at a time: claim the group by compare-and-swap.
    engine.claim(&reference, &id, None).await?;
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
        trigger: release::Trigger::Manual,
        stale,
        stale_count,
        created_ms: unix_now_ms(),
        load_balancer: group.value.load_balancer.clone(),
    };
    let plan = engine.create_documents(created).await?;
    tracing::info!(release = %id, hosts = hosts.len(), stale = stale_count, "release created");
    Ok((StatusCode::CREATED, Json(view(&engine, &plan.release).await?)).into_response())
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
    /// The deployment's revision it would roll out.
    revision: u64,
    /// Hosts left out as stale.
    stale: Vec<String>,
}

pub(crate) async fn load_release(
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
    /// The deployment's revision it rolls out.
    revision: u64,
    /// The release that rolls this one back, once started.
    rollback: Option<String>,
    /// Hosts of the group it left out as stale: `skipped`, with the reason.
    skipped_hosts: Vec<HostEntry>,
    /// How many hosts it left out as stale (`skipped_hosts` lists at most 10,000).
    stale_count: usize,
    /// Why the group's scaling adapter could not suspend (or resume) for this release, while
    /// Berth retries; `null` otherwise.
    scaling_error: Option<String>,
    /// While an alarm source does not answer: since when, and why (no batch starts meanwhile).
    alarms_unreachable: Option<release::AlarmState>,
    /// The group's load balancer the hosts are drained from, and the last error reaching it.
    load_balancer: Option<LoadBalancerView>,
    status: ReleaseStatus,
    /// Hosts per state, only states some host is in.
    summary: BTreeMap<String, usize>,
    /// What started it: `manual`, `rollback` (with `of`, `automatic`) or `convergence` (`of`, `host`).
    #[serde(serialize_with = "sorted_keys")]
    trigger: release::Trigger,
}

/// A release's load balancer: as the group named it, and why it could not be reached (while
/// Berth retries).
#[derive(Serialize)]
pub struct LoadBalancerView {
    #[serde(flatten)]
    config: release::LoadBalancer,
    error: Option<String>,
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
    /// Where the host stands with the group's load balancer (draining, out, back, left_out).
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancer: Option<release::Balanced>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Option<String>>,
    state: release::HostState,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<Step>,
}

impl HostEntry {
    fn new(host: &str, state: release::HostState, pull: Option<&PullResult>, result: Option<&HostResult>) -> Self {
        let mut entry =
            Self { exit_code: None, host: host.to_owned(), load_balancer: None, reason: None, state, step: None };
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
    let (verifying, unhealthy) = health_notes(engine, release).await?;
    let balancer = match release.load_balancer {
        Some(_) => store.get::<release::BalancerState>(&layout::balancer(&release.id)).await?.map(|d| d.value),
        None => None,
    }
    .unwrap_or_default();
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
                    let turned = unhealthy.get(host).map(release::Unhealthy::as_result);
                    let result = turned.as_ref().or(results.get(host));
                    let state = release::host_state_at(release, Some(index), pull, result);
                    let state = release::verifying_state(state, verifying.contains(host));
                    states.push(state);
                    let mut entry = HostEntry::new(host, state, pull, result);
                    entry.load_balancer = balancer.hosts.get(host).copied();
                    entry
                })
                .collect();
            BatchView { batch: index + 1, hosts }
        })
        .collect();
    let skipped_hosts: Vec<HostEntry> = release
        .stale
        .iter()
        .map(|stale| {
            let stale_after = release.created_at.saturating_sub(stale.seen);
            let reason = format!(
                "not seen for {stale_after} s when the release was planned (the group's stale_after_seconds); \
                 skipped, not counted as a failure"
            );
            HostEntry {
                exit_code: None,
                host: stale.host.clone(),
                load_balancer: None,
                reason: Some(Some(reason)),
                state: release::HostState::Skipped,
                step: None,
            }
        })
        .collect();
    states.extend(std::iter::repeat_n(release::HostState::Skipped, release.stale_count));
    let rollback_id = release::rollback_id(&release.id);
    let rollback = store.get::<Release>(&layout::plan(&rollback_id)).await?.map(|_| rollback_id);
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
        revision: release.deployment.revision,
        rollback,
        skipped_hosts,
        stale_count: release.stale_count,
        scaling_error: scaling_error(engine, release).await?,
        alarms_unreachable: match release.options.alarms.is_empty() {
            true => None,
            false => store.get::<release::AlarmState>(&layout::alarms(&release.id)).await?.map(|d| d.value),
        },
        load_balancer: release
            .load_balancer
            .clone()
            .map(|config| LoadBalancerView { config, error: balancer.error.clone() }),
        status: release.status,
        summary,
        trigger: release.trigger.clone(),
    })
}

/// What a health-checked release's hosts said of their health: those whose check runs or
/// ran, and those that turned unhealthy after their run succeeded. Nothing is read for a
/// release without a health check.
async fn health_notes(
    engine: &Engine,
    release: &Release,
) -> Result<(std::collections::BTreeSet<String>, BTreeMap<String, release::Unhealthy>), ApiError> {
    if release.deployment.health.is_none() {
        return Ok(Default::default());
    }
    let store = &engine.context.store;
    let verifying = store.list_paths(&layout::verifying(&release.id)).await?;
    let verifying = verifying.iter().map(|p| layout::stem(p).to_owned()).collect();
    Ok((verifying, read_all(store, &layout::unhealthy(&release.id)).await?))
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
    let cancelled = change_release(&engine, &account, &id, release::cancel).await?;
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
    let doc = load_release(&engine, &account, &id).await?;
    let now = unix_now();
    let not_found = || ApiError::NotFound(format!("release '{id}'"));
    let confirmed = match engine.confirm_gate(&doc.value).await? {
        // An alarm fires: the batch does not start, the release fails (and rolls back).
        Some(reason) => engine
            .modify(&id, |current| {
                release::confirm(current, now)?;
                let failed = release::Decision::Finish(ReleaseStatus::Failed, Some(reason.clone()));
                Ok::<_, ApiError>(release::apply(current, &failed, now))
            })
            .await?
            .ok_or_else(not_found)?,
        None => engine.modify(&id, |current| release::confirm(current, now)).await?.ok_or_else(not_found)?,
    };
    engine.moved(&confirmed).await;
    engine.request_advance(&id, &account.id).await?;
    Ok(Json(view(&engine, &confirmed).await?))
}

/// `POST /v1/releases/{id}/pause`: the release stops before its next batch and waits for
/// `confirm` before each batch from then on (409 `not_running` once it ended).
pub async fn pause_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReleaseView>, ApiError> {
    let paused = change_release(&engine, &account, &id, release::pause).await?;
    engine.request_advance(&id, &account.id).await?;
    Ok(Json(view(&engine, &paused).await?))
}

/// The caller's release `id` changed by `change` (a compare-and-swap), the change made known.
async fn change_release(
    engine: &Engine,
    account: &Account,
    id: &str,
    change: fn(&Release, u64) -> Result<Release, ApiError>,
) -> Result<Release, ApiError> {
    load_release(engine, account, id).await?;
    let now = unix_now();
    let changed = engine.modify(id, |current| change(current, now)).await?;
    let changed = changed.ok_or_else(|| ApiError::NotFound(format!("release '{id}'")))?;
    engine.moved(&changed).await;
    Ok(changed)
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

/// `POST /v1/releases/{id}/rollback`: starts the release that puts each host this one changed
/// back on the revision it ran before, with the same batching and budgets (201). One per
/// release: asking again is a 409 `already_rolled_back` naming it.
pub async fn rollback_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let release = load_release(&engine, &account, &id).await?.value;
    let rollback = engine.start_rollback(&release, false).await?;
    Ok((StatusCode::CREATED, Json(view(&engine, &rollback.release).await?)).into_response())
}

/// A release in a listing: what it rolled out, how it ended, no hosts.
#[derive(Serialize)]
pub struct ReleaseSummary {
    created_at: u64,
    deployment: String,
    finished_at: Option<u64>,
    /// How many hosts it planned.
    hosts: usize,
    id: String,
    image: String,
    reason: Option<String>,
    revision: u64,
    status: ReleaseStatus,
    #[serde(serialize_with = "sorted_keys")]
    trigger: release::Trigger,
}

/// `GET /v1/applications/{app}/groups/{group}/releases` answer.
#[derive(Serialize)]
pub struct ReleasePage {
    next_page_token: Option<String>,
    releases: Vec<ReleaseSummary>,
}

/// `GET /v1/applications/{app}/groups/{group}/releases`: the group's releases (rollbacks and
/// convergences too), newest first, each with its outcome.
pub async fn list_releases(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ReleasePage>, ApiError> {
    let (size, token) = query.checked()?;
    let reference = group_ref(&account, &app, &group)?;
    load_group(&engine, &reference).await?;
    let store = &engine.context.store;
    // The index keys sort newest first: only the page's releases are read.
    let keys: Vec<(String, String)> = store
        .list_paths(&layout::group_releases(&reference))
        .await?
        .iter()
        .map(|p| (layout::stem(p).to_owned(), p.clone()))
        .collect();
    let (paths, next) = release::page(keys, token, size);
    let mut releases = Vec::with_capacity(paths.len());
    for path in paths {
        let Some(entry) = store.get::<layout::ReleaseEntry>(&path).await? else { continue };
        let id = entry.value.id;
        let (Some(head), Some(state)) = (store.get::<Release>(&layout::plan(&id)).await?, engine.state(&id).await?)
        else {
            continue;
        };
        let head = head.value;
        let hosts = match &head.host_parts {
            Some(parts) => parts.sizes.iter().sum(),
            None => head.hosts().count(),
        };
        let state = state.value;
        releases.push(ReleaseSummary {
            created_at: head.created_at,
            deployment: head.deployment.name.clone(),
            finished_at: state.finished_at,
            hosts,
            id,
            image: head.deployment.image.address(),
            reason: state.reason,
            revision: head.deployment.revision,
            status: state.status,
            trigger: head.trigger,
        });
    }
    Ok(Json(ReleasePage { next_page_token: next, releases }))
}

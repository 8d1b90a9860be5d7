//! Releases: create (or plan), get, cancel, confirm, and each host's logs.

use super::*;
use berth_shared::platform::clock::unix_now_ms;

mod logs;
mod view;

pub(crate) use logs::store_logs;
pub use logs::{HostLogsView, host_logs};
pub use view::{BatchView, HostEntry, LoadBalancerView, ReleaseView, view};

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

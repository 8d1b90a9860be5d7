//! HTTP handlers: applications, groups, deployments and releases for providers (account
//! bearer token), registration, long-polled jobs and reports for agents (group join token).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_shared::package::PackageVersion;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::http::account::{Account, HasAccountKeys};
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiPath, ApiQuery};
use berth_shared::platform::store::StoreError;
use berth_shared::release::{
    self, DeploymentRequest, GroupKind, HostLogs, HostResult, Job, JobKind, PullResult, Release, ReleaseRequest,
    ReleaseStatus, Report, ScalingState, Step,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::fanout::{Engine, create_once, read_all};
use crate::store_layout::{
    self as layout, ActiveRelease, Application, Group, GroupRef, HostRef, Instance, InstanceView, ReleaseState,
    StoredLogs,
};

impl HasAccountKeys for Engine {
    fn account_keys(&self) -> &berth_shared::platform::http::account::AccountKeys {
        &self.context.account_keys
    }
}

/// Longest an agent's poll is held.
pub const MAX_POLL_SECONDS: u64 = 30;
/// How long a poll is held when the agent does not say.
pub const DEFAULT_POLL_SECONDS: u64 = 20;
/// While a poll is held, the store is also re-read this often: another process (a Lambda
/// event handler) may move the release without waking this one.
const POLL_RECHECK: Duration = Duration::from_secs(1);

fn new_join_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    format!("bjt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

// ---------------------------------------------------------------------------------------
// Applications, groups, deployments
// ---------------------------------------------------------------------------------------

/// `POST /v1/applications` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    name: String,
}

/// `POST /v1/applications`.
pub async fn create_application(
    State(engine): State<Engine>,
    account: Account,
    ApiJson(body): ApiJson<NewApplication>,
) -> Result<Response, ApiError> {
    release::validate_name("name", &body.name)?;
    let app = Application { name: body.name, created_at: unix_now() };
    engine.context.store.create(&layout::application_doc(&account.id, &app.name), &app).await?;
    Ok((StatusCode::CREATED, Json(app)).into_response())
}

async fn load_application(engine: &Engine, account: &Account, app: &str) -> Result<Application, ApiError> {
    release::validate_name("application", app)?;
    Ok(engine
        .context
        .store
        .get::<Application>(&layout::application_doc(&account.id, app))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("application '{app}'")))?
        .value)
}

/// `GET /v1/applications/{app}`.
pub async fn get_application(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<Application>, ApiError> {
    Ok(Json(load_application(&engine, &account, &app).await?))
}

/// `POST /v1/applications/{app}/groups` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
    #[serde(default)]
    kind: GroupKind,
}

/// `POST /v1/applications/{app}/groups`: the answer carries the join token, shown only here.
pub async fn create_group(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<NewGroup>,
) -> Result<Response, ApiError> {
    load_application(&engine, &account, &app).await?;
    release::validate_name("name", &body.name)?;
    let token = new_join_token();
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    let reference = GroupRef { account: account.id.clone(), application: app.clone(), group: body.name.clone() };
    let group = Group {
        name: body.name,
        kind: body.kind,
        join_token_sha256: Some(digest.clone()),
        active_release: None,
        created_at: unix_now(),
    };
    let store = &engine.context.store;
    store.create(&layout::group_doc(&reference), &group).await?;
    store.create(&layout::join_token(&digest), &reference).await?;
    if group.kind == GroupKind::Scaling {
        create_once(store, &layout::scaling(&reference), &ScalingState::default()).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "application": app, "name": group.name, "kind": group.kind, "join_token": token })),
    )
        .into_response())
}

/// `POST /v1/applications/{app}/groups/{group}/join-token` answer; the token is shown only here.
#[derive(Serialize)]
pub struct JoinToken {
    application: String,
    group: String,
    join_token: String,
}

/// Replaces a group's join token (`Some`) or revokes it (`None`): the group's record changes
/// by compare-and-swap, so the old token is refused at once; its index entry goes after.
async fn replace_join_token(engine: &Engine, reference: &GroupRef, token: Option<&str>) -> Result<(), ApiError> {
    let store = &engine.context.store;
    let path = layout::group_doc(reference);
    if store.get::<Group>(&path).await?.is_none() {
        return Err(ApiError::NotFound(format!("group '{}'", reference.group)));
    }
    let digest = token.map(|t| berth_shared::platform::digest::sha256_hex(t.as_bytes()));
    if let Some(digest) = &digest {
        store.create(&layout::join_token(digest), reference).await?;
    }
    let mut old = None;
    store
        .modify::<Group, ApiError, _>(&path, |current| {
            let mut group = current.ok_or_else(|| ApiError::NotFound(format!("group '{}'", reference.group)))?;
            old = group.join_token_sha256.take();
            group.join_token_sha256 = digest.clone();
            Ok(group)
        })
        .await?;
    if let Some(old) = old {
        store.delete(&layout::join_token(&old)).await?;
    }
    Ok(())
}

/// `POST /v1/applications/{app}/groups/{group}/join-token`: a new join token; the old one is
/// refused from now on. Hosts already registered keep their own host tokens.
pub async fn rotate_join_token(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> Result<Json<JoinToken>, ApiError> {
    let reference = group_ref(&account, &app, &group)?;
    let token = new_join_token();
    replace_join_token(&engine, &reference, Some(&token)).await?;
    tracing::info!(application = %app, %group, "join token rotated");
    Ok(Json(JoinToken { application: app, group, join_token: token }))
}

/// `DELETE /v1/applications/{app}/groups/{group}/join-token`: no host joins until a new token
/// is made; registered hosts keep working.
pub async fn revoke_join_token(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let reference = group_ref(&account, &app, &group)?;
    replace_join_token(&engine, &reference, None).await?;
    tracing::info!(application = %app, %group, "join token revoked");
    Ok(StatusCode::NO_CONTENT)
}

fn group_ref(account: &Account, app: &str, group: &str) -> Result<GroupRef, ApiError> {
    release::validate_name("application", app)?;
    release::validate_name("group", group)?;
    Ok(GroupRef { account: account.id.clone(), application: app.to_owned(), group: group.to_owned() })
}

/// `GET /v1/applications/{app}/groups/{group}`: kind, instances, the active release and the
/// scaling state the built-in adapter records.
pub async fn get_group(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let reference = group_ref(&account, &app, &group)?;
    let store = &engine.context.store;
    let doc = store
        .get::<Group>(&layout::group_doc(&reference))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("group '{group}'")))?
        .value;
    let instances: Vec<InstanceView> = store
        .list::<Instance>(&layout::instances(&reference))
        .await?
        .into_iter()
        .map(|(_, d)| d.value.into())
        .collect();
    let scaling = store.get::<ScalingState>(&layout::scaling(&reference)).await?.map(|d| d.value);
    Ok(Json(json!({
        "application": app, "name": doc.name, "kind": doc.kind, "active_release": doc.active_release,
        "instances": instances, "scaling": scaling,
    })))
}

/// `POST /v1/applications/{app}/deployments`.
pub async fn create_deployment(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<DeploymentRequest>,
) -> Result<Response, ApiError> {
    load_application(&engine, &account, &app).await?;
    let registry = &engine.context.config.registry.host;
    let mut body = body;
    if let release::ImageSpec::Package { package, version, image } = &body.image {
        let path = berth_shared::package::version_path(&account.id, package, version);
        let missing = || {
            ApiError::invalid("image.version", "not_found", format!("package '{package}' has no version '{version}'"))
        };
        let found = match engine.context.store.get::<PackageVersion>(&path).await {
            Ok(Some(found)) => found,
            // A name that cannot be a path is a version that does not exist.
            Ok(None) | Err(berth_shared::platform::store::StoreError::Corrupt { .. }) => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        body.image = release::image_from_package(&found.value, image.as_deref(), registry)?;
    }
    let private = engine.context.config.registry_private_host.as_deref();
    let deployment = release::validate_deployment(body, registry, private, &account.id, unix_now())?;
    engine.context.store.create(&layout::deployment(&account.id, &app, &deployment.name), &deployment).await?;
    Ok((StatusCode::CREATED, Json(deployment)).into_response())
}

/// `GET /v1/applications/{app}/deployments/{name}`.
pub async fn get_deployment(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<Json<release::Deployment>, ApiError> {
    release::validate_name("application", &app)?;
    release::validate_name("deployment", &name)?;
    Ok(Json(
        engine
            .context
            .store
            .get(&layout::deployment(&account.id, &app, &name))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("deployment '{name}'")))?
            .value,
    ))
}

// ---------------------------------------------------------------------------------------
// Releases
// ---------------------------------------------------------------------------------------

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
    let batches = release::plan_batches(&hosts, &options.batching)?;
    if query.dry_run {
        return Ok(Json(json!({
            "dry_run": true, "hosts": hosts.len(), "batches": batches, "options": options,
            "image": deployment.image.address(),
        }))
        .into_response());
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
        batches,
        status: ReleaseStatus::Running,
        phase: release::Phase::Starting,
        phase_started_at: now,
        reason: None,
        created_at: now,
        finished_at: None,
    };
    store.create(&layout::plan(&id), &created).await?;
    store.create(&layout::release(&id), &ReleaseState::of(&created)).await?;
    engine.request_advance(&id, &account.id).await?;
    tracing::info!(release = %id, hosts = hosts.len(), "release created");
    Ok((StatusCode::CREATED, Json(view(&engine, &created).await?)).into_response())
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

/// The release as callers see it: status, phase, each batch with each host's state.
pub async fn view(engine: &Engine, release: &Release) -> Result<Value, ApiError> {
    let store = &engine.context.store;
    let pulls = read_all::<PullResult>(store, &layout::pulls(&release.id)).await?;
    let results = read_all::<HostResult>(store, &layout::results(&release.id)).await?;
    let mut states = Vec::new();
    let batches: Vec<Value> = release
        .batches
        .iter()
        .enumerate()
        .map(|(index, hosts)| {
            let hosts: Vec<Value> = hosts
                .iter()
                .map(|host| {
                    let pull = pulls.get(host);
                    let result = results.get(host);
                    let state = release::host_state_at(release, Some(index), pull, result);
                    states.push(state);
                    let mut entry = json!({ "host": host, "state": state });
                    if let Some(r) = result {
                        entry["step"] = json!(r.step);
                        entry["exit_code"] = json!(r.exit_code);
                        entry["reason"] = json!(r.reason);
                    } else if let Some(p) = pull.filter(|p| !p.ok) {
                        entry["step"] = json!(Step::Pull);
                        entry["reason"] = json!(p.reason);
                    }
                    entry
                })
                .collect();
            json!({ "batch": index + 1, "hosts": hosts })
        })
        .collect();
    let summary: BTreeMap<String, usize> = release::summarize(states)
        .into_iter()
        .map(|(state, count)| {
            (serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(), count)
        })
        .collect();
    Ok(json!({
        "id": release.id, "status": release.status, "phase": release.phase, "reason": release.reason,
        "application": release.application, "group": release.group, "deployment": release.deployment.name,
        "image": release.deployment.image.address(), "options": release.options, "batches": batches,
        "summary": summary, "created_at": release.created_at, "finished_at": release.finished_at,
    }))
}

/// `GET /v1/releases/{id}`.
pub async fn get_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = load_release(&engine, &account, &id).await?;
    Ok(Json(view(&engine, &doc.value).await?))
}

/// `POST /v1/releases/{id}/cancel`: batches not yet started never start; scaling resumes.
pub async fn cancel_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    load_release(&engine, &account, &id).await?;
    let now = unix_now();
    let not_found = || ApiError::NotFound(format!("release '{id}'"));
    let cancelled = engine.modify(&id, |current| release::cancel(current, now)).await?.ok_or_else(not_found)?;
    engine.changed.notify_waiters();
    engine.clean_up(&cancelled).await?;
    tracing::info!(release = %id, "release cancelled");
    Ok(Json(view(&engine, &cancelled).await?))
}

/// `POST /v1/releases/{id}/confirm`: starts the next batch of a release paused for confirmation.
pub async fn confirm_release(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    load_release(&engine, &account, &id).await?;
    let now = unix_now();
    let not_found = || ApiError::NotFound(format!("release '{id}'"));
    let confirmed = engine.modify(&id, |current| release::confirm(current, now)).await?.ok_or_else(not_found)?;
    engine.changed.notify_waiters();
    engine.request_advance(&id, &account.id).await?;
    Ok(Json(view(&engine, &confirmed).await?))
}

/// `GET /v1/releases/{id}/hosts/{host}/logs`: the full output of each step run on the host.
pub async fn host_logs(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((id, host)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let release = load_release(&engine, &account, &id).await?.value;
    if release.batch_of(&host).is_none() {
        return Err(ApiError::NotFound(format!("host '{host}' in release '{id}'")));
    }
    let store = &engine.context.store;
    let pull = store.get::<PullResult>(&layout::pull(&id, &host)).await?.map(|d| d.value);
    let result = store.get::<HostResult>(&layout::result(&id, &host)).await?.map(|d| d.value);
    let logs = load_logs(&engine, &id, &host).await?;
    let state = release::host_state(&release, &host, pull.as_ref(), result.as_ref());
    Ok(Json(json!({
        "release": id, "host": host, "state": state, "result": result,
        "pull": logs.pull.or(pull.map(|p| p.output)), "stop": logs.stop, "start": logs.start,
    })))
}

// ---------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------

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
        if current.join_token_sha256.as_deref() != Some(digest.as_str()) {
            return Err(refused());
        }
        Ok(Self { group })
    }
}

/// A host, authenticated by its own host token (`Authorization: Bearer bht_...`): it polls
/// and reports for itself only.
pub struct Host {
    /// The host and its group.
    pub host: HostRef,
}

impl FromRequestParts<Engine> for Host {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Engine) -> Result<Self, Self::Rejection> {
        let refused = || {
            ApiError::Unauthenticated(
                "a valid host token is required (Authorization: Bearer bht_..., from POST /v1/agent/register)".into(),
            )
        };
        let token = bearer(parts, "bht_").ok_or_else(refused)?;
        let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
        let store = &engine.context.store;
        let host = store.get::<HostRef>(&layout::host_token(&digest)).await?.ok_or_else(refused)?.value;
        // Only the token the host's record names acts for it: re-registering replaces it.
        let instance = store.get::<Instance>(&layout::instance(&host.group, &host.host)).await?.ok_or_else(refused)?;
        if instance.value.host_token_sha256.as_deref() != Some(digest.as_str()) {
            return Err(refused());
        }
        Ok(Self { host })
    }
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
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    format!("bht_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// `POST /v1/agent/register` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    host: String,
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
    let token = new_host_token();
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    let reference = HostRef { group: joining.group.clone(), host: body.host.clone() };
    let store = &engine.context.store;
    // The index first: until the instance names this digest, the entry grants nothing.
    store.create(&layout::host_token(&digest), &reference).await?;
    let now = unix_now();
    let mut replaced = None;
    let host = body.host.clone();
    store
        .modify::<Instance, StoreError, _>(&layout::instance(&joining.group, &body.host), |current| {
            replaced = current.as_ref().and_then(|i| i.host_token_sha256.clone());
            Ok(Instance { host: host.clone(), registered_at: now, host_token_sha256: Some(digest.clone()) })
        })
        .await?;
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
    let wait = Duration::from_secs(query.wait_seconds.unwrap_or(DEFAULT_POLL_SECONDS).min(MAX_POLL_SECONDS));
    let until = tokio::time::Instant::now() + wait;
    loop {
        // Registered before looking, so a change between the look and the wait is not missed.
        let changed = engine.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if let Some(job) = job_for(&engine, &host.host).await? {
            return Ok(Json(job).into_response());
        }
        let now = tokio::time::Instant::now();
        if now >= until || engine.closing.is_cancelled() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = engine.closing.cancelled() => {}
            _ = tokio::time::sleep_until(until.min(now + POLL_RECHECK)) => {}
        }
    }
}

async fn job_for(engine: &Engine, host: &HostRef) -> Result<Option<Job>, ApiError> {
    let store = &engine.context.store;
    let Some(doc) = store.get::<Group>(&layout::group_doc(&host.group)).await? else { return Ok(None) };
    let Some(id) = doc.value.active_release else { return Ok(None) };
    let Some(state) = engine.state(&id).await?.map(|d| d.value) else { return Ok(None) };
    let Some(plan) = engine.plan(&id).await? else { return Ok(None) };
    let name = host.host.as_str();
    let batch = plan.batch_of.get(name).copied();
    let kind = match state.phase {
        release::Phase::Pulling => {
            let pulled = store.get::<PullResult>(&layout::pull(&id, name)).await?.is_some();
            release::next_job_at(state.status, state.phase, batch, pulled, false)
        }
        release::Phase::Batch { .. } => {
            let finished = store.get::<HostResult>(&layout::result(&id, name)).await?.is_some();
            release::next_job_at(state.status, state.phase, batch, true, finished)
        }
        _ => None,
    };
    let Some(kind) = kind else { return Ok(None) };
    let release = &plan.release;
    let deployment = &release.deployment;
    let (username, password) = engine.pull_key(release)?;
    let (pull_registry, pull_address) = deployment.pull_address(engine.context.config.registry_private_host.as_deref());
    Ok(Some(Job {
        job_id: release::job_id(&id, name, kind),
        release: id,
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
    }))
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
    body: axum::body::Bytes,
) -> Result<Json<ReportAccepted>, ApiError> {
    host.check_named(query.host.as_deref())?;
    // Parsed here rather than by ApiJson: a report carries whole outputs, past its 1 MiB.
    let body: Report = berth_shared::platform::http::request::parse_json(&body)?;
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
    let Some(&batch) = plan.batch_of.get(name).filter(|_| same_group) else { return Err(never()) };
    release::check_job(id, name, &body).map_err(refused)?;
    let settled = match body.kind {
        JobKind::Pull => store.get::<PullResult>(&layout::pull(id, name)).await?.is_some(),
        JobKind::Run => store.get::<HostResult>(&layout::result(id, name)).await?.is_some(),
    };
    if settled {
        // A repeat, or a host the release timed out: a late run's output is still kept.
        if body.kind == JobKind::Run && store.get::<StoredLogs>(&layout::logs(id, name)).await?.is_none() {
            store_logs(&engine, id, name, &body.logs).await?;
        }
        return Ok(Json(ReportAccepted { accepted: false }));
    }
    let state = engine.state(id).await?.ok_or_else(never)?.value;
    release::check_due(state.status, state.phase, batch, body.kind).map_err(refused)?;
    let now = unix_now();
    let written = match body.kind {
        JobKind::Pull => {
            let output = body.logs.pull.clone().unwrap_or_default();
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
            store_logs(&engine, id, name, &body.logs).await?;
            let result = HostResult {
                ok: body.ok,
                step: body.step,
                exit_code: body.exit_code,
                reason: body.reason.clone(),
                at: now,
            };
            create_once(store, &layout::result(id, name), &result).await?
        }
    };
    if written {
        tracing::info!(release = %id, host = %name, kind = ?body.kind, ok = body.ok, step = ?body.step, "host reported");
        engine.request_advance(id, &release.account).await?;
    }
    Ok(Json(ReportAccepted { accepted: written }))
}

/// Stores a host's logs whole: inline when small, else a head and parts written before it
/// (so a head never names parts that are not there).
async fn store_logs(engine: &Engine, id: &str, host: &str, logs: &HostLogs) -> Result<(), ApiError> {
    let store = &engine.context.store;
    let size = serde_json::to_vec(logs).map(|v| v.len()).unwrap_or(usize::MAX);
    if size <= release::INLINE_LOG_BYTES {
        store.put(&layout::logs(id, host), &StoredLogs { logs: logs.clone(), parts: 0 }).await?;
        return Ok(());
    }
    let (head, parts) = release::split_logs(logs, release::LOG_PART_BYTES);
    for (index, part) in parts.iter().enumerate() {
        store.put(&layout::logs_part(id, host, index), part).await?;
    }
    store.put(&layout::logs(id, host), &StoredLogs { logs: head, parts: parts.len() }).await?;
    Ok(())
}

async fn load_logs(engine: &Engine, id: &str, host: &str) -> Result<HostLogs, ApiError> {
    let store = &engine.context.store;
    let Some(stored) = store.get::<StoredLogs>(&layout::logs(id, host)).await?.map(|d| d.value) else {
        return Ok(HostLogs::default());
    };
    let mut parts = Vec::with_capacity(stored.parts);
    for index in 0..stored.parts {
        let part = store
            .get::<release::LogPart>(&layout::logs_part(id, host, index))
            .await?
            .ok_or_else(|| ApiError::Internal(format!("log part {index} of {host} in {id} is missing")))?;
        parts.push(part.value);
    }
    Ok(release::join_logs(stored.logs, parts))
}

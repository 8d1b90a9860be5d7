//! Groups and their join tokens: create, get, rotate and revoke the token.

use super::*;

fn new_join_token() -> String {
    berth_shared::platform::token_kind::JOIN_TOKEN.mint()
}

/// `POST /v1/applications/{app}/groups` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
    #[serde(default)]
    kind: GroupKind,
    /// Releases skip hosts not seen for this long.
    #[serde(default)]
    stale_after_seconds: Option<u64>,
    /// With `kind: scaling`: the AWS Auto Scaling group whose processes a release suspends.
    #[serde(default)]
    auto_scaling_group: Option<String>,
    /// The load balancer its hosts are drained from before they stop.
    #[serde(default)]
    load_balancer: Option<release::LoadBalancer>,
}

/// Checks a new group's `auto_scaling_group`: a valid name, on a scaling group, in a process
/// that reaches AWS Auto Scaling (else no release of it could ever suspend anything).
fn check_auto_scaling_group(engine: &Engine, body: &NewGroup) -> Result<(), ApiError> {
    let Some(name) = &body.auto_scaling_group else { return Ok(()) };
    const FIELD: &str = "auto_scaling_group";
    release::validate_auto_scaling_group(FIELD, name)?;
    if body.kind != GroupKind::Scaling {
        return Err(ApiError::invalid(FIELD, "requires_scaling_kind", "only a group of kind scaling names one"));
    }
    if !engine.reaches_auto_scaling() {
        return Err(ApiError::invalid(
            FIELD,
            "auto_scaling_unavailable",
            "this Berth does not reach AWS Auto Scaling (set BERTH_AUTO_SCALING=aws)",
        ));
    }
    Ok(())
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
    check_auto_scaling_group(&engine, &body)?;
    if let Some(lb) = &body.load_balancer {
        engine.check_load_balancer(lb)?;
    }
    let stale_after_seconds = release::validate_stale_after(body.stale_after_seconds)?;
    let store = &engine.context.store;
    if store.list_folders(&layout::groups(&account.id, &app)).await?.len() >= release::MAX_CHILDREN {
        return Err(limit_reached("groups", "application"));
    }
    let token = new_join_token();
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    let reference = GroupRef { account: account.id.clone(), application: app.clone(), group: body.name.clone() };
    let group = Group {
        name: body.name,
        kind: body.kind,
        join_token_sha256: Some(digest.clone()),
        active_release: None,
        created_at: unix_now(),
        stale_after_seconds,
        last_release: None,
        deleting: false,
        auto_scaling_group: body.auto_scaling_group,
        load_balancer: body.load_balancer,
    };
    store.create(&layout::group_doc(&reference), &group).await?;
    store.create(&layout::join_token(&digest), &reference).await?;
    if group.kind == GroupKind::Scaling {
        create_once(store, &layout::scaling(&reference), &ScalingState::default()).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedGroup {
            application: app,
            auto_scaling_group: group.auto_scaling_group,
            join_token: token,
            kind: group.kind,
            load_balancer: group.load_balancer,
            name: group.name,
            stale_after_seconds,
        }),
    )
        .into_response())
}

/// `POST /v1/applications/{app}/groups` answer; the join token is shown only here (the group
/// keeps its digest).
#[derive(Serialize)]
pub struct CreatedGroup {
    application: String,
    auto_scaling_group: Option<String>,
    join_token: String,
    kind: GroupKind,
    #[serde(serialize_with = "sorted_keys")]
    load_balancer: Option<release::LoadBalancer>,
    name: String,
    stale_after_seconds: u64,
}

/// 409 when a folder holds as many items as a listing may order.
pub(crate) fn limit_reached(what: &str, of: &str) -> ApiError {
    ApiError::Conflict {
        code: "limit_reached",
        message: format!("an {of} holds at most {} {what}; delete some first", release::MAX_CHILDREN),
    }
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
    load_group(engine, reference).await?;
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

pub(crate) fn group_ref(account: &Account, app: &str, group: &str) -> Result<GroupRef, ApiError> {
    release::validate_name("application", app)?;
    release::validate_name("group", group)?;
    Ok(GroupRef { account: account.id.clone(), application: app.to_owned(), group: group.to_owned() })
}

/// `GET /v1/applications/{app}/groups/{group}`: kind, each host with when it was last seen
/// and the revision it runs, the active and last release, and the scaling state the built-in
/// adapter records.
pub async fn get_group(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    let reference = group_ref(&account, &app, &group)?;
    let doc = load_group(&engine, &reference).await?.value;
    Ok(Json(group_view(&engine, &reference, doc, true).await?))
}

pub(crate) async fn load_group(engine: &Engine, reference: &GroupRef) -> Result<Versioned<Group>, ApiError> {
    engine
        .context
        .store
        .get::<Group>(&layout::group_doc(reference))
        .await?
        .filter(|g| !g.value.deleting)
        .ok_or_else(|| ApiError::NotFound(format!("group '{}'", reference.group)))
}

async fn group_view(engine: &Engine, reference: &GroupRef, doc: Group, hosts: bool) -> Result<GroupView, ApiError> {
    let store = &engine.context.store;
    let now = unix_now();
    let instances = if hosts {
        let listed = store.list::<HostRecord>(&layout::host_records(reference)).await?;
        Some(listed.into_iter().map(|(_, d)| HostView::new(d.value, doc.stale_after_seconds, now)).collect())
    } else {
        None
    };
    let scaling = store.get::<ScalingState>(&layout::scaling(reference)).await?.map(|d| d.value);
    Ok(GroupView {
        active_release: doc.active_release,
        application: reference.application.clone(),
        created_at: doc.created_at,
        auto_scaling_group: doc.auto_scaling_group,
        instances,
        kind: doc.kind,
        last_release: doc.last_release,
        load_balancer: doc.load_balancer,
        name: doc.name,
        scaling,
        stale_after_seconds: doc.stale_after_seconds,
    })
}

/// `GET /v1/applications/{app}/groups/{group}` answer: no token material, neither the join
/// token's digest nor the hosts'.
#[derive(Serialize)]
pub struct GroupView {
    active_release: Option<String>,
    application: String,
    /// The AWS Auto Scaling group its pauses are carried out on, if any.
    auto_scaling_group: Option<String>,
    created_at: u64,
    /// Every host (left out of listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<Vec<HostView>>,
    kind: GroupKind,
    /// The last release (not a convergence) that ended on the group.
    #[serde(serialize_with = "sorted_keys")]
    last_release: Option<release::LastRelease>,
    /// The load balancer its hosts are drained from before they stop.
    #[serde(serialize_with = "sorted_keys")]
    load_balancer: Option<release::LoadBalancer>,
    name: String,
    /// What the built-in scaling adapter recorded (`None` for a static group).
    #[serde(serialize_with = "sorted_keys")]
    scaling: Option<ScalingState>,
    stale_after_seconds: u64,
}

/// `PATCH /v1/applications/{app}/groups/{group}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupChange {
    stale_after_seconds: Option<u64>,
    /// A new load balancer; `null` removes it (later releases drain nothing).
    #[serde(default, deserialize_with = "present")]
    load_balancer: Option<Option<release::LoadBalancer>>,
}

/// A field that is present, `null` included (`Some(None)`), apart from an absent one (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /v1/applications/{app}/groups/{group}`: changes the group's settings.
pub async fn update_group(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<GroupChange>,
) -> Result<Json<GroupView>, ApiError> {
    let reference = group_ref(&account, &app, &group)?;
    load_group(&engine, &reference).await?;
    let stale_after = body.stale_after_seconds.map(|v| release::validate_stale_after(Some(v))).transpose()?;
    if let Some(Some(lb)) = &body.load_balancer {
        engine.check_load_balancer(lb)?;
    }
    let changed = engine
        .context
        .store
        .modify::<Group, ApiError, _>(&layout::group_doc(&reference), |current| {
            let mut doc = current
                .filter(|g| !g.deleting)
                .ok_or_else(|| ApiError::NotFound(format!("group '{}'", reference.group)))?;
            if let Some(seconds) = stale_after {
                doc.stale_after_seconds = seconds;
            }
            if let Some(lb) = &body.load_balancer {
                doc.load_balancer = lb.clone();
            }
            Ok(doc)
        })
        .await?;
    Ok(Json(group_view(&engine, &reference, changed.value, true).await?))
}

/// `DELETE /v1/applications/{app}/groups/{group}/instances/{host}`: the host leaves the group.
/// Its host token is refused at once (by other processes as soon as they hear it, see
/// `engine::tokens`), later releases do not plan it, and its agent cannot register again with
/// the join token it holds (a rotated one lets it back).
pub async fn remove_host(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group, host)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let reference = group_ref(&account, &app, &group)?;
    release::validate_name("host", &host)?;
    let doc = load_group(&engine, &reference).await?.value;
    let store = &engine.context.store;
    let path = layout::host_record(&reference, &host);
    let instance = store
        .get::<HostRecord>(&path)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("host '{host}' in group '{group}'")))?
        .value;
    // The tombstone first, so that a registration racing the removal is refused.
    let removal = release::Removal { removed_at: unix_now(), join_token_sha256: doc.join_token_sha256 };
    store.put(&layout::removed(&reference, &host), &removal).await?;
    store.delete(&path).await?;
    if let Some(digest) = instance.host_token_sha256 {
        store.delete(&layout::host_token(&digest)).await?;
        engine.revoke_tokens(&[digest]).await;
    }
    engine.close_channel(&reference, &host).await?;
    tracing::info!(application = %app, %group, %host, "host removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/applications/{app}/groups` query (and the other listings').
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    pub page_size: Option<usize>,
    #[serde(default)]
    pub page_token: Option<String>,
}

impl PageQuery {
    /// The validated page size and token.
    pub fn checked(&self) -> Result<(usize, Option<&str>), ApiError> {
        release::validate_page_token(self.page_token.as_deref())?;
        Ok((release::page_size(self.page_size)?, self.page_token.as_deref()))
    }
}

/// `GET /v1/applications/{app}/groups` answer.
#[derive(Serialize)]
pub struct GroupPage {
    groups: Vec<GroupView>,
    next_page_token: Option<String>,
}

/// `GET /v1/applications/{app}/groups`: newest first, without their hosts.
pub async fn list_groups(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(app): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<GroupPage>, ApiError> {
    let (size, token) = query.checked()?;
    load_application(&engine, &account, &app).await?;
    let store = &engine.context.store;
    let mut keyed = Vec::new();
    for name in store.list_folders(&layout::groups(&account.id, &app)).await? {
        let reference = GroupRef { account: account.id.clone(), application: app.clone(), group: name };
        if let Some(doc) = store.get::<Group>(&layout::group_doc(&reference)).await?.filter(|g| !g.value.deleting) {
            keyed.push((release::newest_key(doc.value.created_at, &doc.value.name), (reference, doc.value)));
        }
    }
    let (items, next) = release::page(keyed, token, size);
    let mut groups = Vec::with_capacity(items.len());
    for (reference, doc) in items {
        groups.push(group_view(&engine, &reference, doc, false).await?);
    }
    Ok(Json(GroupPage { groups, next_page_token: next }))
}

/// Marks a group as being deleted by compare-and-swap, refused while a release runs on it:
/// from then on no release is created on it and no host joins.
pub(crate) async fn mark_deleting(engine: &Engine, reference: &GroupRef) -> Result<(), ApiError> {
    let store = &engine.context.store;
    let path = layout::group_doc(reference);
    let Some(doc) = store.get::<Group>(&path).await? else {
        return Err(ApiError::NotFound(format!("group '{}'", reference.group)));
    };
    if let Some(active) = &doc.value.active_release
        && engine.state(active).await?.is_some_and(|s| !s.value.status.is_terminal())
    {
        return Err(ApiError::Conflict {
            code: "release_in_progress",
            message: format!("release {active} is running on group '{}'; cancel it or wait", reference.group),
        });
    }
    let mut marked = doc.value.clone();
    marked.deleting = true;
    match store.update(&path, &marked, &doc.version).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict(_)) => Err(ApiError::Conflict {
            code: "group_changed",
            message: format!("group '{}' changed meanwhile; try again", reference.group),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a group marked as being deleted: its hosts and their tokens, its join token, then
/// the group. Releases stay readable by id.
pub(crate) async fn delete_marked(engine: &Engine, reference: &GroupRef) -> Result<(), ApiError> {
    let store = &engine.context.store;
    let mut revoked = Vec::new();
    for (path, doc) in store.list::<HostRecord>(&layout::host_records(reference)).await? {
        // The record first: it alone lets a token act (a process may know where the token
        // points without its index entry), so a crash between the two leaves nothing usable.
        store.delete(&path).await?;
        if let Some(digest) = doc.value.host_token_sha256 {
            store.delete(&layout::host_token(&digest)).await?;
            engine.forget_token_place(&digest);
            revoked.push(digest);
        }
    }
    engine.revoke_tokens(&revoked).await;
    let path = layout::group_doc(reference);
    if let Some(doc) = store.get::<Group>(&path).await?
        && let Some(digest) = doc.value.join_token_sha256
    {
        store.delete(&layout::join_token(&digest)).await?;
    }
    for path in store.list_paths(&layout::group_dir(reference)).await? {
        if path != path_of_group(reference) {
            store.delete(&path).await?;
        }
    }
    // The document last: until it goes, a retried delete finds the group and finishes.
    store.delete(&path).await?;
    Ok(())
}

fn path_of_group(reference: &GroupRef) -> String {
    layout::group_doc(reference)
}

/// `DELETE /v1/applications/{app}/groups/{group}`: 409 while a release runs on it.
pub async fn delete_group(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, group)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let reference = group_ref(&account, &app, &group)?;
    mark_deleting(&engine, &reference).await?;
    delete_marked(&engine, &reference).await?;
    tracing::info!(application = %app, %group, "group deleted");
    Ok(StatusCode::NO_CONTENT)
}

//! Groups and their join tokens: create, get, rotate and revoke the token.

use super::*;

fn new_join_token() -> String {
    berth_shared::platform::secret::random_token("bjt_")
}

/// `POST /v1/applications/{app}/groups` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
    #[serde(default)]
    kind: GroupKind,
    /// With `kind: scaling`: the AWS Auto Scaling group whose processes a release suspends.
    #[serde(default)]
    auto_scaling_group: Option<String>,
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
    let token = new_join_token();
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    let reference = GroupRef { account: account.id.clone(), application: app.clone(), group: body.name.clone() };
    let group = Group {
        name: body.name,
        kind: body.kind,
        join_token_sha256: Some(digest.clone()),
        active_release: None,
        created_at: unix_now(),
        auto_scaling_group: body.auto_scaling_group,
    };
    let store = &engine.context.store;
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
            name: group.name,
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
    name: String,
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

pub(crate) fn group_ref(account: &Account, app: &str, group: &str) -> Result<GroupRef, ApiError> {
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
) -> Result<Json<GroupView>, ApiError> {
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
    Ok(Json(GroupView {
        active_release: doc.active_release,
        application: app,
        auto_scaling_group: doc.auto_scaling_group,
        instances,
        kind: doc.kind,
        name: doc.name,
        scaling,
    }))
}

/// `GET /v1/applications/{app}/groups/{group}` answer: no token material, neither the join
/// token's digest nor the hosts'.
#[derive(Serialize)]
pub struct GroupView {
    active_release: Option<String>,
    application: String,
    /// The AWS Auto Scaling group its pauses are carried out on, if any.
    auto_scaling_group: Option<String>,
    instances: Vec<InstanceView>,
    kind: GroupKind,
    name: String,
    /// What the built-in scaling adapter recorded (`None` for a static group).
    #[serde(serialize_with = "sorted_keys")]
    scaling: Option<ScalingState>,
}

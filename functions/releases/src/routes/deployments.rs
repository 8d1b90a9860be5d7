//! Deployments: an image, a working directory, start and stop scripts.

use super::*;

/// `POST /v1/applications/{app}/deployments`.
pub async fn create_deployment(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<DeploymentRequest>,
) -> Result<Response, ApiError> {
    load_application(&engine, &account, &app).await?;
    let store = &engine.context.store;
    if store.list_paths(&layout::deployments(&account.id, &app)).await?.len() >= release::MAX_CHILDREN {
        return Err(limit_reached("deployments", "application"));
    }
    let deployment = validated(&engine, &account, body).await?;
    store.create(&layout::deployment(&account.id, &app, &deployment.name), &deployment).await?;
    create_once(store, &layout::revision(&account.id, &app, &deployment.name, 1), &deployment).await?;
    Ok((StatusCode::CREATED, Json(deployment)).into_response())
}

/// A deployment request resolved (a package image to its pinned address) and validated.
async fn validated(
    engine: &Engine,
    account: &Account,
    body: DeploymentRequest,
) -> Result<release::Deployment, ApiError> {
    let registry = &engine.context.config.registry.host;
    let mut body = body;
    if let release::DeploymentImage::Package { package, version, image } = &body.image {
        // Names that break their rule are a bad request, checked before they become a path. A
        // version that does not exist is a missing resource (404); one that exists but cannot
        // be deployed (not an Available ContainerImage version, or without the image named)
        // conflicts with its state (409).
        berth_shared::package::validate_package_name("image.package", package)?;
        berth_shared::package::validate_version_name("image.version", version)?;
        let path = berth_shared::package::version_path(&account.id, package, version);
        let found = engine
            .context
            .store
            .get::<PackageVersion>(&path)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("version '{version}' of package '{package}'")))?;
        body.image =
            release::image_from_package(&found.value, image.as_deref(), registry).map_err(|refused| match refused {
                ApiError::Invalid { code, message, .. } => ApiError::Conflict { code, message },
                other => other,
            })?;
    }
    let private = engine.context.config.registry_private_host.as_deref();
    release::validate_deployment(body, registry, private, &account.id, unix_now())
}

/// `GET /v1/applications/{app}/deployments/{name}`: its current revision.
pub async fn get_deployment(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<Json<release::Deployment>, ApiError> {
    Ok(Json(load_deployment(&engine, &account, &app, &name).await?))
}

/// `PUT /v1/applications/{app}/deployments/{name}`: a new revision (the body is a whole
/// deployment, its `name` the path's). The revision before stays readable; releases already
/// made keep the revision they named.
pub async fn update_deployment(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DeploymentRequest>,
) -> Result<Json<release::Deployment>, ApiError> {
    load_application(&engine, &account, &app).await?;
    release::validate_name("deployment", &name)?;
    let expected = body.revision;
    let next = validated(&engine, &account, body).await?;
    let store = &engine.context.store;
    let path = layout::deployment(&account.id, &app, &name);
    for _ in 0..8 {
        let current = store
            .get::<release::Deployment>(&path)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("deployment '{name}'")))?;
        if current.value.revision >= release::MAX_REVISIONS {
            return Err(ApiError::Conflict {
                code: "too_many_revisions",
                message: format!("a deployment keeps at most {} revisions", release::MAX_REVISIONS),
            });
        }
        let revision = release::next_revision(&current.value, next.clone(), expected)?;
        // The revision being replaced is kept first (a crash after the swap loses nothing).
        create_once(store, &layout::revision(&account.id, &app, &name, current.value.revision), &current.value).await?;
        match store.update(&path, &revision, &current.version).await {
            Ok(_) => {
                create_once(store, &layout::revision(&account.id, &app, &name, revision.revision), &revision).await?;
                tracing::info!(application = %app, deployment = %name, revision = revision.revision, "deployment revised");
                return Ok(Json(revision));
            }
            // Another update won: number this one after it.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict { code: "deployment_changed", message: "the deployment kept changing; try again".into() })
}

/// `GET .../deployments/{name}/revisions` answer.
#[derive(Serialize)]
pub struct RevisionPage {
    next_page_token: Option<String>,
    /// Newest first.
    revisions: Vec<release::Deployment>,
}

/// `GET /v1/applications/{app}/deployments/{name}/revisions`: every revision, newest first.
pub async fn list_revisions(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, name)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<RevisionPage>, ApiError> {
    let (size, token) = query.checked()?;
    let current = load_deployment(&engine, &account, &app, &name).await?;
    let store = &engine.context.store;
    let mut numbers: std::collections::BTreeSet<u64> = store
        .list_paths(&layout::revisions(&account.id, &app, &name))
        .await?
        .iter()
        .filter_map(|p| layout::stem(p).parse().ok())
        .collect();
    numbers.insert(current.revision);
    let keyed = numbers.into_iter().map(|n| (format!("{:020}", u64::MAX - n), n)).collect();
    let (page, next) = release::page(keyed, token, size);
    let mut revisions = Vec::with_capacity(page.len());
    for number in page {
        revisions.push(revision_of(&engine, &account, &app, &current, number).await?);
    }
    Ok(Json(RevisionPage { next_page_token: next, revisions }))
}

async fn revision_of(
    engine: &Engine,
    account: &Account,
    app: &str,
    current: &release::Deployment,
    number: u64,
) -> Result<release::Deployment, ApiError> {
    if number == current.revision {
        return Ok(current.clone());
    }
    let path = layout::revision(&account.id, app, &current.name, number);
    Ok(engine
        .context
        .store
        .get::<release::Deployment>(&path)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("revision {number} of deployment '{}'", current.name)))?
        .value)
}

/// `GET /v1/applications/{app}/deployments/{name}/revisions/{revision}`.
pub async fn get_revision(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, name, number)): ApiPath<(String, String, String)>,
) -> Result<Json<release::Deployment>, ApiError> {
    let current = load_deployment(&engine, &account, &app, &name).await?;
    let number: u64 = number
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::invalid("revision", "invalid_revision", "a revision is a number from 1"))?;
    Ok(Json(revision_of(&engine, &account, &app, &current, number).await?))
}

async fn load_deployment(
    engine: &Engine,
    account: &Account,
    app: &str,
    name: &str,
) -> Result<release::Deployment, ApiError> {
    release::validate_name("application", app)?;
    release::validate_name("deployment", name)?;
    Ok(engine
        .context
        .store
        .get(&layout::deployment(&account.id, app, name))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deployment '{name}'")))?
        .value)
}

/// A deployment in a listing: its current revision, and how many it has had.
#[derive(Serialize)]
pub struct DeploymentSummary {
    #[serde(flatten)]
    deployment: release::Deployment,
    /// Revisions 1 to this one stay readable (`.../revisions`).
    revisions: u64,
}

/// `GET /v1/applications/{app}/deployments` answer.
#[derive(Serialize)]
pub struct DeploymentPage {
    deployments: Vec<DeploymentSummary>,
    next_page_token: Option<String>,
}

/// `GET /v1/applications/{app}/deployments`: newest first, each at its current revision.
pub async fn list_deployments(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(app): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<DeploymentPage>, ApiError> {
    let (size, token) = query.checked()?;
    load_application(&engine, &account, &app).await?;
    let listed = engine.context.store.list::<release::Deployment>(&layout::deployments(&account.id, &app)).await?;
    let keyed = listed
        .into_iter()
        .map(|(_, d)| {
            let revisions = d.value.revision;
            (
                release::newest_key(d.value.created_at, &d.value.name),
                DeploymentSummary { deployment: d.value, revisions },
            )
        })
        .collect();
    let (deployments, next) = release::page(keyed, token, size);
    Ok(Json(DeploymentPage { deployments, next_page_token: next }))
}

/// `DELETE /v1/applications/{app}/deployments/{name}`: 409 while a release of it runs; the
/// releases that ran it keep their copy.
pub async fn delete_deployment(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    load_deployment(&engine, &account, &app, &name).await?;
    let store = &engine.context.store;
    for group in store.list_folders(&layout::groups(&account.id, &app)).await? {
        let reference = GroupRef { account: account.id.clone(), application: app.clone(), group };
        let Some(doc) = store.get::<Group>(&layout::group_doc(&reference)).await? else { continue };
        let Some(active) = doc.value.active_release else { continue };
        let running = engine.state(&active).await?.is_some_and(|s| !s.value.status.is_terminal());
        let of_it = engine.plan(&active).await?.is_some_and(|p| p.release.deployment.name == name);
        if running && of_it {
            return Err(ApiError::Conflict {
                code: "release_in_progress",
                message: format!("release {active} of deployment '{name}' is running; cancel it or wait"),
            });
        }
    }
    store.delete(&layout::deployment(&account.id, &app, &name)).await?;
    for path in store.list_paths(&layout::revisions(&account.id, &app, &name)).await? {
        store.delete(&path).await?;
    }
    tracing::info!(application = %app, deployment = %name, "deployment deleted");
    Ok(StatusCode::NO_CONTENT)
}

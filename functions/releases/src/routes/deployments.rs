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
    let registry = &engine.context.config.registry.host;
    let mut body = body;
    if let release::DeploymentImage::Package { package, version, image } = &body.image {
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

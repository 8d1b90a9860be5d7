//! Applications: `POST /v1/applications`, `GET /v1/applications/{app}`.

use super::*;

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
    if engine.context.store.list_folders(&layout::applications(&account.id)).await?.len() >= release::MAX_CHILDREN {
        return Err(limit_reached("applications", "account"));
    }
    let app = Application { name: body.name, created_at: unix_now() };
    engine.context.store.create(&layout::application_doc(&account.id, &app.name), &app).await?;
    Ok((StatusCode::CREATED, Json(app)).into_response())
}

pub(crate) async fn load_application(engine: &Engine, account: &Account, app: &str) -> Result<Application, ApiError> {
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

/// `GET /v1/applications` answer.
#[derive(Serialize)]
pub struct ApplicationPage {
    applications: Vec<Application>,
    next_page_token: Option<String>,
}

/// `GET /v1/applications`: the caller's applications, newest first.
pub async fn list_applications(
    State(engine): State<Engine>,
    account: Account,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ApplicationPage>, ApiError> {
    let (size, token) = query.checked()?;
    let store = &engine.context.store;
    let mut keyed = Vec::new();
    for name in store.list_folders(&layout::applications(&account.id)).await? {
        if let Some(doc) = store.get::<Application>(&layout::application_doc(&account.id, &name)).await? {
            keyed.push((release::newest_key(doc.value.created_at, &doc.value.name), doc.value));
        }
    }
    let (applications, next) = release::page(keyed, token, size);
    Ok(Json(ApplicationPage { applications, next_page_token: next }))
}

/// `DELETE /v1/applications/{app}`: its groups (409 while a release runs on one, before
/// anything is deleted), deployments with their revisions, then the application.
pub async fn delete_application(
    State(engine): State<Engine>,
    account: Account,
    ApiPath(app): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    load_application(&engine, &account, &app).await?;
    let store = &engine.context.store;
    let groups: Vec<GroupRef> = store
        .list_folders(&layout::groups(&account.id, &app))
        .await?
        .into_iter()
        .map(|group| GroupRef { account: account.id.clone(), application: app.clone(), group })
        .collect();
    // Every group is marked first: a running release anywhere refuses the whole delete.
    for group in &groups {
        mark_deleting(&engine, group).await?;
    }
    for group in &groups {
        delete_marked(&engine, group).await?;
    }
    for path in store.list_paths(&layout::application(&account.id, &app)).await? {
        if path != layout::application_doc(&account.id, &app) {
            store.delete(&path).await?;
        }
    }
    store.delete(&layout::application_doc(&account.id, &app)).await?;
    tracing::info!(application = %app, "application deleted");
    Ok(StatusCode::NO_CONTENT)
}

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

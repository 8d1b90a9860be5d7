//! The render function: service templates with their identifiers replaced and every other
//! byte kept, pull keys minted for exactly the repositories a template references, and the
//! download route behind `file::` URLs. The logic is in [`berth_shared::render`].

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_shared::account::{Account, AccountId, unix_now};
use berth_shared::context::FunctionContext;
use berth_shared::error::ApiError;
use berth_shared::render::{
    self, MAX_RENDER_BODY, RenderContext, RenderOptions, RenderOutput, RenderRequest, ServiceRenderRequest,
};
use berth_shared::request::{ApiJson, parse_json};
use berth_shared::runtime::Function;
use berth_shared::service::{Service, service_path};

/// The function's name.
pub const NAME: &str = "render";

/// The function: routes only, it consumes no events.
pub fn function(context: FunctionContext) -> Function {
    Function { name: NAME, router: router(context), events: None }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    Router::new()
        .route("/v1/services/{name}/render", post(render_service))
        .route("/v1/render", post(render_template))
        .route("/v1/downloads/{token}/{file_name}", get(download))
        .with_state(context)
}

/// Berth's URL as the caller reached it: what deployed hosts download files from.
fn base_url(headers: &HeaderMap) -> String {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let host = value("x-forwarded-host").or_else(|| value(header::HOST.as_str())).unwrap_or_else(|| "localhost".into());
    let scheme = value("x-forwarded-proto").filter(|p| p == "https" || p == "http").unwrap_or_else(|| "http".into());
    format!("{scheme}://{host}")
}

fn render_context<'a>(context: &'a FunctionContext, account: &'a AccountId, base_url: &'a str) -> RenderContext<'a> {
    RenderContext {
        store: &context.store,
        signing: &context.signing,
        registry_host: &context.config.registry.host,
        base_url,
        account,
        now: unix_now(),
    }
}

fn logged(account: &AccountId, what: &str, output: &RenderOutput) {
    // Counts and names only: the output and the pull key are secrets.
    tracing::info!(
        account = %account,
        template = what,
        substitutions = output.substitutions.len(),
        repositories = output.repositories.len(),
        pull_key = output.pull_key.is_some(),
        dry_run = output.dry_run,
        "template rendered"
    );
}

/// `POST /v1/services/{name}/render`: one of a service's templates, rendered.
async fn render_service(
    State(context): State<FunctionContext>,
    caller: Account,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ServiceRenderRequest>,
) -> Result<Json<RenderOutput>, ApiError> {
    let options = RenderOptions::new(request.pin_digests, request.credential_ttl_seconds, request.dry_run)?;
    // A name that is not a service name cannot be a store path either.
    if berth_shared::service::validate_service_name(&name).is_err() {
        return Err(ApiError::NotFound(format!("service {}", name.chars().take(128).collect::<String>())));
    }
    let service = context
        .store
        .get::<Service>(&service_path(&caller.id, &name))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("service {name}")))?
        .value;
    let template = request.pick(&service)?;
    let base = base_url(&headers);
    let output = render::render_template(
        render_context(&context, &caller.id, &base),
        "template",
        template.body.as_bytes(),
        &service.relations,
        options,
    )
    .await?;
    logged(&caller.id, &template.name, &output);
    Ok(Json(output))
}

/// `POST /v1/render`: a template sent in the request, with relations or a `config.yaml`.
async fn render_template(
    State(context): State<FunctionContext>,
    caller: Account,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<RenderOutput>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if content_type.is_some_and(|t| !t.starts_with("application/json")) {
        return Err(ApiError::invalid("body", "unsupported_media_type", "send the body as application/json"));
    }
    // Templates may be up to 10 MiB: this route reads more than ApiJson's 1 MiB.
    let bytes = axum::body::to_bytes(request.into_body(), MAX_RENDER_BODY)
        .await
        .map_err(|_| ApiError::TooLarge { field: "body".into(), limit: MAX_RENDER_BODY })?;
    let request: RenderRequest = parse_json(&bytes)?;
    let valid = request.validate()?;
    let base = base_url(&headers);
    let output = render::render_template(
        render_context(&context, &caller.id, &base),
        valid.field,
        &valid.bytes,
        &valid.relations,
        valid.options,
    )
    .await?;
    logged(&caller.id, "-", &output);
    Ok(Json(output))
}

/// `GET /v1/downloads/{token}/{file_name}`: a File version's bytes, for whoever holds the URL a
/// render handed out (deployed hosts have no account token).
async fn download(
    State(context): State<FunctionContext>,
    Path((token, file_name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let grant = render::verify_download(&context.signing, &token)
        .ok_or_else(|| ApiError::Unauthenticated("the download link is invalid or has expired".into()))?;
    if grant.file_name != file_name {
        return Err(ApiError::NotFound(format!("file {file_name}")));
    }
    let path = berth_shared::package::file_object_path(&grant.sub, &grant.package, &grant.version);
    let bytes =
        context.store.get_object(&path).await?.ok_or_else(|| ApiError::NotFound(format!("file {file_name}")))?;
    tracing::info!(account = %grant.sub, package = %grant.package, version = %grant.version, "file downloaded");
    let mut response = Body::from(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    // The name passed the package's file-name rule (letters, digits, '_', '.', '-').
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", grant.file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

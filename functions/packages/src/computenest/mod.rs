//! Compute Nest's own supplier API (`2021-05-21`) on `POST /`, so Alibaba Cloud's official SDK
//! (`alibabacloud-computenestsupplier20210521`) and `computenest-cli` work against Berth.
//!
//! Every call is `POST /` with the parameters in the query, the operation in `x-acs-action`,
//! signed with an access key (ACS3-HMAC-SHA256, [`signature`], `auth`). The artifact
//! operations (`artifacts`) map artifacts onto Berth's packages (`ArtifactId` is the package
//! name), the repository ones (`repositories`) onto the registry namespace, the service ones
//! (`services`) onto Berth's services. Answers are Compute Nest's JSON with `RequestId`;
//! refusals are `error::CnError`s.

mod artifacts;
mod auth;
mod error;
mod params;
mod repositories;
mod services;
pub mod signature;
mod view;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_shared::names::AccountId;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::error::ApiError;
use serde::Serialize;

use error::{CnError, ErrorBody};
use params::Params;

pub use services::template_download;

/// The API version the SDK sends in `x-acs-version`.
pub const API_VERSION: &str = "2021-05-21";
/// Largest body read (the SDK sends none).
const MAX_BODY_BYTES: usize = 64 << 10;

/// One call: who makes it, with what.
pub struct Call<'a> {
    pub context: &'a FunctionContext,
    pub account: AccountId,
    pub params: Params,
    /// Berth's URL as the caller reached it (`Host`), for the URLs answers hand out.
    pub base_url: String,
}

/// An answer: the operation's body plus `RequestId`.
#[derive(Serialize)]
struct Answer<T: Serialize> {
    #[serde(rename = "RequestId")]
    request_id: String,
    #[serde(flatten)]
    body: T,
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn answer<T: Serialize>(request_id: &str, result: Result<T, CnError>) -> Response {
    match result {
        Ok(body) => json_response(StatusCode::OK, &Answer { request_id: request_id.to_owned(), body }),
        Err(error) => {
            tracing::info!(code = %error.code, status = error.status.as_u16(), "Compute Nest call refused");
            let body = ErrorBody { code: &error.code, message: &error.message, request_id };
            json_response(error.status, &body)
        }
    }
}

/// `POST /`: one Compute Nest call.
pub async fn handle(State(context): State<FunctionContext>, request: Request<Body>) -> Response {
    let request_id = request
        .headers()
        .get(berth_shared::platform::telemetry::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut response = match run(&context, request, &request_id).await {
        Ok(response) => response,
        Err(error) => answer::<()>(&request_id, Err(error)),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-acs-request-id", value);
    }
    response
}

async fn run(context: &FunctionContext, request: Request<Body>, request_id: &str) -> Result<Response, CnError> {
    let (parts, body) = request.into_parts();
    let raw_query = parts.uri.query().unwrap_or_default();
    let parameters = signature::parse_query(raw_query)
        .map_err(|e| CnError::new(StatusCode::BAD_REQUEST, "InvalidParameter", e.to_string()))?;
    let body = berth_shared::platform::http::request::read_body(body, MAX_BODY_BYTES).await.map_err(|e| match e {
        ApiError::TooLarge { .. } => {
            CnError::new(StatusCode::PAYLOAD_TOO_LARGE, "InvalidParameter", "The body is too large.")
        }
        other => other.into(),
    })?;
    let signed = signature::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        parameters: &parameters,
        headers: &parts.headers,
        body: &body,
    };
    let account = auth::authenticate(context, &signed, unix_now()).await?;
    let action = parts
        .headers
        .get("x-acs-action")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| CnError::new(StatusCode::BAD_REQUEST, "MissingParameter", "x-acs-action is required."))?
        .to_owned();
    if let Some(version) = parts.headers.get("x-acs-version").and_then(|v| v.to_str().ok())
        && version != API_VERSION
    {
        return Err(CnError::new(
            StatusCode::BAD_REQUEST,
            "InvalidVersion",
            format!("Berth speaks the Compute Nest supplier API {API_VERSION}, not {version}."),
        ));
    }
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let base_url = context.config.public_url.clone().unwrap_or_else(|| format!("http://{host}"));
    let call = Call { context, account, params: Params(parameters), base_url };
    tracing::info!(action = %action, account = %call.account, "Compute Nest call");
    let response = match action.as_str() {
        "CreateArtifact" => answer(request_id, artifacts::create(&call).await),
        "UpdateArtifact" => answer(request_id, artifacts::update(&call).await),
        "GetArtifact" => answer(request_id, artifacts::get(&call).await),
        "ListArtifacts" => answer(request_id, artifacts::list(&call).await),
        "ListArtifactVersions" => answer(request_id, artifacts::list_artifact_versions(&call).await),
        "ReleaseArtifact" => answer(request_id, artifacts::release(&call).await),
        "DeleteArtifact" => answer(request_id, artifacts::delete(&call).await),
        "GetArtifactRepositoryCredentials" => answer(request_id, repositories::credentials(&call).await),
        "ListAcrImageRepositories" => answer(request_id, repositories::list(&call).await),
        "ListAcrImageTags" => answer(request_id, repositories::tags(&call).await),
        "ListServices" => answer(request_id, services::list(&call).await),
        "GetService" => answer(request_id, services::get(&call).await),
        "CreateService" => answer(request_id, services::create(&call).await),
        "UpdateService" => answer(request_id, services::update(&call).await),
        "GetUploadCredentials" => answer(request_id, services::upload_credentials(&call).await),
        other => answer::<()>(
            request_id,
            Err(CnError::new(
                StatusCode::NOT_FOUND,
                "InvalidAction.NotFound",
                format!("Berth does not implement {}.", other.chars().take(64).collect::<String>()),
            )),
        ),
    };
    Ok(response)
}

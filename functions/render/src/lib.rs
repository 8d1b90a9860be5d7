//! The render function: service templates with their identifiers replaced and every other
//! byte kept, pull keys minted for exactly the repositories a template references, and the
//! download route behind `file::` URLs. The logic is in [`berth_shared::render`].

mod lookup;
mod request;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_shared::credentials::download_token;
use berth_shared::names::AccountId;
use berth_shared::package;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::config::Config;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::digest::oci_digest;
use berth_shared::platform::http::account::Account;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::problem::shown;
use berth_shared::platform::http::request::{ApiJson, ApiPath, INLINE_PARSE_BYTES, parse_json, read_body};
use berth_shared::platform::runtime::Function;
use berth_shared::platform::work::off_workers;
use berth_shared::render::{RenderOptions, RenderOutput};
use berth_shared::service::{Service, service_path};

use crate::lookup::RenderContext;
pub use crate::request::MAX_RENDER_BODY;
use crate::request::{RenderRequest, ServiceRenderRequest};

/// The function's name.
pub const NAME: &str = "render";

/// The function: routes only, it consumes no events.
pub fn function(context: FunctionContext) -> Function {
    Function { name: NAME, router: router(context), events: None, winding_down: None }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    Router::new()
        .route("/v1/services/{name}/render", post(render_service))
        .route("/v1/render", post(render_template))
        .route("/v1/downloads/{token}/{file_name}", get(download))
        .with_state(context)
}

/// Berth's URL as deployed hosts reach it, which `file::` download URLs start with:
/// `BERTH_PUBLIC_URL` whenever it is set; else, only with `BERTH_TRUST_FORWARDED=true` (behind
/// a proxy that sets them), the first `X-Forwarded-Host` and `X-Forwarded-Proto`; else the
/// `Host` header (or the request's authority) over `http`. A client can put anything in these
/// headers, so a host that is not a plain `host[:port]` is a 400, never part of a URL.
fn base_url(config: &Config, headers: &HeaderMap, uri: &Uri) -> Result<String, ApiError> {
    if let Some(url) = &config.public_url {
        return Ok(url.clone());
    }
    // The first entry: the one the proxy nearest the client wrote.
    let first =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim);
    let forwarded = |name: &str| first(name).filter(|_| config.trust_forwarded).filter(|v| !v.is_empty());
    let (field, host) = match forwarded("x-forwarded-host") {
        Some(host) => ("X-Forwarded-Host", host),
        None => ("Host", first(header::HOST.as_str()).or(uri.authority().map(|a| a.as_str())).unwrap_or("localhost")),
    };
    if !is_plain_authority(host) {
        return Err(ApiError::invalid(field, "invalid_host", "the host must be HOST[:PORT]"));
    }
    let scheme = match forwarded("x-forwarded-proto").map(str::to_ascii_lowercase).as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6 address: no user, path,
/// query, spaces or other characters that would change what a URL built from it means.
fn is_plain_authority(value: &str) -> bool {
    let port = |p: &str| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let name = |h: &str| {
        (1..=253).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if let Some(rest) = value.strip_prefix('[') {
        let Some((ip, tail)) = rest.split_once(']') else { return false };
        return ip.parse::<std::net::Ipv6Addr>().is_ok()
            && (tail.is_empty() || tail.strip_prefix(':').is_some_and(port));
    }
    match value.split_once(':') {
        Some((host, p)) => name(host) && port(p),
        None => name(value),
    }
}

fn render_context<'a>(context: &'a FunctionContext, account: &'a AccountId, base_url: &'a str) -> RenderContext<'a> {
    RenderContext {
        store: &context.store,
        signing: &context.signing,
        registry_host: &context.config.registry.host,
        base_url,
        account,
        now: unix_now(),
        instance: None,
    }
}

fn logged(account: &AccountId, what: &str, output: &RenderOutput<'_>) {
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
    ApiPath(name): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ServiceRenderRequest>,
) -> Result<Response, ApiError> {
    let options = RenderOptions::new(request.pin_digests, request.credential_ttl_seconds, request.dry_run)?;
    // A name that is not a service name is refused as on every other service route (and so
    // never becomes a store path).
    berth_shared::service::validate_service_name(&name)?;
    let base = base_url(&context.config, &headers, &uri)?;
    let mut service = context
        .store
        .get::<Service>(&service_path(&caller.id, &name))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("service {name}")))?
        .value;
    let picked = request.pick(&service)?;
    let mut relations = std::mem::take(&mut service.relations);
    let mut instance = None;
    if let Some(wanted) = &request.instance {
        let found = lookup::load_instance(&context.store, &caller.id, &name, wanted).await?;
        // The instance's pinned versions, not what the service resolves to today.
        relations = found.relations();
        instance = Some(found.reference(&caller.id));
    }
    let mut render = render_context(&context, &caller.id, &base);
    render.instance = instance.as_ref();
    // `pick` answered an index of these templates.
    let template = service.templates.get_mut(picked).ok_or_else(|| ApiError::Internal(format!("template {picked}")))?;
    let template_name = template.name.clone();
    // The body moves into shared bytes: the raw answer sends slices of it, never a copy.
    let source = Bytes::from(std::mem::take(&mut template.body));
    let output = lookup::render_template(render, "template", &source, &relations, options).await?;
    logged(&caller.id, &template_name, &output);
    Ok(answer(&headers, &source, output))
}

/// `POST /v1/render`: a template sent in the request, with relations or a `config.yaml`.
async fn render_template(
    State(context): State<FunctionContext>,
    caller: Account,
    uri: Uri,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let base = base_url(&context.config, &headers, &uri)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if content_type.is_some_and(|t| !t.starts_with("application/json")) {
        return Err(ApiError::invalid("body", "unsupported_media_type", "send the body as application/json"));
    }
    // Templates may be up to 10 MiB: this route reads more than ApiJson's 1 MiB.
    let bytes = read_body(request.into_body(), MAX_RENDER_BODY).await?;
    let bytes_len = bytes.len();
    let parse = move || parse_json::<RenderRequest>(&bytes)?.validate();
    // Up to 14 MiB of JSON and a config.yaml: a large one parsed off the async workers.
    let valid = match bytes_len <= INLINE_PARSE_BYTES {
        true => parse()?,
        false => off_workers(parse).await??,
    };
    let source = Bytes::from(valid.bytes);
    let output = lookup::render_template(
        render_context(&context, &caller.id, &base),
        valid.field,
        &source,
        &valid.relations,
        valid.options,
    )
    .await?;
    logged(&caller.id, "-", &output);
    Ok(answer(&headers, &source, output))
}

/// Media types that ask for the rendered template itself rather than the JSON answer.
const TEMPLATE_MEDIA_TYPES: [&str; 5] =
    ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"];

/// The template media type `Accept` prefers, if it prefers one over JSON: the acceptable entry
/// (q > 0) of highest q, the first of equals.
fn template_media_type(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    let mut best: Option<(f32, &str)> = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let media_type = parts.next().unwrap_or_default().trim();
        let q =
            parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(top, _)| q > top) {
            best = Some((q, media_type));
        }
    }
    let (_, preferred) = best?;
    TEMPLATE_MEDIA_TYPES.into_iter().find(|t| t.eq_ignore_ascii_case(preferred))
}

/// The answer `Accept` asks for: the rendered template itself (see [`template_media_type`]),
/// sent as slices of `source`, with the substitution count, the referenced repositories and the
/// pull key's username and expiry in `Berth-*` headers; else the JSON answer. A dry run renders
/// nothing, so it always answers JSON. Neither may be cached: both carry a pull key.
fn answer(headers: &HeaderMap, source: &Bytes, output: RenderOutput<'_>) -> Response {
    let mut response = match (template_media_type(headers), &output.rendered) {
        (Some(media_type), Some(rendered)) => {
            let mut response = Body::new(Chunks::new(rendered.chunks(source))).into_response();
            let headers = response.headers_mut();
            let content_type = match media_type {
                "text/plain" => HeaderValue::from_static("text/plain; charset=utf-8"),
                other => HeaderValue::from_static(other),
            };
            headers.insert(header::CONTENT_TYPE, content_type);
            headers.insert("berth-substitutions", HeaderValue::from(output.substitutions.len()));
            let repositories = output.repositories.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
            let pull_key = output.pull_key.as_ref();
            for (name, value) in [
                ("berth-repositories", Some(&repositories)),
                ("berth-pull-key-username", pull_key.map(|k| &k.username)),
                ("berth-pull-key-expires-at", pull_key.and_then(|k| k.expires_at.as_ref())),
            ] {
                if let Some(Ok(value)) = value.filter(|v| !v.is_empty()).map(|v| HeaderValue::from_str(v)) {
                    headers.insert(name, value);
                }
            }
            response
        }
        _ => ([(header::CONTENT_TYPE, "application/json")], output.into_json()).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// A body of ready pieces with its exact length known, so the answer carries a Content-Length.
struct Chunks {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    fn new(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self { chunks: chunks.into(), remaining }
    }
}

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// `GET /v1/downloads/{token}/{file_name}`: a File version's bytes, for whoever holds the URL a
/// render handed out (deployed hosts have no account token).
async fn download(
    State(context): State<FunctionContext>,
    ApiPath((token, file_name)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let grant = download_token::verify_download(&context.signing, &token)
        .ok_or_else(|| ApiError::Unauthenticated("the download link is invalid or has expired".into()))?;
    if grant.file_name != file_name {
        return Err(ApiError::NotFound(format!("file {}", shown(&file_name))));
    }
    let not_found = || ApiError::NotFound(format!("file {}", shown(&file_name)));
    let digest = match grant.digest.clone() {
        Some(digest) => digest,
        None => {
            lookup::file_digest(&context, &grant.sub, &grant.package, &grant.version).await?.ok_or_else(not_found)?
        }
    };
    let store = &context.store;
    let bytes = match store.get_object(&package::file_content_path(&grant.sub, &grant.package, &digest)).await? {
        Some(bytes) => bytes,
        None => store
            .get_object(&package::legacy_file_path(&grant.sub, &grant.package, &grant.version))
            .await?
            .ok_or_else(not_found)?,
    };
    // The URL names the bytes it hands out: anything else (a damaged store) is not served.
    if oci_digest(&bytes) != digest {
        tracing::error!(account = %grant.sub, package = %grant.package, version = %grant.version, "stored file does not match its digest");
        return Err(ApiError::Unavailable("the file's storage"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_authorities() {
        for ok in ["berth.test", "berth.test:8080", "127.0.0.1:9080", "[::1]", "[::1]:9080", "localhost"] {
            assert!(is_plain_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.test/x",
            "user@evil.test",
            "evil.test:",
            "evil.test:80:80",
            "evil.test:http",
            "a b",
            "[::1",
            "[nope]:80",
            "::1",
            "evil.test?x",
            "evil.test#x",
            "evil.test\\x",
        ] {
            assert!(!is_plain_authority(bad), "{bad}");
        }
    }
}

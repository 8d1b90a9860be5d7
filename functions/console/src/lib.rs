//! The web console: a few embedded files (one page, one script module, one style sheet) served
//! under `/console/`. The browser talks to the same JSON API as the CLI; this function holds no
//! data and reads no store. Every page URL answers the same document, whose script draws the
//! page the URL names, so each page has a stable URL that reloads and bookmarks.

use std::convert::Infallible;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use berth_shared::platform::digest::sha256_hex;
use berth_shared::platform::http::error::ApiError;
use http::{HeaderValue, Method, Request, StatusCode, header};

/// The function's name, as `/healthz` and the runtime report it.
pub const NAME: &str = "console";

/// Where the console is mounted.
pub const PREFIX: &str = "/console";

/// No inline script or style, nothing from another origin, never framed: a name or log line
/// that carries markup cannot run, and the console cannot be overlaid by another site.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file, with its validator computed once.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: LazyLock<String>,
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../assets/", $name)),
            etag: LazyLock::new(|| {
                let digest = sha256_hex(include_str!(concat!("../assets/", $name)).as_bytes());
                format!("\"{}\"", digest.get(..16).unwrap_or_default())
            }),
        }
    };
}

static PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");
static ASSETS: [Asset; 2] =
    [asset!("app.js", "text/javascript; charset=utf-8"), asset!("style.css", "text/css; charset=utf-8")];

/// The console's routes: `/console` and everything below it.
pub fn router() -> Router {
    let files = tower::service_fn(|request: Request<Body>| async move { answer(&request) });
    // route_service keeps the whole path (a nested service would not tell `/console` from `/console/`).
    Router::new()
        .route_service(PREFIX, files)
        .route_service("/console/", files)
        .route_service("/console/{*page}", files)
}

/// What a path under the prefix answers: a file under `assets/`, else the page (every page URL
/// is the same document).
fn answer(request: &Request<Body>) -> Result<Response, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(ApiError::MethodNotAllowed.into_response());
    }
    let path = request.uri().path();
    if path == PREFIX {
        // `/console` itself: the page's relative URLs need the trailing slash.
        let mut redirect = StatusCode::PERMANENT_REDIRECT.into_response();
        redirect.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/console/"));
        return Ok(redirect);
    }
    let asset = match path.strip_prefix("/console/assets/") {
        Some(name) => match ASSETS.iter().find(|a| a.name == name) {
            Some(asset) => asset,
            None => return Ok(ApiError::NotFound("console file".into()).into_response()),
        },
        None => &PAGE,
    };
    let fresh = request.headers().get(header::IF_NONE_MATCH).is_some_and(|tag| tag.as_bytes() == asset.etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if request.method() == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(asset.body))
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Revalidated on every load (a 304 costs a round trip, not the bytes): a new build is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        router().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn every_page_url_answers_the_page_and_files_their_type() {
        for path in ["/console/", "/console/packages", "/console/releases/x/y", "/console/services/a"] {
            let answer = get(path, None).await;
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
            assert_eq!(answer.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8", "{path}");
            assert_eq!(answer.headers()[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(answer.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let script = get("/console/assets/app.js", None).await;
        assert_eq!(script.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(get("/console/assets/nope.js", None).await.status(), StatusCode::NOT_FOUND);
        let bare = get("/console", None).await;
        assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(bare.headers()[header::LOCATION], "/console/");
    }

    #[tokio::test]
    async fn a_known_version_is_not_sent_again() {
        let first = get("/console/assets/style.css", None).await;
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(get("/console/assets/style.css", Some(&etag)).await.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get("/console/assets/style.css", Some("\"other\"")).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_console_takes_no_writes() {
        let request = Request::post("/console/packages").body(Body::empty()).unwrap();
        assert_eq!(router().oneshot(request).await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn the_page_loads_no_inline_script_or_style() {
        assert!(!PAGE.body.contains("<script>") && !PAGE.body.contains("style="), "inline code would need a CSP hole");
        assert!(!PAGE.body.contains("://"), "nothing from another origin");
        for asset in &ASSETS {
            assert!(!asset.body.contains("innerHTML") && !asset.body.contains("insertAdjacentHTML"), "{}", asset.name);
            assert!(!asset.body.contains("eval("), "{}", asset.name);
        }
    }
}

//! Requests answered, counted by method, route template and status.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::HTTP_REQUESTS;

/// The route label of a request no route matched (a 404 or 405 of the fallback): its path is
/// the caller's to choose, so it is never a label.
pub const UNMATCHED: &str = "unmatched";

/// Counts each answer in [`HTTP_REQUESTS`]. Layered with `Router::layer` (so that axum has
/// put the [`MatchedPath`] in the request) outside the panic catcher (so a panic's 500 counts).
pub async fn count(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None => UNMATCHED.to_owned(),
    };
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}

/// The methods Berth answers, by name; any other (a caller may send `FOO`) as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use crate::platform::metrics::prometheus_builder;
    use crate::platform::runtime::finish;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn answers_are_counted_by_route_template_and_status_never_by_raw_path() {
        let recorder = prometheus_builder().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let router = finish(
            Router::new().route("/v1/releases/{id}", get(|| async { "ok" })).route("/boom", get(boom)),
            vec!["test"],
        );
        for uri in ["/v1/releases/tenant-secret-1", "/v1/releases/tenant-secret-2", "/nowhere/token-xyz", "/boom"] {
            let request = Request::get(uri).body(Body::empty()).unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let request = Request::builder().method("FOO").uri("/v1/releases/x").body(Body::empty()).unwrap();
        router.clone().oneshot(request).await.unwrap();
        let text = handle.render();
        assert!(
            text.contains(r#"berth_http_requests_total{method="GET",route="/v1/releases/{id}",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"berth_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
        assert!(text.contains(r#"berth_http_requests_total{method="GET",route="/boom",status="500"} 1"#), "{text}");
        assert!(
            text.contains(r#"berth_http_requests_total{method="other",route="/v1/releases/{id}",status="405"} 1"#),
            "{text}"
        );
        for leaked in ["tenant-secret", "token-xyz", "nowhere", "FOO"] {
            assert!(!text.contains(leaked), "{leaked} is a label: {text}");
        }
    }
}

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

//! API Gateway WebSocket API events under Lambda (`$connect`, `$disconnect`, messages): each is
//! handed to the function's router as `POST` [`WEBSOCKET_EVENT_PATH`] carrying a
//! [`WebSocketEvent`] extension, which only the runtime sets: a plain HTTP request to that path
//! has none, and is answered 404. `$connect`'s headers (its credentials) come along; a message's
//! text is the body. The router's status becomes the event's answer (`$connect` is refused
//! unless it is 2xx).

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt as _;

/// Where the runtime hands WebSocket events to a function's router.
pub const WEBSOCKET_EVENT_PATH: &str = "/.websocket-event";

/// Longest message body handed on (API Gateway's own frame limit is 128 KiB).
const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// Which route of the WebSocket API an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSocketRoute {
    /// `$connect`: the client opens; a non-2xx answer refuses it.
    Connect,
    /// `$disconnect`: it closed (either side); the answer is ignored.
    Disconnect,
    /// A message from the client.
    Message,
}

/// A WebSocket event, in the extensions of the request the router gets for it.
#[derive(Debug, Clone)]
pub struct WebSocketEvent {
    /// The route.
    pub route: WebSocketRoute,
    /// API Gateway's id of the connection (what the Management API posts to).
    pub connection_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    request_context: RawContext,
    #[serde(default)]
    headers: Option<HashMap<String, String>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContext {
    event_type: String,
    connection_id: String,
}

/// Whether a Lambda payload is a WebSocket API event (its request context names a connection
/// and an event type; HTTP API and REST events name neither).
pub fn is_websocket_event(payload: &Value) -> bool {
    let context = payload.get("requestContext");
    let field = |name| context.and_then(|c| c.get(name)).and_then(Value::as_str);
    field("connectionId").is_some() && matches!(field("eventType"), Some("CONNECT" | "DISCONNECT" | "MESSAGE"))
}

/// Hands a WebSocket event to `router`; answers as API Gateway expects (`statusCode`).
pub async fn handle(router: Router, payload: Value) -> Result<Value, lambda_runtime::Error> {
    let raw: RawEvent = serde_json::from_value(payload)?;
    let route = match raw.request_context.event_type.as_str() {
        "CONNECT" => WebSocketRoute::Connect,
        "DISCONNECT" => WebSocketRoute::Disconnect,
        _ => WebSocketRoute::Message,
    };
    let body = raw.body.unwrap_or_default();
    let status = if body.len() > MAX_MESSAGE_BYTES {
        413
    } else {
        let body = match raw.is_base64_encoded {
            true => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).unwrap_or_default()
            }
            false => body.into_bytes(),
        };
        let mut request = http::Request::post(WEBSOCKET_EVENT_PATH);
        for (name, value) in raw.headers.iter().flatten() {
            request = request.header(name, value);
        }
        let mut request = request.body(Body::from(body))?;
        request.extensions_mut().insert(WebSocketEvent { route, connection_id: raw.request_context.connection_id });
        router.oneshot(request).await?.status().as_u16()
    };
    Ok(serde_json::to_value(WebSocketAnswer { status_code: status })?)
}

/// What API Gateway reads of a WebSocket route's answer.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WebSocketAnswer {
    status_code: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_events_are_told_from_http_events() {
        let connect = serde_json::json!({ "requestContext": { "eventType": "CONNECT", "connectionId": "Ab1=" } });
        assert!(is_websocket_event(&connect));
        let http = serde_json::json!({ "requestContext": { "http": { "method": "GET" } }, "rawPath": "/healthz" });
        assert!(!is_websocket_event(&http));
        let odd = serde_json::json!({ "requestContext": { "eventType": "OTHER", "connectionId": "Ab1=" } });
        assert!(!is_websocket_event(&odd));
    }
}

//! The wake channel (see `engine::wake`): `GET /v1/agent/channel` upgraded to a WebSocket in
//! `berth serve` (and any standalone releases function), and API Gateway's `$connect`,
//! `$disconnect` and messages under Lambda. Either way the host authenticates with its host
//! token, is sent `{"type":"wake"}` when a job may be due, and pings to keep its `last_seen`.

use super::*;
use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use berth_shared::platform::websocket::{WebSocketEvent, WebSocketRoute};
use release::{CLOSE_REFUSED, FromAgent, HEARTBEAT_SECONDS, MAX_CHANNEL_MESSAGE_BYTES, ToAgent};

/// A channel silent this long (three missed pings) is taken for dead and closed.
const SILENCE_LIMIT: Duration = Duration::from_secs(3 * HEARTBEAT_SECONDS);
/// A channel's read buffer: its messages are pings of a few bytes (tungstenite's default, 128
/// KiB, would be 1.3 GB for 10,000 idle hosts).
const READ_BUFFER_BYTES: usize = 4096;

/// Close code of a channel whose process stops (RFC 6455 "going away").
const CLOSE_GOING_AWAY: u16 = 1001;

/// SHA-256 of the request's bearer token (already verified by [`Host`]).
fn token_digest(headers: &HeaderMap) -> String {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    berth_shared::platform::digest::sha256_hex(token.as_bytes())
}

/// `GET /v1/agent/channel`: the host's wake channel, a WebSocket.
pub async fn channel(
    State(engine): State<Engine>,
    host: Host,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::invalid("upgrade", "not_websocket", format!("the channel is a WebSocket ({rejection})"))
    })?;
    let digest = token_digest(&headers);
    // Connecting is a sign of life, as a poll is.
    Box::pin(engine.seen(&host.host, &host.record)).await?;
    engine.note_fresh(&host.host, &host.record.value);
    let Host { host, record } = host;
    drop(record);
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_CHANNEL_MESSAGE_BYTES)
        .max_frame_size(MAX_CHANNEL_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve_channel(engine, host, digest, socket)))
}

/// Why a channel of this process ends, when Berth ends it.
struct Closing {
    code: u16,
    reason: &'static str,
}

/// One open channel: sends a wake when one is due, takes pings, and closes once the host's
/// token no longer acts for it, the channel goes silent, or the process stops.
async fn serve_channel(engine: Engine, host: HostRef, digest: String, mut socket: WebSocket) {
    let open = engine.open_channel(&host);
    let wake = serde_json::to_string(&ToAgent::Wake).unwrap_or_default();
    let refused = Closing { code: CLOSE_REFUSED, reason: "the host token no longer acts for this host" };
    let closing = loop {
        tokio::select! {
            _ = open.socket.wake.notified() => {
                if socket.send(Message::Text(wake.as_str().into())).await.is_err() {
                    break None;
                }
            }
            _ = open.socket.closed.cancelled() => break Some(refused),
            _ = engine.closing.cancelled() => break Some(Closing { code: CLOSE_GOING_AWAY, reason: "Berth is stopping" }),
            _ = tokio::time::sleep(SILENCE_LIMIT) => break Some(Closing { code: CLOSE_GOING_AWAY, reason: "no ping" }),
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    // Anything but a ping is ignored: a newer agent may say more.
                    if let Ok(FromAgent::Ping) = serde_json::from_str::<FromAgent>(&text) {
                        match Box::pin(engine.heartbeat(&host, &digest)).await {
                            Ok(()) => {}
                            Err(ApiError::Unauthenticated(_)) => break Some(refused),
                            Err(error) => tracing::warn!(%error, host = %host.host, "recording a ping failed"),
                        }
                    }
                }
                // WebSocket pings are answered by the socket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
        }
    };
    if let Some(Closing { code, reason }) = closing {
        let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
}

/// `POST` [`berth_shared::platform::websocket::WEBSOCKET_EVENT_PATH`]: API Gateway's
/// WebSocket events under Lambda, which only the runtime hands here (any other request is a
/// 404). `$connect` authenticates the host token and records the connection for the host;
/// `$disconnect` forgets it; a ping moves `last_seen` on, and a connection whose host token no
/// longer acts for its host is closed.
pub async fn channel_event(
    State(engine): State<Engine>,
    event: Option<Extension<WebSocketEvent>>,
    host: Result<Host, ApiError>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody<MAX_CHANNEL_MESSAGE_BYTES>,
) -> Result<StatusCode, ApiError> {
    let Some(Extension(event)) = event else { return Err(ApiError::NotFound("route".into())) };
    let id = event.connection_id.as_str();
    match event.route {
        WebSocketRoute::Connect => {
            let host = host?;
            engine.record_connection(&host.host, &token_digest(&headers), id).await?;
            Box::pin(engine.seen(&host.host, &host.record)).await?;
            engine.note_fresh(&host.host, &host.record.value);
            tracing::info!(host = %host.host.host, group = %host.host.group.group, "wake channel connected");
        }
        WebSocketRoute::Disconnect => engine.forget_connection(id).await?,
        WebSocketRoute::Message => {
            let message = berth_shared::platform::http::request::parse_json::<FromAgent>(&body)?;
            let FromAgent::Ping = message;
            let Some(known) = engine.connection(id).await? else {
                return Err(ApiError::Unauthenticated("this connection is not known: connect again".into()));
            };
            if let Err(refused) = engine.heartbeat(&known.host, &known.token_sha256).await {
                if matches!(refused, ApiError::Unauthenticated(_)) {
                    engine.forget_connection(id).await?;
                    engine.close_connection(id).await;
                }
                return Err(refused);
            }
        }
    }
    Ok(StatusCode::OK)
}

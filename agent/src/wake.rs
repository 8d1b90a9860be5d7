//! The wake channel: one WebSocket to Berth (`GET /v1/agent/channel` with the host token),
//! kept open in the background, reconnected with backoff when it drops. Berth sends
//! `{"type":"wake"}` on it when a job may be due, and the agent then polls at once (a short
//! poll, not held). The agent pings on it every minute, which keeps the host's `last_seen`.
//!
//! Without a working channel (a proxy that drops WebSockets, a Berth that has none) the agent
//! polls on its own every `--poll-interval-seconds` (with jitter), so a fleet's request rate is
//! bounded and known either way.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_shared::release::{CHANNEL_PATH, CLOSE_REFUSED, FromAgent, HEARTBEAT_SECONDS, ToAgent};
use futures::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// First wait before reconnecting a channel that dropped; doubled up to [`MAX_RECONNECT`].
const MIN_RECONNECT: Duration = Duration::from_millis(250);
/// Longest wait before reconnecting.
const MAX_RECONNECT: Duration = Duration::from_secs(30);
/// A channel up this long counts as working: its next drop reconnects from [`MIN_RECONNECT`].
const STEADY: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the channel counts as dead and is reopened.
const PING_ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// Longest a connected agent waits without a wake before it polls anyway: a wake lost on the
/// way (a failed post) delays a job by this at most.
pub const CHANNEL_SAFETY_POLL: Duration = Duration::from_secs(600);
/// A handshake that takes longer is given up (and retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message read from Berth (a wake is 15 bytes).
const MAX_MESSAGE_BYTES: usize = 4096;

/// How the agent waits for work.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether it holds a wake channel at all.
    pub enabled: bool,
    /// The channel's own address (`wss://...`), when it is not at Berth's URL (API Gateway).
    pub url: Option<String>,
    /// How often it polls while it has no working channel (with jitter).
    pub poll_interval: Duration,
    /// How often it pings on the channel.
    pub heartbeat: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            heartbeat: Duration::from_secs(HEARTBEAT_SECONDS),
        }
    }
}

/// How often an agent without a working channel polls, by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

impl Settings {
    /// Opens the channel, if enabled, to Berth at `berth_url` with the host `token`.
    pub fn open(&self, berth_url: &str, token: &str) -> Option<Channel> {
        self.enabled.then(|| Channel::start(berth_url, self.url.as_deref(), token, self.heartbeat))
    }
}

/// The channel as the agent's loop sees it.
pub struct Channel {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    /// A wake (or a change of the channel) to act on: one stored permit.
    wake: Notify,
    connected: AtomicBool,
    token: std::sync::Mutex<String>,
    /// Notified when the token changed: the channel reconnects with the new one.
    token_changed: Notify,
    heartbeat: Duration,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Channel {
    /// Starts keeping a channel open with the host `token`: to `channel_url` when Berth's
    /// WebSocket API has an address of its own (API Gateway), else to Berth at `url`.
    pub fn start(url: &str, channel_url: Option<&str>, token: &str, heartbeat: Duration) -> Self {
        let shared = Arc::new(Shared {
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            token: std::sync::Mutex::new(token.to_owned()),
            token_changed: Notify::new(),
            heartbeat,
        });
        let address = channel_url.map_or_else(|| default_channel_url(url), str::to_owned);
        let task = tokio::spawn(keep_open(address, shared.clone()));
        Self { shared, task }
    }

    /// The host token changed (registered again): reconnect with it.
    pub fn set_token(&self, token: &str) {
        *self.shared.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = token.to_owned();
        self.shared.token_changed.notify_one();
    }

    /// Whether the channel is open now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Waits for a wake (or the channel's opening or loss), at most `limit`.
    pub async fn woken(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.shared.wake.notified()).await;
    }
}

/// How long the agent waits, after a poll asked at `asked` found nothing, before it polls
/// again: until a wake while its channel is open (at most [`CHANNEL_SAFETY_POLL`]); else, when
/// Berth held the poll, not at all; else the fallback interval with jitter, or until the
/// channel opens.
pub async fn wait_for_work(channel: Option<&Channel>, asked: Instant, interval: Duration) {
    let held = asked.elapsed() >= Duration::from_secs(1);
    match channel {
        Some(channel) if channel.connected() => channel.woken(CHANNEL_SAFETY_POLL).await,
        Some(_) | None if held => {}
        Some(channel) => channel.woken(jittered(interval)).await,
        None => tokio::time::sleep(jittered(interval)).await,
    }
}

/// `d` give or take a fifth, so that a fleet started together does not poll together.
pub fn jittered(d: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let fraction = 0.8 + 0.4 * (random % 10_000) as f64 / 10_000.0;
    d.mul_f64(fraction)
}

/// `ws://` or `wss://` for Berth's `http://` or `https://` URL.
fn default_channel_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = match url.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}"),
        None => format!("ws://{}", url.strip_prefix("http://").unwrap_or(url)),
    };
    format!("{url}{CHANNEL_PATH}")
}

/// Keeps the channel open for the agent's life.
async fn keep_open(address: String, shared: Arc<Shared>) {
    let mut backoff = MIN_RECONNECT;
    let mut last_failure = String::new();
    loop {
        let token = shared.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match connect(&address, &token).await {
            Ok(socket) => {
                let opened = Instant::now();
                eprintln!("berth-agent: wake channel open");
                last_failure.clear();
                shared.connected.store(true, Ordering::SeqCst);
                // A poll now finds what came due while the channel was down.
                shared.wake.notify_one();
                let (why, token_changed) = serve(socket, &shared).await;
                shared.connected.store(false, Ordering::SeqCst);
                // The loop polls on its own from now on, until the channel is back.
                shared.wake.notify_one();
                eprintln!("berth-agent: wake channel closed ({why}); polling meanwhile");
                if token_changed {
                    continue;
                }
                if opened.elapsed() >= STEADY {
                    backoff = MIN_RECONNECT;
                }
            }
            Err(error) => {
                // Said once per kind of failure: an agent behind a proxy would repeat it forever.
                let why = error.to_string();
                if why != last_failure {
                    eprintln!("berth-agent: wake channel: {why}; polling every interval meanwhile");
                    last_failure = why;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(backoff)) => {}
            _ = shared.token_changed.notified() => {}
        }
        backoff = (backoff * 2).min(MAX_RECONNECT);
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why the channel did not open (the agent polls meanwhile).
#[derive(Debug, thiserror::Error)]
enum ChannelError {
    #[error("bad channel URL {address}: {source}")]
    Address {
        address: String,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// Not the header's own error: that could show the token.
    #[error("the host token is not a header value")]
    Token,
    #[error("Berth answered {0} to the channel")]
    Refused(tokio_tungstenite::tungstenite::http::StatusCode),
    #[error("cannot open it: {0}")]
    Failed(#[source] tokio_tungstenite::tungstenite::Error),
    #[error("no handshake within {0:?}")]
    TimedOut(Duration),
}

async fn connect(address: &str, token: &str) -> Result<Socket, ChannelError> {
    let mut request = address
        .into_client_request()
        .map_err(|source| ChannelError::Address { address: address.to_owned(), source })?;
    let bearer = format!("Bearer {token}").parse().map_err(|_| ChannelError::Token)?;
    request.headers_mut().insert("authorization", bearer);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(ChannelError::Refused(response.status())),
        Ok(Err(error)) => Err(ChannelError::Failed(error)),
        Err(_) => Err(ChannelError::TimedOut(CONNECT_TIMEOUT)),
    }
}

/// Serves an open channel until it closes; says why, and whether it was for a new token
/// (reconnect at once).
async fn serve(mut socket: Socket, shared: &Shared) -> (String, bool) {
    let why = serve_until_closed(&mut socket, shared).await;
    let token_changed = why == TOKEN_CHANGED;
    (why, token_changed)
}

const TOKEN_CHANGED: &str = "the host token changed";

async fn serve_until_closed(socket: &mut Socket, shared: &Shared) -> String {
    let ping = serde_json::to_string(&FromAgent::Ping).unwrap_or_default();
    let mut heartbeat = tokio::time::interval(shared.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: Berth counted the connection itself as a sign of life.
    heartbeat.tick().await;
    // A cut link leaves the socket open on this side for as long as TCP retries (many
    // minutes), and a channel that hears nothing wakes nobody: each heartbeat also sends a
    // protocol ping, which Berth and API Gateway answer, and anything heard back in time
    // proves the channel alive.
    let silence = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(silence);
    let mut awaiting_answer = false;
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                if let Err(error) = socket.send(Message::Text(ping.as_str().into())).await {
                    return format!("a ping failed: {error}");
                }
                if let Err(error) = socket.send(Message::Ping(Vec::new().into())).await {
                    return format!("a ping failed: {error}");
                }
                if !awaiting_answer {
                    awaiting_answer = true;
                    silence.as_mut().reset(tokio::time::Instant::now() + PING_ANSWER_DEADLINE);
                }
            }
            () = &mut silence, if awaiting_answer => {
                return format!("Berth did not answer a ping within {} s", PING_ANSWER_DEADLINE.as_secs());
            }
            _ = shared.token_changed.notified() => {
                let _ = socket.close(None).await;
                return TOKEN_CHANGED.into();
            }
            received = socket.next() => {
                awaiting_answer = false;
                match received {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(ToAgent::Wake) = serde_json::from_str::<ToAgent>(&text) {
                            shared.wake.notify_one();
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return match frame {
                            Some(frame) if u16::from(frame.code) == CLOSE_REFUSED => "the host token was refused".into(),
                            Some(frame) => format!("Berth closed it: {} {}", u16::from(frame.code), frame.reason),
                            None => "Berth closed it".into(),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return error.to_string(),
                    None => return "the connection ended".into(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_is_reached_at_berths_address() {
        assert_eq!(default_channel_url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/v1/agent/channel");
        assert_eq!(default_channel_url("https://berth.example.com/"), "wss://berth.example.com/v1/agent/channel");
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(30));
            assert!(d >= Duration::from_secs(24) && d <= Duration::from_secs(36), "{d:?}");
        }
    }
}

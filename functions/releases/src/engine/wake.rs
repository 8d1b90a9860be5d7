//! Waking hosts whose job is due. Each agent holds one WebSocket to Berth (its wake channel);
//! when a release moves, the hosts that now have something to do are sent a small wake (no
//! job, no secret), and fetch their job with a short poll. No poll is held and no Lambda runs
//! while a host waits.
//!
//! In `berth serve` the sockets are this process's own ([`Channels`]). Under Lambda they are
//! API Gateway's: each host's connection id is kept in the store ([`ChannelRecord`]) and a wake
//! is posted to it through the API Gateway Management API ([`Poster`]); a connection that is
//! gone is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use berth_shared::platform::aws::{self, API_GATEWAY_MANAGEMENT, AwsClient, AwsError};
use futures::StreamExt;
use tokio::sync::Notify;

use berth_shared::platform::metrics::{Presence, WakeOutcome, host_connected, wake_sent};

use super::*;
use crate::store_layout::{ChannelConnection, ChannelRecord, HostRecord, HostRef};

/// How long a group woken here stays watched, so that its woken hosts' polls find its
/// snapshot fresh instead of each reading it.
const WAKE_HOLD: Duration = Duration::from_secs(3);
/// Wakes posted at once under Lambda.
const POST_CONCURRENCY: usize = 32;
/// Longest a post to API Gateway may take (an advance waits for its wakes).
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The hosts of `release` that have something to do now: every planned host while it pulls,
/// the batch's hosts while a batch runs, and, once a release with a health check ends, every
/// host (they stop watching it). Nobody otherwise: a host's poll after its report finds its
/// next job, if it has one.
pub fn wake_targets(release: &Release) -> Vec<&str> {
    let all = || release.batches.iter().flatten().map(String::as_str).collect();
    if release.status.is_terminal() {
        return if release.deployment.health.is_some() { all() } else { Vec::new() };
    }
    if release.status != release::ReleaseStatus::Running {
        return Vec::new();
    }
    match release.phase {
        release::Phase::Pulling => all(),
        release::Phase::Batch { batch } => {
            release.batches.get(batch).map(|hosts| hosts.iter().map(String::as_str).collect()).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// One open channel of this process: how to wake it and how to close it.
#[derive(Clone)]
pub struct Socket {
    id: u64,
    /// Notified (one stored permit) to send a wake.
    pub wake: Arc<Notify>,
    /// Cancelled when the host's token no longer acts for it (removed, registered again) or
    /// a newer channel of the host replaced this one.
    pub closed: CancellationToken,
}

/// This process's open channels, one per host (keyed by the host's record path).
#[derive(Default)]
pub struct Channels {
    sockets: Mutex<HashMap<String, Socket>>,
    next: AtomicU64,
}

/// An open channel's place in [`Channels`]; dropping it removes the channel (unless a newer
/// one of the host replaced it).
pub struct OpenChannel {
    engine: Engine,
    key: String,
    /// The channel.
    pub socket: Socket,
    /// Counts the host as connected for as long as its channel is open.
    _connected: Presence,
}

impl Drop for OpenChannel {
    fn drop(&mut self) {
        let mut sockets = self.engine.channels.sockets.lock();
        if sockets.get(&self.key).is_some_and(|s| s.id == self.socket.id) {
            sockets.remove(&self.key);
        }
    }
}

impl Channels {
    /// How many channels are open here.
    pub fn len(&self) -> usize {
        self.sockets.lock().len()
    }

    /// Whether none is open here.
    pub fn is_empty(&self) -> bool {
        self.sockets.lock().is_empty()
    }

    fn wake(&self, key: &str) -> bool {
        match self.sockets.lock().get(key) {
            Some(socket) => {
                socket.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Posts wakes to API Gateway WebSocket connections (`PostToConnection`), and closes them,
/// through the shared AWS request layer (credentials from the environment).
pub struct Poster {
    client: AwsClient,
}

/// Why a post did not reach its connection.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The connection is gone (`GoneException`): its record is dropped.
    #[error("the connection is gone")]
    Gone,
    /// Anything else (the API unreachable, throttled): the host polls on its own meanwhile.
    #[error("{0}")]
    Failed(#[source] AwsError),
}

impl PostError {
    fn of(error: AwsError) -> Self {
        if error.status() == Some(410) || error.code() == Some("GoneException") {
            Self::Gone
        } else {
            Self::Failed(error)
        }
    }
}

impl Poster {
    /// Posting through the Management API at `endpoint` (`https://API.execute-api.REGION.amazonaws.com/STAGE`).
    pub fn new(endpoint: &str, region: &str) -> Self {
        Self::with_client(AwsClient::from_env(&API_GATEWAY_MANAGEMENT, region, POST_TIMEOUT).with_endpoint(endpoint))
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: AwsClient) -> Self {
        Self { client }
    }

    /// Posts `data` to one connection.
    pub async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        let segments = ["@connections", connection_id];
        self.client
            .rest("PostToConnection", aws::Method::POST, &segments, data.to_vec())
            .await
            .map_err(PostError::of)?;
        Ok(())
    }

    /// Closes one connection (its host was removed or registered again); one already gone is fine.
    pub async fn disconnect(&self, connection_id: &str) -> Result<(), PostError> {
        let segments = ["@connections", connection_id];
        match self
            .client
            .rest("DeleteConnection", aws::Method::DELETE, &segments, Vec::new())
            .await
            .map_err(PostError::of)
        {
            Ok(_) | Err(PostError::Gone) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Why a channel's host token was refused.
#[derive(Debug, thiserror::Error)]
#[error("the host token no longer acts for this host (removed, or registered again)")]
pub struct ChannelRefused;

impl Engine {
    /// Opens a channel of this process for `host`, replacing (closing) an older one of it.
    pub fn open_channel(&self, host: &HostRef) -> OpenChannel {
        let key = layout::host_record(&host.group, &host.host);
        let socket = Socket {
            id: self.channels.next.fetch_add(1, Ordering::Relaxed),
            wake: Arc::new(Notify::new()),
            closed: CancellationToken::new(),
        };
        if let Some(older) = self.channels.sockets.lock().insert(key.clone(), socket.clone()) {
            older.closed.cancel();
        }
        OpenChannel { engine: self.clone(), key, socket, _connected: host_connected() }
    }

    /// Closes `host`'s channel, wherever it is (this process's socket, or its API Gateway
    /// connection), because its token no longer acts for it.
    pub async fn close_channel(&self, group: &GroupRef, host: &str) -> Result<(), StoreError> {
        if let Some(socket) = self.channels.sockets.lock().remove(&layout::host_record(group, host)) {
            socket.closed.cancel();
        }
        if self.poster.is_none() {
            return Ok(());
        }
        let path = layout::channel(group, host);
        let Some(record) = self.store().get::<ChannelRecord>(&path).await? else { return Ok(()) };
        self.store().delete(&path).await?;
        self.store().delete(&layout::channel_connection(&record.value.connection_id)).await?;
        self.close_connection(&record.value.connection_id).await;
        Ok(())
    }

    /// Closes an API Gateway connection (`DeleteConnection`); a failure is logged: the
    /// connection's record is gone, so it is sent nothing and its pings are refused.
    pub async fn close_connection(&self, connection_id: &str) {
        let Some(poster) = &self.poster else { return };
        if let Err(error) = poster.disconnect(connection_id).await {
            tracing::warn!(%error, "closing a refused host's connection failed; its pings are refused");
        }
    }

    /// This process's open channels.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// A ping on `host`'s channel, which connected with the token of digest `token_sha256`:
    /// moves its `last_seen` on, at most one write a minute, reading nothing in between.
    /// Refused once the host's record names another token (or is gone).
    pub async fn heartbeat(&self, host: &HostRef, token_sha256: &str) -> Result<(), ApiError> {
        let key = layout::host_record(&host.group, &host.host);
        let now = unix_now();
        let written_here = self.seen.lock().get(&key).copied();
        if !release::should_record_seen(0, written_here, now) {
            return Ok(());
        }
        let instance = self.store().get::<HostRecord>(&key).await?;
        let Some(instance) = instance.filter(|i| i.value.host_token_sha256.as_deref() == Some(token_sha256)) else {
            return Err(ApiError::Unauthenticated(ChannelRefused.to_string()));
        };
        self.seen(host, &instance).await?;
        self.note_fresh(host, &instance.value);
        Ok(())
    }

    /// Keeps that `host`'s stored `last_seen` is fresh (written by a poll, a registration or
    /// another process), so that its pings read nothing until it is due again.
    pub fn note_fresh(&self, host: &HostRef, instance: &HostRecord) {
        let stored = instance.seen();
        if !release::should_record_seen(stored, None, unix_now()) {
            let key = layout::host_record(&host.group, &host.host);
            let mut seen = self.seen.lock();
            let known = seen.entry(key).or_insert(stored);
            *known = (*known).max(stored);
        }
    }

    /// Records an API Gateway connection of `host` (its `$connect`), replacing an older one.
    pub async fn record_connection(
        &self,
        host: &HostRef,
        token_sha256: &str,
        connection_id: &str,
    ) -> Result<(), StoreError> {
        let by_connection = ChannelConnection { host: host.clone(), token_sha256: token_sha256.to_owned() };
        self.store().put(&layout::channel_connection(connection_id), &by_connection).await?;
        let record = ChannelRecord { connection_id: connection_id.to_owned(), connected_at: unix_now() };
        self.store().put(&layout::channel(&host.group, &host.host), &record).await?;
        Ok(())
    }

    /// The host of an API Gateway connection, if it is still recorded.
    pub async fn connection(&self, connection_id: &str) -> Result<Option<ChannelConnection>, StoreError> {
        Ok(self.store().get::<ChannelConnection>(&layout::channel_connection(connection_id)).await?.map(|d| d.value))
    }

    /// Forgets an API Gateway connection (its `$disconnect`, or gone): its host's record only
    /// if it still names this connection (a newer one replaced it otherwise).
    pub async fn forget_connection(&self, connection_id: &str) -> Result<(), StoreError> {
        let by_connection = layout::channel_connection(connection_id);
        let Some(known) = self.store().get::<ChannelConnection>(&by_connection).await? else { return Ok(()) };
        let host = &known.value.host;
        let path = layout::channel(&host.group, &host.host);
        if let Some(record) = self.store().get::<ChannelRecord>(&path).await?
            && record.value.connection_id == connection_id
        {
            self.store().delete(&path).await?;
        }
        self.store().delete(&by_connection).await
    }

    /// Wakes the hosts of `release` that have something to do now ([`wake_targets`]), on this
    /// process's channels and, under Lambda, through API Gateway. Called once a release moved.
    pub(super) async fn wake(&self, release: &Release) {
        let targets = wake_targets(release);
        if targets.is_empty() {
            return;
        }
        // A wake's latency runs from the move that made the job due (just before this call).
        let due = Instant::now();
        let group = Self::group_of(release);
        if !self.channels.is_empty() {
            let woken = targets.iter().filter(|host| self.channels.wake(&layout::host_record(&group, host))).count();
            for _ in 0..woken {
                wake_sent(WakeOutcome::Delivered, due.elapsed());
            }
            if woken > 0 {
                // The woken hosts poll within moments: their group stays watched meanwhile,
                // so its snapshot is read once for all of them.
                let hold = self.hold(&group);
                if let Ok(snapshot) = self.read_snapshot(&group).await {
                    self.keep_snapshot(&group, snapshot);
                }
                tokio::spawn(async move {
                    tokio::time::sleep(WAKE_HOLD).await;
                    drop(hold);
                });
                tracing::debug!(release = %release.id, woken, "woke hosts on their channels");
            }
        }
        if self.poster.is_some() {
            self.post_wakes(&group, targets, due).await;
        }
    }

    async fn post_wakes(&self, group: &GroupRef, hosts: Vec<&str>, due: Instant) {
        // Owned, so the posts' futures borrow nothing of this call.
        let group = Arc::new(group.clone());
        let hosts: Vec<String> = hosts.into_iter().map(str::to_owned).collect();
        let engine = self.clone();
        let posted = futures::stream::iter(hosts)
            .map(move |host| {
                let (engine, group) = (engine.clone(), group.clone());
                async move { engine.post_wake(&group, &host, due).await }
            })
            .buffer_unordered(POST_CONCURRENCY)
            .filter(|posted| futures::future::ready(*posted))
            .count()
            .await;
        tracing::info!(posted, "posted wakes through API Gateway");
    }

    /// Posts a wake to `host`'s connection, if it has one; answers whether it was posted.
    async fn post_wake(&self, group: &GroupRef, host: &str, due: Instant) -> bool {
        let Some(poster) = &self.poster else { return false };
        let path = layout::channel(group, host);
        let record = match self.store().get::<ChannelRecord>(&path).await {
            Ok(Some(record)) => record.value,
            // Not connected: it polls on its own.
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%error, host, "reading a host's channel failed; it polls on its own");
                return false;
            }
        };
        let message = serde_json::to_vec(&release::ToAgent::Wake).unwrap_or_default();
        let posted = poster.post(&record.connection_id, &message).await;
        let outcome = match &posted {
            Ok(()) => WakeOutcome::Delivered,
            Err(PostError::Gone) => WakeOutcome::Gone,
            Err(PostError::Failed(_)) => WakeOutcome::Failed,
        };
        wake_sent(outcome, due.elapsed());
        match posted {
            Ok(()) => true,
            Err(PostError::Gone) => {
                if let Err(error) = self.forget_connection(&record.connection_id).await {
                    tracing::warn!(%error, host, "dropping a gone connection failed");
                }
                false
            }
            Err(PostError::Failed(error)) => {
                tracing::warn!(%error, host, "posting a wake failed; the host polls on its own");
                false
            }
        }
    }
}

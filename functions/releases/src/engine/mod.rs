//! The fan-out: drives releases forward from what is in the store. Every step re-derives the
//! state from documents, so a duplicate event, a restart or a crashed process changes nothing
//! but timing. State changes are conditional writes: results are created once, the release
//! document moves by compare-and-swap, the scaling lease by `modify`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use berth_shared::names::AccountId;

use berth_shared::credentials::temporary_key::{self, KeyPurpose, MAX_TTL_SECONDS, MIN_TTL_SECONDS};
use berth_shared::names::RepositoryName;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::{self, Event, EventError};
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::store::{DocumentStore, StoreError, Version, Versioned};
use berth_shared::release::{self, Decision, HostResult, PullResult, Release, ScalingState, Step, StepOutput};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alarms::AlarmSource;
use crate::balancer::BalancerAdapter;
use crate::scaling::{ScalingAdapter, ScalingTarget};
use crate::store_layout::{self as layout, Group, GroupRef, LeaseIndex, ReleaseState};

/// Event: re-derive and advance one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advance {
    /// The release's id.
    pub release: String,
    /// The process (its [`EngineState::process`]) whose report of a host asks for it, if a
    /// report does: the process that receives it re-lists the phase's reports at once when
    /// they may have come in elsewhere (see [`Engine::note_news`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_in: Option<String>,
    /// That report, as written: the process that receives the event keeps it as if it had
    /// read it (its advance and views of the release then read only the reports no event
    /// brought it). Without it (a long reason, a sender from before) the report is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ToldReport>,
}

/// A host's report as the process that took it wrote it (a pull without its output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToldReport {
    /// The host.
    pub host: String,
    /// Its pull's outcome, for a pull's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullResult>,
    /// Its final outcome: a run's, or a failed pull's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<HostResult>,
    /// Whether the process that took it recorded the host's successful run in its ledger: the
    /// release's end then need not look at the host's record (see `reconcile_ledgers`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recorded: bool,
}

/// Longest reason told with a report; a report with a longer one is read where needed (an
/// event stays far below the queue's 256 KiB).
const MAX_TOLD_REASON_BYTES: usize = 1024;

impl ToldReport {
    /// The report of `host` as written, unless a reason is too long to tell.
    pub fn of(host: &str, pull: Option<&PullResult>, result: Option<&HostResult>) -> Option<Self> {
        let short = |reason: &Option<String>| reason.as_ref().is_none_or(|r| r.len() <= MAX_TOLD_REASON_BYTES);
        if !pull.is_none_or(|p| short(&p.reason)) || !result.is_none_or(|r| short(&r.reason)) {
            return None;
        }
        let pull = pull.map(|p| PullResult { output: StepOutput::default(), ..p.clone() });
        Some(Self { host: host.to_owned(), pull, result: result.cloned(), recorded: false })
    }
}

impl Event for Advance {
    const TYPE: &'static str = "release.advance";
}

/// Event: drive every active release and reap expired scaling leases (the schedule sends it
/// under Lambda, with the payload `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {}

impl Event for Sweep {
    const TYPE: &'static str = "releases.sweep";
}
/// What hosts reported: pull outcomes and final outcomes, by host.
pub type Outcomes = (BTreeMap<String, PullResult>, BTreeMap<String, HostResult>);

/// The releases function's shared state: the context, a wake-up for held agent polls, and the
/// in-process coalescing of advances of the same release. A handle: every request clones it,
/// and every held poll keeps one.
#[derive(Clone)]
pub struct Engine(Arc<EngineState>);

impl std::ops::Deref for Engine {
    type Target = EngineState;
    fn deref(&self) -> &EngineState {
        &self.0
    }
}

/// What an [`Engine`] handle shares.
pub struct EngineState {
    /// The function context.
    pub context: FunctionContext,
    /// Notified whenever a release moves, to wake held long polls.
    pub changed: Arc<Notify>,
    /// Releases being advanced now, and whether another advance was asked for meanwhile.
    advancing: Arc<Mutex<HashMap<String, bool>>>,
    /// Plans read so far (they never change).
    plans: Arc<Mutex<HashMap<String, Arc<Plan>>>>,
    /// Plans being read now, one read each: the polls that miss together wait for it.
    plan_reads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pull keys minted per release.
    keys: Arc<Mutex<HashMap<String, CachedKey>>>,
    /// Each held group's release as last read (see [`watch`]).
    watches: Arc<watch::Watches>,
    /// What hosts reported, as read or written here (see [`reports`]).
    reports: Mutex<reports::Reports>,
    /// Per release, how many hosts of its phase reported (see [`tally`]).
    tallies: Arc<Mutex<HashMap<String, tally::Tally>>>,
    /// Notified whenever this process wrote a report.
    reported: Arc<Notify>,
    /// Carries out scaling pauses.
    scaling: Arc<dyn ScalingAdapter>,
    /// Reads the alarms releases are gated on.
    alarms: Arc<dyn AlarmSource>,
    /// Drains hosts from their group's load balancer and puts them back.
    balancer: Arc<dyn BalancerAdapter>,
    /// Per release, when its alarms were last read here and what they said.
    alarm_checks: Mutex<HashMap<String, (u64, gates::AlarmGate)>>,
    /// Where the host tokens seen here point (see [`tokens`]).
    token_places: tokens::TokenPlaces,
    /// When this process last wrote each host's `last_seen` (see [`Engine::seen`]).
    seen: Arc<Mutex<HashMap<String, u64>>>,
    /// Cancelled when the process is asked to stop: held polls answer at once, so a graceful
    /// shutdown does not wait out every agent's poll. Cancelled by [`Engine::close`], which
    /// also wakes them.
    pub(crate) closing: CancellationToken,
    /// This process's open wake channels (see [`wake`]).
    channels: wake::Channels,
    /// Posts wakes to API Gateway connections, when the deployment has a WebSocket API
    /// (`BERTH_WAKE_ENDPOINT`).
    poster: Option<wake::Poster>,
    /// Names this process in the advances its reports ask for (random per engine).
    pub process: String,
    /// Whether other processes may move releases: the queue is SQS, which every process on
    /// the store shares (an in-process queue is this process's alone).
    queue_shared: bool,
    /// Whether this is the only process over its store and queue (`berth serve` on its own
    /// data directory: a file store and an in-process queue, which it holds a lease on), so
    /// that every report of a release it created, and every revocation of a host token, passes
    /// through it (see [`Plan::witnessed`] and `tokens`).
    sole: std::sync::atomic::AtomicBool,
    /// Whether another process's report was told here: other processes take reports.
    others_report: std::sync::atomic::AtomicBool,
    /// What this process tells the others and hears from them, once started (see [`news`]).
    news: std::sync::OnceLock<Arc<berth_shared::platform::news::ProcessNews>>,
}

fn retry(error: StoreError) -> EventError {
    EventError::Retry(error.to_string())
}

mod advance;
mod fleet;
mod gates;
pub mod jobs;
mod leases;
mod members;
mod news;
mod plans;
mod reports;
mod sweep;
mod tally;
mod tokens;
pub use tokens::{host_token, place_in_token};
mod wake;
mod watch;

pub(crate) use fleet::behind;
pub use fleet::last_release_of;
pub use gates::BALANCER_PATIENCE_SECONDS;
pub use news::{ReleaseMoved, TokensRevoked};
use plans::CachedKey;
pub use plans::{Plan, PlannedHost};
pub use reports::Kept;
pub use sweep::SWEEP_INTERVAL;
pub use wake::{ChannelRefused, Channels, OpenChannel, PostError, Poster, Socket, wake_targets};
pub use watch::{GroupSnapshot, Hold, SNAPSHOT_LIFE};

impl Engine {
    /// A new engine over a context, with the scaling adapter its configuration asks for
    /// (`BERTH_AUTO_SCALING`; see [`crate::scaling::for_config`]).
    pub fn new(context: FunctionContext) -> Self {
        let scaling = crate::scaling::for_config(&context.config);
        Self::with_scaling(context, scaling)
    }

    /// A new engine with a scaling adapter of your own (a cloud auto-scaling API); alarms and
    /// load balancers as the configuration asks.
    pub fn with_scaling(context: FunctionContext, scaling: Arc<dyn ScalingAdapter>) -> Self {
        let alarms = crate::alarms::for_config(&context.config);
        let balancer = crate::balancer::for_config(&context.config);
        Self::with_adapters(context, scaling, alarms, balancer)
    }

    /// A new engine with adapters of your own.
    pub fn with_adapters(
        context: FunctionContext,
        scaling: Arc<dyn ScalingAdapter>,
        alarms: Arc<dyn AlarmSource>,
        balancer: Arc<dyn BalancerAdapter>,
    ) -> Self {
        let poster =
            context.config.wake_endpoint.as_deref().map(|url| wake::Poster::new(url, &context.config.s3.region));
        use berth_shared::platform::config::{QueueLocation, StoreLocation};
        let queue_shared = matches!(context.config.queue, QueueLocation::Sqs { .. });
        let sole = matches!(
            (&context.config.store, &context.config.queue),
            (StoreLocation::File(_), QueueLocation::InProcess)
        );
        Self(Arc::new(EngineState {
            process: uuid::Uuid::new_v4().to_string(),
            queue_shared,
            sole: std::sync::atomic::AtomicBool::new(sole),
            others_report: std::sync::atomic::AtomicBool::new(false),
            news: std::sync::OnceLock::new(),
            channels: wake::Channels::default(),
            poster,
            scaling,
            alarms,
            balancer,
            alarm_checks: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
            context,
            changed: Arc::new(Notify::new()),
            advancing: Arc::new(Mutex::new(HashMap::new())),
            plans: Arc::new(Mutex::new(HashMap::new())),
            plan_reads: Mutex::new(HashMap::new()),
            keys: Arc::new(Mutex::new(HashMap::new())),
            watches: Arc::default(),
            tallies: Arc::new(Mutex::new(HashMap::new())),
            reports: Mutex::default(),
            reported: Arc::new(Notify::new()),
            seen: Arc::new(Mutex::new(HashMap::new())),
            token_places: tokens::TokenPlaces::default(),
        }))
    }

    /// Marks this engine the only one over its store and queue, as `berth serve` on a file
    /// store is (an in-memory store's engine, in a bench of one process).
    pub fn as_sole_process(self) -> Self {
        self.sole.store(true, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Asks the engine to stop: held polls answer at once (they wait on `changed` only).
    pub fn close(&self) {
        self.closing.cancel();
        self.changed.notify_waiters();
    }

    /// A release's state, small and read on every poll.
    pub async fn state(&self, id: &str) -> Result<Option<Versioned<ReleaseState>>, StoreError> {
        self.store().get::<ReleaseState>(&layout::release(id)).await
    }

    /// The whole release (plan and state) with the state's version.
    pub async fn load(&self, id: &str) -> Result<Option<Versioned<Release>>, StoreError> {
        let Some(state) = self.state(id).await? else { return Ok(None) };
        let Some(plan) = self.plan(id).await? else { return Ok(None) };
        Ok(Some(Versioned { value: state.value.on(&plan.release), version: state.version }))
    }

    /// Writes a release's new state if it is still at `version`.
    pub async fn save(&self, release: &Release, version: &Version) -> Result<Version, StoreError> {
        let state = ReleaseState::of(release);
        let saved = self.store().update(&layout::release(&release.id), &state, version).await;
        if let Some(plan) = self.cached_plan(&release.id) {
            plan.note_state(saved.as_ref().ok().map(|_| &state));
        }
        saved
    }

    /// Changes a release's state by compare-and-swap, retried while others win.
    pub async fn modify<E: From<StoreError>>(
        &self,
        id: &str,
        mut change: impl FnMut(&Release) -> Result<Release, E>,
    ) -> Result<Option<Release>, E> {
        let Some(plan) = self.plan(id).await? else { return Ok(None) };
        let changed = self
            .store()
            .modify::<ReleaseState, E, _>(&layout::release(id), |current| {
                let current = current.ok_or_else(|| StoreError::NotFound(layout::release(id)))?.on(&plan.release);
                change(&current).map(|next| ReleaseState::of(&next))
            })
            .await
            .inspect_err(|_| plan.note_state(None))?;
        plan.note_state(Some(&changed.value));
        Ok(Some(changed.value.on(&plan.release)))
    }

    /// Whether groups may name an AWS Auto Scaling group in this process.
    pub fn reaches_auto_scaling(&self) -> bool {
        self.scaling.reaches_auto_scaling()
    }

    fn store(&self) -> &DocumentStore {
        &self.context.store
    }

    /// Asks the queue to advance a release.
    pub async fn request_advance(
        &self,
        id: &str,
        account: &AccountId,
    ) -> Result<(), berth_shared::platform::queue::QueueError> {
        // An advance of it running in this process goes round again instead: the event would
        // only tell it that, after a trip through the queue. (Under Lambda an instance runs one
        // invocation at a time, so a route never finds one running and always queues.)
        if let Some(again) = self.advancing.lock().get_mut(id) {
            *again = true;
            return Ok(());
        }
        let advance = Advance { release: id.to_owned(), reported_in: None, report: None };
        events::send(self.context.queue.as_ref(), Some(account.clone()), &advance).await
    }

    /// Asks for an advance after a report this process wrote. As [`Engine::request_advance`],
    /// except that with a shared queue (SQS) it queues even while an advance of the release
    /// runs here: the advance waiting for the phase's reports may be another process's, which
    /// hears of this report only so (else only when its count goes stale, a second or more
    /// later). One message a report, as under Lambda; an in-process queue (one process) is
    /// spared them.
    pub async fn request_advance_after_report(
        &self,
        id: &str,
        account: &AccountId,
        report: Option<ToldReport>,
    ) -> Result<(), berth_shared::platform::queue::QueueError> {
        let coalesced = self.advancing.lock().get_mut(id).map(|again| *again = true).is_some();
        if coalesced && !self.queue_shared {
            return Ok(());
        }
        let advance = Advance { release: id.to_owned(), reported_in: Some(self.process.clone()), report };
        events::send(self.context.queue.as_ref(), Some(account.clone()), &advance).await
    }
}

/// Creates a document that is written once; an existing one (a duplicate) is left as it is.
/// Returns whether this call wrote it.
pub async fn create_once<T: serde::Serialize>(
    store: &DocumentStore,
    path: &str,
    value: &T,
) -> Result<bool, StoreError> {
    match store.create(path, value).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Paths one task of [`read_all`] reads: a large folder's reads (a 100,000-host plan's host
/// records) are spread over the runtime's workers, and on S3 over more requests at once.
const READS_PER_TASK: usize = 4096;

/// Tasks of one [`read_all`] at once, each with its own reads in flight.
const READ_TASKS: usize = 4;

/// Every document under a folder, keyed by its stem (the host). Read into the map as they
/// come, without their versions: at a 100,000-host release's last batch, a list of every
/// versioned document first, then the map, was its peak memory.
pub async fn read_all<T: serde::de::DeserializeOwned + Send + 'static>(
    store: &DocumentStore,
    folder: &str,
) -> Result<BTreeMap<String, T>, StoreError> {
    use futures::StreamExt;
    let paths = store.list_paths(folder).await?;
    if paths.len() <= READS_PER_TASK {
        return read_into(store, paths).await;
    }
    let mut paths = paths.into_iter();
    let chunks = std::iter::from_fn(move || {
        let chunk: Vec<String> = paths.by_ref().take(READS_PER_TASK).collect();
        (!chunk.is_empty()).then_some(chunk)
    });
    let mut parts = futures::stream::iter(chunks)
        .map(|chunk| {
            let store = store.clone();
            tokio::spawn(async move { read_into::<T>(&store, chunk).await })
        })
        .buffer_unordered(READ_TASKS);
    let mut all = BTreeMap::new();
    while let Some(part) = parts.next().await {
        let mut part = part.map_err(|e| StoreError::Backend(format!("a read task ended: {e}")))??;
        all.append(&mut part);
    }
    Ok(all)
}

async fn read_into<T: serde::de::DeserializeOwned>(
    store: &DocumentStore,
    paths: Vec<String>,
) -> Result<BTreeMap<String, T>, StoreError> {
    use futures::{StreamExt, TryStreamExt};
    let mut documents = futures::stream::iter(paths)
        .map(|path| async move {
            let document = store.get::<T>(&path).await?;
            Ok::<_, StoreError>(document.map(|d| (layout::stem(&path).to_owned(), d.value)))
        })
        .buffered(16);
    let mut all = BTreeMap::new();
    // Documents deleted while listing are skipped, as `DocumentStore::list` skips them.
    while let Some(document) = documents.try_next().await? {
        if let Some((host, value)) = document {
            all.insert(host, value);
        }
    }
    Ok(all)
}

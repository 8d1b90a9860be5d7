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
use berth_shared::release::{
    self, Decision, HostResult, PullResult, Release, ScalingState, Step, StepOutput,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::scaling::{Recorded, ScalingAdapter};
use crate::store_layout::{self as layout, Group, GroupRef, LeaseIndex, ReleaseState};

/// Event: re-derive and advance one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advance {
    /// The release's id.
    pub release: String,
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
/// in-process coalescing of advances of the same release.
#[derive(Clone)]
pub struct Engine {
    /// The function context.
    pub context: FunctionContext,
    /// Notified whenever a release moves, to wake held long polls.
    pub changed: Arc<Notify>,
    /// Releases being advanced now, and whether another advance was asked for meanwhile.
    advancing: Arc<Mutex<HashMap<String, bool>>>,
    /// Plans read so far (they never change).
    plans: Arc<Mutex<HashMap<String, Arc<Plan>>>>,
    /// Pull keys minted per release.
    keys: Arc<Mutex<HashMap<String, CachedKey>>>,
    /// Each group's release as last read, for held polls (see [`Engine::snapshot`]).
    snapshots: Arc<Mutex<HashMap<String, (tokio::time::Instant, GroupSnapshot)>>>,
    /// Carries out scaling pauses.
    scaling: Arc<dyn ScalingAdapter>,
    /// When this process last wrote each host's `last_seen` (see [`Engine::seen`]).
    seen: Arc<Mutex<HashMap<String, u64>>>,
    /// Cancelled when the process is asked to stop: held polls answer at once, so a graceful
    /// shutdown does not wait out every agent's poll.
    pub closing: CancellationToken,
}

/// How long a group snapshot is trusted: another process's move is seen within this.
pub const SNAPSHOT_LIFE: Duration = Duration::from_secs(1);
/// Groups whose snapshot is kept; past this the cache starts over.
const MAX_SNAPSHOTS: usize = 4096;

/// A group's active release and its status and phase: a held poll looks again only when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    active: Option<String>,
    state: Option<(release::ReleaseStatus, release::Phase)>,
}

fn retry(error: StoreError) -> EventError {
    EventError::Retry(error.to_string())
}

mod advance;
mod fleet;
mod leases;
mod plans;
mod sweep;

use plans::CachedKey;
pub use fleet::last_release_of;
pub use plans::Plan;
pub use sweep::SWEEP_INTERVAL;

impl Engine {
    /// A new engine over a context, with the built-in scaling adapter.
    pub fn new(context: FunctionContext) -> Self {
        Self::with_scaling(context, Arc::new(Recorded))
    }

    /// A new engine with a scaling adapter of your own (a cloud auto-scaling API).
    pub fn with_scaling(context: FunctionContext, scaling: Arc<dyn ScalingAdapter>) -> Self {
        Self {
            scaling,
            closing: CancellationToken::new(),
            context,
            changed: Arc::new(Notify::new()),
            advancing: Arc::new(Mutex::new(HashMap::new())),
            plans: Arc::new(Mutex::new(HashMap::new())),
            keys: Arc::new(Mutex::new(HashMap::new())),
            snapshots: Arc::new(Mutex::new(HashMap::new())),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The group's active release and where it is, read at most once per [`SNAPSHOT_LIFE`]
    /// per group in this process.
    pub async fn snapshot(&self, group: &GroupRef) -> Result<GroupSnapshot, StoreError> {
        let key = layout::group_doc(group);
        let now = tokio::time::Instant::now();
        if let Some((read_at, snapshot)) = self.snapshots.lock().get(&key)
            && now.duration_since(*read_at) < SNAPSHOT_LIFE
        {
            return Ok(snapshot.clone());
        }
        let active = self.store().get::<Group>(&key).await?.and_then(|g| g.value.active_release);
        let state = match &active {
            Some(id) => self.state(id).await?.map(|s| (s.value.status, s.value.phase)),
            None => None,
        };
        let snapshot = GroupSnapshot { active, state };
        let mut snapshots = self.snapshots.lock();
        if snapshots.len() >= MAX_SNAPSHOTS {
            snapshots.clear();
        }
        snapshots.insert(key, (now, snapshot.clone()));
        Ok(snapshot)
    }

    /// Wakes held polls after a release moved in this process. They look at their jobs
    /// straight away; the snapshots are left to expire, so that 100,000 woken polls do not all
    /// read the group at once. (A poll that records a snapshot older than what its look saw
    /// only looks once more when the snapshot is refreshed: releases only move forward.)
    pub fn moved(&self) {
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
        self.store().update(&layout::release(&release.id), &ReleaseState::of(release), version).await
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
            .await?;
        Ok(Some(changed.value.on(&plan.release)))
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
        events::send(self.context.queue.as_ref(), Some(account.clone()), &Advance { release: id.to_owned() }).await
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

/// Every document under a folder, keyed by its stem (the host).
pub async fn read_all<T: serde::de::DeserializeOwned>(
    store: &DocumentStore,
    folder: &str,
) -> Result<BTreeMap<String, T>, StoreError> {
    Ok(store
        .list::<T>(folder)
        .await?
        .into_iter()
        .map(|(path, doc)| (layout::stem(&path).to_owned(), doc.value))
        .collect())
}

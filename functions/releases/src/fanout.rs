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
use berth_shared::platform::events::EventError;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::queue::Envelope;
use berth_shared::platform::store::{DocumentStore, StoreError, Version, Versioned};
use berth_shared::release::{
    self, Decision, GroupKind, HostResult, PullResult, Release, ScalingState, Step, StepOutput,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::scaling::{Recorded, ScalingAdapter};
use crate::store_layout::{self as layout, Group, GroupRef, LeaseIndex, ReleaseState};

/// Event: re-derive and advance one release. Payload `{"release": ID}`.
pub const ADVANCE: &str = "release.advance";
/// Event: drive every active release and reap expired scaling leases. Payload `{}`.
pub const SWEEP: &str = "releases.sweep";
/// How often `berth serve` and standalone functions sweep (timed pauses, silent agents,
/// leases). Under Lambda, a schedule sends [`SWEEP`] instead.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// Most decisions one advance makes before yielding (a release has at most
/// `2 * MAX_BATCHES + 4` phases, so this is never the limit in practice).
const MAX_STEPS: usize = 512;
/// Plans kept in memory per process; past this the cache starts over.
const MAX_CACHED_PLANS: usize = 64;

/// A minted pull key: username, password, expiry (seconds since the epoch).
type CachedKey = (String, String, u64);

/// What hosts reported: pull outcomes and final outcomes, by host.
pub type Outcomes = (BTreeMap<String, PullResult>, BTreeMap<String, HostResult>);

/// A release's immutable plan with its host index.
pub struct Plan {
    /// The release as created (its state fields are those at creation).
    pub release: Release,
    /// Each host's batch.
    pub batch_of: HashMap<String, usize>,
}

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
    /// Carries out scaling pauses.
    scaling: Arc<dyn ScalingAdapter>,
    /// Cancelled when the process is asked to stop: held polls answer at once, so a graceful
    /// shutdown does not wait out every agent's poll.
    pub closing: CancellationToken,
}

fn retry(error: StoreError) -> EventError {
    EventError::Retry(error.to_string())
}

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
        }
    }

    /// A pull key for the release's image only (its repository, pull only), shared by the
    /// release's jobs in this process: one signature per release instead of one per host,
    /// with the same grant. A key is reused only while it outlives a whole job.
    pub fn pull_key(&self, release: &Release) -> Result<(String, String), ApiError> {
        let deployment = &release.deployment;
        let now = unix_now();
        let job_life = deployment.step_timeout_seconds.saturating_mul(3).saturating_add(60);
        // The lock is held only to look up and to insert, never while minting: nothing that
        // can fail or panic runs under it.
        if let Some((username, password, expires_at)) = self.keys.lock().get(&release.id).cloned()
            && expires_at > now.saturating_add(job_life)
        {
            return Ok((username, password));
        }
        let repository = RepositoryName::parse(&deployment.image.repository)
            .map_err(|e| ApiError::Internal(format!("stored repository: {e}")))?;
        let ttl = (job_life * 2).clamp(MIN_TTL_SECONDS, MAX_TTL_SECONDS);
        let key = temporary_key::mint(
            &self.context.signing,
            &deployment.image.registry,
            &release.account,
            KeyPurpose::Pull,
            Some(vec![repository]),
            ttl,
            now,
        )
        .map_err(|e| ApiError::Internal(format!("minting a pull key: {e}")))?;
        let entry = (key.username, key.password.expose().clone(), now + ttl);
        let mut keys = self.keys.lock();
        if keys.len() >= MAX_CACHED_PLANS {
            keys.clear();
        }
        keys.insert(release.id.clone(), entry.clone());
        Ok((entry.0, entry.1))
    }

    /// A release's plan, from memory or the store.
    pub async fn plan(&self, id: &str) -> Result<Option<Arc<Plan>>, StoreError> {
        if let Some(plan) = self.plans.lock().get(id).cloned() {
            return Ok(Some(plan));
        }
        let Some(doc) = self.store().get::<Release>(&layout::plan(id)).await? else { return Ok(None) };
        let release = doc.value;
        let batch_of = release
            .batches
            .iter()
            .enumerate()
            .flat_map(|(index, hosts)| hosts.iter().map(move |host| (host.clone(), index)))
            .collect();
        let plan = Arc::new(Plan { release, batch_of });
        let mut plans = self.plans.lock();
        if plans.len() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.insert(id.to_owned(), plan.clone());
        Ok(Some(plan))
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
        let envelope = Envelope::new(ADVANCE, Some(account.clone()), serde_json::json!({ "release": id }));
        self.context.queue.send(&envelope).await
    }

    /// Handles [`ADVANCE`]. Concurrent advances of one release in this process coalesce: the
    /// running one goes round again instead of two racing on the same document.
    pub async fn advance(&self, id: &str) -> Result<(), EventError> {
        {
            let mut advancing = self.advancing.lock();
            if let Some(again) = advancing.get_mut(id) {
                *again = true;
                return Ok(());
            }
            advancing.insert(id.to_owned(), false);
        }
        // Leaves the map however this ends (an error, a panic): a stale entry would swallow
        // every later advance of the release in this process. (After an error the event is
        // retried, which covers an advance asked for meanwhile.)
        struct Leave<'a> {
            advancing: &'a Mutex<HashMap<String, bool>>,
            id: &'a str,
            armed: bool,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                if self.armed {
                    self.advancing.lock().remove(self.id);
                }
            }
        }
        let mut leave = Leave { advancing: &self.advancing, id, armed: true };
        loop {
            self.advance_once(id).await?;
            let mut advancing = self.advancing.lock();
            match advancing.get_mut(id) {
                Some(again) if *again => *again = false,
                _ => {
                    // Under the same lock as the check: no request can slip in between.
                    advancing.remove(id);
                    leave.armed = false;
                    return Ok(());
                }
            }
        }
    }

    async fn advance_once(&self, id: &str) -> Result<(), EventError> {
        let store = self.store();
        for _ in 0..MAX_STEPS {
            let Some(doc) = self.load(id).await.map_err(retry)? else {
                // Never created (a crash between claiming the group and writing it) or gone.
                store.delete(&layout::active(id)).await.map_err(retry)?;
                return Ok(());
            };
            let current = doc.value;
            if current.status.is_terminal() {
                self.clean_up(&current).await.map_err(retry)?;
                return Ok(());
            }
            let now = unix_now();
            if current.group_kind == GroupKind::Scaling {
                self.hold_lease(&current, now).await?;
            }
            let (pulls, results) = self.outcomes(&current).await.map_err(retry)?;
            let decision = release::decide(&current, &pulls, &results, now);
            match &decision {
                Decision::Wait => return Ok(()),
                Decision::TimeOut(hosts) => {
                    for host in hosts {
                        self.time_out(&current, host, now).await.map_err(retry)?;
                    }
                }
                Decision::Move(_) | Decision::Finish(..) => {
                    let next = release::apply(&current, &decision, now);
                    match self.save(&next, &doc.version).await {
                        Ok(_) => {
                            tracing::info!(release = id, status = ?next.status, phase = ?next.phase, "release moved");
                            self.changed.notify_waiters();
                        }
                        // Someone else moved it (cancel, confirm, another process): decide again.
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(retry(e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// What hosts reported, as far as the current phase needs it.
    pub async fn outcomes(&self, release: &Release) -> Result<Outcomes, StoreError> {
        let store = self.store();
        let pulls = match release.phase {
            release::Phase::Pulling => read_all::<PullResult>(store, &layout::pulls(&release.id)).await?,
            _ => BTreeMap::new(),
        };
        let results = match release.phase {
            release::Phase::Batch { .. } => read_all::<HostResult>(store, &layout::results(&release.id)).await?,
            _ => BTreeMap::new(),
        };
        Ok((pulls, results))
    }

    async fn time_out(&self, release: &Release, host: &str, now: u64) -> Result<(), StoreError> {
        let (step, what) = match release.phase {
            release::Phase::Pulling => (Step::Pull, "the pull"),
            _ => (Step::Report, "stop and start"),
        };
        let reason = format!(
            "no report from the agent on {host} within {} s of its phase start ({what}); the host counts as failed",
            release.phase_deadline() - release.phase_started_at
        );
        if step == Step::Pull {
            let pull = PullResult {
                ok: false,
                exit_code: None,
                reason: Some(reason.clone()),
                output: StepOutput::default(),
                at: now,
            };
            create_once(self.store(), &layout::pull(&release.id, host), &pull).await?;
        }
        let result = HostResult { ok: false, step, exit_code: None, reason: Some(reason), at: now };
        create_once(self.store(), &layout::result(&release.id, host), &result).await?;
        Ok(())
    }

    fn group_of(release: &Release) -> GroupRef {
        GroupRef {
            account: release.account.clone(),
            application: release.application.clone(),
            group: release.group.clone(),
        }
    }

    /// Pauses scaling for a running release (or renews its lease), through the built-in adapter.
    async fn hold_lease(&self, release: &Release, now: u64) -> Result<(), EventError> {
        let group = Self::group_of(release);
        let path = layout::scaling(&group);
        let state = self.store().get::<ScalingState>(&path).await.map_err(retry)?;
        if state.as_ref().is_some_and(|s| !release::lease_needs_renewal(&s.value, &release.id, now)) {
            return Ok(());
        }
        // The index first: a crash after it leaves at worst an entry the reaper clears.
        self.store().put(&layout::lease(&release.id), &LeaseIndex { group }).await.map_err(retry)?;
        let id = release.id.clone();
        let taken = self
            .store()
            .modify::<ScalingState, PauseError, _>(&path, |current| {
                release::take_lease(&current.unwrap_or_default(), &id, now).map_err(PauseError::Held)
            })
            .await;
        match taken {
            // Recorded first, carried out second: a crash in between leaves a lease the
            // reaper resumes, never a pause nobody knows of.
            Ok(_) => self.scaling.suspend(&Self::group_of(release)).await.map_err(EventError::Retry),
            Err(PauseError::Store(e)) => Err(retry(e)),
            // Another release's live lease: wait for it (the sweep comes back).
            Err(PauseError::Held(why)) => Err(EventError::Retry(why)),
        }
    }

    /// Ends a finished release's claims: resumes scaling, frees the group, leaves the sweep.
    /// Each step is idempotent, so running it again (duplicates, restarts) changes nothing.
    pub async fn clean_up(&self, release: &Release) -> Result<(), StoreError> {
        let group = Self::group_of(release);
        let store = self.store();
        if release.group_kind == GroupKind::Scaling {
            self.resume(&group, &release.id).await?;
        }
        // Read first: a duplicate clean-up finds the group already free and writes nothing.
        let path = layout::group_doc(&group);
        let claimed =
            store.get::<Group>(&path).await?.is_some_and(|g| g.value.active_release.as_ref() == Some(&release.id));
        if claimed {
            let id = release.id.clone();
            store
                .modify::<Group, StoreError, _>(&path, |current| {
                    let mut group = current.ok_or_else(|| StoreError::NotFound(path.clone()))?;
                    if group.active_release.as_deref() == Some(id.as_str()) {
                        group.active_release = None;
                    }
                    Ok(group)
                })
                .await?;
        }
        store.delete(&layout::active(&release.id)).await?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Resumes scaling held by `release` and drops its lease: the adapter first, so a failed
    /// resume keeps the lease for the reaper to retry.
    async fn resume(&self, group: &GroupRef, release: &str) -> Result<(), StoreError> {
        let store = self.store();
        let path = layout::scaling(group);
        if let Some(state) = store.get::<ScalingState>(&path).await?
            && state.value.lease.as_ref().is_some_and(|l| l.release == release)
        {
            self.scaling.resume(group).await.map_err(StoreError::Backend)?;
            let id = release.to_owned();
            store
                .modify::<ScalingState, StoreError, _>(&path, |current| {
                    Ok(release::release_lease(&current.unwrap_or_default(), &id))
                })
                .await?;
            tracing::info!(release, group = %group.group, "scaling resumed");
        }
        store.delete(&layout::lease(release)).await
    }

    /// Handles [`SWEEP`]: advances every active release (timed pauses, silent hosts, restarts)
    /// and resumes scaling held by leases that expired or whose release ended.
    pub async fn sweep(&self) -> Result<(), EventError> {
        let store = self.store();
        let active = store.list_paths(layout::ACTIVE).await.map_err(retry)?;
        for path in active {
            let id = layout::stem(&path).to_owned();
            if let Err(error) = self.advance(&id).await {
                tracing::warn!(release = %id, %error, "sweep could not advance the release");
            }
        }
        let now = unix_now();
        for (path, entry) in store.list::<LeaseIndex>(layout::LEASES).await.map_err(retry)? {
            let id = layout::stem(&path).to_owned();
            let release = self.state(&id).await.map_err(retry)?;
            let scaling = store.get::<ScalingState>(&layout::scaling(&entry.value.group)).await.map_err(retry)?;
            let ended = release.as_ref().is_none_or(|r| r.value.status.is_terminal());
            let expired = scaling
                .as_ref()
                .and_then(|s| s.value.lease.as_ref())
                .is_none_or(|lease| lease.release != id || lease.expires_at <= now);
            if ended || expired {
                tracing::info!(release = %id, ended, expired, "reaping scaling lease");
                self.resume(&entry.value.group, &id).await.map_err(retry)?;
            }
        }
        Ok(())
    }

    /// Starts the periodic sweep in the background (not under Lambda, where a schedule sends
    /// [`SWEEP`] events). The first sweep runs at once: it resumes releases a previous process
    /// left mid-way.
    pub fn spawn_sweeper(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if berth_shared::platform::runtime::under_lambda() {
            return;
        }
        let closing = self.closing.clone();
        runtime.spawn(async move {
            let interrupt = tokio::signal::ctrl_c();
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                _ = terminate => {}
            }
            closing.cancel();
        });
        let engine = self.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = engine.closing.cancelled() => return,
                }
                if let Err(error) = engine.sweep().await {
                    tracing::warn!(%error, "release sweep failed");
                }
            }
        });
    }
}

#[derive(Debug)]
enum PauseError {
    Store(StoreError),
    Held(String),
}

impl From<StoreError> for PauseError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_shared::release::ScalingLease;

    fn group(name: &str) -> GroupRef {
        GroupRef { account: AccountId::parse("acme").unwrap(), application: "app".into(), group: name.into() }
    }

    async fn leased(engine: &Engine, group: &GroupRef, release: &str, expires_at: u64) {
        let state = ScalingState {
            paused: true,
            lease: Some(ScalingLease { release: release.into(), expires_at }),
            pauses: 1,
            resumes: 0,
        };
        engine.store().put(&layout::scaling(group), &state).await.unwrap();
        engine.store().put(&layout::lease(release), &LeaseIndex { group: group.clone() }).await.unwrap();
    }

    async fn scaling(engine: &Engine, group: &GroupRef) -> ScalingState {
        engine.store().get::<ScalingState>(&layout::scaling(group)).await.unwrap().unwrap().value
    }

    #[tokio::test]
    async fn the_reaper_resumes_leases_that_expired_or_whose_release_is_gone_and_no_others() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let now = unix_now();
        // A release that crashed before its state was written: nothing drives it any more.
        let (gone, expired, live) = (group("gone"), group("expired"), group("live"));
        leased(&engine, &gone, "r-gone", now + 600).await;
        // A running release whose lease nobody renewed (its driver is down) past the expiry.
        leased(&engine, &expired, "r-expired", now - 1).await;
        engine
            .store()
            .put(
                &layout::release("r-expired"),
                &ReleaseState {
                    status: release::ReleaseStatus::Running,
                    phase: release::Phase::AwaitingConfirm { next: 1 },
                    phase_started_at: now,
                    reason: None,
                    finished_at: None,
                },
            )
            .await
            .unwrap();
        // A running release with a live lease: left alone.
        leased(&engine, &live, "r-live", now + 600).await;
        engine
            .store()
            .put(
                &layout::release("r-live"),
                &ReleaseState {
                    status: release::ReleaseStatus::Running,
                    phase: release::Phase::Pulling,
                    phase_started_at: now,
                    reason: None,
                    finished_at: None,
                },
            )
            .await
            .unwrap();

        engine.sweep().await.unwrap();
        engine.sweep().await.unwrap();
        for resumed in [&gone, &expired] {
            let state = scaling(&engine, resumed).await;
            assert_eq!((state.paused, state.lease, state.resumes), (false, None, 1), "{}", resumed.group);
        }
        assert!(scaling(&engine, &live).await.paused, "a live lease stays");
        let left = engine.store().list_paths(layout::LEASES).await.unwrap();
        assert_eq!(left, [layout::lease("r-live")]);
    }
}

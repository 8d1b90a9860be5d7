//! The plan cache: a release's plan never changes once written, so every process keeps the
//! plans it read, and one pull key per release, minted once and shared by its jobs.

use super::*;

use berth_shared::release::JobKind;
use std::sync::atomic::{AtomicU64, Ordering};

/// Plans kept in memory per process; past this the cache starts over.
const MAX_CACHED_PLANS: usize = 64;

/// How long a release's state, read to confirm a poll's job, answers the polls after it. Every
/// host of a phase polls within moments of each other: 100,000 reads of one small document
/// become a few. A job handed out that much after a change elsewhere is no staler than one
/// still on its way to the host; changes made in this process are seen at once. Polls that
/// ask while a read is under way wait for it and take its answer (one read, not one a poll,
/// when a read takes longer than this: S3 under load, moto).
const STATE_REUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// A minted pull key: username, password, expiry (seconds since the epoch).
pub(super) type CachedKey = (String, String, u64);

/// A release's immutable plan with its host index, and which of its jobs this process knows
/// were reported.
pub struct Plan {
    /// The release as created (its state fields are those at creation).
    pub release: Release,
    hosts: HashMap<String, PlannedHost>,
    /// Per job kind, a bit per host, set once this process wrote or read the job's result. A
    /// result is created once and never changes, so a host polling again right after its
    /// report (every host, in every phase) finds it has nothing to do without a read.
    settled: [Box<[AtomicU64]>; 2],
    /// The release's state as this process last read or wrote it, and when.
    recent_state: Mutex<Option<(std::time::Instant, ReleaseState)>>,
    /// One read of the state at a time: the polls that ask meanwhile take its answer.
    state_read: tokio::sync::Mutex<()>,
    /// Whether every report of the release passes through this process: it created the plan
    /// and is the only process (see `EngineState::sole`). Its settled bits are then the whole
    /// truth, and whether a host reported is never read.
    pub(super) witnessed: bool,
}

/// A read of one plan: waiting for the read before it, or making it. The last one out removes
/// the plan's gate (a new one takes the map's lock to share it), even if its poll was dropped
/// midway, so ids that name no plan leave nothing behind.
struct PlanRead<'a> {
    engine: &'a Engine,
    id: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> PlanRead<'a> {
    fn new(engine: &'a Engine, id: &'a str) -> Self {
        let gate = engine.plan_reads.lock().entry(id.to_owned()).or_default().clone();
        Self { engine, id, gate }
    }
}

impl Drop for PlanRead<'_> {
    fn drop(&mut self) {
        let mut reads = self.engine.plan_reads.lock();
        if Arc::strong_count(&self.gate) == 2 {
            reads.remove(self.id);
        }
    }
}

/// A host's place in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedHost {
    /// Its batch.
    pub batch: usize,
    /// Its place among the plan's hosts.
    pub(super) index: usize,
}

impl Plan {
    pub fn new(release: Release) -> Self {
        Self::kept(release, false)
    }

    fn kept(release: Release, witnessed: bool) -> Self {
        let hosts: HashMap<String, PlannedHost> = release
            .batches
            .iter()
            .enumerate()
            .flat_map(|(batch, hosts)| hosts.iter().map(move |host| (host.clone(), batch)))
            .enumerate()
            .map(|(index, (host, batch))| (host, PlannedHost { batch, index }))
            .collect();
        let bits = || (0..hosts.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Self {
            release,
            settled: [bits(), bits()],
            hosts,
            recent_state: Mutex::new(None),
            state_read: tokio::sync::Mutex::new(()),
            witnessed,
        }
    }

    /// Where the host is in the plan, if it is.
    pub fn host(&self, host: &str) -> Option<PlannedHost> {
        self.hosts.get(host).copied()
    }

    /// How many hosts the plan has.
    pub(super) fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// The host's batch, if it is in the plan.
    pub fn batch_of(&self, host: &str) -> Option<usize> {
        self.host(host).map(|h| h.batch)
    }

    fn settled_bit(&self, host: PlannedHost, kind: JobKind) -> Option<(&AtomicU64, u64)> {
        let words = self.settled.get(usize::from(kind == JobKind::Run))?;
        Some((words.get(host.index / 64)?, 1 << (host.index % 64)))
    }

    /// Whether this process knows the host's job of `kind` was reported.
    pub fn known_settled(&self, host: PlannedHost, kind: JobKind) -> bool {
        self.settled_bit(host, kind).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
    }

    /// Keeps that the host's job of `kind` was reported (its result written or read here).
    pub fn note_settled(&self, host: PlannedHost, kind: JobKind) {
        if let Some((word, bit)) = self.settled_bit(host, kind) {
            word.fetch_or(bit, Ordering::Relaxed);
        }
    }
}

impl Plan {
    /// Keeps the release's state as just read or written (none: forget it, after a write that
    /// may or may not have landed).
    pub(super) fn note_state(&self, state: Option<&ReleaseState>) {
        *self.recent_state.lock() = state.map(|s| (std::time::Instant::now(), s.clone()));
    }
}

impl Engine {
    /// The release's state to confirm a poll's job with, where the group's snapshot shows it
    /// at `seen`: read, unless this process read or wrote it within [`STATE_REUSE`] and found
    /// it there too (a snapshot ahead of what was read, news of a move elsewhere, reads it), or
    /// read or wrote it after this poll asked (a read under way when it asked is waited for).
    pub(super) async fn state_for_poll(
        &self,
        plan: &Plan,
        seen: (release::ReleaseStatus, release::Phase),
    ) -> Result<Option<ReleaseState>, StoreError> {
        self.shared_state(plan, Some(seen)).await
    }

    /// [`Self::state_for_poll`]; without a snapshot (`seen` none), only a state read or written
    /// after this asked answers it.
    async fn shared_state(
        &self,
        plan: &Plan,
        seen: Option<(release::ReleaseStatus, release::Phase)>,
    ) -> Result<Option<ReleaseState>, StoreError> {
        let asked = std::time::Instant::now();
        // As fresh as a read of its own: read or written after this asked.
        let recent = || {
            plan.recent_state
                .lock()
                .as_ref()
                .filter(|(at, s)| *at >= asked || (at.elapsed() < STATE_REUSE && Some((s.status, s.phase)) == seen))
                .map(|(_, s)| s.clone())
        };
        if let Some(state) = recent() {
            return Ok(Some(state));
        }
        let _reading = plan.state_read.lock().await;
        if let Some(state) = recent() {
            return Ok(Some(state));
        }
        let state = self.state(&plan.release.id).await?.map(|d| d.value);
        if let Some(state) = &state {
            plan.note_state(Some(state));
        }
        Ok(state)
    }

    /// The release's state to check a report of one of its hosts against: like a poll's
    /// (`state_for_poll`) where this process holds a fresh snapshot of the group showing
    /// the release, else read (or the answer of a read under way taken: no snapshot is read
    /// for it). A report checked against a state a moment old changes nothing it should not:
    /// each outcome is created once, and a host the release has timed out already has its
    /// failure written.
    pub async fn state_for_report(&self, plan: &Plan, group: &GroupRef) -> Result<Option<ReleaseState>, StoreError> {
        let seen = self
            .fresh_snapshot(group)
            .filter(|snapshot| snapshot.active() == Some(plan.release.id.as_str()))
            .and_then(|snapshot| snapshot.state());
        self.shared_state(plan, seen).await
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

    /// A release's plan, if this process has read it.
    pub fn cached_plan(&self, id: &str) -> Option<Arc<Plan>> {
        self.plans.lock().get(id).cloned()
    }

    /// A release's plan, from memory or the store.
    pub async fn plan(&self, id: &str) -> Result<Option<Arc<Plan>>, StoreError> {
        match self.cached_plan(id) {
            Some(plan) => Ok(Some(plan)),
            // Boxed: reading a plan in parts is a large future, and every poll and report
            // awaits this one, almost always answered from memory.
            None => Box::pin(self.read_plan_once(id)).await,
        }
    }

    /// Reads a plan not in memory, one read at a time per plan. A process that did not
    /// create the release (restarted mid-release, say) is asked for it by every host at once:
    /// without this, each of 100,000 polls would read and join the whole plan itself.
    async fn read_plan_once(&self, id: &str) -> Result<Option<Arc<Plan>>, StoreError> {
        let read = PlanRead::new(self, id);
        let _reading = read.gate.lock().await;
        match self.cached_plan(id) {
            Some(plan) => Ok(Some(plan)),
            None => self.read_plan(id).await,
        }
    }

    async fn read_plan(&self, id: &str) -> Result<Option<Arc<Plan>>, StoreError> {
        let Some(doc) = self.store().get::<Release>(&layout::plan(id)).await? else { return Ok(None) };
        let parts = match &doc.value.host_parts {
            None => Vec::new(),
            Some(parts) => {
                let reads = (0..parts.parts).map(|i| {
                    let path = layout::plan_part(id, i);
                    async move {
                        self.store().get::<Vec<String>>(&path).await?.map(|d| d.value).ok_or(StoreError::NotFound(path))
                    }
                });
                futures::future::try_join_all(reads).await?
            }
        };
        let release = release::join_plan(doc.value, parts)
            .map_err(|why| StoreError::Corrupt { path: layout::plan(id), reason: why })?;
        Ok(Some(self.keep_plan(release, false)))
    }

    /// Keeps a release's plan in memory: one read here, or one this process just wrote, so
    /// that the polls and the advance that follow do not each read it back (at 100,000 hosts,
    /// a read and a join of its parts).
    /// `created`: this process wrote it (it witnesses its reports if it is the only process).
    pub(super) fn keep_plan(&self, release: Release, created: bool) -> Arc<Plan> {
        let id = release.id.clone();
        let witnessed = created && self.sole.load(Ordering::Relaxed);
        let plan = Arc::new(Plan::kept(release, witnessed));
        let mut plans = self.plans.lock();
        if plans.len() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.insert(id, plan.clone());
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_of_ids_that_name_no_plan_leave_nothing_behind() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let id = "0b9e7c34-5d1f-4f43-9a55-3c1f0e2d8a61";
        let answers = futures::future::join_all((0..8).map(|_| engine.plan(id))).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(None))));
        // A read dropped while it waits its turn leaves nothing either.
        let held = PlanRead::new(&engine, id);
        let _turn = held.gate.lock().await;
        drop(futures::FutureExt::now_or_never(engine.plan(id)));
        drop(_turn);
        drop(held);
        assert!(engine.plan_reads.lock().is_empty());
        assert!(engine.plans.lock().is_empty());
    }

    #[tokio::test]
    async fn a_state_read_for_a_poll_answers_the_polls_just_after_and_one_written_here_at_once() {
        use berth_shared::release::{Phase, ReleaseStatus};
        let engine = Engine::new(FunctionContext::ephemeral());
        let plan = engine.keep_plan(super::super::reports::tests::plan(2).release, false);
        let id = plan.release.id.clone();
        let store = engine.store();
        let running = ReleaseState::of(&plan.release);
        store.put(&layout::release(&id), &running).await.unwrap();
        let pulling = (running.status, running.phase);
        assert_eq!(engine.state_for_poll(&plan, pulling).await.unwrap().as_ref(), Some(&running));
        // Another process moves it: while the snapshot still shows the state read, that read
        // answers for a moment, then the state is read again.
        let moved = ReleaseState { phase: Phase::Batch { batch: 0 }, ..running.clone() };
        store.put(&layout::release(&id), &moved).await.unwrap();
        assert_eq!(engine.state_for_poll(&plan, pulling).await.unwrap().as_ref(), Some(&running), "reused");
        tokio::time::sleep(STATE_REUSE).await;
        assert_eq!(engine.state_for_poll(&plan, pulling).await.unwrap().as_ref(), Some(&moved), "read again");
        // A snapshot that shows another state than the one read has it read at once.
        store.put(&layout::release(&id), &running).await.unwrap();
        let batch = (moved.status, moved.phase);
        assert_eq!(engine.state_for_poll(&plan, batch).await.unwrap().as_ref(), Some(&moved), "reused");
        assert_eq!(engine.state_for_poll(&plan, pulling).await.unwrap().as_ref(), Some(&running), "read");
        // A change made here is seen at once.
        let cancel = |r: &Release| Ok::<_, StoreError>(Release { status: ReleaseStatus::Cancelled, ..r.clone() });
        let cancelled = engine.modify(&id, cancel).await.unwrap().unwrap();
        let seen = engine.state_for_poll(&plan, (cancelled.status, cancelled.phase)).await.unwrap();
        assert_eq!(seen.map(|s| s.status), Some(ReleaseStatus::Cancelled));
    }

    /// Polls that ask while a read of the state is under way wait for it and take what it
    /// found, whatever their snapshot shows: one read, however long it takes.
    #[tokio::test]
    async fn polls_that_ask_while_a_state_read_is_under_way_take_its_answer() {
        use berth_shared::release::Phase;
        let engine = Engine::new(FunctionContext::ephemeral());
        let plan = engine.keep_plan(super::super::reports::tests::plan(2).release, false);
        let pulling = ReleaseState::of(&plan.release);
        let seen = (pulling.status, pulling.phase);
        let found = ReleaseState { phase: Phase::Batch { batch: 0 }, ..pulling.clone() };
        // The store holds no state: a poll that read would find none.
        let reading = plan.state_read.lock().await;
        let read_ends = async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            plan.note_state(Some(&found));
            drop(reading);
        };
        let polls = futures::future::join_all((0..8).map(|_| engine.state_for_poll(&plan, seen)));
        let (answers, ()) = futures::join!(polls, read_ends);
        for answer in answers {
            assert_eq!(answer.unwrap().as_ref(), Some(&found), "took the answer of the read under way");
        }
        // One that asks once that answer is old reads (and finds none).
        tokio::time::sleep(STATE_REUSE).await;
        assert_eq!(engine.state_for_poll(&plan, seen).await.unwrap(), None);
    }
}

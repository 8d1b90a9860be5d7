//! The living fleet: planning a group's live hosts, creating a release's documents, host
//! ledgers, convergence of hosts that join or come back, and rollbacks. Every write is a
//! conditional create or a compare-and-swap, and every id is derived where duplicates must
//! agree (a rollback of a release, one arrival's convergence), so a duplicate does nothing.

use berth_shared::release::{Arrival, LastRelease, Ledger, Ran, ReleaseOptions, RevisionId, StaleHost, Trigger};

use berth_shared::platform::store::Versioned;

use super::*;
use crate::store_layout::{ActiveRelease, HostRecord, HostRef, ReleaseEntry};

/// Hosts whose `last_seen` write time a process keeps; past this the map starts over.
const MAX_SEEN_ENTRIES: usize = 200_000;

/// Why a write to a host's record was not made.
enum Skip {
    /// The host is not (or no longer) in the group.
    Gone,
    /// Nothing to change.
    Same,
    Store(StoreError),
}

impl From<StoreError> for Skip {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Changes a host's record by compare-and-swap, never creating one (a removed host stays removed).
async fn modify_instance(
    store: &DocumentStore,
    path: &str,
    read: Option<Versioned<HostRecord>>,
    mut change: impl FnMut(&mut HostRecord) -> bool,
) -> Result<Option<HostRecord>, StoreError> {
    let changed = store
        .modify_from::<HostRecord, Skip, _>(path, read, |current| {
            let mut instance = current.ok_or(Skip::Gone)?;
            if change(&mut instance) { Ok(instance) } else { Err(Skip::Same) }
        })
        .await;
    match changed {
        Ok(doc) => Ok(Some(doc.value)),
        Err(Skip::Gone | Skip::Same) => Ok(None),
        Err(Skip::Store(e)) => Err(e),
    }
}

/// What a plan reads of a host's record ([`HostRecord`]).
#[derive(Deserialize)]
struct SeenAt {
    host: String,
    registered_at: u64,
    #[serde(default)]
    last_seen: Option<u64>,
}

/// The group's last good release, when `instance` does not run its revision and no release
/// runs on the group now (as `snapshot` shows it).
pub(crate) fn behind(snapshot: &GroupSnapshot, instance: &HostRecord) -> Option<LastRelease> {
    snapshot
        .last_good()
        .filter(|_| !snapshot.running())
        .filter(|last| instance.ledger.current.as_ref().is_none_or(|c| c.revision != last.revision))
        .cloned()
}

impl Engine {
    /// The group's hosts a release plans now, and those it skips as stale (not seen for the
    /// group's `stale_after_seconds`), listed up to [`release::MAX_LISTED_STALE`].
    pub async fn live_hosts(
        &self,
        group: &GroupRef,
        stale_after: u64,
        now: u64,
    ) -> Result<(Vec<String>, Vec<StaleHost>, usize), StoreError> {
        // Only when each host was seen, read as the records come: at 100,000 hosts, whole
        // records (with their versions) listed first were most of the plan's time.
        let seen = read_all::<SeenAt>(self.store(), &layout::host_records(group)).await?;
        let seen = seen.into_values().map(|s| (s.host, release::seen_at(s.registered_at, s.last_seen))).collect();
        let (live, stale) = release::split_stale(seen, stale_after, now);
        let count = stale.len();
        let listed = stale.into_iter().take(release::MAX_LISTED_STALE).map(|(host, seen)| StaleHost { host, seen });
        Ok((release::unique_hosts(live), listed.collect(), count))
    }

    /// Claims `group` for release `id` by compare-and-swap: free, or held by `from` (the
    /// release an automatic rollback follows) or by a release that ended. A release that
    /// ended there on the way out is recorded as the group's last.
    ///
    /// A lost swap reads the group again: the change may be the ended release's own clean-up
    /// freeing it (a client that saw it end and starts the next one races that write), which
    /// is no reason to refuse; another release's claim is then seen as running.
    pub async fn claim(&self, group: &GroupRef, id: &str, from: Option<&Release>) -> Result<(), ApiError> {
        const ATTEMPTS: u32 = 8;
        let path = layout::group_doc(group);
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5 << attempt.min(5))).await;
            }
            let doc = self
                .store()
                .get::<Group>(&path)
                .await?
                .filter(|g| !g.value.deleting)
                .ok_or_else(|| ApiError::NotFound(format!("group '{}'", group.group)))?;
            let mut claimed = doc.value.clone();
            match &doc.value.active_release {
                Some(other) if other == id => return Ok(()),
                Some(other) if from.is_some_and(|f| &f.id == other) => {
                    claimed.last_release = from.map(last_release_of);
                }
                Some(other) => {
                    let running = self.state(other).await?.is_some_and(|r| !r.value.status.is_terminal());
                    if running {
                        return Err(ApiError::Conflict {
                            code: "release_in_progress",
                            message: format!("release {other} is still running on group '{}'", group.group),
                        });
                    }
                }
                None => {}
            }
            claimed.active_release = Some(id.to_owned());
            match self.store().update(&path, &claimed, &doc.version).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict {
            code: "group_changed",
            message: format!("group '{}' kept changing while the release claimed it; try again", group.group),
        })
    }

    /// Writes a new release's documents, each created once (a duplicate finds them there and
    /// goes on), and asks for it to be advanced. Answers the plan that holds (this one, or a
    /// duplicate's that won), kept in memory.
    pub async fn create_documents(&self, created: Release) -> Result<Arc<Plan>, ApiError> {
        let store = self.store();
        let id = &created.id.clone();
        create_once(store, &layout::active(id), &ActiveRelease { account: created.account.clone() }).await?;
        // The parts before the plan that names them: a plan is never seen without its hosts.
        let (head, parts) = release::split_plan(&created);
        for (index, part) in parts.iter().enumerate() {
            create_once(store, &layout::plan_part(id, index), part).await?;
        }
        // A duplicate goes on with the plan that won, so both write the same index key.
        let plan = if create_once(store, &layout::plan(id), &head).await? {
            self.keep_plan(created, true)
        } else {
            self.plan(id).await?.ok_or_else(|| ApiError::NotFound(format!("release '{id}'")))?
        };
        let created = &plan.release;
        if create_once(store, &layout::release(id), &ReleaseState::of(created)).await? {
            berth_shared::platform::metrics::release_entered("running");
        }
        let group = Self::group_of(created);
        let entry = ReleaseEntry { id: id.clone() };
        let at = if created.created_ms > 0 { created.created_ms } else { created.created_at * 1000 };
        create_once(store, &layout::group_release(&group, at, id), &entry).await?;
        self.request_advance(id, &created.account).await?;
        Ok(plan)
    }

    /// Records a successful run of `release` in the host's ledger (the run before becomes its
    /// previous). A duplicate, or a host removed since, writes nothing.
    /// `read`: the host's record as just read, if it was (it saves a read when still current).
    pub async fn record_run(
        &self,
        release: &Release,
        host: &str,
        at: u64,
        read: Option<Versioned<HostRecord>>,
    ) -> Result<(), StoreError> {
        let ran = Ran { revision: RevisionId::of(&release.deployment), release: release.id.clone(), at };
        let path = layout::host_record(&Self::group_of(release), host);
        let written = modify_instance(self.store(), &path, read, |instance| {
            match release::record_run(&instance.ledger, ran.clone()) {
                Some(ledger) => {
                    instance.ledger = ledger;
                    true
                }
                None => false,
            }
        })
        .await?;
        // A record kept to authenticate the host's next requests no longer shows its ledger.
        if let Some(digest) = written.and_then(|record| record.host_token_sha256) {
            self.forget_recent_record(&digest);
        }
        self.note_recorded(&release.id, host);
        Ok(())
    }

    /// Records every successful run of a finished release (a report whose ledger write was
    /// cut short by a crash is caught here); hosts already recorded cost a read only, and
    /// those recorded in this process nothing.
    pub async fn reconcile_ledgers(&self, release: &Release) -> Result<(), StoreError> {
        let results = self.reports::<HostResult>(&release.id).await?;
        let group = Self::group_of(release);
        let plan = self.cached_plan(&release.id);
        // A run recorded here needs no look: its record names this release or a later one.
        for (host, result) in results.into_iter().filter(|(host, r)| r.ok && !self.recorded_here(plan.as_deref(), host))
        {
            let read = self.store().get::<HostRecord>(&layout::host_record(&group, &host)).await?;
            if let Some(read) = read.filter(|i| i.value.ledger.current.as_ref().is_none_or(|c| c.release != release.id))
            {
                self.record_run(release, &host, result.at, Some(read)).await?;
            }
        }
        Ok(())
    }

    /// Starts the release that rolls `of` back: each host `of` changed goes back to the
    /// revision it ran before, with `of`'s batching and budgets. Its id is derived from
    /// `of`'s, so there is one rollback per release however often it is asked for.
    pub async fn start_rollback(&self, of: &Release, automatic: bool) -> Result<Arc<Plan>, ApiError> {
        if !of.status.is_terminal() {
            return Err(ApiError::Conflict {
                code: "release_running",
                message: format!("release {} is still running: cancel it first, or wait for its end", of.id),
            });
        }
        if matches!(of.trigger, Trigger::Convergence { .. }) {
            return Err(ApiError::Conflict {
                code: "not_rollbackable",
                message: "a convergence is not rolled back: roll back the release it converged to".into(),
            });
        }
        let id = release::rollback_id(&of.id);
        if self.store().get::<Release>(&layout::plan(&id)).await?.is_some() {
            return Err(ApiError::Conflict {
                code: "already_rolled_back",
                message: format!("release {} was rolled back by release {id}", of.id),
            });
        }
        let group = Self::group_of(of);
        let plan = self.plan(&of.id).await?.ok_or_else(|| ApiError::NotFound(format!("release '{}'", of.id)))?;
        let results = self.reports::<HostResult>(&of.id).await?;
        let mut targets = Vec::new();
        for host in plan.release.hosts() {
            let ledger = self
                .store()
                .get::<HostRecord>(&layout::host_record(&group, host))
                .await?
                .map_or_else(Ledger::default, |i| i.value.ledger);
            targets.push((host.clone(), release::rollback_target(&ledger, &of.id, results.get(host))));
        }
        let (target, hosts) = release::plan_rollback(&of.id, targets)?;
        let back = self
            .plan(&target.release)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("the plan of release {} is gone", target.release)))?;
        // A digest whose signing key was revoked since is not rolled out again, by a rollback
        // either (409; an automatic rollback then leaves the group as the failure left it).
        berth_shared::signing::refuse_revoked_digest(
            self.store(),
            &of.account,
            &back.release.deployment.image.address(),
        )
        .await?;
        // The alarms that may have failed the release do not gate the way back.
        let mut options = ReleaseOptions { auto_rollback: false, alarms: Vec::new(), ..of.options.clone() };
        let batches = release::plan_batches(&hosts, &options.batching)?;
        release::resolve_budgets(&mut options, &batches);
        let now = unix_now();
        self.claim(&group, &id, automatic.then_some(of)).await?;
        let created = Release {
            id: id.clone(),
            trigger: Trigger::Rollback { of: of.id.clone(), automatic },
            deployment: back.release.deployment.clone(),
            options,
            batches: batches.into(),
            status: release::ReleaseStatus::Running,
            phase: release::Phase::Starting,
            phase_started_at: now,
            reason: None,
            created_at: now,
            finished_at: None,
            host_parts: None,
            stale: Vec::new(),
            stale_count: 0,
            created_ms: berth_shared::platform::clock::unix_now_ms(),
            ..of.clone()
        };
        let plan = self.create_documents(created).await?;
        tracing::info!(release = %id, of = %of.id, automatic, hosts = hosts.len(), "rollback started");
        Ok(plan)
    }

    /// Converges a host that `arrival`d to the group's last good release, if it should: a
    /// one-host release of its own, in its batch at once. `epoch` names the arrival, so
    /// duplicate polls and registrations of it create one convergence.
    pub async fn converge(&self, host: &HostRef, arrival: Arrival, epoch: u64) -> Result<(), ApiError> {
        let store = self.store();
        let Some(group) = store.get::<Group>(&layout::group_doc(&host.group)).await?.map(|d| d.value) else {
            return Ok(());
        };
        let running = match &group.active_release {
            Some(id) => self.state(id).await?.is_some_and(|s| !s.value.status.is_terminal()),
            None => false,
        };
        let Some(instance) = store.get::<HostRecord>(&layout::host_record(&host.group, &host.host)).await? else {
            return Ok(());
        };
        if group.deleting {
            return Ok(());
        }
        let Some(target) =
            release::convergence_target(group.last_release.as_ref(), running, &instance.value.ledger, arrival)
        else {
            return Ok(());
        };
        let Some(source) = self.plan(&target.id).await? else { return Ok(()) };
        // Nor by a convergence: the host stays as it is until a release of a trusted image.
        let image = source.release.deployment.image.address();
        match berth_shared::signing::refuse_revoked_digest(store, &host.group.account, &image).await {
            Err(ApiError::Conflict { message, .. }) => {
                tracing::warn!(host = %host.host, %message, "no convergence to a revoked signature");
                return Ok(());
            }
            other => other?,
        }
        let id = release::convergence_id(&host.group.group, &host.host, &target.id, &epoch.to_string());
        let now = unix_now();
        let created = Release {
            id: id.clone(),
            account: host.group.account.clone(),
            application: host.group.application.clone(),
            group: host.group.group.clone(),
            group_kind: group.kind,
            deployment: source.release.deployment.clone(),
            options: release::convergence_options(),
            batches: vec![vec![host.host.clone()]].into(),
            status: release::ReleaseStatus::Running,
            // Straight into its one batch: there is no lease to take and nothing to pull first.
            phase: release::Phase::Batch { batch: 0 },
            phase_started_at: now,
            reason: None,
            created_at: now,
            finished_at: None,
            host_parts: None,
            trigger: Trigger::Convergence { of: target.id.clone(), host: host.host.clone() },
            stale: Vec::new(),
            stale_count: 0,
            created_ms: berth_shared::platform::clock::unix_now_ms(),
            // A new host: nothing to drain before it starts.
            load_balancer: None,
        };
        let plan = self.create_documents(created).await?;
        let path = layout::host_record(&host.group, &host.host);
        let mut before = None;
        let written = modify_instance(store, &path, None, |instance| {
            before = instance.convergence.clone();
            let changed = instance.convergence.as_deref() != Some(id.as_str());
            instance.convergence = Some(id.clone());
            changed
        })
        .await?;
        // A record kept to authenticate the host's next requests no longer shows it.
        if let Some(digest) = written.and_then(|record| record.host_token_sha256) {
            self.forget_recent_record(&digest);
        }
        // A convergence of an earlier arrival still running would never be handed out now:
        // end it, rather than let it time out as a failure.
        if let Some(before) = before.filter(|b| *b != id) {
            let reason = format!("superseded by convergence {id}");
            let now = unix_now();
            let ended = self
                .modify::<StoreError>(&before, |current| {
                    Ok(match release::cancel(current, now) {
                        Ok(mut cancelled) => {
                            cancelled.reason = Some(reason.clone());
                            cancelled
                        }
                        Err(_) => current.clone(),
                    })
                })
                .await?;
            if let Some(ended) = ended {
                self.clean_up(&ended).await?;
            }
        }
        self.moved(&plan.release).await;
        tracing::info!(release = %id, host = %host.host, of = %target.id, ?arrival, "host converging");
        Ok(())
    }

    /// Converges a host that polls while behind the group's last good release (it failed
    /// that release: its link was cut, its agent was down), once per release. `cached` is the
    /// group's snapshot the poll saw: a host that is not behind on it costs nothing more.
    pub async fn converge_if_behind(
        &self,
        host: &HostRef,
        instance: &HostRecord,
        cached: &GroupSnapshot,
    ) -> Result<(), ApiError> {
        if behind(cached, instance).is_none() {
            return Ok(());
        }
        // The cached snapshot can be two seconds old: a release that started or just failed
        // since (its hosts on its newer revision) must not make them look behind. The group
        // as it is now decides; only a host that looks behind pays this read.
        let group = self.read_snapshot(&host.group).await?;
        if behind(&group, instance).is_none() {
            return Ok(());
        }
        // So does the host's record as it is now: the poll's may be one read seconds ago
        // ([`Engine::recent_record`]), before a report elsewhere recorded its run.
        let path = layout::host_record(&host.group, &host.host);
        let Some(now) = self.store().get::<HostRecord>(&path).await? else { return Ok(()) };
        let instance = &now.value;
        let Some(last) = behind(&group, instance) else { return Ok(()) };
        // Its convergence to this release, running or ended, is the one attempt it gets.
        if let Some(convergence) = &instance.convergence
            && let Some(plan) = self.plan(convergence).await?
            && matches!(&plan.release.trigger, Trigger::Convergence { of, .. } if *of == last.id)
        {
            return Ok(());
        }
        tracing::info!(host = %host.host, group = %host.group.group, of = %last.id, "host is behind the last release");
        // Epoch 0: one convergence per host and release for this arrival.
        self.converge(host, Arrival::Behind, 0).await
    }

    /// Whether a poll now should record that the host was seen ([`Engine::seen`]): cheap,
    /// so that most polls never build that call.
    pub fn seen_due(&self, host: &HostRef, instance: &HostRecord) -> bool {
        let now = unix_now();
        let stored = instance.seen();
        // A fresh stored value decides alone, without the key's format.
        if !release::should_record_seen(stored, None, now) {
            return false;
        }
        let written_here = self.seen.lock().get(&layout::host_record(&host.group, &host.host)).copied();
        release::should_record_seen(stored, written_here, now)
    }

    /// Records that a host polled: at most one conditional write a minute per host (skipped
    /// while the stored value or this process's last write is fresh). The poll that moves a
    /// stale `last_seen` on is the one that saw the host come back: it converges the host (and
    /// answers true).
    pub async fn seen(&self, host: &HostRef, instance: &Versioned<HostRecord>) -> Result<bool, ApiError> {
        if !self.seen_due(host, &instance.value) {
            return Ok(false);
        }
        let key = layout::host_record(&host.group, &host.host);
        let now = unix_now();
        let stored = instance.value.seen();
        let mut next = instance.value.clone();
        next.last_seen = Some(now);
        match self.store().update(&key, &next, &instance.version).await {
            Ok(version) => {
                if let Some(digest) = next.host_token_sha256.clone() {
                    self.note_record(&digest, &Arc::new(Versioned { value: next, version }));
                }
            }
            // Another poll (or a report, a registration) wrote it: that one did the work.
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        {
            let mut seen = self.seen.lock();
            if seen.len() >= MAX_SEEN_ENTRIES {
                seen.clear();
            }
            seen.insert(key, now);
        }
        let Some(group) = self.store().get::<Group>(&layout::group_doc(&host.group)).await? else { return Ok(false) };
        if release::is_stale(stored, group.value.stale_after_seconds, now) {
            tracing::info!(host = %host.host, group = %host.group.group, "host is back after being stale");
            self.converge(host, Arrival::Returned, stored).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Why a running convergence must end (or never be handed out): a release runs on its
    /// group now (and plans the host itself), or a later release ended there (its revision,
    /// not this one, is what hosts converge to).
    pub async fn superseded(&self, release: &Release) -> Result<Option<String>, StoreError> {
        let Trigger::Convergence { of, .. } = &release.trigger else { return Ok(None) };
        let Some(group) = self.store().get::<Group>(&layout::group_doc(&Self::group_of(release))).await? else {
            return Ok(Some("the group was deleted".into()));
        };
        if let Some(active) = &group.value.active_release
            && self.state(active).await?.is_some_and(|s| !s.value.status.is_terminal())
        {
            return Ok(Some(format!("release {active} started on the group; it plans this host")));
        }
        match &group.value.last_release {
            Some(last) if &last.id != of => {
                Ok(Some(format!("release {} ended on the group since; hosts converge to it instead", last.id)))
            }
            _ => Ok(None),
        }
    }
}

/// What a group records of a release that ended on it.
pub fn last_release_of(release: &Release) -> LastRelease {
    LastRelease {
        id: release.id.clone(),
        status: release.status,
        revision: RevisionId::of(&release.deployment),
        finished_at: release.finished_at.unwrap_or(release.created_at),
    }
}

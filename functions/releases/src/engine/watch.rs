//! What held agent polls wait on: each group's active release and where it is (a
//! [`GroupSnapshot`]), kept per process and re-read once a second by one task while polls
//! of the group are held, which wakes them when it changed. Moves made in this process, and
//! in others that tell it (see [`news`](super::news)), are seen at once; with news the re-read
//! is every five seconds.
//!
//! A held poll does no work of its own while it waits. With a recheck per poll, 100,000 held
//! polls cost 100,000 look-ups a second, and a dispatch that took N seconds cost N of them per
//! host: the fan-out's time grew with the square of the fleet.

use super::*;

use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;

/// How often a watched group is re-read: another process's move is seen within this.
pub const SNAPSHOT_LIFE: Duration = Duration::from_secs(1);
/// As [`SNAPSHOT_LIFE`], while other processes tell this one of their moves (see [`news`]):
/// the re-read is then only the net under news that was lost, and costs a fifth.
pub const SNAPSHOT_LIFE_WITH_NEWS: Duration = Duration::from_secs(5);
/// Groups watched at once; past this, a poll of another group reads its snapshot itself.
const MAX_WATCHED: usize = 4096;
/// Groups re-read at once by the refresher.
const REFRESH_CONCURRENCY: usize = 16;

/// A group's active release and its status and phase: a held poll looks again only when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    active: Option<String>,
    state: Option<(release::ReleaseStatus, release::Phase)>,
    /// The group's last release, when it succeeded: what hosts converge to.
    last_good: Option<release::LastRelease>,
}

impl GroupSnapshot {
    /// The group's active release, if any.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// The active release's status and phase, as last read.
    pub fn state(&self) -> Option<(release::ReleaseStatus, release::Phase)> {
        self.state
    }

    /// Whether a release runs on the group.
    pub fn running(&self) -> bool {
        self.state.as_ref().is_some_and(|(status, _)| !status.is_terminal())
    }

    /// The group's last release, if it succeeded.
    pub fn last_good(&self) -> Option<&release::LastRelease> {
        self.last_good.as_ref()
    }
}

/// A watched group: its snapshot as last read, and how many polls hold on it.
pub(super) struct Watched {
    /// Its key again, for a hold to share.
    group: Arc<GroupRef>,
    snapshot: Option<(Instant, Arc<GroupSnapshot>)>,
    holders: usize,
}

/// The watches of one engine and whether their refresher runs.
#[derive(Default)]
pub(super) struct Watches {
    /// By group; a hold shares its key (no copy, no path built per poll).
    groups: Mutex<HashMap<Arc<GroupRef>, Watched>>,
    refreshing: AtomicBool,
}

/// A held poll's claim on its group's watch; dropping it lets the watch go.
pub struct Hold {
    watches: Arc<Watches>,
    /// The watch's key, while the group is watched.
    key: Option<Arc<GroupRef>>,
}

impl Hold {
    /// Whether the group is watched (its snapshot refreshed and changes woken), which it is
    /// unless `MAX_WATCHED` other groups are.
    pub fn watched(&self) -> bool {
        self.key.is_some()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(key) = &self.key else { return };
        if let Some(watched) = self.watches.groups.lock().get_mut(key) {
            watched.holders = watched.holders.saturating_sub(1);
        }
    }
}

impl Engine {
    /// Holds a poll on `group`: while any is held, its snapshot is re-read once a second and a
    /// change wakes every held poll (`changed`).
    pub fn hold(&self, group: &GroupRef) -> Hold {
        let key = {
            let mut groups = self.watches.groups.lock();
            if let Some(watched) = groups.get_mut(group) {
                watched.holders += 1;
                Some(watched.group.clone())
            } else if groups.len() < MAX_WATCHED {
                let key = Arc::new(group.clone());
                groups.insert(key.clone(), Watched { group: key.clone(), snapshot: None, holders: 1 });
                Some(key)
            } else {
                None
            }
        };
        if key.is_some() && !self.watches.refreshing.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().refresh_watches());
        }
        Hold { watches: self.watches.clone(), key }
    }

    /// The group's active release and where it is: from the watch while it is fresh, else read.
    /// Shared, so that 100,000 polls looking at it copy nothing.
    pub async fn snapshot(&self, group: &GroupRef) -> Result<Arc<GroupSnapshot>, StoreError> {
        if let Some(snapshot) = self.fresh_snapshot(group) {
            return Ok(snapshot);
        }
        // Boxed: every look of a held poll awaits this, and almost always it is fresh.
        Box::pin(self.read_and_keep_snapshot(group, Instant::now())).await
    }

    /// The group's snapshot if this process holds a fresh one (it watches the group), without
    /// reading.
    pub(super) fn fresh_snapshot(&self, group: &GroupRef) -> Option<Arc<GroupSnapshot>> {
        let fresh = self.watches.groups.lock().get(group).and_then(|w| w.snapshot.clone());
        // Twice the refresher's period: a stalled refresher (a frozen Lambda) is not trusted.
        fresh.filter(|(read_at, _)| read_at.elapsed() < self.snapshot_life() * 2).map(|(_, snapshot)| snapshot)
    }

    async fn read_and_keep_snapshot(&self, group: &GroupRef, now: Instant) -> Result<Arc<GroupSnapshot>, StoreError> {
        let snapshot = Arc::new(self.read_snapshot(group).await?);
        if let Some(watched) = self.watches.groups.lock().get_mut(group) {
            watched.snapshot = Some((now, snapshot.clone()));
        }
        Ok(snapshot)
    }

    pub(super) async fn read_snapshot(&self, group: &GroupRef) -> Result<GroupSnapshot, StoreError> {
        let (active, last) = match self.store().get::<Group>(&layout::group_doc(group)).await? {
            Some(g) => (g.value.active_release, g.value.last_release),
            None => (None, None),
        };
        let state = match &active {
            Some(id) => self.state(id).await?.map(|s| (s.value.status, s.value.phase)),
            None => None,
        };
        let last_good = last.filter(|l| l.status == release::ReleaseStatus::Succeeded);
        Ok(GroupSnapshot { active, state, last_good })
    }

    /// Wakes held polls after `release` moved in this process. Its group's snapshot is read
    /// once here first, so that 100,000 woken polls find it fresh instead of all reading it.
    pub async fn moved(&self, release: &Release) {
        self.moved_from(None, release).await;
    }

    /// [`Self::moved`], from the status and phase the move's save replaced, when known: the
    /// group's snapshot then follows without a read when it showed them, here and in the
    /// processes told.
    pub(super) async fn moved_from(&self, from: Option<(release::ReleaseStatus, release::Phase)>, release: &Release) {
        if release.status.is_terminal() {
            berth_shared::platform::metrics::release_entered(release.status.name());
        }
        let group = GroupRef {
            account: release.account.clone(),
            application: release.application.clone(),
            group: release.group.clone(),
        };
        let here = async {
            let change = from.map(|from| news::StateChange { from, to: ReleaseState::of(release) });
            if !change.is_some_and(|change| self.take_change(&release.id, &group, &change)) {
                let read = self.read_snapshot(&group).await;
                if let Some(watched) = self.watches.groups.lock().get_mut(&group) {
                    // Unread, the snapshot is dropped: the polls read it themselves.
                    watched.snapshot = read.ok().map(|s| (Instant::now(), Arc::new(s)));
                }
            }
            self.changed.notify_waiters();
            self.wake(release).await;
        };
        futures::join!(here, self.tell_moved(release, from));
    }

    /// Takes a running release's change of state into its group's snapshot without reading,
    /// when the snapshot shows the release where the change began (or already where it ended),
    /// and keeps the state for the release's polls as if just read. False otherwise (news out
    /// of order, a move missed, an end: the group's last release changes with it): read then.
    pub(super) fn take_change(&self, id: &str, group: &GroupRef, change: &news::StateChange) -> bool {
        let to = (change.to.status, change.to.phase);
        if to.0.is_terminal() {
            return false;
        }
        {
            let mut groups = self.watches.groups.lock();
            let Some(watched) = groups.get_mut(group) else { return false };
            let Some((_, snapshot)) = &watched.snapshot else { return false };
            // A release's first move, on a group the snapshot shows free: the release is new.
            // (Its plan, read before any job is handed out, must be the group's.)
            let started = snapshot.active().is_none() && change.from.1 == release::Phase::Starting;
            let follows =
                snapshot.active() == Some(id) && (snapshot.state == Some(change.from) || snapshot.state == Some(to));
            if !started && !follows {
                return false;
            }
            let taken =
                GroupSnapshot { active: Some(id.to_owned()), state: Some(to), ..GroupSnapshot::clone(snapshot) };
            watched.snapshot = Some((Instant::now(), Arc::new(taken)));
        }
        if let Some(plan) = self.cached_plan(id) {
            plan.note_state(Some(&change.to));
        }
        true
    }

    /// Re-reads a watched group's snapshot now (news of a move elsewhere) and wakes its held
    /// polls if it changed.
    pub(super) async fn refresh_watched(&self, group: &GroupRef) {
        if !self.watches.groups.lock().contains_key(group) {
            return;
        }
        let snapshot = match self.read_snapshot(group).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(%error, group = %layout::group_doc(group), "re-reading a group moved elsewhere failed");
                return;
            }
        };
        let changed = {
            let mut groups = self.watches.groups.lock();
            let Some(watched) = groups.get_mut(group) else { return };
            let changed = watched.snapshot.as_ref().is_none_or(|(_, s)| **s != snapshot);
            watched.snapshot = Some((Instant::now(), Arc::new(snapshot)));
            changed
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Wakes held polls when this process finds a release further on than its group's
    /// snapshot says (another process moved it): a report or an advance here read its state
    /// anyway, and the refresher would see the move only within [`SNAPSHOT_LIFE`]. Only where
    /// other processes may move releases (a shared queue); an end is left to the refresher
    /// (the group's last release changes with it).
    pub fn saw(&self, release: &Release, status: release::ReleaseStatus, phase: release::Phase) {
        if !self.queue_shared || status.is_terminal() {
            return;
        }
        let group = GroupRef {
            account: release.account.clone(),
            application: release.application.clone(),
            group: release.group.clone(),
        };
        {
            let mut groups = self.watches.groups.lock();
            let Some(watched) = groups.get_mut(&group) else { return };
            let Some((_, snapshot)) = &watched.snapshot else { return };
            if snapshot.active() != Some(release.id.as_str()) || snapshot.state == Some((status, phase)) {
                return;
            }
            let seen = GroupSnapshot { state: Some((status, phase)), ..GroupSnapshot::clone(snapshot) };
            watched.snapshot = Some((Instant::now(), Arc::new(seen)));
        }
        self.changed.notify_waiters();
    }

    /// Keeps a snapshot just read for the group's polls, if the group is watched.
    pub(super) fn keep_snapshot(&self, group: &GroupRef, snapshot: GroupSnapshot) {
        if let Some(watched) = self.watches.groups.lock().get_mut(group) {
            watched.snapshot = Some((Instant::now(), Arc::new(snapshot)));
        }
    }

    /// How long a group's snapshot is kept before it is read again.
    fn snapshot_life(&self) -> Duration {
        if self.news.get().is_some_and(|news| news.heard()) { SNAPSHOT_LIFE_WITH_NEWS } else { SNAPSHOT_LIFE }
    }

    /// Re-reads every held group's snapshot once per [`SNAPSHOT_LIFE`] and wakes the polls
    /// when one changed; ends when no poll is held (the next hold starts it again).
    async fn refresh_watches(self) {
        loop {
            tokio::select! {
                _ = self.closing.cancelled() => {
                    self.watches.refreshing.store(false, Ordering::SeqCst);
                    return;
                }
                _ = tokio::time::sleep(self.snapshot_life()) => {}
            }
            let groups: Vec<Arc<GroupRef>> = {
                let mut groups = self.watches.groups.lock();
                groups.retain(|_, w| w.holders > 0);
                if groups.is_empty() {
                    // Under the lock a hold takes first: a hold after this starts a new refresher.
                    self.watches.refreshing.store(false, Ordering::SeqCst);
                    return;
                }
                groups.keys().cloned().collect()
            };
            let engine = &self;
            let reads = futures::stream::iter(groups)
                .map(|group| async move { (engine.read_snapshot(&group).await, group) })
                .buffer_unordered(REFRESH_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            let now = Instant::now();
            let mut changed = false;
            {
                let mut groups = self.watches.groups.lock();
                for (read, group) in reads {
                    let Some(watched) = groups.get_mut(&group) else { continue };
                    match read {
                        Ok(snapshot) => {
                            changed |= watched.snapshot.as_ref().is_none_or(|(_, s)| **s != snapshot);
                            watched.snapshot = Some((now, Arc::new(snapshot)));
                        }
                        Err(error) => {
                            tracing::warn!(%error, group = %layout::group_doc(&group), "re-reading a held group failed");
                            watched.snapshot = None;
                        }
                    }
                }
            }
            if changed {
                self.changed.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_shared::release::{Phase, ReleaseStatus};

    /// A move told with where it began is taken into the group's snapshot and the release's
    /// kept state without a read, only when the snapshot shows it where the move began (or
    /// already where it ended); anything else (out of order, a move missed, an end) is read.
    #[tokio::test]
    async fn a_change_that_follows_on_the_snapshot_is_taken_without_a_read() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let plan = engine.keep_plan(super::super::reports::tests::plan(2).release, false);
        let (id, group) = (plan.release.id.clone(), Engine::group_of(&plan.release));
        let pulling = ReleaseState::of(&plan.release);
        let batch = ReleaseState { phase: Phase::Batch { batch: 0 }, ..pulling.clone() };
        let change = |from: &ReleaseState, to: &ReleaseState| news::StateChange {
            from: (from.status, from.phase),
            to: to.clone(),
        };
        // Not watched here: nothing to take.
        assert!(!engine.take_change(&id, &group, &change(&pulling, &batch)));
        let _hold = engine.hold(&group);
        let at_pulling =
            GroupSnapshot { active: Some(id.clone()), state: Some((pulling.status, pulling.phase)), last_good: None };
        engine.keep_snapshot(&group, at_pulling.clone());
        // From another state than the snapshot's: read instead.
        let later = ReleaseState { phase: Phase::Batch { batch: 1 }, ..pulling.clone() };
        assert!(!engine.take_change(&id, &group, &change(&batch, &later)));
        assert!(!engine.take_change("another", &group, &change(&pulling, &batch)));
        let ended = ReleaseState { status: ReleaseStatus::Cancelled, ..pulling.clone() };
        assert!(!engine.take_change(&id, &group, &change(&pulling, &ended)), "an end is read");
        assert_eq!(engine.fresh_snapshot(&group).as_deref(), Some(&at_pulling));

        assert!(engine.take_change(&id, &group, &change(&pulling, &batch)));
        let taken = engine.fresh_snapshot(&group).unwrap();
        assert_eq!((taken.active(), taken.state()), (Some(id.as_str()), Some((batch.status, batch.phase))));
        // The release's state is kept as if read: a poll that sees it reads nothing (the store
        // holds no state at all).
        assert_eq!(engine.state_for_poll(&plan, (batch.status, batch.phase)).await.unwrap(), Some(batch.clone()));
        // The same news again (a duplicate) finds the snapshot where it ended: taken again.
        assert!(engine.take_change(&id, &group, &change(&pulling, &batch)));

        // A release's first move on a group the snapshot shows free starts it there; on a
        // group busy with another release, or a later move, it is read.
        let starting = ReleaseState { phase: Phase::Starting, ..pulling.clone() };
        let free = GroupSnapshot { active: None, state: None, last_good: None };
        engine.keep_snapshot(&group, free.clone());
        assert!(!engine.take_change(&id, &group, &change(&pulling, &batch)), "a later move on a free group");
        assert!(engine.take_change(&id, &group, &change(&starting, &pulling)));
        let taken = engine.fresh_snapshot(&group).unwrap();
        assert_eq!((taken.active(), taken.state()), (Some(id.as_str()), Some((pulling.status, pulling.phase))));
        engine.keep_snapshot(&group, at_pulling);
        assert!(!engine.take_change("another", &group, &change(&starting, &pulling)), "the group is busy");
    }

    /// Whatever release a group's snapshot names (news may name one), a poll hands out jobs
    /// only of a release of the host's own group: a host of another group with a planned
    /// host's name gets nothing.
    #[tokio::test]
    async fn a_poll_takes_a_job_only_from_a_release_of_its_own_group() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let plan = engine.keep_plan(super::super::reports::tests::plan(2).release, false);
        let id = plan.release.id.clone();
        let pulling = ReleaseState::of(&plan.release);
        let starting = news::StateChange { from: (pulling.status, Phase::Starting), to: pulling.clone() };
        let own = Engine::group_of(&plan.release);
        let other = GroupRef { group: "other".into(), ..own.clone() };
        let free = GroupSnapshot { active: None, state: None, last_good: None };
        let mut polls = Vec::new();
        for group in [&other, &own] {
            let _hold = engine.hold(group);
            engine.keep_snapshot(group, free.clone());
            assert!(engine.take_change(&id, group, &starting));
            let host = layout::HostRef { group: Arc::new(group.clone()), host: "h0".into() };
            polls.push(super::super::jobs::hold_for_job(&engine, &host, Instant::now(), None).await.unwrap());
        }
        assert!(polls[0].is_none(), "a host of another group: {:?}", polls[0]);
        assert_eq!(polls[1].as_ref().map(|job| job.kind), Some(release::JobKind::Pull), "the release's own host");
    }
}

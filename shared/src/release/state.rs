//! A release's state machine: status and phase, each host's state, and the decision of what
//! the release does next from what hosts reported.

use super::*;

/// A release as stored in `releases/{id}/release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    /// The owning account.
    pub account: AccountId,
    pub application: String,
    /// The group released to.
    pub group: String,
    /// Whether that group is a scaling group.
    pub group_kind: GroupKind,
    /// The deployment, as it was when the release was created.
    pub deployment: Deployment,
    pub options: ReleaseOptions,
    /// Hosts, by batch. Shared: every advance and poll works on a copy of the release, and
    /// copying 100,000 host ids each time was most of an advance's cost.
    pub batches: Batches,
    /// Where it is.
    pub status: ReleaseStatus,
    /// The step.
    pub phase: Phase,
    /// When the current phase began (seconds since the epoch): its deadline counts from here.
    pub phase_started_at: u64,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Set in a stored plan whose hosts are kept in parts beside it (large releases): then
    /// `batches` is empty in the stored document and [`join_plan`] rebuilds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_parts: Option<HostParts>,
    /// What started it: a caller, a rollback, or a host's convergence.
    #[serde(default)]
    pub trigger: Trigger,
    /// Hosts of the group left out as stale, with when they were last seen (at most
    /// [`MAX_LISTED_STALE`] by name; `stale_count` counts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StaleHost>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_count: usize,
    /// `created_at` in milliseconds: orders a group's releases newest first within a second
    /// (0 in plans from before it existed).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub created_ms: u64,
    /// The group's load balancer as it was when the release was created: each batch's
    /// hosts are drained from it before they stop, and put back once healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Release {
    /// Whether the release pauses its group's scaling: a convergence brings one new host up
    /// and must not hold (or wait for) the group's pause.
    pub fn pauses_scaling(&self) -> bool {
        self.group_kind == GroupKind::Scaling && !matches!(self.trigger, Trigger::Convergence { .. })
    }
}

/// A host a release skipped as stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleHost {
    pub host: String,
    /// When it was last seen.
    pub seen: u64,
}

/// A release's hosts by batch, shared by every copy of the release.
pub type Batches = std::sync::Arc<Vec<Vec<String>>>;

/// Hosts per part of a stored plan: 16,384 ids of at most 128 bytes are about 2 MiB of JSON,
/// well inside the store's 4 MiB document limit, so a plan of any allowed size can be stored.
pub const PLAN_PART_HOSTS: usize = 16_384;

/// How a large plan's hosts are kept: `parts` documents of up to [`PLAN_PART_HOSTS`] hosts,
/// in plan order, cut into batches of `sizes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostParts {
    pub sizes: Vec<usize>,
    pub parts: usize,
}

/// Splits a release for storing: the plan document and the host parts to store beside it.
/// Releases of up to [`PLAN_PART_HOSTS`] hosts stay one document (no parts).
pub fn split_plan(release: &Release) -> (Release, Vec<Vec<String>>) {
    let total: usize = release.batches.iter().map(Vec::len).sum();
    if total <= PLAN_PART_HOSTS {
        return (release.clone(), Vec::new());
    }
    let hosts: Vec<String> = release.hosts().cloned().collect();
    let parts: Vec<Vec<String>> = hosts.chunks(PLAN_PART_HOSTS).map(<[String]>::to_vec).collect();
    let sizes = release.batches.iter().map(Vec::len).collect();
    let head = Release {
        batches: Batches::default(),
        host_parts: Some(HostParts { sizes, parts: parts.len() }),
        ..release.clone_without_batches()
    };
    (head, parts)
}

/// Rebuilds a stored plan from its document and its host parts (in order).
pub fn join_plan(mut head: Release, parts: Vec<Vec<String>>) -> Result<Release, String> {
    let Some(layout) = head.host_parts.take() else { return Ok(head) };
    if parts.len() != layout.parts {
        return Err(format!("plan has {} of its {} host parts", parts.len(), layout.parts));
    }
    let mut hosts = parts.into_iter().flatten();
    let mut batches = Vec::with_capacity(layout.sizes.len());
    for size in layout.sizes {
        let batch: Vec<String> = hosts.by_ref().take(size).collect();
        if batch.len() != size {
            return Err("plan's host parts hold fewer hosts than its batches".into());
        }
        batches.push(batch);
    }
    if hosts.next().is_some() {
        return Err("plan's host parts hold more hosts than its batches".into());
    }
    head.batches = batches.into();
    Ok(head)
}

impl Release {
    /// A copy with no hosts, without cloning them first.
    fn clone_without_batches(&self) -> Release {
        Release {
            id: self.id.clone(),
            account: self.account.clone(),
            application: self.application.clone(),
            group: self.group.clone(),
            group_kind: self.group_kind,
            deployment: self.deployment.clone(),
            options: self.options.clone(),
            batches: Batches::default(),
            status: self.status,
            phase: self.phase,
            phase_started_at: self.phase_started_at,
            reason: self.reason.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
            host_parts: None,
            trigger: self.trigger.clone(),
            stale: self.stale.clone(),
            stale_count: self.stale_count,
            created_ms: self.created_ms,
            load_balancer: self.load_balancer.clone(),
        }
    }

    /// Every host of the plan.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        self.batches.iter().flatten()
    }

    /// The batch a host is in.
    pub fn batch_of(&self, host: &str) -> Option<usize> {
        self.batches.iter().position(|b| b.iter().any(|h| h == host))
    }

    /// When the current phase's hosts count as unresponsive.
    pub fn phase_deadline(&self) -> u64 {
        let step = self.deployment.step_timeout_seconds;
        let steps = match self.phase {
            Phase::Pulling => 1,
            Phase::Batch { .. } if self.options.pull_first => 2,
            Phase::Batch { .. } => 3,
            _ => return u64::MAX,
        };
        let health = match (self.phase, &self.deployment.health) {
            (Phase::Batch { .. }, Some(health)) => health.longest_seconds(),
            _ => 0,
        };
        self.phase_started_at + steps * step + health + REPORT_GRACE_SECONDS
    }
}

/// A host's state derived from the release and the host's written results.
pub fn host_state(release: &Release, host: &str, pull: Option<&PullResult>, result: Option<&HostResult>) -> HostState {
    host_state_at(release, release.batch_of(host), pull, result)
}

/// [`host_state`] for a host whose batch is known (listing every host stays linear).
pub fn host_state_at(
    release: &Release,
    batch: Option<usize>,
    pull: Option<&PullResult>,
    result: Option<&HostResult>,
) -> HostState {
    if let Some(result) = result {
        return if result.ok { HostState::Succeeded } else { HostState::Failed };
    }
    let running = match release.phase {
        Phase::Batch { batch: current } | Phase::Draining { batch: current } => batch == Some(current),
        _ => false,
    };
    let started = match release.phase {
        Phase::Batch { batch: b }
        | Phase::Draining { batch: b }
        | Phase::Waiting { next: b, .. }
        | Phase::AwaitingConfirm { next: b } => batch.is_some_and(|x| x < b),
        Phase::Done => true,
        _ => false,
    };
    if release.status == ReleaseStatus::Running && running {
        HostState::Running
    } else if release.status.is_terminal() || started {
        HostState::Skipped
    } else if release.phase == Phase::Pulling && pull.is_none() {
        HostState::Pulling
    } else if pull.is_some_and(|p| p.ok) {
        HostState::Pulled
    } else {
        HostState::Pending
    }
}

/// [`host_state_at`] refined by what the host said of its health: `verifying` once its start
/// script succeeded and its check runs. (A host that turned unhealthy later reads as failed
/// from [`Unhealthy::as_result`].)
pub fn verifying_state(state: HostState, verifying: bool) -> HostState {
    match state {
        HostState::Running if verifying => HostState::Verifying,
        other => other,
    }
}

/// What the release should do next, from its state and the hosts' results. Plain, so the
/// fan-out can call it any number of times (duplicates, restarts) with the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do yet.
    Wait,
    /// Mark these hosts failed as unresponsive (their phase deadline passed), then decide again.
    TimeOut(Vec<String>),
    /// Move to this phase.
    Move(Phase),
    /// End with this status and reason.
    Finish(ReleaseStatus, Option<String>),
}

/// Decides the next move of a running release. `pulls` and `results` hold what hosts reported.
pub fn decide(
    release: &Release,
    pulls: &BTreeMap<String, PullResult>,
    results: &BTreeMap<String, HostResult>,
    now: u64,
) -> Decision {
    decide_watched(release, pulls, results, &BTreeMap::new(), now)
}

/// [`decide`], with the hosts that turned unhealthy after their run succeeded (`unhealthy`):
/// each counts as a failure of its own batch, at once, whatever the current batch is doing
/// (`results` must then hold every result so far, not only the current batch's).
pub fn decide_watched(
    release: &Release,
    pulls: &BTreeMap<String, PullResult>,
    results: &BTreeMap<String, HostResult>,
    unhealthy: &BTreeMap<String, Unhealthy>,
    now: u64,
) -> Decision {
    if release.status.is_terminal() {
        return Decision::Wait;
    }
    let options = &release.options;
    let failed = |host: &str| unhealthy.contains_key(host) || results.get(host).is_some_and(|r| !r.ok);
    let watching = matches!(release.phase, Phase::Batch { .. } | Phase::Waiting { .. } | Phase::AwaitingConfirm { .. });
    if watching && let Some(finish) = watched_failures(release, results, unhealthy, &failed) {
        return finish;
    }
    match release.phase {
        Phase::Starting => Decision::Move(if options.pull_first { Phase::Pulling } else { enter_batch(release, 0) }),
        Phase::Pulling => {
            let missing: Vec<String> = release.hosts().filter(|h| !pulls.contains_key(*h)).cloned().collect();
            if !missing.is_empty() {
                return if now >= release.phase_deadline() { Decision::TimeOut(missing) } else { Decision::Wait };
            }
            let failed = pulls.values().filter(|p| !p.ok).count();
            if failed > options.max_failures {
                return Decision::Finish(
                    ReleaseStatus::Failed,
                    Some(format!(
                        "the image could not be pulled on {failed} hosts (max_failures {}); no host was stopped",
                        options.max_failures
                    )),
                );
            }
            Decision::Move(enter_batch(release, 0))
        }
        Phase::Batch { batch } => {
            // A batch past the plan (a damaged document) has no hosts to wait for.
            let hosts = release.batches.get(batch).map_or(&[][..], Vec::as_slice);
            let missing: Vec<String> = hosts.iter().filter(|h| !results.contains_key(*h)).cloned().collect();
            if !missing.is_empty() {
                return if now >= release.phase_deadline() { Decision::TimeOut(missing) } else { Decision::Wait };
            }
            let in_batch = hosts.iter().filter(|h| failed(h)).count();
            // Reports are only taken from hosts of the plan, so every result counts.
            let total = results
                .keys()
                .chain(unhealthy.keys().filter(|h| !results.contains_key(*h)))
                .filter(|h| failed(h))
                .count();
            if in_batch > options.batch_budget(batch) {
                return Decision::Finish(
                    ReleaseStatus::Failed,
                    Some(format!(
                        "{in_batch} hosts failed in batch {} (max_failures_per_batch {}); later batches were not started",
                        batch + 1,
                        options.batch_budget(batch)
                    )),
                );
            }
            if total > options.max_failures {
                return Decision::Finish(
                    ReleaseStatus::Failed,
                    Some(format!(
                        "{total} hosts failed (max_failures {}); later batches were not started",
                        options.max_failures
                    )),
                );
            }
            let next = batch + 1;
            if next == release.batches.len() {
                return Decision::Finish(ReleaseStatus::Succeeded, None);
            }
            Decision::Move(match options.pause {
                PauseMode::None => enter_batch(release, next),
                PauseMode::Seconds => Phase::Waiting { next, until: now + options.pause_seconds },
                PauseMode::Manual => Phase::AwaitingConfirm { next },
            })
        }
        Phase::Waiting { next, until } if now >= until => Decision::Move(enter_batch(release, next)),
        Phase::AwaitingConfirm { next }
            if now >= release.phase_started_at.saturating_add(options.pause_timeout_seconds) =>
        {
            Decision::Finish(
                ReleaseStatus::Failed,
                Some(format!(
                    "batch {} was not confirmed within pause_timeout_seconds ({}); later batches were not started",
                    next + 1,
                    options.pause_timeout_seconds
                )),
            )
        }
        // The engine takes the hosts out, then moves the release on to the batch.
        Phase::Waiting { .. } | Phase::AwaitingConfirm { .. } | Phase::Draining { .. } | Phase::Done => Decision::Wait,
    }
}

/// The release's end when hosts that turned unhealthy while watched take a budget over: the
/// release's (all failures so far) or their own batch's.
fn watched_failures(
    release: &Release,
    results: &BTreeMap<String, HostResult>,
    unhealthy: &BTreeMap<String, Unhealthy>,
    failed: &dyn Fn(&str) -> bool,
) -> Option<Decision> {
    let options = &release.options;
    let (first, news) = unhealthy.iter().min_by_key(|(_, u)| u.at)?;
    let what = format!("host {first} of batch {} {}", news.batch + 1, news.describe());
    let batches: BTreeSet<usize> = unhealthy.values().map(|u| u.batch).collect();
    for batch in batches {
        let in_batch = release.batches.get(batch).map_or(0, |hosts| hosts.iter().filter(|h| failed(h)).count());
        if in_batch > options.batch_budget(batch) {
            return Some(Decision::Finish(
                ReleaseStatus::Failed,
                Some(format!(
                    "{what} (step: health); {in_batch} hosts failed in batch {} (max_failures_per_batch {}); \
                     later batches were not started",
                    batch + 1,
                    options.batch_budget(batch)
                )),
            ));
        }
    }
    let total =
        results.keys().chain(unhealthy.keys().filter(|h| !results.contains_key(*h))).filter(|h| failed(h)).count();
    (total > options.max_failures).then(|| {
        Decision::Finish(
            ReleaseStatus::Failed,
            Some(format!(
                "{what} (step: health); {total} hosts failed (max_failures {}); later batches were not started",
                options.max_failures
            )),
        )
    })
}

/// Applies a decision's move or finish to a release (a pure state transition).
pub fn apply(release: &Release, decision: &Decision, now: u64) -> Release {
    let mut next = release.clone();
    match decision {
        Decision::Move(phase) => {
            next.phase = *phase;
            next.phase_started_at = now;
        }
        Decision::Finish(status, reason) => {
            next.status = *status;
            next.reason = reason.clone();
            next.phase = Phase::Done;
            next.finished_at = Some(now);
        }
        Decision::Wait | Decision::TimeOut(_) => {}
    }
    next
}

/// Cancels a running release; a finished one is a conflict.
pub fn cancel(release: &Release, now: u64) -> Result<Release, ApiError> {
    if release.status.is_terminal() {
        return Err(ApiError::Conflict {
            code: "release_finished",
            message: format!("release {} already ended ({:?})", release.id, release.status),
        });
    }
    Ok(apply(release, &Decision::Finish(ReleaseStatus::Cancelled, Some("cancelled by the caller".into())), now))
}

/// Confirms the next batch of a release waiting for confirmation.
pub fn confirm(release: &Release, now: u64) -> Result<Release, ApiError> {
    match release.phase {
        Phase::AwaitingConfirm { next } if release.status == ReleaseStatus::Running => {
            Ok(apply(release, &Decision::Move(enter_batch(release, next)), now))
        }
        _ => Err(ApiError::Conflict {
            code: "not_awaiting_confirmation",
            message: format!("release {} is not waiting for confirmation", release.id),
        }),
    }
}

/// Pauses a running release before its next batch: from now on each batch waits for
/// [`confirm`] (a batch that runs finishes first; a timed wait becomes a wait for confirmation).
pub fn pause(release: &Release, now: u64) -> Result<Release, ApiError> {
    if release.status != ReleaseStatus::Running || release.phase == Phase::Done {
        return Err(ApiError::Conflict {
            code: "not_running",
            message: format!("release {} is not running", release.id),
        });
    }
    let mut paused = release.clone();
    paused.options.pause = PauseMode::Manual;
    if let Phase::Waiting { next, .. } = release.phase {
        return Ok(apply(&paused, &Decision::Move(Phase::AwaitingConfirm { next }), now));
    }
    Ok(paused)
}

/// Counts of hosts per state, for summaries.
pub fn summarize(states: impl IntoIterator<Item = HostState>) -> BTreeMap<HostState, usize> {
    let mut counts = BTreeMap::new();
    for state in states {
        *counts.entry(state).or_insert(0) += 1;
    }
    counts
}

/// The hosts of a plan, deduplicated (a host registered twice counts once).
pub fn unique_hosts(hosts: impl IntoIterator<Item = String>) -> Vec<String> {
    hosts.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

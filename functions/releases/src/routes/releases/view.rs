//! A release as its answers show it: batches, each host's state and health, the load balancer
//! and scaling notes.

use super::*;

/// The release as callers see it (create, get, cancel and confirm answer it): status, phase,
/// each batch with each host's state, and a count of hosts per state.
#[derive(Serialize)]
pub struct ReleaseView {
    application: String,
    batches: Vec<BatchView>,
    created_at: u64,
    /// The deployment's name.
    deployment: String,
    finished_at: Option<u64>,
    group: String,
    id: String,
    /// The image's address at the registry's public host.
    image: String,
    #[serde(serialize_with = "sorted_keys")]
    options: release::ReleaseOptions,
    #[serde(serialize_with = "sorted_keys")]
    phase: release::Phase,
    reason: Option<String>,
    /// The deployment's revision it rolls out.
    revision: u64,
    /// The release that rolls this one back, once started.
    rollback: Option<String>,
    /// Hosts of the group it left out as stale: `skipped`, with the reason.
    skipped_hosts: Vec<HostEntry>,
    /// How many hosts it left out as stale (`skipped_hosts` lists at most 10,000).
    stale_count: usize,
    /// Why the group's scaling adapter could not suspend (or resume) for this release, while
    /// Berth retries; `null` otherwise.
    scaling_error: Option<String>,
    /// While an alarm source does not answer: since when, and why (no batch starts meanwhile).
    alarms_unreachable: Option<release::AlarmState>,
    /// The group's load balancer the hosts are drained from, and the last error reaching it.
    load_balancer: Option<LoadBalancerView>,
    status: ReleaseStatus,
    /// Hosts per state, only states some host is in.
    summary: BTreeMap<String, usize>,
    /// What started it: `manual`, `rollback` (with `of`, `automatic`) or `convergence` (`of`, `host`).
    #[serde(serialize_with = "sorted_keys")]
    trigger: release::Trigger,
}

/// A release's load balancer: as the group named it, and why it could not be reached (while
/// Berth retries).
#[derive(Serialize)]
pub struct LoadBalancerView {
    #[serde(flatten)]
    config: release::LoadBalancer,
    error: Option<String>,
}

/// One batch of a release, numbered from 1.
#[derive(Serialize)]
pub struct BatchView {
    batch: usize,
    hosts: Vec<HostEntry>,
}

/// A host in a batch. Once it has a result, `step`, `exit_code` and `reason` are there (the
/// last two may be null); a host whose pull failed before any result has `step` and `reason`
/// only; any other host has neither.
#[derive(Serialize)]
pub struct HostEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<Option<i32>>,
    host: String,
    /// Where the host stands with the group's load balancer (draining, out, back, left_out).
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancer: Option<release::Balanced>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Option<String>>,
    state: release::HostState,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<Step>,
}

impl HostEntry {
    fn new(host: &str, state: release::HostState, pull: Option<&PullResult>, result: Option<&HostResult>) -> Self {
        let mut entry =
            Self { exit_code: None, host: host.to_owned(), load_balancer: None, reason: None, state, step: None };
        if let Some(r) = result {
            entry.step = Some(r.step);
            entry.exit_code = Some(r.exit_code);
            entry.reason = Some(r.reason.clone());
        } else if let Some(p) = pull.filter(|p| !p.ok) {
            entry.step = Some(Step::Pull);
            entry.reason = Some(p.reason.clone());
        }
        entry
    }
}

/// A release's [`ReleaseView`], from its plan and the outcomes its hosts wrote.
pub async fn view(engine: &Engine, release: &Release) -> Result<ReleaseView, ApiError> {
    let store = &engine.context.store;
    let pulls = engine.reports::<PullResult>(&release.id).await?;
    let results = engine.reports::<HostResult>(&release.id).await?;
    let (verifying, unhealthy) = health_notes(engine, release).await?;
    let balancer = match release.load_balancer {
        Some(_) => store.get::<release::BalancerState>(&layout::balancer(&release.id)).await?.map(|d| d.value),
        None => None,
    }
    .unwrap_or_default();
    let mut states = Vec::new();
    let batches = release
        .batches
        .iter()
        .enumerate()
        .map(|(index, hosts)| {
            let hosts = hosts
                .iter()
                .map(|host| {
                    let pull = pulls.get(host);
                    let turned = unhealthy.get(host).map(release::Unhealthy::as_result);
                    let result = turned.as_ref().or(results.get(host));
                    let state = release::host_state_at(release, Some(index), pull, result);
                    let state = release::verifying_state(state, verifying.contains(host));
                    states.push(state);
                    let mut entry = HostEntry::new(host, state, pull, result);
                    entry.load_balancer = balancer.hosts.get(host).copied();
                    entry
                })
                .collect();
            BatchView { batch: index + 1, hosts }
        })
        .collect();
    let skipped_hosts: Vec<HostEntry> = release
        .stale
        .iter()
        .map(|stale| {
            let stale_after = release.created_at.saturating_sub(stale.seen);
            let reason = format!(
                "not seen for {stale_after} s when the release was planned (the group's stale_after_seconds); \
                 skipped, not counted as a failure"
            );
            HostEntry {
                exit_code: None,
                host: stale.host.clone(),
                load_balancer: None,
                reason: Some(Some(reason)),
                state: release::HostState::Skipped,
                step: None,
            }
        })
        .collect();
    states.extend(std::iter::repeat_n(release::HostState::Skipped, release.stale_count));
    let rollback_id = release::rollback_id(&release.id);
    let rollback = store.get::<Release>(&layout::plan(&rollback_id)).await?.map(|_| rollback_id);
    let summary: BTreeMap<String, usize> = release::summarize(states)
        .into_iter()
        .map(|(state, count)| {
            (serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(), count)
        })
        .collect();
    Ok(ReleaseView {
        application: release.application.clone(),
        batches,
        created_at: release.created_at,
        deployment: release.deployment.name.clone(),
        finished_at: release.finished_at,
        group: release.group.clone(),
        id: release.id.clone(),
        image: release.deployment.image.address(),
        options: release.options.clone(),
        phase: release.phase,
        reason: release.reason.clone(),
        revision: release.deployment.revision,
        rollback,
        skipped_hosts,
        stale_count: release.stale_count,
        scaling_error: scaling_error(engine, release).await?,
        alarms_unreachable: match release.options.alarms.is_empty() {
            true => None,
            false => store.get::<release::AlarmState>(&layout::alarms(&release.id)).await?.map(|d| d.value),
        },
        load_balancer: release
            .load_balancer
            .clone()
            .map(|config| LoadBalancerView { config, error: balancer.error.clone() }),
        status: release.status,
        summary,
        trigger: release.trigger.clone(),
    })
}

/// What a health-checked release's hosts said of their health: those whose check runs or
/// ran, and those that turned unhealthy after their run succeeded. Nothing is read for a
/// release without a health check.
async fn health_notes(
    engine: &Engine,
    release: &Release,
) -> Result<(std::collections::BTreeSet<String>, BTreeMap<String, release::Unhealthy>), ApiError> {
    if release.deployment.health.is_none() {
        return Ok(Default::default());
    }
    let store = &engine.context.store;
    let verifying = store.list_paths(&layout::verifying(&release.id)).await?;
    let verifying = verifying.iter().map(|p| layout::stem(p).to_owned()).collect();
    Ok((verifying, read_all(store, &layout::unhealthy(&release.id)).await?))
}

/// The scaling adapter's last failure for `release`'s lease (a scaling group's only).
async fn scaling_error(engine: &Engine, release: &Release) -> Result<Option<String>, ApiError> {
    if release.group_kind != GroupKind::Scaling {
        return Ok(None);
    }
    let group = GroupRef {
        account: release.account.clone(),
        application: release.application.clone(),
        group: release.group.clone(),
    };
    let state = engine.context.store.get::<ScalingState>(&layout::scaling(&group)).await?;
    Ok(state
        .map(|s| s.value)
        .filter(|s| s.lease.as_ref().is_some_and(|l| l.release == release.id))
        .and_then(|s| s.error))
}

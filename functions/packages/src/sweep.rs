//! The sweep of publish checks whose event was lost: a queue error, or a crash between the
//! version's write and the send, would otherwise leave a version `Creating` for good.

use std::time::Duration;

use berth_shared::package::{self, PENDING_CHECKS, PackageVersion, PendingCheck, VersionStatus, VersionSubmitted};
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::{self, Event, EventError};
use berth_shared::platform::store::StoreError;
use serde::{Deserialize, Serialize};

use crate::publish::check_version;
use crate::registry::RegistryClient;

/// How often `berth serve` and standalone functions sweep. Under Lambda, a schedule sends
/// [`PackagesSweep`] instead.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Submissions by the sweep before it runs the check itself as the last attempt, which
/// settles the version (`Failed` with `registry_unreachable` if the registry still does not answer).
pub const MAX_RESUBMISSIONS: u32 = 3;

/// Event: sweep the pending publish checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagesSweep {}

impl Event for PackagesSweep {
    const TYPE: &'static str = "packages.sweep";
}

/// What one sweep did, for its log line and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    pub resubmitted: usize,
    pub settled: usize,
    pub cleared: usize,
}

fn retry(reason: impl std::fmt::Display) -> EventError {
    EventError::Retry(reason.to_string())
}

/// A check is presumed lost once every delivery the queue would make has had its time.
pub fn stale_after(context: &FunctionContext) -> Duration {
    context.config.queue_visibility * context.config.queue_max_attempts.max(1)
}

/// Re-submits every check pending for longer than `stale_after`, settles the ones
/// re-submitted [`MAX_RESUBMISSIONS`] times by checking them here, and clears markers whose
/// version settled or is gone. One bad marker is logged and skipped.
pub async fn sweep(context: &FunctionContext, client: &RegistryClient, now: u64) -> Result<SweepOutcome, EventError> {
    let mut outcome = SweepOutcome::default();
    let stale = stale_after(context).as_secs();
    for path in context.store.list_paths(PENDING_CHECKS).await.map_err(retry)? {
        if let Err(error) = sweep_one(context, client, &path, now, stale, &mut outcome).await {
            tracing::warn!(marker = %path, %error, "sweep could not settle a pending publish check; going on");
        }
    }
    if outcome != SweepOutcome::default() {
        tracing::info!(?outcome, "publish checks swept");
    }
    Ok(outcome)
}

async fn sweep_one(
    context: &FunctionContext,
    client: &RegistryClient,
    path: &str,
    now: u64,
    stale: u64,
    outcome: &mut SweepOutcome,
) -> Result<(), EventError> {
    let Some(marker) = context.store.get::<PendingCheck>(path).await.map_err(retry)? else { return Ok(()) };
    let check = marker.value.clone();
    if now < check.submitted_at.saturating_add(stale) {
        return Ok(());
    }
    let version_path = package::version_path(&check.account, &check.package, &check.version);
    let version = context.store.get::<PackageVersion>(&version_path).await.map_err(retry)?;
    if version.is_none_or(|v| v.value.status != VersionStatus::Creating) {
        context.store.delete(path).await.map_err(retry)?;
        outcome.cleared += 1;
        return Ok(());
    }
    let submitted = VersionSubmitted { package: check.package.clone(), version: check.version.clone() };
    if check.resubmitted >= MAX_RESUBMISSIONS {
        let status = check_version(context, client, &check.account, &submitted, true).await?;
        if status != Some(VersionStatus::Creating) {
            context.store.delete(path).await.map_err(retry)?;
        }
        outcome.settled += 1;
        return Ok(());
    }
    let next = PendingCheck { submitted_at: now, resubmitted: check.resubmitted + 1, ..check };
    // Conditional: two sweeps racing submit once between them.
    match context.store.update(path, &next, &marker.version).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(retry(e)),
    }
    events::send(context.queue.as_ref(), Some(next.account.clone()), &submitted).await.map_err(retry)?;
    outcome.resubmitted += 1;
    Ok(())
}

//! Releases of a Docker-image deployment to an application group, in batches: typed values
//! and plain functions (validation, planning, the state machines of a release and of a host,
//! failure budgets, what a host should do next). No I/O here; `functions/releases` stores and
//! moves these values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::names::RepositoryName;
use crate::names::{AccountId, is_path_component};
use crate::platform::http::error::ApiError;

/// Longest start or stop script.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// Longest working directory path.
pub const MAX_WORKING_DIRECTORY_BYTES: usize = 4096;
/// Shortest per-step timeout.
pub const MIN_STEP_TIMEOUT_SECONDS: u64 = 1;
/// Longest per-step timeout (one hour).
pub const MAX_STEP_TIMEOUT_SECONDS: u64 = 3600;
/// Per-step timeout when none is given.
pub const DEFAULT_STEP_TIMEOUT_SECONDS: u64 = 600;
/// Most batches a release may have.
pub const MAX_BATCHES: usize = 100;
/// Most hosts one release may reach.
pub const MAX_RELEASE_HOSTS: usize = 100_000;
/// Longest timed pause between batches (one day).
pub const MAX_PAUSE_SECONDS: u64 = 86_400;
/// How long a `pause: manual` batch waits for `confirm` by default (one day): scaling is
/// suspended meanwhile, so a release nobody confirms must not hold it for ever.
pub const DEFAULT_PAUSE_TIMEOUT_SECONDS: u64 = 86_400;
/// Longest wait for `confirm` (a week).
pub const MAX_PAUSE_TIMEOUT_SECONDS: u64 = 7 * 86_400;
/// Longest name of an application, group, deployment or host.
pub const MAX_NAME_BYTES: usize = crate::names::MAX_NAME_LEN;
/// How long after its step timeouts an agent may still report before the host is failed
/// as unresponsive (network, agent restart).
pub const REPORT_GRACE_SECONDS: u64 = 30;
/// How long a scaling lease lasts without renewal: a crashed release resumes scaling after
/// this at the latest.
pub const LEASE_SECONDS: u64 = 900;

/// Validates an application, group, deployment or host name: a path component of
/// `[a-z0-9._-]`-ish characters (see [`is_path_component`]), at most [`MAX_NAME_BYTES`].
pub fn validate_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES || !is_path_component(value) {
        return Err(ApiError::invalid(
            field,
            "invalid_name",
            format!(
                "'{}' must be 1 to {MAX_NAME_BYTES} lowercase letters and digits, separated by single '.', '_' or '-'",
                crate::platform::http::problem::shown(value)
            ),
        ));
    }
    Ok(())
}

mod agent;
mod channel;
mod convergence;
mod deployment;
mod gates;
mod group;
mod health;
mod job_check;
mod listing;
mod membership;
mod plan;
mod revision;
mod state;

pub use berth_api::agent::{HealthNews, HealthNewsKind, HostLogs, Job, JobKind, LogPart, Report, Step, StepOutput};
pub use berth_api::health::{DockerProbe, HealthCheck, HealthRequest, HttpProbe, Probe, TcpProbe};
pub use berth_api::release::{
    Alarm, AlarmState, Balanced, Budget, DEFAULT_DRAIN_SECONDS, Deployment, DeploymentImage, DeploymentRequest,
    HaproxyBackend, HostState, ImageRef, LoadBalancer, PauseMode, Phase, RegistryEndpoint, ReleaseRequest,
    ReleaseStatus, Trigger,
};

pub use agent::{
    HostResult, INLINE_LOG_BYTES, LOG_PART_BYTES, LOG_STEPS, LOG_STREAMS, MAX_LOG_PARTS, MAX_REPORT_BYTES,
    MAX_STREAM_BYTES, PullResult, ReportRefusal, check_due, check_job, job_id, job_kind, join_logs, next_job,
    next_job_at, split_logs,
};
pub use channel::{CHANNEL_PATH, CLOSE_REFUSED, FromAgent, HEARTBEAT_SECONDS, MAX_CHANNEL_MESSAGE_BYTES, ToAgent};
pub use convergence::{Arrival, LastRelease, convergence_id, convergence_options, convergence_target};
pub use deployment::{
    image_from_package, resolve_image, validate_deployment, validate_script, validate_working_directory,
};
pub use gates::{
    ALARM_CHECK_SECONDS, BalancerState, DEFAULT_ALARM_UNREACHABLE_SECONDS, MAX_ALARM_NAME_BYTES,
    MAX_ALARM_UNREACHABLE_SECONDS, MAX_ALARMS, MAX_BALANCED_HOSTS, MAX_BALANCER_FIELD_BYTES, MAX_DRAIN_SECONDS,
    MAX_PROMETHEUS_EXPRESSION_BYTES, MAX_TARGET_GROUP_ARN_BYTES, enter_batch, put_back_at_end,
    validate_alarm_unreachable, validate_alarms, validate_load_balancer,
};
pub use group::{
    GroupKind, GroupMember, MAX_AUTO_SCALING_GROUP_NAME, MAX_ENDED_KEPT, SUSPENDED_PROCESSES, ScalingLease,
    ScalingState, confirm_suspended, hosts_in_auto_scaling_group, lease_needs_renewal, release_lease, scaling_failed,
    take_lease, validate_auto_scaling_group, validate_instance_id,
};
pub use health::{
    LOGGED_PROBE_BYTES, MAX_EXPECT_BODY_BYTES, MAX_PROBE_TARGET_BYTES, MAX_UNHEALTHY_REASON_BYTES, PROBE_BODY_BYTES,
    ProbeOutcome, Unhealthy, Verdict, Verifier, Verifying, outcome_text, truncated, validate_health,
};
pub use job_check::{JobRefusal, MAX_JOB_BYTES, check_handed_job};
pub use listing::{
    DEFAULT_PAGE_SIZE, MAX_CHILDREN, MAX_PAGE_SIZE, MAX_REVISIONS, newest_key, page, page_size, validate_page_token,
};
pub use membership::{
    DEFAULT_STALE_AFTER_SECONDS, LAST_SEEN_WRITE_SECONDS, MAX_LISTED_STALE, MAX_STALE_AFTER_SECONDS,
    MIN_STALE_AFTER_SECONDS, Registered, Removal, is_stale, may_rejoin, may_take_over, seen_at, should_record_seen,
    split_stale, stale_reason, validate_stale_after,
};
pub use plan::{Batching, BudgetsAsked, ReleaseOptions, plan_batches, resolve_budgets, validate_options};
pub use revision::{
    Ledger, Ran, RevisionId, derived_id, next_revision, plan_rollback, record_run, rollback_id, rollback_target,
};
pub use state::{
    Batches, Decision, HostParts, PLAN_PART_HOSTS, Release, StaleHost, apply, cancel, confirm, decide, decide_watched,
    host_state, host_state_at, join_plan, pause, split_plan, summarize, unique_hosts, verifying_state,
};

#[cfg(test)]
mod tests;

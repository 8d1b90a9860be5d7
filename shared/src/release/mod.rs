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

pub use agent::*;
pub use convergence::*;
pub use deployment::*;
pub use gates::*;
pub use group::*;
pub use health::*;
pub use job_check::*;
pub use listing::*;
pub use membership::*;
pub use plan::*;
pub use revision::*;
pub use state::*;

#[cfg(test)]
mod tests;

//! The Releases function's resources as they travel: applications, groups, deployments,
//! releases and their hosts' logs. The rules they follow are `berth_shared::release`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod deployment;
mod group;

pub use deployment::{
    Deployment, DeploymentImage, DeploymentPage, DeploymentRequest, ImageRef, RegistryEndpoint, RevisionPage,
};
pub use group::{
    Alarm, AlarmState, ApplicationPage, ApplicationSummary, Balanced, DEFAULT_DRAIN_SECONDS, GroupChange, GroupPage,
    GroupSummary, HaproxyBackend, JoinToken, LastRelease, LoadBalancer, NewApplication, NewGroup,
};

use crate::agent::{Step, StepOutput};

/// What happens between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PauseMode {
    /// The next batch starts as soon as one finishes.
    #[default]
    None,
    /// Wait `pause_seconds`.
    Seconds,
    /// Wait for `confirm`.
    Manual,
}

/// `POST /v1/releases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub application: String,
    /// The deployment (of the application) to release.
    pub deployment: String,
    /// The group (of the application) to release to.
    pub group: String,
    /// Split into this many batches of near-equal size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<usize>,
    /// Or batches of this many hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Or batches of these percentages of the hosts (summing to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percents: Option<Vec<u32>>,
    /// What happens between batches.
    #[serde(default)]
    pub pause: PauseMode,
    /// With `pause: seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_seconds: Option<u64>,
    /// With `pause: manual`: how long a batch waits for `confirm` before the release fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_timeout_seconds: Option<u64>,
    /// Failed hosts tolerated in the whole release: a count, or `"N%"` of its hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<Budget>,
    /// Failed hosts tolerated in any one batch: a count, or `"N%"` of the batch's hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures_per_batch: Option<Budget>,
    /// Pull on every host before stopping any (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_first: Option<bool>,
    /// When the release fails, start its rollback (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<bool>,
    /// CloudWatch alarm names and `{prometheus: EXPR}` expressions: any that fires fails the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<Alarm>,
    /// How long an alarm source that does not answer is retried before the release fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_unreachable_seconds: Option<u64>,
}

/// A failure budget: a count of hosts, or a percent of them (`"N%"`, rounded down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Budget {
    Count(usize),
    Percent(#[serde(with = "percent")] u32),
}

mod percent {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value}%"))
    }

    /// Any string here; `berth_shared::release::validate_options` says what is wrong with it,
    /// naming the field.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(text
            .strip_suffix('%')
            .filter(|digits| !digits.is_empty() && digits.len() <= 3 && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(u32::MAX))
    }
}

impl Budget {
    /// The count for `hosts` hosts.
    pub fn of(self, hosts: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => hosts * p as usize / 100,
        }
    }
}

/// Where a release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Pausing scaling, pulling, or working through batches.
    Running,
    /// Every batch finished within the failure budgets.
    Succeeded,
    /// A failure budget was exceeded; later batches did not start.
    Failed,
    /// Cancelled by the caller; batches not yet started did not start.
    Cancelled,
}

impl ReleaseStatus {
    /// Whether nothing more will happen.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Running)
    }

    /// Its name on the wire (`running`, `succeeded`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The step a running release is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Phase {
    /// Taking the scaling lease.
    Starting,
    /// Pulling on every host.
    Pulling,
    /// Draining batch `batch`'s hosts from the group's load balancer before it runs.
    Draining { batch: usize },
    /// Running batch `batch` (from 0).
    Batch { batch: usize },
    /// Waiting before batch `next` until `until` (seconds since the epoch).
    Waiting {
        /// The next batch.
        next: usize,
        /// When it starts.
        until: u64,
    },
    /// Waiting for `confirm` before batch `next`.
    AwaitingConfirm {
        /// The next batch.
        next: usize,
    },
    /// Finished.
    Done,
}

/// What started a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// `POST /v1/releases`.
    #[default]
    Manual,
    /// Rolls release `of` back (`POST /v1/releases/{id}/rollback`, or `auto_rollback`).
    Rollback { of: String, automatic: bool },
    /// Brings `host` to the revision of release `of`, the group's last good one.
    Convergence { of: String, host: String },
}

/// Where a host is in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Its batch has not started.
    Pending,
    /// Pulling the image (pull-first phase).
    Pulling,
    /// Pulled; waiting for its batch.
    Pulled,
    /// Its batch runs: pulling (without pull-first), stopping, starting.
    Running,
    /// Started; its health check runs.
    Verifying,
    /// Stopped and started.
    Succeeded,
    /// A step failed, timed out, or the agent did not report.
    Failed,
    /// Never ran: the release ended before its batch.
    Skipped,
}

impl ReleaseStatus {
    /// How the status is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl HostState {
    /// How the state is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Pulling => "pulling",
            Self::Pulled => "pulled",
            Self::Running => "running",
            Self::Verifying => "verifying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Whether the host is done with the release.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }
}

impl Balanced {
    /// How the state is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draining { .. } => "draining",
            Self::Out { .. } => "out",
            Self::Back { .. } => "back",
            Self::LeftOut { .. } => "left_out",
        }
    }
}

impl Trigger {
    /// `manual`, `rollback` or `convergence`, as written on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Rollback { .. } => "rollback",
            Self::Convergence { .. } => "convergence",
        }
    }
}

/// `POST /v1/releases?dry_run=true` answer: the plan, nothing started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    /// How many hosts it plans.
    pub hosts: usize,
    /// Each batch's hosts.
    pub batches: Vec<Vec<String>>,
    /// The image's address.
    pub image: String,
}

/// A release's load balancer, and why it could not be reached (while Berth retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerView {
    #[serde(default)]
    pub haproxy: Option<HaproxyBackend>,
    #[serde(default)]
    pub target_group_arn: Option<String>,
    #[serde(default)]
    pub drain_seconds: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A host in a batch of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub host: String,
    pub state: HostState,
    #[serde(default)]
    pub step: Option<Step>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub load_balancer: Option<Balanced>,
}

/// One batch of a release, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchView {
    pub batch: usize,
    pub hosts: Vec<HostEntry>,
}

/// A release with every host's state (create, get, cancel, confirm, pause and rollback answer it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    pub id: String,
    pub status: ReleaseStatus,
    pub phase: Phase,
    #[serde(default)]
    pub reason: Option<String>,
    pub batches: Vec<BatchView>,
    /// The deployment's revision it rolls out.
    pub revision: u64,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerView>,
    #[serde(default)]
    pub alarms_unreachable: Option<AlarmState>,
    /// Hosts per state, only states some host is in.
    #[serde(default)]
    pub summary: BTreeMap<String, usize>,
}

/// A release in a group's listing: what it rolled out, how it ended, no hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    pub id: String,
    pub status: ReleaseStatus,
    pub trigger: Trigger,
    pub deployment: String,
    pub revision: u64,
    /// How many hosts it planned.
    pub hosts: usize,
}

/// `GET /v1/applications/{app}/groups/{group}/releases` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePage {
    pub releases: Vec<ReleaseSummary>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A host's outcome in a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostOutcome {
    pub step: Step,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /v1/releases/{id}/hosts/{host}/logs` answer: each step's whole output (absent: the
/// step did not run, or has not reported yet) and the host's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLogsView {
    pub state: HostState,
    #[serde(default)]
    pub result: Option<HostOutcome>,
    #[serde(default)]
    pub pull: Option<StepOutput>,
    #[serde(default)]
    pub stop: Option<StepOutput>,
    #[serde(default)]
    pub start: Option<StepOutput>,
    #[serde(default)]
    pub health: Option<StepOutput>,
}

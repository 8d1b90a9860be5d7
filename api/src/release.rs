//! The Releases function's resources as a client sends and reads them: applications, groups,
//! deployments, releases and their hosts' logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{Step, StepOutput};

/// `POST /v1/applications` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApplication {
    pub name: String,
}

/// An application in `GET /v1/applications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationSummary {
    pub name: String,
    /// Seconds since the epoch.
    pub created_at: u64,
}

/// `GET /v1/applications` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationPage {
    pub applications: Vec<ApplicationSummary>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `POST /v1/applications/{app}/groups` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGroup {
    pub name: String,
    /// `static` or `scaling`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_seconds: Option<u64>,
    /// The load balancer hosts are drained from (see `LoadBalancer` in `infra/openapi.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
}

/// `PATCH /v1/applications/{app}/groups/{group}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChange {
    pub stale_after_seconds: Option<u64>,
}

/// A group's join token, in the answer that creates or rotates it (shown only there).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub join_token: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").field("join_token", &"<redacted>").finish()
    }
}

/// The last release that ended on a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRelease {
    pub id: String,
    pub status: ReleaseStatus,
}

/// A group in `GET /v1/applications/{app}/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub name: String,
    /// `static` or `scaling`.
    pub kind: String,
    pub stale_after_seconds: u64,
    #[serde(default)]
    pub last_release: Option<LastRelease>,
}

/// `GET /v1/applications/{app}/groups` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPage {
    pub groups: Vec<GroupSummary>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// Where a deployment's image is, as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageRequest {
    /// `REGISTRY/NAMESPACE/REPOSITORY:TAG` or `...@sha256:...`.
    Address { address: String },
    /// An `Available` ContainerImage package version.
    Package { package: String, version: String },
}

/// `POST /v1/applications/{app}/deployments` and `PUT .../deployments/{name}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRequest {
    pub name: String,
    pub image: ImageRequest,
    pub working_directory: String,
    pub start_script: String,
    pub stop_script: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_seconds: Option<u64>,
}

/// A deployment's image, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub registry: String,
    /// Full repository name (`namespace/...`).
    pub repository: String,
    /// `:tag` or `@sha256:...` as written after the repository.
    pub reference: String,
}

impl ImageRef {
    /// The address hosts pull: `registry/repository:tag` or `registry/repository@digest`.
    pub fn address(&self) -> String {
        format!("{}/{}{}", self.registry, self.repository, self.reference)
    }
}

/// A deployment at one revision, as answered (create, update, listings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub name: String,
    pub image: ImageRef,
    pub revision: u64,
}

/// `GET /v1/applications/{app}/deployments` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentPage {
    pub deployments: Vec<DeploymentView>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `GET /v1/applications/{app}/deployments/{name}/revisions` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionPage {
    pub revisions: Vec<DeploymentView>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// What happens between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseMode {
    None,
    /// Wait `pause_seconds`.
    Seconds,
    /// Wait for `confirm`.
    Manual,
}

/// A failure budget as asked: a count of hosts, or `"N%"` of them (Berth checks N).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BudgetRequest {
    Count(usize),
    Percent(String),
}

/// An alarm a release is gated on: a CloudWatch alarm's name, or a Prometheus expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlarmRequest {
    CloudWatch(String),
    Prometheus { prometheus: String },
}

/// `POST /v1/releases` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub application: String,
    pub deployment: String,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percents: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<BudgetRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures_per_batch: Option<BudgetRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_first: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<AlarmRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_unreachable_seconds: Option<u64>,
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

/// Where a release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
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

/// The step a running release is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Pulling,
    Draining { batch: usize },
    Batch { batch: usize },
    Waiting { next: usize, until: u64 },
    AwaitingConfirm { next: usize },
    Done,
}

/// Where a host is in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Pending,
    Pulling,
    Pulled,
    Running,
    Verifying,
    Succeeded,
    Failed,
    Skipped,
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

/// An HAProxy backend whose servers are a group's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyBackend {
    pub runtime_api: String,
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// A group's load balancer: an HAProxy backend or an AWS target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<HaproxyBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<u64>,
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

/// Since when an alarm source has not answered, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmState {
    #[serde(default)]
    pub unreachable_since: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Where one host stands with the group's load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Balanced {
    Draining { since: u64 },
    Out { since: u64 },
    Back { at: u64 },
    LeftOut { at: u64 },
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

/// What started a release: `manual`, `rollback` or `convergence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerKind {
    pub kind: String,
}

/// A release in a group's listing: what it rolled out, how it ended, no hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    pub id: String,
    pub status: ReleaseStatus,
    pub trigger: TriggerKind,
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

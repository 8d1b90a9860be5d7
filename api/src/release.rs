//! The Releases function's resources as they travel: applications, groups, deployments,
//! releases and their hosts' logs. The rules they follow are `berth_shared::release`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{Step, StepOutput};
use crate::health::{HealthCheck, HealthRequest};

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

/// Where a deployment's image is, as given by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeploymentImage {
    /// A full address, `REGISTRY/NAMESPACE/REPOSITORY:TAG` or `...@sha256:...`.
    Address { address: String },
    /// An image of a published (`Available`) ContainerImage package version, pinned to the
    /// digest its publish check found. Resolved with `berth_shared::release::image_from_package`
    /// before validation.
    Package {
        package: String,
        /// The version's name.
        version: String,
        /// The image's repository (full, `namespace/name`), when the version has several.
        #[serde(default)]
        image: Option<String>,
    },
    /// The parts of an address; `registry` defaults to Berth's registry.
    Parts {
        /// Registry host; Berth's own when absent.
        #[serde(default)]
        registry: Option<String>,
        /// The namespace (your account ID).
        namespace: String,
        /// Repository within the namespace.
        repository: String,
        /// Tag or `sha256:` digest.
        version: String,
    },
}

/// A parsed image reference in Berth's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host.
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

/// Which address of the registry hosts pull from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistryEndpoint {
    /// The address clients use (`BERTH_REGISTRY_HOST`).
    #[default]
    Public,
    /// The private (VPC) address (`BERTH_REGISTRY_PRIVATE_HOST`).
    Private,
}

/// A deployment as requested.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRequest {
    /// Its name, unique in the application.
    pub name: String,
    pub image: DeploymentImage,
    /// Absolute directory the scripts run in; created if missing.
    pub working_directory: String,
    /// Shell script that starts the new version.
    pub start_script: String,
    /// Shell script that stops the current (and any previous) version, and succeeds when
    /// nothing runs.
    pub stop_script: String,
    /// Timeout of each step (pull, stop, start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_seconds: Option<u64>,
    /// Pull over the registry's public (default) or private address.
    #[serde(default)]
    pub registry_endpoint: RegistryEndpoint,
    /// Only `linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Only `shell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_language: Option<String>,
    /// On update: the revision being replaced, if the caller wants the update refused when
    /// another came first (compare-and-swap); ignored on create, so a deployment read back
    /// can be posted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// How a host shows that the application came up after its start script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRequest>,
}

/// A validated deployment revision, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// The image, resolved.
    pub image: ImageRef,
    /// Absolute working directory.
    pub working_directory: String,
    /// Start script (bash).
    pub start_script: String,
    /// Stop script (bash).
    pub stop_script: String,
    /// Timeout of each step.
    pub step_timeout_seconds: u64,
    /// The address hosts pull from.
    #[serde(default)]
    pub registry_endpoint: RegistryEndpoint,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// The revision number, from 1; each update makes the next (documents from before
    /// revisions are revision 1).
    #[serde(default = "first_revision")]
    pub revision: u64,
    /// The health check each host runs after its start script (and while watched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

fn first_revision() -> u64 {
    1
}

impl Deployment {
    /// The registry host and image address hosts pull: the private address when chosen and
    /// configured, else the public one.
    pub fn pull_address(&self, private_host: Option<&str>) -> (String, String) {
        match (self.registry_endpoint, private_host) {
            (RegistryEndpoint::Private, Some(host)) => {
                (host.to_owned(), format!("{host}/{}{}", self.image.repository, self.image.reference))
            }
            _ => (self.image.registry.clone(), self.image.address()),
        }
    }
}

/// `GET /v1/applications/{app}/deployments` answer: each deployment at its current revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentPage {
    pub deployments: Vec<Deployment>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `GET /v1/applications/{app}/deployments/{name}/revisions` answer, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionPage {
    pub revisions: Vec<Deployment>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

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

/// `drain_seconds` when none is given.
pub const DEFAULT_DRAIN_SECONDS: u64 = 10;

/// An alarm a release is gated on: a CloudWatch alarm by name, or a Prometheus expression
/// (an alert while its instant query answers anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Alarm {
    /// A CloudWatch alarm's name: firing while its state is `ALARM`.
    CloudWatch(String),
    /// A Prometheus expression: firing while its instant query's result is not empty.
    Prometheus {
        /// The PromQL expression.
        prometheus: String,
    },
}

impl Alarm {
    /// How the alarm is named in a release's reason (`alarm: NAME`).
    pub fn name(&self) -> &str {
        match self {
            Self::CloudWatch(name) => name,
            Self::Prometheus { prometheus } => prometheus,
        }
    }
}

/// What the alarm gate of a running release records: `releases/{id}/alarms.json`, written
/// only when the source stops or starts answering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmState {
    /// Since when the alarm source has not answered (`None`: it answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<u64>,
    /// Its last error, shown on the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An HAProxy backend whose servers are a group's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyBackend {
    /// The runtime API: `HOST:PORT` over TCP, or an absolute path (`unix:` optional) of its
    /// socket.
    pub runtime_api: String,
    /// The backend's name.
    pub backend: String,
    /// The server's name for a host; `{host}` in it is replaced by the host's name
    /// (default: the host's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl HaproxyBackend {
    /// The server that is `host` in the backend.
    pub fn server_of(&self, host: &str) -> String {
        match &self.server {
            Some(template) => template.replace("{host}", host),
            None => host.to_owned(),
        }
    }
}

/// A group's load balancer: exactly one of an HAProxy backend and an AWS target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<HaproxyBackend>,
    /// An AWS Elastic Load Balancing v2 target group (targets: each host's EC2 instance id,
    /// or its name when it registered none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    /// Longest wait for a host's connections to drain before it is taken out (it is taken
    /// out sooner once the load balancer shows none left).
    #[serde(default = "default_drain")]
    pub drain_seconds: u64,
}

fn default_drain() -> u64 {
    DEFAULT_DRAIN_SECONDS
}

/// Where one host of a release stands with the group's load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Balanced {
    /// Draining since `since`: no new connections.
    Draining { since: u64 },
    /// Out of the load balancer since `since`: its scripts may run.
    Out { since: u64 },
    /// Put back at `at`.
    Back { at: u64 },
    /// Left out: it failed after its stop script ran, so it is not put back (a rollback puts
    /// it back once healthy on the previous revision).
    LeftOut { at: u64 },
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

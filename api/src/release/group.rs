//! Applications and their groups: the hosts a release reaches, and the load balancer and
//! alarms that gate it.

use serde::{Deserialize, Serialize};

use super::ReleaseStatus;

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

//! A deployment's health check as it travels: asked for in a deployment, handed to agents in
//! their jobs. Its validation is `berth_shared::release::validate_health`.

use serde::{Deserialize, Serialize};

/// `health` as requested: exactly one probe, and timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRequest {
    #[serde(default)]
    pub http: Option<HttpProbe>,
    #[serde(default)]
    pub tcp: Option<TcpProbe>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub docker: Option<DockerProbe>,
    #[serde(default)]
    pub start_period_seconds: Option<u64>,
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
    #[serde(default)]
    pub min_healthy_seconds: Option<u64>,
    #[serde(default)]
    pub deadline_seconds: Option<u64>,
}

/// A GET from the host itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub url: String,
    /// The status wanted; any 2xx or 3xx when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// A substring of the first 64 KiB of the answer (`berth_shared::release::PROBE_BODY_BYTES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
}

/// A TCP connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// `HOST:PORT`.
    pub address: String,
}

/// The container's own HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerProbe {
    pub container: String,
}

/// The one probe of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    Http(HttpProbe),
    Tcp(TcpProbe),
    /// A bash script, healthy on exit 0.
    Command(String),
    Docker(DockerProbe),
}

/// A validated health check, as stored on a deployment and handed to agents. Shown in the
/// shape it is asked in (`{"http": {...}, "interval_seconds": 2, ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    #[serde(flatten)]
    pub probe: Probe,
    pub start_period_seconds: u64,
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    pub healthy_threshold: u32,
    pub min_healthy_seconds: u64,
    pub deadline_seconds: u64,
}

impl HealthCheck {
    /// Longest a host's verification can take after its start script: the deadline, then the
    /// window it must stay healthy, then one probe's timeout.
    pub fn longest_seconds(&self) -> u64 {
        self.deadline_seconds + self.min_healthy_seconds + self.timeout_seconds
    }
}

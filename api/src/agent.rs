//! The agent's side of the API: its registration, the jobs it is handed, the reports and
//! log parts it sends back, and its health news.

use serde::{Deserialize, Serialize};

use crate::health::HealthCheck;

/// `POST /v1/agent/register` body: a host joining its group (with the group's join token) or
/// rotating its own host token (with its current one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub host: String,
    /// The EC2 instance the host runs on, matched against the group's Auto Scaling group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// `POST /v1/agent/register` answer. The host token is shown only here.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub application: String,
    pub group: String,
    pub host: String,
    pub host_token: String,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("application", &self.application)
            .field("group", &self.group)
            .field("host", &self.host)
            .field("host_token", &"<redacted>")
            .finish()
    }
}

/// A step on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `docker pull`.
    Pull,
    /// The stop script.
    Stop,
    /// The start script.
    Start,
    /// The health check after the start script (or later, while the host was watched).
    Health,
    /// No report arrived in time.
    Report,
}

impl Step {
    /// How the step is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Health => "health",
            Self::Report => "report",
        }
    }
}

/// Full stdout and stderr of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StepOutput {
    /// Standard output, lossily UTF-8.
    #[serde(default)]
    pub stdout: String,
    /// Standard error, lossily UTF-8.
    #[serde(default)]
    pub stderr: String,
}

/// The logs of one host's run: `releases/{id}/logs/{host}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostLogs {
    /// `docker pull` (when pulled in the run, without pull-first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<StepOutput>,
    /// The stop script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StepOutput>,
    /// The start script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StepOutput>,
    /// The health check: one line per probe (bounded; see the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<StepOutput>,
}

/// One piece of a step's output stored on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPart {
    /// `pull`, `stop` or `start`.
    pub step: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, in order after the previous part of the same step and stream.
    pub text: String,
}

/// What an agent reports after a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The job this reports on, as it was handed out.
    pub job_id: String,
    pub release: String,
    /// The job's kind.
    pub kind: JobKind,
    /// Whether every step succeeded.
    pub ok: bool,
    /// The step that failed, or the last one run.
    pub step: Step,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed (timeout, could not start bash, ...).
    #[serde(default)]
    pub reason: Option<String>,
    /// Output of each step run; without text when it was uploaded in parts.
    #[serde(default)]
    pub logs: HostLogs,
    /// How many log parts the agent uploaded for this job before reporting (parts 0..n,
    /// appended in order to the steps `logs` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_parts: Option<usize>,
}

impl Report {
    /// A job whose every step succeeded, with no output: what a host that ran it cleanly (or a
    /// simulated one) reports. Its last step is the pull for a pull job, else the start.
    pub fn succeeded(job_id: String, release: String, kind: JobKind) -> Self {
        Self {
            job_id,
            release,
            kind,
            ok: true,
            step: if kind == JobKind::Pull { Step::Pull } else { Step::Start },
            exit_code: Some(0),
            reason: None,
            logs: HostLogs::default(),
            log_parts: None,
        }
    }
}

/// What an agent is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Pull only (the pull-first phase).
    Pull,
    /// Stop then start (pulling first unless the release pulled already).
    Run,
}

/// A job handed to an agent. Its `Debug` leaves the pull key's password out.
#[derive(Clone, Serialize, Deserialize)]
pub struct Job {
    /// Names this job: the report must carry it back (`berth_shared::release::job_id`).
    pub job_id: String,
    pub release: String,
    /// Pull, or run.
    pub kind: JobKind,
    /// Whether a run job pulls first.
    pub pull: bool,
    /// The image address.
    pub image: String,
    /// Registry host the pull key is for.
    pub registry: String,
    /// Pull key username.
    pub username: String,
    /// Pull key password (a short-lived grant for this image only). Never logged.
    pub password: String,
    pub working_directory: String,
    pub stop_script: String,
    pub start_script: String,
    /// Per-step timeout.
    pub step_timeout_seconds: u64,
    /// The health check to run after the start script, if the deployment has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("job_id", &self.job_id)
            .field("release", &self.release)
            .field("kind", &self.kind)
            .field("image", &self.image)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} of {} for release {}", self.kind, self.image, self.release)
    }
}

/// What an agent tells Berth about its host's health in a run (`POST /v1/agent/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthNews {
    pub release: String,
    /// The run job it is about.
    pub job_id: String,
    pub news: HealthNewsKind,
    /// With `unhealthy`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which news.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthNewsKind {
    /// The start script succeeded; the host is probing (its final report follows).
    Verifying,
    /// Its run succeeded, and it turned unhealthy since, while the release still runs.
    Unhealthy,
}

//! Health checks: a deployment's `health` block (one probe and its timing), the state machine
//! an agent runs over probe outcomes to decide whether a host came up, and what a host that
//! turned unhealthy later leaves for the release to count.

use std::time::Duration;

use super::*;

/// Longest probe URL, TCP address or container name.
pub const MAX_PROBE_TARGET_BYTES: usize = 2048;
/// Longest `expect_body`.
pub const MAX_EXPECT_BODY_BYTES: usize = 4096;
/// How much of an HTTP answer `expect_body` is looked for in.
pub const PROBE_BODY_BYTES: usize = 64 * 1024;
/// How much of a probe's answer (body, command output) a host's logs keep per probe.
pub const LOGGED_PROBE_BYTES: usize = 1024;
/// Longest reason an unhealthy host's record keeps.
pub const MAX_UNHEALTHY_REASON_BYTES: usize = 2048;

fn in_range(
    field: &str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64, ApiError> {
    let value = value.unwrap_or(default);
    if !range.contains(&value) {
        return Err(ApiError::invalid(
            format!("health.{field}"),
            "out_of_range",
            format!("must be {} to {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

fn check_target(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, "required", "must not be empty"));
    }
    if value.len() > MAX_PROBE_TARGET_BYTES {
        return Err(ApiError::TooLarge { field: field.to_owned(), limit: MAX_PROBE_TARGET_BYTES });
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::invalid(field, "invalid_value", "contains spaces or control characters"));
    }
    Ok(())
}

/// Validates a `health` block; every error names the field at fault (`health.http.url`, ...).
pub fn validate_health(request: HealthRequest) -> Result<HealthCheck, ApiError> {
    let given = [request.http.is_some(), request.tcp.is_some(), request.command.is_some(), request.docker.is_some()];
    let probe = match (request.http, request.tcp, request.command, request.docker) {
        _ if given.iter().filter(|g| **g).count() != 1 => {
            return Err(ApiError::invalid(
                "health",
                if given.contains(&true) { "conflicting_fields" } else { "required" },
                "give exactly one probe: http, tcp, command or docker",
            ));
        }
        (Some(http), ..) => {
            check_target("health.http.url", &http.url)?;
            let url = reqwest::Url::parse(&http.url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if url.is_none() {
                return Err(ApiError::invalid(
                    "health.http.url",
                    "invalid_url",
                    "must be an http:// or https:// URL with a host, e.g. http://localhost:8080/hello",
                ));
            }
            if let Some(status) = http.expect_status
                && !(100..=599).contains(&status)
            {
                return Err(ApiError::invalid("health.http.expect_status", "out_of_range", "must be 100 to 599"));
            }
            if let Some(body) = &http.expect_body {
                if body.is_empty() {
                    return Err(ApiError::invalid("health.http.expect_body", "required", "must not be empty"));
                }
                if body.len() > MAX_EXPECT_BODY_BYTES {
                    return Err(ApiError::TooLarge {
                        field: "health.http.expect_body".into(),
                        limit: MAX_EXPECT_BODY_BYTES,
                    });
                }
            }
            Probe::Http(http)
        }
        (_, Some(tcp), ..) => {
            check_target("health.tcp.address", &tcp.address)?;
            let port = tcp.address.rsplit_once(':').filter(|(host, _)| !host.is_empty()).map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) {
                return Err(ApiError::invalid("health.tcp.address", "invalid_address", "must be HOST:PORT"));
            }
            Probe::Tcp(tcp)
        }
        (_, _, Some(command), _) => {
            validate_script("health.command", &command)?;
            Probe::Command(command)
        }
        (.., Some(docker)) => {
            // Docker's own grammar for container names.
            let name = &docker.container;
            let valid = name.len() <= 128
                && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(ApiError::invalid(
                    "health.docker.container",
                    "invalid_name",
                    "must be a container name: a letter or digit, then letters, digits, '_', '.' or '-'",
                ));
            }
            Probe::Docker(docker)
        }
        _ => unreachable!("exactly one probe is given"),
    };
    let healthy_threshold = in_range("healthy_threshold", request.healthy_threshold.map(u64::from), 1..=10, 1)? as u32;
    Ok(HealthCheck {
        probe,
        start_period_seconds: in_range("start_period_seconds", request.start_period_seconds, 0..=600, 0)?,
        interval_seconds: in_range("interval_seconds", request.interval_seconds, 1..=60, 2)?,
        timeout_seconds: in_range("timeout_seconds", request.timeout_seconds, 1..=60, 2)?,
        healthy_threshold,
        min_healthy_seconds: in_range("min_healthy_seconds", request.min_healthy_seconds, 0..=3600, 0)?,
        deadline_seconds: in_range("deadline_seconds", request.deadline_seconds, 1..=3600, 300)?,
    })
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Healthy.
    Pass,
    /// Not healthy, for this reason.
    Fail(String),
    /// Not answering yet in a way that is no failure (a HEALTHCHECK still `starting`).
    NotYet(String),
    /// Unhealthy at once, whatever the timing (the container exited or restarted, or has no
    /// HEALTHCHECK).
    Fatal(String),
}

/// Where a host's verification stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep probing.
    Probing,
    /// Healthy, and stayed so for `min_healthy_seconds`.
    Healthy,
    /// The host fails at `step: health`, for this reason.
    Failed(String),
}

/// The verification of one host after its start script, over probe outcomes and the time
/// since the script ended (passed in, so tests drive it with a fake clock):
/// - a failed probe in the first `start_period_seconds` does not count; after it, a failed
///   probe before the host is healthy fails the host;
/// - `healthy_threshold` consecutive passes make it healthy; from then on any failed probe
///   in the next `min_healthy_seconds` fails it, and once that window passed it succeeds;
/// - not healthy by `deadline_seconds` fails it.
#[derive(Debug, Clone)]
pub struct Verifier {
    check: HealthCheck,
    passes: u32,
    healthy_since: Option<Duration>,
}

impl Verifier {
    pub fn new(check: &HealthCheck) -> Self {
        Self { check: check.clone(), passes: 0, healthy_since: None }
    }

    /// Takes the outcome of a probe that ended `elapsed` after the start script.
    pub fn observe(&mut self, elapsed: Duration, outcome: &ProbeOutcome) -> Verdict {
        let check = &self.check;
        let failure = match outcome {
            ProbeOutcome::Pass => {
                self.passes += 1;
                if self.healthy_since.is_none() && self.passes >= check.healthy_threshold {
                    self.healthy_since = Some(elapsed);
                }
                None
            }
            ProbeOutcome::Fatal(reason) => return Verdict::Failed(reason.clone()),
            ProbeOutcome::Fail(reason) => {
                self.passes = 0;
                Some(reason)
            }
            ProbeOutcome::NotYet(_) => {
                self.passes = 0;
                None
            }
        };
        if let Some(since) = self.healthy_since {
            if let Some(reason) = failure {
                return Verdict::Failed(format!(
                    "turned unhealthy {} s after it was healthy (min_healthy_seconds {}): {reason}",
                    elapsed.saturating_sub(since).as_secs(),
                    check.min_healthy_seconds
                ));
            }
            if matches!(outcome, ProbeOutcome::NotYet(_)) {
                return Verdict::Failed(format!(
                    "turned unhealthy within min_healthy_seconds ({}): {}",
                    check.min_healthy_seconds,
                    outcome_text(outcome)
                ));
            }
            if elapsed.saturating_sub(since) >= Duration::from_secs(check.min_healthy_seconds) {
                return Verdict::Healthy;
            }
            return Verdict::Probing;
        }
        if let Some(reason) = failure
            && elapsed >= Duration::from_secs(check.start_period_seconds)
        {
            return Verdict::Failed(format!(
                "a probe failed after start_period_seconds ({}): {reason}",
                check.start_period_seconds
            ));
        }
        if elapsed >= Duration::from_secs(check.deadline_seconds) {
            return Verdict::Failed(format!(
                "not healthy within deadline_seconds ({}); last probe: {}",
                check.deadline_seconds,
                outcome_text(outcome)
            ));
        }
        Verdict::Probing
    }

    /// When the next probe starts, given when the last one started: an interval later, but
    /// never past the deadline while the host is not healthy yet (one last probe there).
    pub fn next_probe(&self, last_started: Duration) -> Duration {
        let next = last_started + Duration::from_secs(self.check.interval_seconds);
        match self.healthy_since {
            None => next.min(Duration::from_secs(self.check.deadline_seconds).max(last_started)),
            Some(_) => next,
        }
    }
}

/// A probe outcome in words, for logs and reasons.
pub fn outcome_text(outcome: &ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::Pass => "healthy".into(),
        ProbeOutcome::Fail(r) => format!("failed: {r}"),
        ProbeOutcome::NotYet(r) => format!("not yet: {r}"),
        ProbeOutcome::Fatal(r) => format!("unhealthy: {r}"),
    }
}

/// The first `limit` bytes of `text`, cut at a character boundary.
pub fn truncated(text: &str, limit: usize) -> &str {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A host of a running release that turned unhealthy after its run succeeded (its batch
/// finished, or others of its batch still ran): `releases/{id}/unhealthy/{host}.json`, written
/// once. It counts as a failure of its own batch against the budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unhealthy {
    /// Why (the probe's outcome).
    pub reason: String,
    /// The host's batch (from 0).
    pub batch: usize,
    /// The release's phase when it was reported.
    pub during: Phase,
    pub at: u64,
}

impl Unhealthy {
    /// The host's failure as its result reads: `step: health`.
    pub fn as_result(&self) -> HostResult {
        HostResult { ok: false, step: Step::Health, exit_code: None, reason: Some(self.describe()), at: self.at }
    }

    /// What happened, with the phase it happened in.
    pub fn describe(&self) -> String {
        let during = match self.during {
            Phase::Batch { batch } => format!("while batch {} ran", batch + 1),
            Phase::Waiting { next, .. } | Phase::AwaitingConfirm { next } => {
                format!("while the release paused before batch {}", next + 1)
            }
            _ => "while watched".into(),
        };
        format!("turned unhealthy {during}, after its run succeeded: {}", self.reason)
    }
}

/// A host's note that its health check runs: `releases/{id}/verifying/{host}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifying {
    /// When its start script succeeded.
    pub at: u64,
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;

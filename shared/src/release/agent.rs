//! The agent's side of a release: the jobs handed to hosts, their reports and logs, and
//! which job a host holds now.

use super::*;

/// The outcome of a pull on one host: `releases/{id}/pulls/{host}.json`, written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResult {
    /// Whether the image is there.
    pub ok: bool,
    /// Exit code of `docker pull`.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub output: StepOutput,
    /// When.
    pub at: u64,
}

/// The final outcome on one host: `releases/{id}/hosts/{host}.json`, written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResult {
    /// Whether stop and start both succeeded.
    pub ok: bool,
    /// The step that failed (or the last step, on success).
    pub step: Step,
    /// Its exit code, if it ran to an exit.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    pub at: u64,
}

/// Logs larger than this (as JSON) are stored in parts, so no document outgrows the store.
pub const INLINE_LOG_BYTES: usize = 3 << 20;
/// Text per stored log part; JSON escaping may grow it up to six times, still under the
/// store's document limit.
pub const LOG_PART_BYTES: usize = 512 << 10;
/// Largest report an agent may send. Output past about 1 MiB travels as log parts
/// (`POST /v1/agent/logs`), each read with its own limit, so no request is buffered whole
/// beyond these few MiB.
pub const MAX_REPORT_BYTES: usize = 4 << 20;
/// Log parts one job may upload: [`LOG_PART_BYTES`] each, 256 MiB of output in all.
pub const MAX_LOG_PARTS: usize = 512;
/// Largest output of one step's stream an agent keeps (six streams stay under 256 MiB);
/// past it, the rest is dropped and the agent says so in the output.
pub const MAX_STREAM_BYTES: u64 = 40 << 20;

/// The steps and streams a log part may belong to.
pub const LOG_STEPS: [&str; 4] = ["pull", "stop", "start", "health"];
/// The streams of a step.
pub const LOG_STREAMS: [&str; 2] = ["stdout", "stderr"];

fn output_mut<'a>(logs: &'a mut HostLogs, step: &str) -> Option<&'a mut StepOutput> {
    match step {
        "pull" => logs.pull.as_mut(),
        "stop" => logs.stop.as_mut(),
        "start" => logs.start.as_mut(),
        "health" => logs.health.as_mut(),
        _ => None,
    }
}

/// Splits logs into a head without text and parts of at most `part_bytes` of text each
/// (cut at character boundaries), in order. [`join_logs`] undoes it.
pub fn split_logs(logs: &HostLogs, part_bytes: usize) -> (HostLogs, Vec<LogPart>) {
    let mut head = logs.clone();
    let mut parts = Vec::new();
    for step in LOG_STEPS {
        let Some(output) = output_mut(&mut head, step) else { continue };
        for (stream, text) in
            [("stdout", std::mem::take(&mut output.stdout)), ("stderr", std::mem::take(&mut output.stderr))]
        {
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut cut = rest.len().min(part_bytes.max(4));
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                parts.push(LogPart { step: step.into(), stream: stream.into(), text: rest[..cut].to_owned() });
                rest = &rest[cut..];
            }
        }
    }
    (head, parts)
}

/// Puts split logs back together.
pub fn join_logs(mut head: HostLogs, parts: Vec<LogPart>) -> HostLogs {
    for part in parts {
        if let Some(output) = output_mut(&mut head, &part.step) {
            match part.stream.as_str() {
                "stdout" => output.stdout.push_str(&part.text),
                _ => output.stderr.push_str(&part.text),
            }
        }
    }
    head
}

/// The kind of job a job id names (`pull-...` or `run-...`).
pub fn job_kind(job_id: &str) -> Option<JobKind> {
    match job_id.split_once('-')?.0 {
        "pull" => Some(JobKind::Pull),
        "run" => Some(JobKind::Run),
        _ => None,
    }
}

/// The id of the job of `kind` for `host` in `release`. Each host has at most one job of each
/// kind per release, so the id is derived rather than stored: no write per job handed out,
/// and a report is matched by recomputing it for the reporting host.
pub fn job_id(release: &str, host: &str, kind: JobKind) -> String {
    let kind = match kind {
        JobKind::Pull => "pull",
        JobKind::Run => "run",
    };
    let digest = crate::platform::digest::sha256_hex(format!("berth-job\0{release}\0{host}\0{kind}").as_bytes());
    format!("{kind}-{}", &digest[..32])
}

/// Why a report is refused: it does not answer the job the host holds now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefusal {
    /// The job id is not this host's job of this kind in this release.
    #[error("job '{0}' was not handed to this host for this release and kind")]
    NotThisJob(String),
    /// The release ended before the report came.
    #[error("the release has ended; the report changes nothing")]
    Ended,
    /// The host's job of this kind is not due in the release's current phase.
    #[error("this job is not due now (the release is in another phase)")]
    NotDue,
}

/// Checks that a report answers the job `host` holds in `release`: its id must be the
/// host's job of the report's kind.
pub fn check_job(release: &str, host: &str, report: &Report) -> Result<(), ReportRefusal> {
    if report.job_id == job_id(release, host, report.kind) {
        Ok(())
    } else {
        Err(ReportRefusal::NotThisJob(report.job_id.chars().take(80).collect()))
    }
}

/// Checks that a not-yet-settled job of `kind` for a host of `batch` is due: the release is
/// running and in the job's phase.
pub fn check_due(status: ReleaseStatus, phase: Phase, batch: usize, kind: JobKind) -> Result<(), ReportRefusal> {
    if status.is_terminal() {
        return Err(ReportRefusal::Ended);
    }
    let due = match (kind, phase) {
        (JobKind::Pull, Phase::Pulling) => true,
        (JobKind::Run, Phase::Batch { batch: current }) => current == batch,
        _ => false,
    };
    if due { Ok(()) } else { Err(ReportRefusal::NotDue) }
}

/// What a host should do now, given the release and what it has reported.
pub fn next_job(release: &Release, host: &str, pulled: bool, finished: bool) -> Option<JobKind> {
    next_job_at(release.status, release.phase, release.batch_of(host), pulled, finished)
}

/// [`next_job`] from the parts that change (status, phase) and the host's batch, so a poll
/// need not rebuild the whole release.
pub fn next_job_at(
    status: ReleaseStatus,
    phase: Phase,
    batch: Option<usize>,
    pulled: bool,
    finished: bool,
) -> Option<JobKind> {
    if status != ReleaseStatus::Running || finished {
        return None;
    }
    match phase {
        Phase::Pulling if !pulled && batch.is_some() => Some(JobKind::Pull),
        Phase::Batch { batch: current } if batch == Some(current) => Some(JobKind::Run),
        _ => None,
    }
}

//! The health check on the host: the probes (an HTTP GET, a TCP connect, a command, a
//! container's own HEALTHCHECK), each bounded in time and in the output it keeps; the
//! verification after the start script; and the watch that keeps probing while the release
//! runs. The timing rules are [`berth_shared::release::Verifier`]'s.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use berth_api::health::{HealthCheck, HttpProbe, Probe};
use berth_shared::release::{
    LOGGED_PROBE_BYTES, PROBE_BODY_BYTES, ProbeOutcome, Verdict, Verifier, outcome_text, truncated,
};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::time::Instant;

/// What a probe works with: the job as a command probe sees it (as its scripts do), and the
/// HTTP client of [`probe_client`], made once per verification or watch (making one per probe
/// was most of a probe's CPU).
pub struct ProbeContext<'a> {
    pub http: &'a reqwest::Client,
    pub host: &'a str,
    pub release: &'a str,
    pub job_id: &'a str,
    pub image: &'a str,
    pub working_directory: &'a str,
}

/// One probe: its outcome and what it saw (status, the first KiB of the body, the error).
pub struct ProbeRecord {
    pub outcome: ProbeOutcome,
    pub detail: String,
}

/// A host's probe lines, bounded: the first [`HEAD_BYTES`] of lines, then the last
/// [`TAIL_LINES`], and how many were left out between.
#[derive(Default)]
pub struct ProbeLog {
    head: String,
    tail: VecDeque<String>,
    omitted: usize,
}

const HEAD_BYTES: usize = 48 * 1024;
const TAIL_LINES: usize = 16;

impl ProbeLog {
    pub fn push(&mut self, at: Duration, record: &ProbeRecord) {
        let line = format!("+{:.1}s {} | {}\n", at.as_secs_f64(), outcome_text(&record.outcome), record.detail);
        if self.tail.is_empty() && self.head.len() + line.len() <= HEAD_BYTES {
            self.head.push_str(&line);
            return;
        }
        self.tail.push_back(line);
        if self.tail.len() > TAIL_LINES {
            self.tail.pop_front();
            self.omitted += 1;
        }
    }

    pub fn text(&self) -> String {
        let mut text = self.head.clone();
        if self.omitted > 0 {
            text.push_str(&format!("[berth-agent: {} probes not shown]\n", self.omitted));
        }
        text.extend(self.tail.iter().cloned());
        text
    }
}

/// The host failed its health check, for this reason (the verifier's).
#[derive(Debug, thiserror::Error)]
#[error("health check failed: {0}")]
pub struct Unhealthy(pub String);

/// Probes until the host is healthy (and stayed so for `min_healthy_seconds`) or fails;
/// every probe goes to `log`. Returns why it failed.
pub async fn verify(check: &HealthCheck, context: &ProbeContext<'_>, log: &mut ProbeLog) -> Result<(), Unhealthy> {
    let mut verifier = Verifier::new(check);
    let start = Instant::now();
    let mut next = Duration::ZERO;
    loop {
        tokio::time::sleep_until(start + next).await;
        let started = start.elapsed();
        let record = probe(check, context).await;
        log.push(started, &record);
        match verifier.observe(start.elapsed(), &record.outcome) {
            Verdict::Healthy => return Ok(()),
            Verdict::Failed(reason) => return Err(Unhealthy(reason)),
            Verdict::Probing => next = verifier.next_probe(started),
        }
    }
}

/// One probe, never longer than `timeout_seconds`.
pub async fn probe(check: &HealthCheck, context: &ProbeContext<'_>) -> ProbeRecord {
    let timeout = Duration::from_secs(check.timeout_seconds);
    let probing = async {
        match &check.probe {
            Probe::Http(http) => http_probe(context.http, http, timeout).await,
            Probe::Tcp(tcp) => match tokio::net::TcpStream::connect(&tcp.address).await {
                Ok(_) => ProbeRecord { outcome: ProbeOutcome::Pass, detail: format!("connected to {}", tcp.address) },
                Err(e) => failed(format!("cannot connect to {}: {e}", tcp.address)),
            },
            Probe::Command(script) => command_probe(script, context, timeout).await,
            Probe::Docker(docker) => docker_probe(&docker.container, timeout).await,
        }
    };
    match tokio::time::timeout(timeout, probing).await {
        Ok(record) => record,
        Err(_) => failed(format!("no answer within timeout_seconds ({})", check.timeout_seconds)),
    }
}

fn failed(reason: String) -> ProbeRecord {
    ProbeRecord { detail: reason.clone(), outcome: ProbeOutcome::Fail(reason) }
}

/// Text for logs: at most [`LOGGED_PROBE_BYTES`], control characters escaped.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    truncated(&text, LOGGED_PROBE_BYTES).escape_debug().to_string()
}

/// The client HTTP probes use: no redirects followed (a 3xx is an answer), no proxy from the
/// agent's environment (the probe asks the host itself), and no connection kept between
/// probes (each one connects, as a new client would).
pub fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client")
}

async fn http_probe(client: &reqwest::Client, http: &HttpProbe, timeout: Duration) -> ProbeRecord {
    let mut response = match client.get(&http.url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(e) => return failed(format!("GET {}: {e}", http.url)),
    };
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while body.len() < PROBE_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(chunk.get(..chunk.len().min(PROBE_BODY_BYTES - body.len())).unwrap_or_default())
            }
            Ok(None) => break,
            Err(e) => return failed(format!("GET {}: HTTP {status}, reading the body: {e}", http.url)),
        }
    }
    let detail = format!("HTTP {status}, body \"{}\"", shown(&body));
    let status_ok = match http.expect_status {
        Some(expected) => status == expected,
        None => (200..400).contains(&status),
    };
    let outcome = if !status_ok {
        let wanted = http.expect_status.map_or("2xx or 3xx".to_owned(), |s| s.to_string());
        ProbeOutcome::Fail(format!("GET {} answered HTTP {status}, not {wanted}", http.url))
    } else if let Some(expected) = &http.expect_body
        && !String::from_utf8_lossy(&body).contains(expected.as_str())
    {
        ProbeOutcome::Fail(format!(
            "GET {} answered HTTP {status} without \"{}\" in its first {} KiB (expect_body)",
            http.url,
            truncated(expected, 200),
            PROBE_BODY_BYTES / 1024
        ))
    } else {
        ProbeOutcome::Pass
    };
    ProbeRecord { outcome, detail }
}

/// Keeps the first `limit` bytes of a stream and drains the rest, so a chatty command never
/// blocks on a full pipe.
async fn bounded(mut reader: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => kept.extend_from_slice(buffer.get(..n.min(limit.saturating_sub(kept.len()))).unwrap_or_default()),
        }
    }
}

/// Why a probe's command gave no answer (said after the command's name).
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("cannot start: {0}")]
    Start(#[source] std::io::Error),
    #[error("did not finish within {seconds} s; its process group was killed")]
    TimedOut { seconds: u64 },
}

/// Runs a command in its own process group, keeping `limit` bytes of each stream; past
/// `timeout` the group is killed. Returns the exit code (None: killed) and the outputs.
async fn run_bounded(
    mut command: tokio::process::Command,
    timeout: Duration,
    limit: usize,
) -> Result<(Option<i32>, Vec<u8>, Vec<u8>), CommandError> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    let mut child = command.spawn().map_err(CommandError::Start)?;
    let pid = child.id();
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out = tokio::spawn(bounded(stdout, limit));
    let err = tokio::spawn(bounded(stderr, limit));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
            }
            let _ = child.wait().await;
            return Err(CommandError::TimedOut { seconds: timeout.as_secs() });
        }
    };
    // A grandchild holding the pipes open must not hold the probe.
    let drain = |task: tokio::task::JoinHandle<Vec<u8>>| async move {
        tokio::time::timeout(Duration::from_secs(1), task).await.ok().and_then(Result::ok).unwrap_or_default()
    };
    Ok((status.and_then(|s| s.code()), drain(out).await, drain(err).await))
}

async fn command_probe(script: &str, context: &ProbeContext<'_>, timeout: Duration) -> ProbeRecord {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return failed(format!("cannot make a temporary directory: {e}")),
    };
    let file = dir.path().join("health.sh");
    if let Err(e) = std::fs::write(&file, script) {
        return failed(format!("cannot write the health command: {e}"));
    }
    let mut command = tokio::process::Command::new("bash");
    command.arg(&file).current_dir(Path::new(context.working_directory));
    crate::run::clean_environment(&mut command);
    command
        .env("BERTH_RELEASE_ID", context.release)
        .env("BERTH_JOB_ID", context.job_id)
        .env("BERTH_IMAGE", context.image)
        .env("BERTH_HOST", context.host)
        .env("BERTH_STEP", "health");
    match run_bounded(command, timeout, LOGGED_PROBE_BYTES).await {
        Ok((code, stdout, stderr)) => {
            let detail = format!("exit {code:?}, output \"{}{}\"", shown(&stdout), shown(&stderr));
            let outcome = match code {
                Some(0) => ProbeOutcome::Pass,
                Some(code) => ProbeOutcome::Fail(format!("the health command exited with code {code}")),
                None => ProbeOutcome::Fail("the health command was killed by a signal".into()),
            };
            ProbeRecord { outcome, detail }
        }
        Err(e) => failed(format!("the health command {e}")),
    }
}

/// Most of `docker inspect`'s answer kept (a HEALTHCHECK's log holds up to five outputs).
const INSPECT_BYTES: usize = 64 * 1024;

async fn docker_probe(container: &str, timeout: Duration) -> ProbeRecord {
    let mut command = tokio::process::Command::new("docker");
    command.args([
        "inspect",
        "--type",
        "container",
        "--format",
        "{{.State.Status}}|{{.State.ExitCode}}|{{.RestartCount}}|{{.State.Restarting}}|{{json .State.Health}}",
        container,
    ]);
    crate::run::clean_environment(&mut command);
    if let Some(daemon) = std::env::var_os("DOCKER_HOST") {
        command.env("DOCKER_HOST", daemon);
    }
    let (code, stdout, stderr) = match run_bounded(command, timeout, INSPECT_BYTES).await {
        Ok(answer) => answer,
        Err(e) => return failed(format!("docker inspect {e}")),
    };
    if code != Some(0) {
        return failed(format!("no container '{container}': {}", shown(&stderr).trim()));
    }
    docker_outcome(container, &String::from_utf8_lossy(&stdout))
}

/// The outcome of `docker inspect`'s `status|exit code|restarts|restarting|health JSON`.
fn docker_outcome(container: &str, answer: &str) -> ProbeRecord {
    #[derive(serde::Deserialize)]
    struct Health {
        #[serde(rename = "Status")]
        status: String,
        #[serde(rename = "Log", default)]
        log: Vec<HealthLog>,
    }
    #[derive(serde::Deserialize)]
    struct HealthLog {
        #[serde(rename = "ExitCode", default)]
        exit_code: i64,
        #[serde(rename = "Output", default)]
        output: String,
    }
    let fields: Vec<&str> = answer.trim().splitn(5, '|').collect();
    let [status, exit_code, restarts, restarting, health] = fields[..] else {
        return failed(format!("unreadable docker inspect answer \"{}\"", shown(answer.as_bytes())));
    };
    let fatal = |reason: String| ProbeRecord { detail: reason.clone(), outcome: ProbeOutcome::Fatal(reason) };
    if restarting == "true" || restarts.parse::<u64>().is_ok_and(|n| n > 0) {
        return fatal(format!("the container '{container}' restarted ({restarts} restarts)"));
    }
    if status != "running" {
        return fatal(format!("the container '{container}' is {status} (exit code {exit_code})"));
    }
    let Ok(Some(health)) = serde_json::from_str::<Option<Health>>(health) else {
        return fatal(format!("the container '{container}' has no HEALTHCHECK"));
    };
    let last = health.log.last().map(|l| format!("exit {}, \"{}\"", l.exit_code, shown(l.output.as_bytes())));
    let detail = format!("HEALTHCHECK {}; last check: {}", health.status, last.as_deref().unwrap_or("none yet"));
    let outcome = match health.status.as_str() {
        "healthy" => ProbeOutcome::Pass,
        "starting" => ProbeOutcome::NotYet(format!("the container '{container}' HEALTHCHECK is starting")),
        other => ProbeOutcome::Fail(format!(
            "the container '{container}' HEALTHCHECK is {other}: {}",
            last.as_deref().unwrap_or("no check ran")
        )),
    };
    ProbeRecord { outcome, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_states_map_to_outcomes() {
        let outcome = |answer: &str| docker_outcome("web", answer).outcome;
        let healthy = r#"running|0|0|false|{"Status":"healthy","Log":[{"ExitCode":0,"Output":"ok"}]}"#;
        assert_eq!(outcome(healthy), ProbeOutcome::Pass);
        assert!(matches!(outcome(r#"running|0|0|false|{"Status":"starting","Log":[]}"#), ProbeOutcome::NotYet(_)));
        let unhealthy = r#"running|0|0|false|{"Status":"unhealthy","Log":[{"ExitCode":1,"Output":"boom"}]}"#;
        assert!(matches!(outcome(unhealthy), ProbeOutcome::Fail(r) if r.contains("boom")));
        assert!(matches!(outcome("running|0|0|false|null"), ProbeOutcome::Fatal(r) if r.contains("no HEALTHCHECK")));
        assert!(
            matches!(outcome("exited|3|0|false|null"), ProbeOutcome::Fatal(r) if r.contains("exited (exit code 3)"))
        );
        assert!(matches!(outcome("running|0|2|false|null"), ProbeOutcome::Fatal(r) if r.contains("restarted")));
        assert!(matches!(outcome("garbage"), ProbeOutcome::Fail(_)));
    }

    #[test]
    fn the_probe_log_keeps_its_head_and_tail_only() {
        let mut log = ProbeLog::default();
        let record = ProbeRecord { outcome: ProbeOutcome::Pass, detail: "x".repeat(900) };
        for i in 0..1000 {
            log.push(Duration::from_secs(i), &record);
        }
        let text = log.text();
        assert!(text.len() < HEAD_BYTES + TAIL_LINES * 1000, "{}", text.len());
        assert!(text.contains("probes not shown") && text.contains("+999.0s"), "the last probes stay");
    }

    #[tokio::test]
    async fn a_probe_never_outlives_its_timeout_nor_keeps_more_than_a_kib() {
        let check = |probe: Probe| HealthCheck {
            probe,
            start_period_seconds: 0,
            interval_seconds: 1,
            timeout_seconds: 1,
            healthy_threshold: 1,
            min_healthy_seconds: 0,
            deadline_seconds: 5,
        };
        let dir = tempfile::tempdir().unwrap();
        let client = probe_client();
        let context = ProbeContext {
            http: &client,
            host: "h1",
            release: "r",
            job_id: "j",
            image: "i",
            working_directory: dir.path().to_str().unwrap(),
        };
        let started = std::time::Instant::now();
        let record = probe(&check(Probe::Command("sleep 30 & sleep 30".into())), &context).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(matches!(record.outcome, ProbeOutcome::Fail(_)));
        let record = probe(&check(Probe::Command("yes | head -c 10000000; exit 3".into())), &context).await;
        assert_eq!(record.outcome, ProbeOutcome::Fail("the health command exited with code 3".into()));
        assert!(record.detail.len() < 3 * LOGGED_PROBE_BYTES, "{}", record.detail.len());
        // A listener that accepts and never answers: the HTTP probe gives up in time.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hello", silent.local_addr().unwrap());
        let http = HttpProbe { url, expect_status: None, expect_body: None };
        let started = std::time::Instant::now();
        let record = probe(&check(Probe::Http(http)), &context).await;
        assert!(started.elapsed() < Duration::from_secs(3) && matches!(record.outcome, ProbeOutcome::Fail(_)));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let tcp = berth_api::health::TcpProbe { address: closed.to_string() };
        assert!(matches!(probe(&check(Probe::Tcp(tcp)), &context).await.outcome, ProbeOutcome::Fail(_)));
    }
}

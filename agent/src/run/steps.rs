//! Running a job on this host: the pull, the stop and start scripts, the health check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_api::agent::{HealthNews, HealthNewsKind, Job, JobKind, Report, Step};
use berth_shared::release::JobRefusal;

use super::Agent;
use super::state::Pending;
use crate::health::{ProbeContext, ProbeLog};
use crate::spool::{INLINE_BYTES, Spool};

/// After a timeout kills a step's process group, how long its output may still drain.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(5);

/// How one step ended (its output is in the job's spool).
struct StepRun {
    exit_code: Option<i32>,
    /// Why it failed, when it did.
    failure: Option<String>,
}

impl Agent {
    /// Runs a job with its output spooled to the state directory, and keeps its report there
    /// before answering it.
    pub async fn execute(&self, job: &Job, token: &str) -> std::io::Result<Pending> {
        let spool = Spool::create(&self.state_dir.join("spool"), &job.job_id)?;
        // Recorded before any step starts: a crash mid-job leaves a host that Berth times out,
        // never one that stops and starts twice.
        self.remember_ran(&job.job_id);
        let (ok, step, run) = self.steps(job, &spool, token).await;
        let inline = spool.total_bytes() <= INLINE_BYTES;
        let report = Report {
            job_id: job.job_id.clone(),
            release: job.release.clone(),
            kind: job.kind,
            ok,
            step,
            exit_code: run.exit_code,
            reason: run.failure,
            logs: spool.logs(inline),
            // The count is taken again from the spool when sending.
            log_parts: (!inline).then_some(0),
        };
        let pending = Pending { report, spool: spool.dir().to_path_buf() };
        Self::write_state(&self.pending_file(), &pending)?;
        Ok(pending)
    }

    /// Keeps a failed report for a job this host will not run, saying why, as [`Agent::execute`]
    /// keeps one for a job it ran.
    pub(super) fn refuse(&self, job: &Job, refusal: &JobRefusal) -> std::io::Result<Pending> {
        eprintln!("berth-agent: refused job {}: {refusal}; nothing ran", job.job_id);
        let spool = Spool::create(&self.state_dir.join("spool"), &job.job_id)?;
        self.remember_ran(&job.job_id);
        let report = Report {
            job_id: job.job_id.clone(),
            release: job.release.clone(),
            kind: job.kind,
            ok: false,
            step: if job.pull { Step::Pull } else { Step::Stop },
            exit_code: None,
            reason: Some(format!("berth-agent refused the job, nothing ran: {refusal}")),
            logs: Default::default(),
            log_parts: None,
        };
        let pending = Pending { report, spool: spool.dir().to_path_buf() };
        Self::write_state(&self.pending_file(), &pending)?;
        Ok(pending)
    }

    async fn steps(&self, job: &Job, spool: &Spool, token: &str) -> (bool, Step, StepRun) {
        let verified;
        let job = match &self.trusted_keys {
            None => job,
            Some(keys) => match crate::signature::verify(job, keys).await {
                // Pulled and run by the digest that verified, never by a tag that may move.
                Ok(image) => {
                    verified = Job { image, ..job.clone() };
                    &verified
                }
                Err(reason) => return (false, Step::Pull, StepRun::broken(reason.to_string())),
            },
        };
        if job.pull {
            let pull = self.pull(job, spool).await;
            if pull.failure.is_some() || job.kind == JobKind::Pull {
                return (pull.failure.is_none(), Step::Pull, pull);
            }
        }
        if let Err(e) = tokio::fs::create_dir_all(&job.working_directory).await {
            let run = StepRun::broken(format!("cannot create the working directory {}: {e}", job.working_directory));
            return (false, Step::Stop, run);
        }
        let mut stop = self.script(job, Step::Stop, &job.stop_script, spool).await;
        if let Some(failure) = &mut stop.failure {
            failure.push_str(
                "; the start script did not run. A stop script must also succeed when nothing is running: see its output",
            );
            return (false, Step::Stop, stop);
        }
        let start = self.script(job, Step::Start, &job.start_script, spool).await;
        let Some(check) = job.health.as_ref().filter(|_| start.failure.is_none()) else {
            return (start.failure.is_none(), Step::Start, start);
        };
        // Only shown as `verifying`: a refused note changes nothing of the run.
        let news = HealthNews {
            release: job.release.clone(),
            job_id: job.job_id.clone(),
            news: HealthNewsKind::Verifying,
            reason: None,
        };
        // Bounded: a Berth slow to answer must not hold the probes back.
        match tokio::time::timeout(Duration::from_secs(5), self.send_health_news(token, &news)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("berth-agent: telling Berth the host is verifying: {error}"),
            Err(_) => eprintln!("berth-agent: telling Berth the host is verifying: no answer within 5 s"),
        }
        let client = crate::health::probe_client();
        let context = ProbeContext {
            http: &client,
            host: &self.host,
            release: &job.release,
            job_id: &job.job_id,
            image: &job.image,
            working_directory: &job.working_directory,
        };
        let mut log = ProbeLog::default();
        let verified = crate::health::verify(check, &context, &mut log).await;
        spool.capture("health", "stdout", log.text().as_bytes()).await;
        let failure = verified.err().map(|unhealthy| unhealthy.to_string());
        (failure.is_none(), Step::Health, StepRun { exit_code: None, failure })
    }

    async fn pull(&self, job: &Job, spool: &Spool) -> StepRun {
        // A docker config of its own for this job only: the key never lands in the host's.
        let config = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => return StepRun::broken(format!("cannot make a temporary docker config: {e}")),
        };
        let auth = STANDARD.encode(format!("{}:{}", job.username, job.password));
        let body = DockerConfig { auths: [(job.registry.as_str(), DockerAuth { auth })].into() };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(e) => return StepRun::broken(format!("cannot write the temporary docker config: {e}")),
        };
        if let Err(e) = std::fs::write(config.path().join("config.json"), body) {
            return StepRun::broken(format!("cannot write the temporary docker config: {e}"));
        }
        let mut command = tokio::process::Command::new("docker");
        command.arg("pull").arg(&job.image);
        clean_environment(&mut command);
        if let Some(daemon) = std::env::var_os("DOCKER_HOST") {
            command.env("DOCKER_HOST", daemon);
        }
        command.env("DOCKER_CONFIG", config.path());
        let timeout = Duration::from_secs(job.step_timeout_seconds);
        run_step(command, timeout, "docker pull", spool, "pull").await
    }

    async fn script(&self, job: &Job, step: Step, script: &str, spool: &Spool) -> StepRun {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => return StepRun::broken(format!("cannot make a temporary directory: {e}")),
        };
        let name = if step == Step::Stop { "stop.sh" } else { "start.sh" };
        let file: PathBuf = dir.path().join(name);
        if let Err(e) = std::fs::write(&file, script) {
            return StepRun::broken(format!("cannot write the {name} script: {e}"));
        }
        let mut command = tokio::process::Command::new("bash");
        command.arg(&file).current_dir(Path::new(&job.working_directory));
        clean_environment(&mut command);
        command
            .env("BERTH_RELEASE_ID", &job.release)
            .env("BERTH_JOB_ID", &job.job_id)
            .env("BERTH_IMAGE", &job.image)
            .env("BERTH_HOST", &self.host)
            .env("BERTH_STEP", if step == Step::Stop { "stop" } else { "start" });
        let what = if step == Step::Stop { "the stop script" } else { "the start script" };
        let name = if step == Step::Stop { "stop" } else { "start" };
        run_step(command, Duration::from_secs(job.step_timeout_seconds), what, spool, name).await
    }
}

/// The Docker CLI's `config.json`, holding only the job's pull key.
#[derive(serde::Serialize)]
struct DockerConfig<'a> {
    auths: std::collections::BTreeMap<&'a str, DockerAuth>,
}

/// `base64(username:password)`, as `docker login` stores it.
#[derive(serde::Serialize)]
struct DockerAuth {
    auth: String,
}

/// What a step's process inherits from the agent: `PATH`, `HOME` and `LANG` only. Nothing else
/// of the agent's environment (its join token, cloud credentials, ...) reaches a script.
pub(crate) fn clean_environment(command: &mut tokio::process::Command) {
    command.env_clear();
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    command.env("PATH", path);
    command.env("HOME", std::env::var_os("HOME").unwrap_or_else(|| "/".into()));
    command.env("LANG", std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()));
}

impl StepRun {
    pub(super) fn broken(reason: String) -> Self {
        Self { exit_code: None, failure: Some(reason) }
    }
}

/// Runs a command in a process group of its own, keeping all of its output; past `timeout`
/// the whole group is killed (a script's children too).
async fn run_step(
    mut command: tokio::process::Command,
    timeout: Duration,
    what: &str,
    spool: &Spool,
    step: &'static str,
) -> StepRun {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return StepRun::broken(format!("cannot start {what}: {e}")),
    };
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (out_spool, err_spool) = (spool.clone(), spool.clone());
    let out = tokio::spawn(async move { out_spool.capture(step, "stdout", stdout).await });
    let err = tokio::spawn(async move { err_spool.capture(step, "stderr", stderr).await });
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
            }
            (child.wait().await.ok(), true)
        }
    };
    // A grandchild that kept the pipes open must not hold the report back for ever.
    for task in [out, err] {
        let _ = tokio::time::timeout(DRAIN_AFTER_KILL, task).await;
    }
    let exit_code = status.and_then(|s| s.code());
    let failure = if timed_out {
        Some(format!("{what} did not finish within {} s; its process group was killed", timeout.as_secs()))
    } else {
        match exit_code {
            Some(0) => None,
            Some(code) => Some(format!("{what} exited with code {code}")),
            None => Some(format!("{what} was killed by a signal")),
        }
    };
    StepRun { exit_code, failure }
}

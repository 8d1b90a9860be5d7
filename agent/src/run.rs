//! The agent's loop and its steps. Waiting happens in Berth (a held poll) or in a backoff
//! after an error, never in a spin.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_shared::release::{
    HealthNews, HealthNewsKind, Job, JobKind, JobRefusal, MAX_JOB_BYTES, Report, Step, check_handed_job,
};

use crate::health::{ProbeContext, ProbeLog};
use crate::identity::Identity;
use crate::spool::{INLINE_BYTES, Spool};
use crate::watch::Watch;

/// Longest backoff after errors reaching Berth.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// After a timeout kills a step's process group, how long its output may still drain.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(5);

/// One agent: where Berth is and who this host is.
pub struct Agent {
    url: String,
    identity: Identity,
    host: String,
    /// The EC2 instance id sent when registering, if known.
    instance_id: Option<String>,
    poll_seconds: u64,
    http: reqwest::Client,
    state_dir: PathBuf,
    /// When given, every job's image must be signed by one of these keys.
    trusted_keys: Option<Vec<berth_shared::signing::sigstore::VerifyingKey>>,
    /// Whether the join token is dropped once a host token is saved.
    drop_join_token: bool,
    /// The wake channel's settings (see [`crate::wake`]).
    wake: crate::wake::Settings,
}

/// How one step ended (its output is in the job's spool).
struct StepRun {
    exit_code: Option<i32>,
    /// Why it failed, when it did.
    failure: Option<String>,
}

/// A report not yet delivered, kept in the state directory with its spooled output, so that
/// neither a refused delivery nor a restart makes the host run the job again.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Pending {
    report: Report,
    spool: PathBuf,
}

/// Job ids remembered as run, newest last: a job handed out again is never run twice.
const REMEMBERED_JOBS: usize = 32;

impl Agent {
    /// An agent for the host `identity` names, keeping its outputs in `state_dir`.
    pub fn new(url: &str, identity: Identity, poll_seconds: u64, state_dir: &Path) -> Self {
        let http = reqwest::Client::builder()
            // A held poll lasts `poll_seconds`; give the answer time to arrive.
            .timeout(Duration::from_secs(poll_seconds + 30))
            .build()
            .expect("HTTP client");
        Self {
            url: url.trim_end_matches('/').to_owned(),
            host: identity.host.clone(),
            instance_id: None,
            identity,
            poll_seconds,
            http,
            state_dir: state_dir.to_path_buf(),
            trusted_keys: None,
            drop_join_token: false,
            wake: crate::wake::Settings::default(),
        }
    }

    /// Checks each job's image signature against these keys before running anything.
    pub fn with_trusted_keys(mut self, keys: Option<Vec<berth_shared::signing::sigstore::VerifyingKey>>) -> Self {
        self.trusted_keys = keys;
        self
    }

    /// Drops the join token once registered (`--drop-join-token`).
    pub fn dropping_join_token(mut self, drop: bool) -> Self {
        self.drop_join_token = drop;
        self
    }

    /// Registers with this EC2 instance id.
    pub fn with_instance_id(mut self, instance_id: Option<String>) -> Self {
        self.instance_id = instance_id;
        self
    }

    fn pending_file(&self) -> PathBuf {
        self.state_dir.join("pending-report.json")
    }

    fn ran_file(&self) -> PathBuf {
        self.state_dir.join("ran-jobs.json")
    }

    fn pending(&self) -> Option<Pending> {
        serde_json::from_slice(&std::fs::read(self.pending_file()).ok()?).ok()
    }

    /// Written whole then renamed, so a crash leaves the old file or the new one.
    fn write_state(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
        let staging = path.with_extension("tmp");
        std::fs::write(&staging, serde_json::to_vec(value)?)?;
        std::fs::rename(staging, path)
    }

    fn ran(&self) -> Vec<String> {
        std::fs::read(self.ran_file()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn remember_ran(&self, job_id: &str) {
        let mut ran = self.ran();
        if !ran.iter().any(|j| j == job_id) {
            ran.push(job_id.to_owned());
        }
        let keep = ran.len().saturating_sub(REMEMBERED_JOBS);
        if let Err(e) = Self::write_state(&self.ran_file(), &ran[keep..].to_vec()) {
            eprintln!("berth-agent: cannot record the job as run: {e}");
        }
    }

    /// The host token: the saved one, else a new one from registering with the join token.
    async fn host_token(&self, refused: Option<&str>) -> Result<String, String> {
        let token = self.registered_token(refused).await?;
        if self.drop_join_token {
            self.identity.drop_join_token().map_err(|e| format!("cannot remove the join token file: {e}"))?;
        }
        Ok(token)
    }

    async fn registered_token(&self, refused: Option<&str>) -> Result<String, String> {
        if let Some(saved) = self.identity.saved().filter(|saved| Some(saved.as_str()) != refused) {
            return Ok(saved);
        }
        let Some(join_token) = &self.identity.join_token() else {
            return Err(match refused {
                Some(_) => "Berth refused the saved host token and no join token is configured to register again \
                            (BERTH_JOIN_TOKEN or --join-token-file)"
                    .into(),
                None => "no saved host token and no join token (BERTH_JOIN_TOKEN or --join-token-file)".into(),
            });
        };
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.register(join_token).await {
                Ok(token) => {
                    self.identity.save(&token).map_err(|e| format!("cannot save the host token: {e}"))?;
                    eprintln!("berth-agent: host {} registered", self.host);
                    return Ok(token);
                }
                Err(Refusal::Fatal(message) | Refusal::Unauthenticated(message)) => return Err(message),
                Err(Refusal::Retry(message)) => {
                    eprintln!("berth-agent: registering: {message}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// With these wake channel settings (default: the channel at Berth's URL, polls every 30 s without it).
    pub fn with_wake(mut self, wake: crate::wake::Settings) -> Self {
        self.wake = wake;
        self
    }

    /// Serves jobs until killed. Returns only when Berth refuses this host for good.
    pub async fn run(&self) -> ExitCode {
        let mut token = match self.host_token(None).await {
            Ok(token) => token,
            Err(message) => {
                eprintln!("berth-agent: {message}");
                return ExitCode::from(2);
            }
        };
        let channel = self.wake.open(&self.url, &token);
        eprintln!("berth-agent: host {} waiting for work", self.host);
        let mut backoff = Duration::from_millis(500);
        // The release whose health check this host keeps probing, while it runs.
        let mut watch: Option<Watch> = None;
        loop {
            // A report from before (a refused delivery, a restart) goes first, and alone.
            if let Some(pending) = self.pending() {
                self.deliver(&token, &pending).await;
                continue;
            }
            let asked = std::time::Instant::now();
            // With the channel open a poll is short: Berth wakes this host when a job is due.
            let hold = !channel.as_ref().is_some_and(|c| c.connected());
            let polled = self.poll(&token, watch.as_ref().map(|w| w.release.as_str()), hold).await;
            if let Ok((_, Some(false))) = &polled {
                watch = None;
            }
            match polled.map(|(job, _)| job) {
                Ok(Some(job)) if self.ran().contains(&job.job_id) => {
                    // Berth still hands out a job this host ran and reported: never run it again.
                    eprintln!("berth-agent: job {} already ran here; waiting for Berth to move on", job.job_id);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Ok(Some(job)) => {
                    backoff = Duration::from_millis(500);
                    let checked = check_handed_job(&job, &self.host);
                    if let Err(refusal) = &checked
                        && matches!(refusal.field, "job_id" | "release")
                    {
                        // Not this host's job: nothing of it is run, stored or reported.
                        eprintln!("berth-agent: refused a job that is not this host's ({refusal}); nothing ran");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                    eprintln!("berth-agent: {job}");
                    // A new job replaces whatever this host ran before: stop watching that.
                    watch = None;
                    let outcome = match checked {
                        Ok(()) => self.execute(&job, &token).await,
                        // This host's job, but not one Berth would hand out: reported failed, not run.
                        Err(refusal) => self.refuse(&job, &refusal),
                    };
                    let pending = match outcome {
                        Ok(pending) => pending,
                        Err(e) => {
                            eprintln!("berth-agent: cannot keep the job's output in {}: {e}", self.state_dir.display());
                            return ExitCode::from(2);
                        }
                    };
                    eprintln!(
                        "berth-agent: release {}: {:?} ok={} step={:?}",
                        job.release, job.kind, pending.report.ok, pending.report.step
                    );
                    self.deliver(&token, &pending).await;
                    if let Some(check) = job.health.clone().filter(|_| pending.report.ok && job.kind == JobKind::Run) {
                        watch = Some(self.watch(&job, check, &token));
                    }
                }
                Ok(None) => {
                    backoff = Duration::from_millis(500);
                    crate::wake::wait_for_work(channel.as_ref(), asked, self.wake.poll_interval).await;
                }
                Err(Refusal::Unauthenticated(message)) => {
                    // Removed, or re-registered by someone else: register again if we can.
                    eprintln!("berth-agent: host token refused: {message}");
                    token = match self.host_token(Some(&token)).await {
                        Ok(token) => token,
                        Err(message) => {
                            eprintln!("berth-agent: {message}");
                            return ExitCode::from(2);
                        }
                    };
                    if let Some(channel) = &channel {
                        channel.set_token(&token);
                    }
                }
                Err(Refusal::Fatal(message)) => {
                    eprintln!("berth-agent: {message}");
                    return ExitCode::from(2);
                }
                Err(Refusal::Retry(message)) => {
                    eprintln!("berth-agent: polling: {message}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn register(&self, join_token: &str) -> Result<String, Refusal> {
        #[derive(serde::Deserialize)]
        struct Registered {
            host_token: String,
        }
        #[derive(serde::Serialize)]
        struct Registration<'a> {
            host: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            instance_id: Option<&'a str>,
        }
        let response = self
            .http
            .post(format!("{}/v1/agent/register", self.url))
            .bearer_auth(join_token)
            .json(&Registration { host: &self.host, instance_id: self.instance_id.as_deref() })
            .send()
            .await
            .map_err(|e| Refusal::Retry(format!("cannot reach Berth at {}: {e}", self.url)))?;
        let registered = check(response).await.map_err(|refusal| match refusal {
            Refusal::Unauthenticated(message) => Refusal::Fatal(format!("join token refused: {message}")),
            other => other,
        })?;
        let registered: Registered =
            registered.json().await.map_err(|e| Refusal::Retry(format!("unreadable registration: {e}")))?;
        Ok(registered.host_token)
    }

    /// Asks for a job; with `watching`, also whether that release still runs (`Some(false)`:
    /// stop watching it).
    async fn poll(
        &self,
        token: &str,
        watching: Option<&str>,
        hold: bool,
    ) -> Result<(Option<Job>, Option<bool>), Refusal> {
        let wait = if hold { self.poll_seconds } else { 0 };
        let mut query = vec![("wait_seconds", wait.to_string())];
        if let Some(release) = watching {
            query.push(("watch", release.to_owned()));
        }
        let response = self
            .http
            .get(format!("{}/v1/agent/jobs", self.url))
            .bearer_auth(token)
            .query(&query)
            .send()
            .await
            .map_err(|e| Refusal::Retry(format!("cannot reach Berth at {}: {e}", self.url)))?;
        let response = check(response).await?;
        // A Berth that does not say is one that does not watch: stop.
        let running = watching.map(|_| response.headers().get("berth-watch").is_some_and(|v| v == "running"));
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok((None, running));
        }
        let body = read_limited(response, MAX_JOB_BYTES).await.map_err(Refusal::Retry)?;
        let job = serde_json::from_slice::<Job>(&body).map_err(|e| Refusal::Retry(format!("unreadable job: {e}")))?;
        Ok((Some(job), running))
    }

    async fn send_health_news(&self, token: &str, news: &HealthNews) -> Result<(), String> {
        crate::watch::send_health_news(&self.http, &self.url, token, news).await
    }

    /// Starts watching `job`'s host (see [`crate::watch`]).
    fn watch(&self, job: &Job, check: berth_shared::release::HealthCheck, token: &str) -> Watch {
        Watch::start(&self.http, &self.url, &self.host, job, check, token)
    }

    /// Sends a report until Berth takes it (or refuses it for good).
    /// Delivers a report (its log parts first), retrying with backoff for as long as Berth
    /// cannot take it; the job is recorded as run before anything is sent, so it never runs
    /// again whatever happens to the delivery.
    async fn deliver(&self, token: &str, pending: &Pending) {
        let report = &pending.report;
        let spool = Spool::open(pending.spool.clone());
        let refs = match report.log_parts {
            Some(_) => match spool.part_refs() {
                Ok(refs) => refs,
                Err(e) => {
                    eprintln!("berth-agent: the job's spooled output is unreadable ({e}); reporting without it");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let mut report = report.clone();
        if report.log_parts.is_some() {
            report.log_parts = Some(refs.len());
        }
        let mut delivered = true;
        for (index, part) in refs.iter().enumerate() {
            let Ok(part) = spool.read_part(part) else { break };
            let query = [
                ("release", report.release.clone()),
                ("job_id", report.job_id.clone()),
                ("part", index.to_string()),
                ("step", part.step),
                ("stream", part.stream),
            ];
            let body = part.text;
            match self
                .with_retries("uploading output", || async {
                    self.http
                        .post(format!("{}/v1/agent/logs", self.url))
                        .bearer_auth(token)
                        .query(&query)
                        .header("content-type", "text/plain; charset=utf-8")
                        .body(body.clone())
                        .send()
                        .await
                })
                .await
            {
                Ok(()) => {}
                Err(message) => {
                    // Settled meanwhile, or refused: the report says what Berth keeps.
                    eprintln!("berth-agent: output part {index} refused: {message}");
                    break;
                }
            }
        }
        if let Err(message) = self
            .with_retries("reporting", || async {
                self.http.post(format!("{}/v1/agent/reports", self.url)).bearer_auth(token).json(&report).send().await
            })
            .await
        {
            eprintln!("berth-agent: report refused: {message}");
            delivered = false;
        }
        if !delivered {
            eprintln!("berth-agent: the job is not run again; its outcome stays on this host's log above");
        }
        spool.remove();
        let _ = std::fs::remove_file(self.pending_file());
    }

    /// Sends until Berth answers: `Ok` when it took the request, `Err` when it refused it for
    /// good (4xx other than 408/429). Unreachable or 5xx: backoff, up to 10 s, for ever.
    async fn with_retries<F, Fut>(&self, what: &str, send: F) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    {
        let mut backoff = Duration::from_millis(500);
        loop {
            match send().await {
                Ok(response) => match check(response).await {
                    Ok(_) => return Ok(()),
                    Err(Refusal::Fatal(message) | Refusal::Unauthenticated(message)) => return Err(message),
                    Err(Refusal::Retry(message)) => {
                        eprintln!("berth-agent: {what}: {message}; retrying in {backoff:?}")
                    }
                },
                Err(e) => eprintln!("berth-agent: {what}: cannot reach Berth: {e}; retrying in {backoff:?}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

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
    fn refuse(&self, job: &Job, refusal: &JobRefusal) -> std::io::Result<Pending> {
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
                Err(reason) => return (false, Step::Pull, StepRun::broken(reason)),
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
            Ok(Err(message)) => eprintln!("berth-agent: telling Berth the host is verifying: {message}"),
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
        let failure = verified.err();
        (failure.is_none(), Step::Health, StepRun { exit_code: None, failure })
    }

    async fn pull(&self, job: &Job, spool: &Spool) -> StepRun {
        // A docker config of its own for this job only: the key never lands in the host's.
        let config = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => return StepRun::broken(format!("cannot make a temporary docker config: {e}")),
        };
        let auth = STANDARD.encode(format!("{}:{}", job.username, job.password));
        let body = serde_json::json!({ "auths": { &job.registry: { "auth": auth } } });
        if let Err(e) = std::fs::write(config.path().join("config.json"), body.to_string()) {
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
    fn broken(reason: String) -> Self {
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

/// A body read whole, refused past `limit` bytes (by its `Content-Length` before reading, and
/// while reading when it has none or lies).
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("a job larger than {limit} bytes was refused");
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the job: {e}"))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) enum Refusal {
    /// Worth trying again (network, 5xx).
    Retry(String),
    /// The token was refused (401).
    Unauthenticated(String),
    /// Berth said no for good (bad token, bad host id).
    Fatal(String),
}

pub(crate) async fn check(response: reqwest::Response) -> Result<reqwest::Response, Refusal> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = format!(
        "{} ({}): {}",
        body["code"].as_str().unwrap_or("error"),
        status.as_u16(),
        body["detail"].as_str().unwrap_or("no detail")
    );
    // 404 on a report means the release is gone; 408/429 are worth retrying.
    if status == reqwest::StatusCode::UNAUTHORIZED {
        Err(Refusal::Unauthenticated(message))
    } else if status.is_client_error()
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Err(Refusal::Fatal(message))
    } else {
        Err(Refusal::Retry(message))
    }
}

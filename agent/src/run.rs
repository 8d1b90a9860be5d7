//! The agent's loop. Waiting happens in Berth (a held poll) or in a backoff after an error,
//! never in a spin. Its requests to Berth are in [`berth`], the steps of a job in [`steps`],
//! what it keeps on disk in [`state`].

mod berth;
mod state;
mod steps;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use berth_api::agent::{Job, JobKind};
use berth_api::health::HealthCheck;
use berth_shared::release::check_handed_job;

pub(crate) use self::berth::{BerthError, check};
pub(crate) use self::steps::clean_environment;
use crate::identity::Identity;
use crate::watch::Watch;

/// Longest backoff after errors reaching Berth.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why the agent has no host token to work with (it stops: exit code 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error(
        "Berth refused the saved host token and no join token is configured to register again \
         (BERTH_JOIN_TOKEN or --join-token-file)"
    )]
    RefusedWithoutJoinToken,
    #[error("no saved host token and no join token (BERTH_JOIN_TOKEN or --join-token-file)")]
    NoToken,
    /// Berth refused the join token (401).
    #[error("join token refused: {0}")]
    JoinTokenRefused(#[source] BerthError),
    /// Berth refused the registration for good (a bad host id, a removed group).
    #[error(transparent)]
    Registration(BerthError),
    #[error("cannot save the host token: {0}")]
    Save(#[source] std::io::Error),
    #[error("cannot remove the join token file: {0}")]
    DropJoinToken(#[source] std::io::Error),
}

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

    /// The host token: the saved one, else a new one from registering with the join token.
    async fn host_token(&self, refused: Option<&str>) -> Result<String, TokenError> {
        let token = self.registered_token(refused).await?;
        if self.drop_join_token {
            self.identity.drop_join_token().map_err(TokenError::DropJoinToken)?;
        }
        Ok(token)
    }

    async fn registered_token(&self, refused: Option<&str>) -> Result<String, TokenError> {
        if let Some(saved) = self.identity.saved().filter(|saved| Some(saved.as_str()) != refused) {
            return Ok(saved);
        }
        let Some(join_token) = &self.identity.join_token() else {
            return Err(match refused {
                Some(_) => TokenError::RefusedWithoutJoinToken,
                None => TokenError::NoToken,
            });
        };
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.register(join_token).await {
                Ok(token) => {
                    self.identity.save(&token).map_err(TokenError::Save)?;
                    eprintln!("berth-agent: host {} registered", self.host);
                    return Ok(token);
                }
                Err(error) if error.is_unauthenticated() => return Err(TokenError::JoinTokenRefused(error)),
                Err(error) if error.is_retryable() => {
                    eprintln!("berth-agent: registering: {error}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => return Err(TokenError::Registration(error)),
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
            Err(error) => {
                eprintln!("berth-agent: {error}");
                return ExitCode::from(2);
            }
        };
        let channel = self.wake.open(&self.url, &token);
        eprintln!("berth-agent: host {} waiting for work", self.host);
        let mut backoff = Duration::from_millis(500);
        // The release whose health check this host keeps probing, while it runs.
        let mut watch: Option<Watch> = None;
        // The job of the last report Berth took, named in the polls that follow.
        let mut reported: Option<String> = None;
        loop {
            // A report from before (a refused delivery, a restart) goes first, and alone.
            if let Some(pending) = self.pending() {
                if self.deliver(&token, &pending).await {
                    reported = Some(pending.report.job_id.clone());
                }
                continue;
            }
            let asked = std::time::Instant::now();
            // With the channel open a poll is short: Berth wakes this host when a job is due.
            let hold = !channel.as_ref().is_some_and(|c| c.connected());
            let polled = self.poll(&token, watch.as_ref().map(|w| w.release.as_str()), hold, reported.as_deref()).await;
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
                    if self.deliver(&token, &pending).await {
                        reported = Some(job.job_id.clone());
                    }
                    if let Some(check) = job.health.clone().filter(|_| pending.report.ok && job.kind == JobKind::Run) {
                        watch = Some(self.watch(&job, check, &token));
                    }
                }
                Ok(None) => {
                    backoff = Duration::from_millis(500);
                    crate::wake::wait_for_work(channel.as_ref(), asked, self.wake.poll_interval).await;
                }
                Err(error) if error.is_unauthenticated() => {
                    // Removed, or re-registered by someone else: register again if we can.
                    eprintln!("berth-agent: host token refused: {error}");
                    token = match self.host_token(Some(&token)).await {
                        Ok(token) => token,
                        Err(error) => {
                            eprintln!("berth-agent: {error}");
                            return ExitCode::from(2);
                        }
                    };
                    if let Some(channel) = &channel {
                        channel.set_token(&token);
                    }
                }
                Err(error) if error.is_retryable() => {
                    eprintln!("berth-agent: polling: {error}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => {
                    eprintln!("berth-agent: {error}");
                    return ExitCode::from(2);
                }
            }
        }
    }

    /// Starts watching `job`'s host (see [`crate::watch`]).
    fn watch(&self, job: &Job, check: HealthCheck, token: &str) -> Watch {
        Watch::start(&self.http, &self.url, &self.host, job, check, token)
    }
}

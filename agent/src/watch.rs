//! Watching a host after its run succeeded: until the release ends (the agent's poll says
//! so) or a new job comes, the host's health check runs every `interval_seconds`, and the
//! first failed probe is told to Berth as `unhealthy` (a failure of the host in the release).

use std::time::Duration;

use berth_api::agent::{HealthNews, HealthNewsKind, Job};
use berth_api::health::HealthCheck;
use berth_shared::release::{ProbeOutcome, outcome_text};

use crate::health::{ProbeContext, probe, probe_client};
use crate::run::BerthError;

/// Tells Berth what the health check found; `Err` with why Berth refused it (or could not
/// be reached).
pub async fn send_health_news(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    news: &HealthNews,
) -> Result<(), BerthError> {
    let response = http
        .post(format!("{url}/v1/agent/health"))
        .bearer_auth(token)
        .json(news)
        .send()
        .await
        .map_err(|source| BerthError::Unreachable { url: url.to_owned(), source })?;
    crate::run::check(response).await.map(drop)
}

/// A release whose health check this host keeps probing; dropped, the probing stops.
pub struct Watch {
    /// The release watched.
    pub release: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// Keeps probing the health check of `job`'s release every `interval_seconds` after its
    /// run succeeded; the first failed probe is reported (a failure of this host in the
    /// release), and the watch ends. Dropping the watch stops it.
    pub fn start(http: &reqwest::Client, url: &str, host: &str, job: &Job, check: HealthCheck, token: &str) -> Self {
        let (http, url, host) = (http.clone(), url.to_owned(), host.to_owned());
        let (job, token, release) = (job.clone(), token.to_owned(), job.release.clone());
        let task = tokio::spawn(async move {
            let client = probe_client();
            let context = ProbeContext {
                http: &client,
                host: &host,
                release: &job.release,
                job_id: &job.job_id,
                image: &job.image,
                working_directory: &job.working_directory,
            };
            let interval = Duration::from_secs(check.interval_seconds);
            let record = loop {
                tokio::time::sleep(interval).await;
                let record = probe(&check, &context).await;
                if matches!(record.outcome, ProbeOutcome::Fail(_) | ProbeOutcome::Fatal(_)) {
                    break record;
                }
            };
            let reason = format!("{} | {}", outcome_text(&record.outcome), record.detail);
            eprintln!("berth-agent: release {}: watched host turned unhealthy: {reason}", job.release);
            let news = HealthNews {
                release: job.release.clone(),
                job_id: job.job_id.clone(),
                news: HealthNewsKind::Unhealthy,
                reason: Some(reason),
            };
            let mut backoff = Duration::from_millis(500);
            for _ in 0..8 {
                match send_health_news(&http, &url, &token, &news).await {
                    Ok(()) => return,
                    // Refused for good (the release moved on, the host token is refused): no retry.
                    Err(error) if !error.is_retryable() => {
                        eprintln!("berth-agent: unhealthy host not recorded: {error}");
                        return;
                    }
                    Err(error) => eprintln!("berth-agent: reporting the unhealthy host: {error}; retrying"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(crate::run::MAX_BACKOFF);
            }
        });
        Watch { release, task }
    }
}

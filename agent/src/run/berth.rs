//! The agent's requests to Berth: registering, polling, delivering reports.

use std::time::Duration;

use berth_api::agent::{HealthNews, Job, Registered, Registration};
use berth_api::problem::Problem;
use berth_shared::release::MAX_JOB_BYTES;

use super::state::Pending;
use super::{Agent, MAX_BACKOFF};
use crate::spool::Spool;

impl Agent {
    pub(super) async fn register(&self, join_token: &str) -> Result<String, Refusal> {
        let response = self
            .http
            .post(format!("{}/v1/agent/register", self.url))
            .bearer_auth(join_token)
            .json(&Registration { host: self.host.clone(), instance_id: self.instance_id.clone() })
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
    /// stop watching it). With `hold`, Berth may hold the poll until there is one.
    pub(super) async fn poll(
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

    pub(super) async fn send_health_news(&self, token: &str, news: &HealthNews) -> Result<(), String> {
        crate::watch::send_health_news(&self.http, &self.url, token, news).await
    }

    /// Sends a report until Berth takes it (or refuses it for good).
    /// Delivers a report (its log parts first), retrying with backoff for as long as Berth
    /// cannot take it; the job is recorded as run before anything is sent, so it never runs
    /// again whatever happens to the delivery.
    pub(super) async fn deliver(&self, token: &str, pending: &Pending) {
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
    let body: Problem = response.json().await.unwrap_or_default();
    let message = format!(
        "{} ({}): {}",
        body.code.as_deref().unwrap_or("error"),
        status.as_u16(),
        body.detail.as_deref().unwrap_or("no detail")
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

//! The agent's requests to Berth: registering, polling, delivering reports.

use std::time::Duration;

use berth_api::agent::{HealthNews, Job, Registered, Registration};
use berth_api::problem::Problem;
use berth_shared::release::MAX_JOB_BYTES;

use super::state::Pending;
use super::{Agent, MAX_BACKOFF};
use crate::spool::Spool;

impl Agent {
    pub(super) async fn register(&self, join_token: &str) -> Result<String, BerthError> {
        let response = self
            .http
            .post(format!("{}/v1/agent/register", self.url))
            .bearer_auth(join_token)
            .json(&Registration { host: self.host.clone(), instance_id: self.instance_id.clone() })
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        let body = check(response)
            .await?
            .bytes()
            .await
            .map_err(|source| BerthError::Interrupted { what: "the registration", source })?;
        let registered: Registered =
            serde_json::from_slice(&body).map_err(|source| BerthError::Unreadable { what: "registration", source })?;
        Ok(registered.host_token)
    }

    fn unreachable(&self, source: reqwest::Error) -> BerthError {
        BerthError::Unreachable { url: self.url.clone(), source }
    }

    /// Asks for a job; with `watching`, also whether that release still runs (`Some(false)`:
    /// stop watching it). With `hold`, Berth may hold the poll until there is one. `reported`
    /// names the job of the last report Berth took, which spares it a read when the report
    /// went to another of its processes.
    pub(super) async fn poll(
        &self,
        token: &str,
        watching: Option<&str>,
        hold: bool,
        reported: Option<&str>,
    ) -> Result<(Option<Job>, Option<bool>), BerthError> {
        let wait = if hold { self.poll_seconds } else { 0 };
        let mut query = vec![("wait_seconds", wait.to_string())];
        if let Some(release) = watching {
            query.push(("watch", release.to_owned()));
        }
        if let Some(job) = reported {
            query.push(("reported", job.to_owned()));
        }
        let response = self
            .http
            .get(format!("{}/v1/agent/jobs", self.url))
            .bearer_auth(token)
            .query(&query)
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        let response = check(response).await?;
        // A Berth that does not say is one that does not watch: stop.
        let running = watching.map(|_| response.headers().get("berth-watch").is_some_and(|v| v == "running"));
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok((None, running));
        }
        let body = read_limited(response, MAX_JOB_BYTES).await?;
        let job =
            serde_json::from_slice::<Job>(&body).map_err(|source| BerthError::Unreadable { what: "job", source })?;
        Ok((Some(job), running))
    }

    pub(super) async fn send_health_news(&self, token: &str, news: &HealthNews) -> Result<(), BerthError> {
        crate::watch::send_health_news(&self.http, &self.url, token, news).await
    }

    /// Sends a report until Berth takes it (or refuses it for good).
    /// Delivers a report (its log parts first), retrying with backoff for as long as Berth
    /// cannot take it; the job is recorded as run before anything is sent, so it never runs
    /// again whatever happens to the delivery. True when Berth took the report.
    pub(super) async fn deliver(&self, token: &str, pending: &Pending) -> bool {
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
                Err(error) => {
                    // Settled meanwhile, or refused: the report says what Berth keeps.
                    eprintln!("berth-agent: output part {index} refused: {error}");
                    break;
                }
            }
        }
        if let Err(error) = self
            .with_retries("reporting", || async {
                self.http.post(format!("{}/v1/agent/reports", self.url)).bearer_auth(token).json(&report).send().await
            })
            .await
        {
            eprintln!("berth-agent: report refused: {error}");
            delivered = false;
        }
        if !delivered {
            eprintln!("berth-agent: the job is not run again; its outcome stays on this host's log above");
        }
        spool.remove();
        let _ = std::fs::remove_file(self.pending_file());
        delivered
    }

    /// Sends until Berth answers: `Ok` when it took the request, `Err` when it refused it for
    /// good (4xx other than 408/429). Unreachable or 5xx: backoff, up to 10 s, for ever.
    async fn with_retries<F, Fut>(&self, what: &str, send: F) -> Result<(), BerthError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    {
        let mut backoff = Duration::from_millis(500);
        loop {
            let error = match send().await {
                Ok(response) => match check(response).await {
                    Ok(_) => return Ok(()),
                    Err(error) => error,
                },
                Err(source) => self.unreachable(source),
            };
            if !error.is_retryable() {
                return Err(error);
            }
            eprintln!("berth-agent: {what}: {error}; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A body read whole, refused past `limit` bytes (by its `Content-Length` before reading, and
/// while reading when it has none or lies).
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BerthError> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(BerthError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|source| BerthError::Interrupted { what: "the job", source })?
    {
        if body.len() + chunk.len() > limit {
            return Err(BerthError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a request to Berth did not get what it asked for: no answer, a refusal with Berth's
/// problem, or an answer the agent will not take. Callers retry or give up by its kind.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BerthError {
    /// Berth could not be reached, or did not answer in time.
    #[error("cannot reach Berth at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Berth answered with a problem.
    #[error(
        "{} ({}): {}",
        problem.code.as_deref().unwrap_or("error"),
        status.as_u16(),
        problem.detail.as_deref().unwrap_or("no detail")
    )]
    Refused { status: reqwest::StatusCode, problem: Box<Problem> },
    /// The answer was cut off.
    #[error("reading {what}: {source}")]
    Interrupted {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// A job larger than the agent takes.
    #[error("a job larger than {limit} bytes was refused")]
    TooLarge { limit: usize },
    /// The answer is not what was asked for.
    #[error("unreadable {what}: {source}")]
    Unreadable {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl BerthError {
    /// Whether asking again may succeed: no answer or a bad one, a 5xx, 408 or 429. Any other
    /// 4xx is Berth saying no for good (404 on a report: the release is gone).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Refused { status, .. } => {
                !status.is_client_error()
                    || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || *status == reqwest::StatusCode::REQUEST_TIMEOUT
            }
            Self::Unreachable { .. } | Self::Interrupted { .. } | Self::TooLarge { .. } | Self::Unreadable { .. } => {
                true
            }
        }
    }

    /// Whether Berth refused the token (401).
    pub(crate) fn is_unauthenticated(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if *status == reqwest::StatusCode::UNAUTHORIZED)
    }
}

/// The response, when it is a success; else Berth's refusal, with its problem.
pub(crate) async fn check(response: reqwest::Response) -> Result<reqwest::Response, BerthError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let problem: Problem = response.json().await.unwrap_or_default();
    Err(BerthError::Refused { status, problem: Box::new(problem) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_retried_only_when_berth_may_take_it_later() {
        let refused = |status: u16| BerthError::Refused {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            problem: Box::new(Problem { code: Some("nope".into()), detail: Some("why".into()), ..Problem::default() }),
        };
        for status in [500, 502, 503, 408, 429] {
            assert!(refused(status).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 409] {
            assert!(!refused(status).is_retryable(), "{status}");
        }
        assert!(refused(401).is_unauthenticated() && !refused(403).is_unauthenticated());
        assert_eq!(refused(409).to_string(), "nope (409): why");
        assert!(BerthError::TooLarge { limit: 1 }.is_retryable(), "a job too large may be cut next time");
    }
}

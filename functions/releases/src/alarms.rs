//! The seam to the alarm sources a release is gated on: CloudWatch alarms by name
//! (`DescribeAlarms`) and Prometheus expressions (an instant query; any answer is an alert).
//! [`PerKind`] sends each alarm to its source; a source this process has no settings for is
//! refused when the release is created.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_shared::platform::config::Config;
use berth_shared::release::Alarm;

use serde::Deserialize;

mod cloudwatch;
pub use cloudwatch::CloudWatch;

/// Why the alarms could not be read. Displays as one line, shown on the release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmError {
    /// The release names an alarm of a kind this process has no source for.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The source did not answer, or answered something else than an alarm state.
    #[error("{0}")]
    Unreachable(String),
}

/// Reads alarms. Calls are read-only and may be repeated at will.
#[async_trait]
pub trait AlarmSource: Send + Sync {
    /// The first of `alarms` that fires now, by its [`Alarm::name`]; `None` when none does.
    async fn firing(&self, alarms: &[Alarm]) -> Result<Option<String>, AlarmError>;
    /// Whether this process can read alarms of `alarm`'s kind.
    fn reaches(&self, alarm: &Alarm) -> Result<(), AlarmError>;
}

/// Longest reason kept from a source's error.
const MAX_REASON_CHARS: usize = 400;
/// Longest one read may take, retries included: an advance waits for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest Prometheus answer read (an alert's series are few; a huge answer is refused).
const MAX_PROMETHEUS_ANSWER_BYTES: usize = 1 << 20;

fn reason(text: impl std::fmt::Display) -> String {
    text.to_string().chars().take(MAX_REASON_CHARS).collect()
}

/// Each alarm to the source of its kind.
pub struct PerKind {
    cloudwatch: Option<Arc<dyn AlarmSource>>,
    prometheus: Option<Arc<dyn AlarmSource>>,
}

impl PerKind {
    /// With the sources this process has (`None`: alarms of that kind are refused).
    pub fn new(cloudwatch: Option<Arc<dyn AlarmSource>>, prometheus: Option<Arc<dyn AlarmSource>>) -> Self {
        Self { cloudwatch, prometheus }
    }

    fn pick(&self, alarm: &Alarm) -> Result<&dyn AlarmSource, AlarmError> {
        match alarm {
            Alarm::CloudWatch(_) => self
                .cloudwatch
                .as_deref()
                .ok_or(AlarmError::NotConfigured("CloudWatch alarms need BERTH_ALARMS=aws here")),
            Alarm::Prometheus { .. } => self
                .prometheus
                .as_deref()
                .ok_or(AlarmError::NotConfigured("Prometheus alarms need BERTH_PROMETHEUS_URL here")),
        }
    }
}

#[async_trait]
impl AlarmSource for PerKind {
    async fn firing(&self, alarms: &[Alarm]) -> Result<Option<String>, AlarmError> {
        let (cloudwatch, prometheus): (Vec<Alarm>, Vec<Alarm>) =
            alarms.iter().cloned().partition(|a| matches!(a, Alarm::CloudWatch(_)));
        for group in [cloudwatch, prometheus] {
            let Some(first) = group.first() else { continue };
            if let Some(name) = self.pick(first)?.firing(&group).await? {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    fn reaches(&self, alarm: &Alarm) -> Result<(), AlarmError> {
        self.pick(alarm).map(|_| ())
    }
}

/// The sources the configuration asks for: CloudWatch with `BERTH_ALARMS=aws`, Prometheus
/// with `BERTH_PROMETHEUS_URL`.
pub fn for_config(config: &Config) -> Arc<dyn AlarmSource> {
    let cloudwatch: Option<Arc<dyn AlarmSource>> =
        config.cloudwatch_alarms.then(|| Arc::new(CloudWatch::new(&config.s3.region)) as Arc<dyn AlarmSource>);
    let prometheus: Option<Arc<dyn AlarmSource>> =
        config.prometheus_url.as_deref().map(|url| Arc::new(Prometheus::new(url)) as Arc<dyn AlarmSource>);
    Arc::new(PerKind::new(cloudwatch, prometheus))
}

/// Prometheus: `GET /api/v1/query?query=EXPR`; a vector or matrix with any series fires.
pub struct Prometheus {
    url: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct QueryAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<QueryData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    #[serde(default)]
    result: serde_json::Value,
}

impl Prometheus {
    /// For the Prometheus at `url` (`BERTH_PROMETHEUS_URL`, without a trailing `/`).
    pub fn new(url: &str) -> Self {
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().expect("a plain reqwest client builds");
        Self { url: url.trim_end_matches('/').to_owned(), http }
    }

    async fn fires(&self, expression: &str) -> Result<bool, AlarmError> {
        let unreachable = |why: String| AlarmError::Unreachable(reason(format_args!("Prometheus: {why}")));
        let mut response = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expression)])
            .send()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        let status = response.status();
        // Read bounded: the source is not trusted to answer small.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(e.without_url().to_string()))? {
            if body.len() + chunk.len() > MAX_PROMETHEUS_ANSWER_BYTES {
                return Err(unreachable(format!("answer larger than {MAX_PROMETHEUS_ANSWER_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: QueryAnswer =
            serde_json::from_slice(&body).map_err(|_| unreachable(format!("HTTP {status} without a query answer")))?;
        if answer.status != "success" {
            return Err(unreachable(format!(
                "'{expression}': {}",
                answer.error.unwrap_or_else(|| format!("status {}", answer.status))
            )));
        }
        let data = answer.data.ok_or_else(|| unreachable("an answer without data".into()))?;
        match data.result_type.as_str() {
            "vector" | "matrix" => Ok(data.result.as_array().is_some_and(|r| !r.is_empty())),
            other => Err(unreachable(format!("'{expression}' is a {other}, not an alert expression (a vector)"))),
        }
    }
}

#[async_trait]
impl AlarmSource for Prometheus {
    async fn firing(&self, alarms: &[Alarm]) -> Result<Option<String>, AlarmError> {
        for alarm in alarms {
            if let Alarm::Prometheus { prometheus } = alarm
                && self.fires(prometheus).await?
            {
                return Ok(Some(prometheus.clone()));
            }
        }
        Ok(None)
    }

    fn reaches(&self, alarm: &Alarm) -> Result<(), AlarmError> {
        match alarm {
            Alarm::Prometheus { .. } => Ok(()),
            Alarm::CloudWatch(_) => Err(AlarmError::NotConfigured("not a Prometheus expression")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn alarms_of_a_kind_without_a_source_are_refused_and_none_reads_nothing() {
        let none = PerKind::new(None, None);
        assert_eq!(none.firing(&[]).await, Ok(None));
        let cloudwatch = Alarm::CloudWatch("high-5xx".into());
        assert!(matches!(none.reaches(&cloudwatch), Err(AlarmError::NotConfigured(_))));
        assert!(matches!(none.firing(&[cloudwatch]).await, Err(AlarmError::NotConfigured(_))));
        // Nothing listens on port 9 here: unreachable, with the reason, never a pass.
        let closed = PerKind::new(None, Some(Arc::new(Prometheus::new("http://127.0.0.1:9"))));
        let expression = Alarm::Prometheus { prometheus: "up == 0".into() };
        assert_eq!(closed.reaches(&expression), Ok(()));
        assert!(
            matches!(closed.firing(&[expression]).await, Err(AlarmError::Unreachable(why)) if why.starts_with("Prometheus: "))
        );
    }
}

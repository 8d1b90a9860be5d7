//! Debian's `prometheus`, scraping a target every second, and its HTTP API's instant queries.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, free_port, wait_for_port};

/// A running prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: ChildGuard,
}

impl Prometheus {
    /// Starts prometheus in `dir`, scraping `127.0.0.1:{target}` (its `/metrics`) every second.
    pub fn start(dir: &Path, target: u16) -> Self {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: berth\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is missing: run `make deps`");
        wait_for_port(port, Duration::from_secs(30), "prometheus");
        Self { url: format!("http://127.0.0.1:{port}"), _child: ChildGuard(child) }
    }

    /// The instant vector `expression` evaluates to now: each series' labels and value.
    pub async fn query(&self, expression: &str) -> Vec<(serde_json::Value, f64)> {
        let answer: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expression)])
            .send()
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("prometheus answers JSON");
        assert_eq!(answer["status"], "success", "{answer}");
        let result = answer["data"]["result"].as_array().cloned().unwrap_or_default();
        result
            .into_iter()
            .map(|series| {
                let value = series["value"][1].as_str().and_then(|v| v.parse().ok()).expect("a sample value");
                (series["metric"].clone(), value)
            })
            .collect()
    }
}

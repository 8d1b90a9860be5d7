//! Under Lambda: the same series as CloudWatch Embedded Metric Format, one line on stdout at
//! the end of an invocation with what it recorded (nothing when it recorded nothing).
//!
//! CloudWatch takes a line's dimensions from its top-level fields, one value each, while one
//! invocation records several values of a label (store requests of three kinds): so the only
//! dimension is `function`, and a series' labels are part of its metric's name, in
//! Prometheus' spelling (`berth_store_requests_total{kind=get}`).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde::Serialize;

/// The CloudWatch namespace of Berth's metrics.
pub const NAMESPACE: &str = "Berth";
/// Most metrics in one line (CloudWatch's limit per directive); the rest wait for the next.
pub const MAX_METRICS: usize = 100;
/// Most values of one histogram in one line (CloudWatch's limit); the rest are dropped.
pub const MAX_VALUES: usize = 100;

/// Keeps what an invocation records until [`EmfRecorder::line`] takes it.
#[derive(Default)]
pub struct EmfRecorder {
    series: Mutex<HashMap<Key, Series>>,
}

#[derive(Clone)]
enum Series {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicU64>),
    Histogram(Arc<Samples>),
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        let mut values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if values.len() < MAX_VALUES {
            values.push(value);
        }
    }
}

impl EmfRecorder {
    fn entry(&self, key: &Key, make: impl FnOnce() -> Series) -> Series {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        series.entry(key.clone()).or_insert_with(make).clone()
    }

    /// The EMF line of what was recorded since the last call (counters' increments, gauges'
    /// values, histograms' samples), or `None` if nothing was.
    pub fn line(&self, function: &str, timestamp_ms: u64) -> Option<String> {
        let mut values: Vec<(String, &'static str, Value)> = Vec::new();
        for (key, series) in self.series.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let value = match series {
                Series::Counter(count) => match count.swap(0, Ordering::Relaxed) {
                    0 => continue,
                    n => Value::One(n as f64),
                },
                Series::Gauge(bits) => Value::One(f64::from_bits(bits.load(Ordering::Relaxed))),
                Series::Histogram(samples) => {
                    let taken = std::mem::take(&mut *samples.0.lock().unwrap_or_else(PoisonError::into_inner));
                    if taken.is_empty() {
                        continue;
                    }
                    Value::Many(taken)
                }
            };
            let unit = if key.name().ends_with("_seconds") { "Seconds" } else { "Count" };
            values.push((metric_name(key), unit, value));
        }
        if values.is_empty() {
            return None;
        }
        values.sort_by(|a, b| a.0.cmp(&b.0));
        values.truncate(MAX_METRICS);
        let line = Line {
            aws: Aws {
                timestamp: timestamp_ms,
                cloudwatch_metrics: [Directive {
                    namespace: NAMESPACE,
                    dimensions: [["function"]],
                    metrics: values.iter().map(|(name, unit, _)| Definition { name: name.clone(), unit }).collect(),
                }],
            },
            function,
            values: values.into_iter().map(|(name, _, value)| (name, value)).collect(),
        };
        serde_json::to_string(&line).ok()
    }
}

/// `name` alone, or `name{label=value,...}`.
fn metric_name(key: &Key) -> String {
    let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    match labels.is_empty() {
        true => key.name().to_owned(),
        false => format!("{}{{{}}}", key.name(), labels.join(",")),
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.entry(key, || Series::Counter(Arc::default())) {
            Series::Counter(count) => Counter::from_arc(count),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.entry(key, || Series::Gauge(Arc::new(AtomicU64::new(0f64.to_bits())))) {
            Series::Gauge(bits) => Gauge::from_arc(bits),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.entry(key, || Series::Histogram(Arc::default())) {
            Series::Histogram(samples) => Histogram::from_arc(samples),
            _ => Histogram::noop(),
        }
    }
}

/// One EMF line.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "_aws")]
    aws: Aws,
    function: &'a str,
    #[serde(flatten)]
    values: HashMap<String, Value>,
}

#[derive(Serialize)]
struct Aws {
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "CloudWatchMetrics")]
    cloudwatch_metrics: [Directive; 1],
}

#[derive(Serialize)]
struct Directive {
    #[serde(rename = "Namespace")]
    namespace: &'static str,
    #[serde(rename = "Dimensions")]
    dimensions: [[&'static str; 1]; 1],
    #[serde(rename = "Metrics")]
    metrics: Vec<Definition>,
}

#[derive(Serialize)]
struct Definition {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Unit")]
    unit: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Value {
    One(f64),
    Many(Vec<f64>),
}

static RECORDER: OnceLock<&'static EmfRecorder> = OnceLock::new();

/// Installs the EMF recorder as the process' recorder (once; later calls do nothing).
pub fn install() {
    RECORDER.get_or_init(|| {
        let recorder: &'static EmfRecorder = Box::leak(Box::default());
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; no embedded metrics");
        }
        recorder
    });
}

/// Writes the invocation's line to stdout, where Lambda sends it to CloudWatch Logs.
pub fn flush(function: &str) {
    let Some(recorder) = RECORDER.get() else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    if let Some(mut line) = recorder.line(function, now.as_millis() as u64) {
        line.push('\n');
        // One write: the line reaches the log whole.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::platform::metrics::{WakeOutcome, host_polling, wake_sent};

    #[test]
    fn an_invocations_line_holds_what_it_recorded_and_the_next_starts_afresh() {
        let recorder = EmfRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            crate::platform::metrics::store::count("get");
            crate::platform::metrics::store::count("get");
            crate::platform::metrics::store::count("put");
            wake_sent(WakeOutcome::Delivered, Duration::from_millis(250));
            drop(host_polling());
        });
        let line = recorder.line("releases", 1_700_000_000_000).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directive = &parsed["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Berth");
        assert_eq!(directive["Dimensions"], serde_json::json!([["function"]]));
        assert_eq!(parsed["function"], "releases");
        assert_eq!(parsed["berth_store_requests_total{kind=get}"], 2.0);
        assert_eq!(parsed["berth_store_requests_total{kind=put}"], 1.0);
        assert_eq!(parsed["berth_wakes_sent_total{outcome=delivered}"], 1.0);
        assert_eq!(parsed["berth_wake_latency_seconds"], serde_json::json!([0.25]));
        assert_eq!(parsed["berth_hosts_polling"], 0.0);
        let names: Vec<&str> =
            directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        for name in names {
            assert!(parsed.get(name).is_some(), "{name} has no value in {line}");
        }
        let latency =
            directive["Metrics"].as_array().unwrap().iter().find(|m| m["Name"] == "berth_wake_latency_seconds");
        assert_eq!(latency.unwrap()["Unit"], "Seconds");
        // The next invocation: counters and samples start from nothing; gauges keep their value.
        let next: serde_json::Value = serde_json::from_str(&recorder.line("releases", 0).unwrap()).unwrap();
        assert!(next.get("berth_store_requests_total{kind=get}").is_none(), "{next}");
        assert!(next.get("berth_wake_latency_seconds").is_none(), "{next}");
        assert_eq!(next["berth_hosts_polling"], 0.0);
        assert!(EmfRecorder::default().line("releases", 0).is_none(), "nothing recorded, no line");
    }
}

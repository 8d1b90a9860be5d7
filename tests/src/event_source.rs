//! A local emulation of Lambda's SQS event-source mapping: it receives from an SQS queue,
//! invokes a function with an `SqsEvent` through the Lambda Invoke API
//! (`POST /2015-03-31/functions/<name>/invocations`, which `cargo lambda watch` serves), and
//! deletes only the messages the function did not report in `batchItemFailures`. The others
//! are left alone, so they reappear after their visibility timeout, and SQS's redrive policy
//! moves them to the dead-letter queue after `maxReceiveCount` receives, as on AWS.
//!
//! Where it lives and why: here, in the test harness crate (`tests/src/event_source.rs`),
//! because it is an emulator for tests and local runs, not production code. On AWS the
//! mapping is Lambda's own (the `Type: SQS` events with `ReportBatchItemFailures` in
//! `infra/template.yaml`); on another HTTP FaaS, or in `berth serve`, the binaries consume
//! their queue themselves (`berth_shared::platform::events::consume`). No function links this module.
//!
//! What it reproduces of Lambda's behaviour (the "Handling errors for an SQS event source"
//! rules with `ReportBatchItemFailures`):
//! - a batch is up to `batch_size` messages, gathered for at most `batching_window`;
//! - a function error (an error answer, a non-2xx status, no answer) fails the whole batch:
//!   nothing is deleted;
//! - a `null`/empty answer or an empty `batchItemFailures` is success for the whole batch;
//! - a `batchItemFailures` entry whose `itemIdentifier` is empty or not a message of the batch
//!   fails the whole batch;
//! - otherwise every message not listed is deleted, and the listed ones are left to reappear.
//!
//! One poller, one batch at a time (the concurrency of one instance of the function).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One message as the function got it.
#[derive(Debug, Clone)]
pub struct Record {
    /// SQS message id (the `itemIdentifier` of a failure).
    pub message_id: String,
    /// `ApproximateReceiveCount` when it was received for this batch.
    pub receive_count: u32,
    pub body: String,
}

/// What came of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered; these messages were reported as failed (the rest were deleted).
    Answered {
        /// The `itemIdentifier`s reported.
        failures: Vec<String>,
    },
    /// The whole batch failed (function error, bad answer): nothing was deleted.
    BatchFailed {
        /// Why.
        reason: String,
    },
}

/// One invocation of the function with one batch.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// When the batch was invoked, from the start of the mapping.
    pub at: Duration,
    /// The batch.
    pub records: Vec<Record>,
    /// The result.
    pub outcome: Outcome,
}

/// The mapping of one queue to one function.
#[derive(Clone)]
pub struct EventSourceMapping {
    sqs: aws_sdk_sqs::Client,
    http: reqwest::Client,
    queue_url: String,
    queue_arn: String,
    region: String,
    invoke_url: String,
    /// Messages per batch (1..=10).
    pub batch_size: usize,
    /// How long a batch is gathered before the function is invoked with what there is.
    pub batching_window: Duration,
    /// How long one invocation may take (the first one may include the emulator's build).
    pub invoke_timeout: Duration,
}

impl EventSourceMapping {
    /// Maps `queue_url` (reached through `sqs`) to the function whose Invoke API endpoint is
    /// `invoke_url`.
    pub async fn new(sqs: aws_sdk_sqs::Client, queue_url: &str, invoke_url: &str) -> Self {
        Self::try_new(sqs, queue_url, invoke_url).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`EventSourceMapping::new`], with an error when the queue cannot be read.
    pub async fn try_new(sqs: aws_sdk_sqs::Client, queue_url: &str, invoke_url: &str) -> Result<Self, String> {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("attributes of {queue_url}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let queue_arn = attributes
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| format!("{queue_url} has no QueueArn"))?;
        let region = queue_arn.split(':').nth(3).unwrap_or("us-east-1").to_owned();
        Ok(Self {
            sqs,
            http: reqwest::Client::new(),
            queue_url: queue_url.to_owned(),
            queue_arn,
            region,
            invoke_url: invoke_url.to_owned(),
            batch_size: 10,
            batching_window: Duration::from_millis(500),
            invoke_timeout: Duration::from_secs(15 * 60),
        })
    }

    /// Receives up to `batch_size` messages within `batching_window` (long-polling up to
    /// `wait` for the first), as the SQS messages of an event.
    async fn receive_batch(&self, wait: Duration) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
        let mut batch = Vec::new();
        let mut window_end: Option<Instant> = None;
        loop {
            let remaining = self.batch_size.clamp(1, 10) - batch.len();
            let wait_seconds = match window_end {
                None => wait.as_secs().min(20) as i32,
                Some(end) => end.saturating_duration_since(Instant::now()).as_secs() as i32,
            };
            let output = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(remaining as i32)
                .wait_time_seconds(wait_seconds)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| format!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            let got = output.messages.unwrap_or_default();
            let empty = got.is_empty();
            batch.extend(got);
            if batch.is_empty() {
                return Ok(batch);
            }
            let end = *window_end.get_or_insert_with(|| Instant::now() + self.batching_window);
            if batch.len() >= self.batch_size.clamp(1, 10) || Instant::now() >= end {
                return Ok(batch);
            }
            if empty {
                tokio::time::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now()))).await;
            }
        }
    }

    /// The `SqsEvent` Lambda sends for `messages`.
    fn event(&self, messages: &[aws_sdk_sqs::types::Message]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|message| {
                let attributes: serde_json::Map<String, Value> = message
                    .attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
                    .collect();
                let message_attributes: serde_json::Map<String, Value> = message
                    .message_attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| {
                        (
                            name.clone(),
                            json!({
                                "stringValue": value.string_value,
                                "stringListValues": [],
                                "binaryListValues": [],
                                "dataType": value.data_type,
                            }),
                        )
                    })
                    .collect();
                json!({
                    "messageId": message.message_id,
                    "receiptHandle": message.receipt_handle,
                    "body": message.body,
                    "attributes": attributes,
                    "messageAttributes": message_attributes,
                    "md5OfBody": message.md5_of_body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.region,
                })
            })
            .collect();
        json!({ "Records": records })
    }

    /// Invokes the function with `event`; the ids it reports failed, or why the whole batch failed.
    async fn invoke(&self, event: &Value, ids: &[String]) -> Outcome {
        let response = match self.http.post(&self.invoke_url).json(event).timeout(self.invoke_timeout).send().await {
            Ok(response) => response,
            Err(error) => return Outcome::BatchFailed { reason: format!("invoke: {error}") },
        };
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() || function_error {
            return Outcome::BatchFailed { reason: format!("function error ({status}): {text}") };
        }
        let answer: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(answer) => answer,
                Err(error) => return Outcome::BatchFailed { reason: format!("answer is not JSON ({error})") },
            }
        };
        let failures = match answer.get("batchItemFailures") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut failures = Vec::new();
                for item in items {
                    match item.get("itemIdentifier").and_then(Value::as_str) {
                        Some(id) if ids.iter().any(|known| known == id) => failures.push(id.to_owned()),
                        _ => {
                            return Outcome::BatchFailed {
                                reason: format!("batchItemFailures entry {item} names no message of the batch"),
                            };
                        }
                    }
                }
                failures
            }
            Some(other) => return Outcome::BatchFailed { reason: format!("batchItemFailures is not a list: {other}") },
        };
        Outcome::Answered { failures }
    }

    /// Receives one batch (long-polling up to `wait`), invokes the function with it and deletes
    /// what succeeded. `None` when the queue gave nothing.
    pub async fn poll_once(&self, wait: Duration, started: Instant) -> Result<Option<Invocation>, String> {
        let messages = self.receive_batch(wait).await?;
        if messages.is_empty() {
            return Ok(None);
        }
        let records: Vec<Record> = messages
            .iter()
            .map(|message| Record {
                message_id: message.message_id.clone().unwrap_or_default(),
                receive_count: message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(0),
                body: message.body.clone().unwrap_or_default(),
            })
            .collect();
        let ids: Vec<String> = records.iter().map(|r| r.message_id.clone()).collect();
        let at = started.elapsed();
        let outcome = self.invoke(&self.event(&messages), &ids).await;
        if let Outcome::Answered { failures } = &outcome {
            let done: Vec<DeleteMessageBatchRequestEntry> = messages
                .iter()
                .enumerate()
                .filter(|(_, message)| !failures.iter().any(|id| Some(id.as_str()) == message.message_id.as_deref()))
                .map(|(index, message)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .expect("entry")
                })
                .collect();
            if !done.is_empty() {
                let output = self
                    .sqs
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(done))
                    .send()
                    .await
                    .map_err(|e| format!("delete: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
                if !output.failed.is_empty() {
                    return Err(format!("delete failed for {:?}", output.failed));
                }
            }
        }
        Ok(Some(Invocation { at, records, outcome }))
    }

    /// Runs the mapping in the background until the returned handle is dropped or stopped.
    pub fn spawn(self) -> RunningMapping {
        let invocations = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let invocations = invocations.clone();
            let errors = errors.clone();
            let stop = stop.clone();
            async move {
                let started = Instant::now();
                loop {
                    let polled = tokio::select! {
                        _ = stop.cancelled() => return,
                        polled = self.poll_once(Duration::from_secs(1), started) => polled,
                    };
                    match polled {
                        Ok(Some(invocation)) => invocations.lock().expect("log").push(invocation),
                        Ok(None) => {}
                        Err(error) => {
                            errors.lock().expect("log").push(error);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        });
        RunningMapping { invocations, errors, stop, task: Some(task) }
    }
}

/// A mapping polling in the background.
pub struct RunningMapping {
    invocations: Arc<Mutex<Vec<Invocation>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningMapping {
    /// Every invocation so far, in order.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.invocations.lock().expect("log").clone()
    }

    /// Errors talking to SQS so far (not function errors: those are invocations).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("log").clone()
    }

    /// Stops polling (an invocation under way is abandoned; its messages reappear).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningMapping {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

//! The SQS backend (or an SQS-compatible endpoint: moto, ElasticMQ), over SQS's JSON protocol
//! through the shared AWS request layer ([`crate::platform::aws`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Delivery, Envelope, EventQueue, QueueError, encode};
use crate::platform::aws::{AwsClient, AwsError, SQS};

/// Largest SQS receive batch.
pub const SQS_MAX_BATCH: usize = 10;
/// Longest a call other than a receive may take, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its wait a receive may take.
const RECEIVE_MARGIN: Duration = Duration::from_secs(30);
/// The JSON protocol's target prefix.
const TARGET: &str = "AmazonSQS";

/// An SQS queue (or an SQS-compatible endpoint). Dead-lettering is SQS's own redrive policy.
pub struct SqsQueue {
    client: AwsClient,
    url: String,
    dead_letter_url: Option<String>,
}

impl SqsQueue {
    /// A queue at `url` reached through `client` (its endpoint is the client's).
    pub fn new(client: AwsClient, url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        Self { client, url: url.into(), dead_letter_url }
    }

    /// A queue at `url` in `region`, reached with [`SqsQueue::client_for`]'s client. Nothing is
    /// made before the queue is first used: credentials and the HTTP client are not worth a
    /// function's cold start when the instance may never send.
    pub fn deferred(url: impl Into<String>, region: &str, dead_letter_url: Option<String>) -> Self {
        let url = url.into();
        Self { client: Self::client_for(&url, region), url, dead_letter_url }
    }

    /// A client for the queue at `url` with credentials from the environment. Queue URLs that
    /// are not on amazonaws.com (moto, ElasticMQ) are used as the endpoint; otherwise the
    /// endpoint is `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL` or AWS's own for the region.
    pub fn client_for(url: &str, region: &str) -> AwsClient {
        let client = AwsClient::from_env(&SQS, region, CALL_TIMEOUT);
        match custom_endpoint(url) {
            Some(endpoint) => client.with_endpoint(&endpoint),
            None => client,
        }
    }

    /// Creates the queue `name` with `attributes` (SQS's names: `VisibilityTimeout`,
    /// `MessageRetentionPeriod`, ...) at the endpoint of the queue at `beside` (e.g. the work
    /// queue's URL), with credentials from the environment. Creating a queue that exists with
    /// the same attributes gives that queue; with others, SQS refuses.
    pub async fn create(
        name: &str,
        region: &str,
        beside: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Self, QueueError> {
        Self::create_with(Self::client_for(beside, region), name, attributes).await
    }

    /// [`SqsQueue::create`] through `client`.
    pub async fn create_with(
        client: AwsClient,
        name: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Self, QueueError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct CreateQueue<'a> {
            queue_name: &'a str,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            attributes: &'a BTreeMap<String, String>,
        }
        let input = CreateQueue { queue_name: name, attributes };
        let made: QueueUrl = client.json(TARGET, "CreateQueue", &input, None).await.map_err(sqs_error)?;
        Ok(Self::new(client, made.queue_url.ok_or(QueueError::NoQueueUrl)?, None))
    }

    /// The existing queue `name` at the endpoint `client` calls (`GetQueueUrl`).
    pub async fn named(client: AwsClient, name: &str) -> Result<Self, QueueError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct GetQueueUrl<'a> {
            queue_name: &'a str,
        }
        let found: QueueUrl =
            client.json(TARGET, "GetQueueUrl", &GetQueueUrl { queue_name: name }, None).await.map_err(sqs_error)?;
        Ok(Self::new(client, found.queue_url.ok_or(QueueError::NoQueueUrl)?, None))
    }

    /// Deletes the queue itself, with whatever it holds. A queue already gone is fine.
    pub async fn delete_queue(&self) -> Result<(), QueueError> {
        match self.call::<Empty>("DeleteQueue", &QueueRef { queue_url: &self.url }, None).await {
            Ok(_) => Ok(()),
            Err(QueueError::Sqs { source, .. }) if is_gone(source.as_ref()) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue at `url`, on this queue's endpoint with its client.
    pub fn beside(&self, url: &str) -> Self {
        Self::new(self.client.clone(), url, None)
    }

    /// Creates the queue `name` with `attributes` on this queue's endpoint with its client.
    pub async fn create_beside(&self, name: &str, attributes: &BTreeMap<String, String>) -> Result<Self, QueueError> {
        Self::create_with(self.client.clone(), name, attributes).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        input: &impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<T, QueueError> {
        self.client.json(TARGET, operation, input, timeout).await.map_err(sqs_error)
    }
}

/// Whether SQS said the queue does not exist.
fn is_gone(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error.downcast_ref::<AwsError>().and_then(AwsError::code).is_some_and(|code| {
        matches!(code, "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" | "NonExistentQueue")
    })
}

/// `scheme://host[:port]` of a queue URL that is not AWS's own.
pub fn custom_endpoint(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    if host.ends_with(".amazonaws.com") { None } else { Some(format!("{scheme}://{host}")) }
}

fn sqs_error(error: AwsError) -> QueueError {
    QueueError::Sqs { message: error.to_string(), source: Box::new(error) }
}

/// Why an SQS message is not an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum NotAnEnvelope {
    /// It has no body.
    #[error("message has no body")]
    NoBody,
    /// Its body is not an envelope's JSON.
    #[error("body is not a Berth envelope: {0}")]
    Json(#[source] serde_json::Error),
}

/// Parses an SQS message body as an [`Envelope`] with `attempt` from the receive count.
pub fn envelope_from_sqs(body: Option<&str>, receive_count: Option<&str>) -> Result<Envelope, NotAnEnvelope> {
    let body = body.ok_or(NotAnEnvelope::NoBody)?;
    let mut envelope: Envelope = serde_json::from_str(body).map_err(NotAnEnvelope::Json)?;
    envelope.attempt = receive_count.and_then(|c| c.parse().ok()).unwrap_or(1);
    Ok(envelope)
}

/// An answer whose fields are not read.
#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrl {
    #[serde(default)]
    queue_url: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct QueueRef<'a> {
    queue_url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage<'a> {
    queue_url: &'a str,
    message_body: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessage<'a> {
    queue_url: &'a str,
    max_number_of_messages: usize,
    wait_time_seconds: u64,
    message_system_attribute_names: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Received {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Message {
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    receipt_handle: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Settle<'a> {
    queue_url: &'a str,
    receipt_handle: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout: Option<u64>,
}

impl SqsQueue {
    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        wait: Duration,
        hide: Option<u64>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let wait_seconds = wait.as_secs().min(20);
        let input = ReceiveMessage {
            queue_url: url,
            max_number_of_messages: max.clamp(1, SQS_MAX_BATCH),
            wait_time_seconds: wait_seconds,
            message_system_attribute_names: ["ApproximateReceiveCount"],
            visibility_timeout: hide,
        };
        let timeout = Duration::from_secs(wait_seconds) + RECEIVE_MARGIN;
        let received: Received = self.call("ReceiveMessage", &input, Some(timeout)).await?;
        let mut out = Vec::new();
        for message in received.messages {
            let count = message.attributes.get("ApproximateReceiveCount").map(String::as_str);
            match (envelope_from_sqs(message.body.as_deref(), count), message.receipt_handle) {
                (Ok(envelope), Some(receipt)) => out.push(Delivery { envelope, receipt }),
                (Err(reason), _) => {
                    // Left alone: the redrive policy moves it to the dead-letter queue.
                    tracing::warn!(message_id = ?message.message_id, %reason, "skipping a message that is not an envelope");
                }
                (Ok(_), None) => tracing::warn!(message_id = ?message.message_id, "message without receipt handle"),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl EventQueue for SqsQueue {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        let body = encode(envelope)?;
        self.call::<Empty>("SendMessage", &SendMessage { queue_url: &self.url, message_body: &body }, None).await?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.receive_from(&self.url, max, wait, None).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let input = Settle { queue_url: &self.url, receipt_handle: &delivery.receipt, visibility_timeout: None };
        self.call::<Empty>("DeleteMessage", &input, None).await?;
        Ok(())
    }

    async fn release(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let input = Settle {
            queue_url: &self.url,
            receipt_handle: &delivery.receipt,
            visibility_timeout: Some(delay.as_secs().min(43_200)),
        };
        self.call::<Empty>("ChangeMessageVisibility", &input, None).await?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Envelope>, QueueError> {
        let url = self.dead_letter_url.as_deref().ok_or(QueueError::NoDeadLetterQueue)?;
        // Visibility 0 leaves them where they are for the next reader.
        let deliveries = self.receive_from(url, max, Duration::from_secs(1), Some(0)).await?;
        Ok(deliveries.into_iter().map(|d| d.envelope).collect())
    }

    fn receives_outlive_their_caller(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_as_sqs_json_names_them() {
        let receive = ReceiveMessage {
            queue_url: "u",
            max_number_of_messages: 10,
            wait_time_seconds: 20,
            message_system_attribute_names: ["ApproximateReceiveCount"],
            visibility_timeout: None,
        };
        assert_eq!(
            serde_json::to_string(&receive).unwrap(),
            r#"{"QueueUrl":"u","MaxNumberOfMessages":10,"WaitTimeSeconds":20,"MessageSystemAttributeNames":["ApproximateReceiveCount"]}"#
        );
        let settle = Settle { queue_url: "u", receipt_handle: "r", visibility_timeout: Some(5) };
        assert_eq!(
            serde_json::to_string(&settle).unwrap(),
            r#"{"QueueUrl":"u","ReceiptHandle":"r","VisibilityTimeout":5}"#
        );
    }

    #[test]
    fn a_receive_answer_gives_bodies_receipts_and_receive_counts() {
        let answer = r#"{"Messages":[{"MessageId":"m","ReceiptHandle":"r","MD5OfBody":"x","Body":"b",
                         "Attributes":{"ApproximateReceiveCount":"3"}}]}"#;
        let received: Received = serde_json::from_str(answer).unwrap();
        let [message] = received.messages.as_slice() else { panic!("one message") };
        assert_eq!(message.receipt_handle.as_deref(), Some("r"));
        assert_eq!(message.attributes.get("ApproximateReceiveCount").map(String::as_str), Some("3"));
        let none: Received = serde_json::from_str("{}").unwrap();
        assert!(none.messages.is_empty());
    }

    #[test]
    fn queues_off_aws_are_their_own_endpoint() {
        assert_eq!(custom_endpoint("http://127.0.0.1:5000/123/q"), Some("http://127.0.0.1:5000".into()));
        assert_eq!(custom_endpoint("https://sqs.us-east-1.amazonaws.com/123/q"), None);
        let client = SqsQueue::client_for("http://127.0.0.1:5000/123/q", "us-east-1");
        assert_eq!(client.endpoint().unwrap().as_str(), "http://127.0.0.1:5000/");
    }
}

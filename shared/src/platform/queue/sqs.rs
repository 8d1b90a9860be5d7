//! The SQS backend (or an SQS-compatible endpoint: moto, ElasticMQ).

use std::time::Duration;

use async_trait::async_trait;
use std::sync::Arc;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use super::{Delivery, Envelope, EventQueue, QueueError, SharedQueue, encode};
use crate::platform::news::NewsQueues;

/// Largest SQS receive batch.
pub const SQS_MAX_BATCH: usize = 10;

/// An SQS queue (or an SQS-compatible endpoint). Dead-lettering is SQS's own redrive policy.
pub struct SqsQueue {
    /// The client, made on first use by [`SqsQueue::deferred`]: loading the SDK's
    /// configuration is not worth a function's cold start when the instance may never send.
    client: tokio::sync::OnceCell<aws_sdk_sqs::Client>,
    region: String,
    url: String,
    dead_letter_url: Option<String>,
}

impl SqsQueue {
    /// A queue at `url` reached through `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        let client = tokio::sync::OnceCell::new_with(Some(client));
        Self { client, region: String::new(), url: url.into(), dead_letter_url }
    }

    /// A queue at `url` in `region`, its client made as [`SqsQueue::client_for`] does when
    /// the queue is first used.
    pub fn deferred(url: impl Into<String>, region: &str, dead_letter_url: Option<String>) -> Self {
        let client = tokio::sync::OnceCell::new();
        Self { client, region: region.to_owned(), url: url.into(), dead_letter_url }
    }

    /// A client for the queue at `url` with credentials from the environment. Queue URLs that
    /// are not on amazonaws.com (moto, ElasticMQ) are used as the endpoint.
    pub async fn client_for(url: &str, region: &str) -> aws_sdk_sqs::Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()));
        if let Some(endpoint) = custom_endpoint(url) {
            loader = loader.endpoint_url(endpoint);
        }
        aws_sdk_sqs::Client::new(&loader.load().await)
    }

    async fn client(&self) -> &aws_sdk_sqs::Client {
        self.client.get_or_init(|| Self::client_for(&self.url, &self.region)).await
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue at `url`, on this queue's endpoint with its client.
    pub fn beside(&self, url: &str) -> Self {
        match self.client.get() {
            Some(client) => Self::new(client.clone(), url, None),
            None => Self::deferred(url, &self.region, None),
        }
    }
}

/// News queues are made beside the work queue: `<work queue>-news-<process>`, holding news a
/// minute (SQS's least), which is all it is worth.
#[async_trait]
impl NewsQueues for SqsQueue {
    async fn create(&self, process: &str) -> Result<String, QueueError> {
        let name = news_queue_name(&self.url, process);
        let created = self
            .client()
            .await
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::MessageRetentionPeriod, "60")
            .send()
            .await
            .map_err(sqs_error)?;
        created.queue_url.ok_or(QueueError::NoQueueUrl)
    }

    fn open(&self, url: &str) -> SharedQueue {
        Arc::new(self.beside(url))
    }

    async fn delete(&self, url: &str) -> Result<(), QueueError> {
        self.client().await.delete_queue().queue_url(url).send().await.map_err(sqs_error)?;
        Ok(())
    }
}

/// SQS queue names are at most 80 characters of letters, digits, `-` and `_`.
fn news_queue_name(work_url: &str, process: &str) -> String {
    let work = work_url.rsplit('/').next().unwrap_or_default();
    let keep = |c: &char| c.is_ascii_alphanumeric() || *c == '-' || *c == '_';
    let work: String = work.trim_end_matches(".fifo").chars().filter(keep).take(40).collect();
    let process: String = process.chars().filter(keep).take(32).collect();
    format!("{work}-news-{process}")
}

/// `scheme://host[:port]` of a queue URL that is not AWS's own.
pub fn custom_endpoint(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    if host.ends_with(".amazonaws.com") { None } else { Some(format!("{scheme}://{host}")) }
}

fn sqs_error(error: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    // DisplayErrorContext gives the service's own message, not just "service error".
    let message = aws_sdk_sqs::error::DisplayErrorContext(&error).to_string();
    QueueError::Sqs { message, source: Box::new(error) }
}

#[cfg(test)]
#[test]
fn news_queue_names_are_valid_sqs_names() {
    let name = news_queue_name("http://localhost:5000/123456789012/berth-events.fifo", "0f3c-9a");
    assert_eq!(name, "berth-events-news-0f3c-9a");
    let long = format!("https://sqs.eu-west-1.amazonaws.com/1/{}", "q".repeat(80));
    let name = news_queue_name(&long, &"p".repeat(40));
    assert!(name.len() <= 80, "{name}");
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

impl SqsQueue {
    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        wait: Duration,
        hide: Option<i32>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut request = self
            .client()
            .await
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, SQS_MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount);
        if let Some(seconds) = hide {
            request = request.visibility_timeout(seconds);
        }
        let output = request.send().await.map_err(sqs_error)?;
        let mut out = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let count = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .map(String::as_str);
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
        self.client().await.send_message().queue_url(&self.url).message_body(body).send().await.map_err(sqs_error)?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.receive_from(&self.url, max, wait, None).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.client()
            .await
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&delivery.receipt)
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }

    async fn release(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.client()
            .await
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(delay.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(sqs_error)?;
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

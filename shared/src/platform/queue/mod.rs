//! The event queue: one trait, an in-process backend for `berth serve`, and SQS.
//!
//! Delivery is at least once. A handler that fails (or panics, or outlives the visibility
//! timeout) gets the event again; after `max_attempts` deliveries the event is dead-lettered.
//! Handlers must therefore be idempotent.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use crate::names::AccountId;

use crate::platform::clock::unix_now;
use crate::platform::store::DocumentStore;

/// Largest SQS receive batch.
pub const SQS_MAX_BATCH: usize = 10;
/// Largest envelope accepted (SQS's message limit).
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// One event as it travels through a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; a redelivery or duplicate keeps it.
    pub id: Uuid,
    /// Event type, e.g. `package.version.submitted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account the event belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountId>,
    /// Which delivery this is, from 1; set by the queue on receive.
    #[serde(default)]
    pub attempt: u32,
    /// Seconds since the epoch when first sent.
    pub sent_at: u64,
    /// The event's data.
    #[serde(default)]
    pub payload: serde_json::Value,
}

impl Envelope {
    /// A new event with a fresh id.
    pub fn new(kind: impl Into<String>, account: Option<AccountId>, payload: serde_json::Value) -> Self {
        Self { id: Uuid::new_v4(), kind: kind.into(), account, attempt: 0, sent_at: unix_now(), payload }
    }
}

/// A received event and the handle to settle it with.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event, with `attempt` set.
    pub envelope: Envelope,
    receipt: String,
}

/// Errors of a queue backend.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend failed or did not answer.
    #[error("queue backend: {0}")]
    Backend(String),
    /// An envelope could not be encoded or is over [`MAX_ENVELOPE_BYTES`].
    #[error("invalid envelope: {0}")]
    Envelope(String),
    /// Dead letters cannot be read: no dead-letter queue is configured.
    #[error("no dead-letter queue is configured")]
    NoDeadLetterQueue,
}

/// An at-least-once event queue.
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Enqueues an event.
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError>;
    /// Waits up to `wait` for events and returns at most `max` of them, each hidden from other
    /// receivers until settled or until its visibility timeout passes.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// Settles a handled event: it is removed for good.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Returns an event whose handling failed; it is delivered again after `delay`,
    /// or dead-lettered once it has had its attempts.
    async fn release(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError>;
    /// Reads up to `max` dead-lettered events, leaving them in the dead-letter queue.
    async fn dead_letters(&self, max: usize) -> Result<Vec<Envelope>, QueueError>;
}

fn encode(envelope: &Envelope) -> Result<String, QueueError> {
    let body = serde_json::to_string(envelope).map_err(|e| QueueError::Envelope(e.to_string()))?;
    if body.len() > MAX_ENVELOPE_BYTES {
        return Err(QueueError::Envelope(format!("{} bytes is over the {MAX_ENVELOPE_BYTES}-byte limit", body.len())));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------
// In-process backend
// ---------------------------------------------------------------------------------------

struct Waiting {
    envelope: Envelope,
    receives: u32,
    visible_at: Instant,
}

struct Leased {
    envelope: Envelope,
    receives: u32,
    deadline: Instant,
}

#[derive(Default)]
struct Lanes {
    ready: VecDeque<Waiting>,
    leased: HashMap<String, Leased>,
    dead: Vec<Envelope>,
}

/// The in-process queue of `berth serve`: SQS semantics (visibility timeout, receive count,
/// dead letters) inside one process.
pub struct InProcessQueue {
    lanes: Mutex<Lanes>,
    arrived: Notify,
    max_attempts: u32,
    visibility: Duration,
    twice: bool,
    journal: Option<DocumentStore>,
}

/// Where a journalled event lives: `events/` until settled, `dead/` once dead-lettered.
fn journal_path(folder: &str, id: &Uuid) -> String {
    format!("{folder}/{id}.json")
}

impl InProcessQueue {
    /// A queue that dead-letters after `max_attempts` deliveries and redelivers an unsettled
    /// event after `visibility`.
    pub fn new(max_attempts: u32, visibility: Duration) -> Self {
        Self {
            lanes: Mutex::new(Lanes::default()),
            arrived: Notify::new(),
            max_attempts: max_attempts.max(1),
            visibility,
            twice: false,
            journal: None,
        }
    }

    /// A queue whose events are written (and fsynced, by the local store) to `journal` before
    /// `send` returns, and removed when settled, so they survive `kill -9` of the process.
    /// Events found there are queued again, in the order they were first sent; their receive
    /// counts start over, as they were never settled.
    pub async fn durable(max_attempts: u32, visibility: Duration, journal: DocumentStore) -> Result<Self, QueueError> {
        let journal_error = |e: crate::platform::store::StoreError| QueueError::Backend(format!("queue journal: {e}"));
        let mut queue = Self::new(max_attempts, visibility);
        let dead: Vec<Envelope> =
            journal.list::<Envelope>("dead").await.map_err(journal_error)?.into_iter().map(|(_, d)| d.value).collect();
        let mut waiting: Vec<Envelope> = journal
            .list::<Envelope>("events")
            .await
            .map_err(journal_error)?
            .into_iter()
            .map(|(_, d)| d.value)
            // Dead-lettering writes `dead/` first: a crash before `events/` went leaves both.
            .filter(|e| !dead.iter().any(|d| d.id == e.id))
            .collect();
        waiting.sort_by_key(|e| e.sent_at);
        let lanes = queue.lanes.get_mut();
        lanes.dead = dead;
        let now = Instant::now();
        lanes.ready = waiting.into_iter().map(|envelope| Waiting { envelope, receives: 0, visible_at: now }).collect();
        if !lanes.ready.is_empty() {
            tracing::info!(events = lanes.ready.len(), "queued events restored from the journal");
        }
        queue.journal = Some(journal);
        Ok(queue)
    }

    async fn journal_dead(&self, envelopes: Vec<Envelope>) -> Result<(), QueueError> {
        let Some(journal) = &self.journal else { return Ok(()) };
        for envelope in envelopes {
            let written = journal.put(&journal_path("dead", &envelope.id), &envelope).await;
            written.map_err(|e| QueueError::Backend(format!("queue journal: {e}")))?;
            self.journal_settled(&envelope.id).await?;
        }
        Ok(())
    }

    async fn journal_settled(&self, id: &Uuid) -> Result<(), QueueError> {
        let Some(journal) = &self.journal else { return Ok(()) };
        journal
            .delete(&journal_path("events", id))
            .await
            .map_err(|e| QueueError::Backend(format!("queue journal: {e}")))
    }

    /// Test switch: every event sent is delivered twice (same id), as at-least-once delivery
    /// may do, to prove handlers idempotent.
    pub fn delivering_twice(mut self) -> Self {
        self.twice = true;
        self
    }

    /// Events not yet settled (waiting or in flight).
    pub async fn pending(&self) -> Vec<Envelope> {
        let lanes = self.lanes.lock().await;
        lanes
            .ready
            .iter()
            .map(|w| w.envelope.clone())
            .chain(lanes.leased.values().map(|l| l.envelope.clone()))
            .collect()
    }

    /// Requeues leases past their deadline; answers the events that were dead-lettered.
    fn settle_expired(&self, lanes: &mut Lanes, now: Instant) -> Vec<Envelope> {
        let expired: Vec<String> =
            lanes.leased.iter().filter(|(_, l)| l.deadline <= now).map(|(receipt, _)| receipt.clone()).collect();
        let mut dead = Vec::new();
        for receipt in expired {
            if let Some(leased) = lanes.leased.remove(&receipt) {
                dead.extend(self.requeue(lanes, leased, now));
            }
        }
        dead
    }

    /// Puts a lease back, or dead-letters it (answered, for the journal) after its attempts.
    fn requeue(&self, lanes: &mut Lanes, leased: Leased, visible_at: Instant) -> Option<Envelope> {
        self.arrived.notify_waiters();
        if leased.receives >= self.max_attempts {
            tracing::warn!(event_id = %leased.envelope.id, kind = %leased.envelope.kind, attempts = leased.receives, "event dead-lettered");
            lanes.dead.push(leased.envelope.clone());
            return Some(leased.envelope);
        }
        lanes.ready.push_back(Waiting { envelope: leased.envelope, receives: leased.receives, visible_at });
        None
    }
}

#[async_trait]
impl EventQueue for InProcessQueue {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        encode(envelope)?;
        if let Some(journal) = &self.journal {
            let written = journal.put(&journal_path("events", &envelope.id), envelope).await;
            written.map_err(|e| QueueError::Backend(format!("queue journal: {e}")))?;
        }
        let mut lanes = self.lanes.lock().await;
        lanes.ready.push_back(Waiting { envelope: envelope.clone(), receives: 0, visible_at: Instant::now() });
        if self.twice {
            lanes.ready.push_back(Waiting { envelope: envelope.clone(), receives: 0, visible_at: Instant::now() });
        }
        drop(lanes);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let until = Instant::now() + wait;
        loop {
            // Register interest before looking, so a send between the look and the wait is not missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let now = Instant::now();
            let mut lanes = self.lanes.lock().await;
            let dead = self.settle_expired(&mut lanes, now);
            if !dead.is_empty() {
                drop(lanes);
                self.journal_dead(dead).await?;
                continue;
            }
            let mut out = Vec::new();
            let mut index = 0;
            while out.len() < max {
                let Some(next) = lanes.ready.get(index) else { break };
                if next.visible_at > now {
                    index += 1;
                    continue;
                }
                let Some(waiting) = lanes.ready.remove(index) else { break };
                let receives = waiting.receives + 1;
                let mut envelope = waiting.envelope;
                envelope.attempt = receives;
                let receipt = Uuid::new_v4().to_string();
                lanes.leased.insert(
                    receipt.clone(),
                    Leased { envelope: envelope.clone(), receives, deadline: now + self.visibility },
                );
                out.push(Delivery { envelope, receipt });
            }
            if !out.is_empty() || now >= until {
                return Ok(out);
            }
            let next_wake = lanes
                .ready
                .iter()
                .map(|w| w.visible_at)
                .chain(lanes.leased.values().map(|l| l.deadline))
                .fold(until, Instant::min);
            drop(lanes);
            tokio::select! {
                _ = &mut arrived => {}
                _ = tokio::time::sleep_until(next_wake) => {}
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        // A stale receipt (the event was redelivered meanwhile) is ignored, as SQS does.
        let settled = self.lanes.lock().await.leased.remove(&delivery.receipt);
        match settled {
            Some(leased) => self.journal_settled(&leased.envelope.id).await,
            None => Ok(()),
        }
    }

    async fn release(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let mut lanes = self.lanes.lock().await;
        let dead = match lanes.leased.remove(&delivery.receipt) {
            Some(leased) => self.requeue(&mut lanes, leased, Instant::now() + delay),
            None => None,
        };
        drop(lanes);
        self.journal_dead(dead.into_iter().collect()).await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Envelope>, QueueError> {
        Ok(self.lanes.lock().await.dead.iter().take(max).cloned().collect())
    }
}

// ---------------------------------------------------------------------------------------
// SQS backend
// ---------------------------------------------------------------------------------------

/// An SQS queue (or an SQS-compatible endpoint). Dead-lettering is SQS's own redrive policy.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    dead_letter_url: Option<String>,
}

impl SqsQueue {
    /// A queue at `url` reached through `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        Self { client, url: url.into(), dead_letter_url }
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

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `scheme://host[:port]` of a queue URL that is not AWS's own.
pub fn custom_endpoint(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    if host.ends_with(".amazonaws.com") { None } else { Some(format!("{scheme}://{host}")) }
}

fn sqs_error(error: impl std::error::Error) -> QueueError {
    // DisplayErrorContext gives the service's own message, not just "service error".
    QueueError::Backend(aws_sdk_sqs::error::DisplayErrorContext(error).to_string())
}

/// Parses an SQS message body as an [`Envelope`] with `attempt` from the receive count.
pub fn envelope_from_sqs(body: Option<&str>, receive_count: Option<&str>) -> Result<Envelope, String> {
    let body = body.ok_or("message has no body")?;
    let mut envelope: Envelope =
        serde_json::from_str(body).map_err(|e| format!("body is not a Berth envelope: {e}"))?;
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
            .client
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
        self.client.send_message().queue_url(&self.url).message_body(body).send().await.map_err(sqs_error)?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.receive_from(&self.url, max, wait, None).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&delivery.receipt)
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }

    async fn release(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.client
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
}

/// Shared handle to any queue.
pub type SharedQueue = Arc<dyn EventQueue>;

#[cfg(test)]
mod twice_tests {
    use super::*;

    #[tokio::test]
    async fn the_test_switch_delivers_every_event_twice_with_one_id() {
        let queue = InProcessQueue::new(3, Duration::from_secs(30)).delivering_twice();
        let event = Envelope::new("x", None, serde_json::Value::Null);
        queue.send(&event).await.unwrap();
        let got = queue.receive(10, Duration::from_millis(10)).await.unwrap();
        assert_eq!(got.iter().map(|d| d.envelope.id).collect::<Vec<_>>(), [event.id, event.id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reopened(dir: &std::path::Path) -> InProcessQueue {
        let journal = DocumentStore::local(dir.to_path_buf()).unwrap();
        InProcessQueue::durable(2, Duration::from_secs(30), journal).await.unwrap()
    }

    /// Dropping the queue is what `kill -9` does to it: nothing is saved on the way out.
    #[tokio::test]
    async fn a_journalled_queue_keeps_unsettled_and_dead_events_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let queue = reopened(dir.path()).await;
        let (settled, unsettled, poison) = (
            Envelope::new("t.settled", None, serde_json::json!({})),
            Envelope::new("t.unsettled", None, serde_json::json!({"n": 1})),
            Envelope::new("t.poison", None, serde_json::json!({})),
        );
        for event in [&settled, &unsettled, &poison] {
            queue.send(event).await.unwrap();
        }
        let first = queue.receive(3, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 3);
        queue.ack(&first[0]).await.unwrap();
        // `unsettled` stays leased (its handler was running when the process died).
        queue.release(&first[2], Duration::ZERO).await.unwrap();
        let again = queue.receive(1, Duration::from_secs(1)).await.unwrap();
        assert_eq!(again[0].envelope.id, poison.id);
        queue.release(&again[0], Duration::ZERO).await.unwrap();
        drop(queue);

        let queue = reopened(dir.path()).await;
        let restored = queue.receive(10, Duration::ZERO).await.unwrap();
        let ids: Vec<Uuid> = restored.iter().map(|d| d.envelope.id).collect();
        assert_eq!(ids, [unsettled.id], "only the unsettled event is queued again");
        assert_eq!(restored[0].envelope.payload, unsettled.payload);
        let dead: Vec<Uuid> = queue.dead_letters(10).await.unwrap().iter().map(|e| e.id).collect();
        assert_eq!(dead, [poison.id]);
        queue.ack(&restored[0]).await.unwrap();
        drop(queue);
        assert!(reopened(dir.path()).await.receive(10, Duration::ZERO).await.unwrap().is_empty());
    }
}

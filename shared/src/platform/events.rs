//! Event handlers: what a function does with the events it consumes, how they are routed by
//! type, and the two ways they are driven (a polling consumer, or Lambda's SQS batches).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::names::AccountId;
use crate::platform::queue::{Delivery, Envelope, EventQueue, QueueError, envelope_from_sqs};

/// An event type: the payload it carries and the `type` it travels under. Handlers take it
/// decoded ([`Dispatcher::on`]); senders build its envelope with [`envelope`] or [`send`].
/// Adding one touches two places: its type and its handler's registration.
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The envelope's `type`, stable on the wire (events may be in flight on SQS).
    const TYPE: &'static str;
}

/// The event every function answers, for checking the event path end to end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {}

impl Event for Ping {
    const TYPE: &'static str = "berth.ping";
}

/// [`Ping`]'s type.
pub const PING: &str = Ping::TYPE;

/// A new envelope carrying `event`.
pub fn envelope<E: Event>(event: &E, account: Option<AccountId>) -> Result<Envelope, QueueError> {
    let payload = serde_json::to_value(event).map_err(|e| QueueError::Envelope(e.to_string()))?;
    Ok(Envelope::new(E::TYPE, account, payload))
}

/// Sends `event` on `queue`.
pub async fn send<E: Event>(queue: &dyn EventQueue, account: Option<AccountId>, event: &E) -> Result<(), QueueError> {
    queue.send(&envelope(event, account)?).await
}

/// Decodes an envelope's payload as `E`, once, for its handler. An absent payload (`null`) is an
/// empty one, as senders of events without data may write either.
fn decode<E: Event>(envelope: &Envelope) -> Result<E, EventError> {
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let payload = if envelope.payload.is_null() { &empty } else { &envelope.payload };
    E::deserialize(payload).map_err(|e| EventError::BadPayload { kind: E::TYPE.to_owned(), reason: e.to_string() })
}

/// Why handling an event failed. Every failure is retried until the queue dead-letters it.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No handler for this event type.
    #[error("no handler for event type '{0}'")]
    UnknownType(String),
    /// The payload is not what the event type requires.
    #[error("bad payload for '{kind}': {reason}")]
    BadPayload {
        /// Event type.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// A dependency failed; a later attempt may succeed.
    #[error("{0}")]
    Retry(String),
}

/// Handles events. Must be idempotent: the same event may arrive more than once.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// Handles one event.
    async fn handle(&self, event: &Envelope) -> Result<(), EventError>;
}

type BoxedHandler = Box<dyn Fn(Envelope) -> Pin<Box<dyn Future<Output = Result<(), EventError>> + Send>> + Send + Sync>;

/// Routes events to handlers by type. Unknown types fail (and so end up dead-lettered).
#[derive(Default)]
pub struct Dispatcher {
    routes: BTreeMap<String, BoxedHandler>,
}

impl Dispatcher {
    /// A dispatcher that answers [`Ping`].
    pub fn new() -> Self {
        Self::default().on(|_: Ping, _| async { Ok(()) })
    }

    /// Adds the handler of events of type `E`: it gets the payload decoded (a payload that is
    /// not an `E` fails as [`EventError::BadPayload`]) and the envelope (account, attempt).
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event,
        F: Fn(E, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), EventError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.routes.insert(
            E::TYPE.to_owned(),
            Box::new(move |envelope: Envelope| {
                let handler = handler.clone();
                Box::pin(async move {
                    let event = decode::<E>(&envelope)?;
                    handler(event, envelope).await
                })
            }),
        );
        self
    }

    /// The event types handled.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }
}

#[async_trait]
impl EventHandler for Dispatcher {
    async fn handle(&self, event: &Envelope) -> Result<(), EventError> {
        use futures::FutureExt as _;
        let handler = self.routes.get(&event.kind).ok_or_else(|| EventError::UnknownType(event.kind.clone()))?;
        // A panicking handler is a failed attempt (retried, then dead-lettered), on every
        // path: the polling consumer and Lambda's SQS batches alike. Shared state never
        // depends on a handler finishing (no poisoning locks are held across one).
        match std::panic::AssertUnwindSafe(handler(event.clone())).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!(kind = %event.kind, id = %event.id, "event handler panicked");
                Err(EventError::Retry(format!("the handler of '{}' panicked", event.kind)))
            }
        }
    }
}

/// Several functions' handlers behind one queue (`berth serve` on a shared SQS queue): each
/// event goes to the first handler that knows its type.
pub struct FirstKnowing(pub Vec<Arc<dyn EventHandler>>);

#[async_trait]
impl EventHandler for FirstKnowing {
    async fn handle(&self, event: &Envelope) -> Result<(), EventError> {
        for handler in &self.0 {
            match handler.handle(event).await {
                Err(EventError::UnknownType(_)) => continue,
                outcome => return outcome,
            }
        }
        Err(EventError::UnknownType(event.kind.clone()))
    }
}

/// How a polling consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Events per receive.
    pub batch: usize,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// Delay before a failed event is redelivered, multiplied by its attempt.
    pub retry_delay: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        // A stopping consumer waits out its receive (see `consume`): the wait bounds that.
        Self { batch: 10, wait: Duration::from_secs(5), retry_delay: Duration::from_secs(1) }
    }
}

/// Handlers one polling consumer runs at once. Each runs as a task of its own, and the
/// consumer receives again as soon as one slot is free: a slow handler (an advance waiting for
/// a phase's reports) does not hold back the events received after it, such as another
/// process's news that would end that wait.
const MAX_IN_FLIGHT: usize = 64;

/// Receives and handles events until `shutdown` is cancelled. Events already received when
/// shutdown comes are finished (or released back to the queue on failure) before it returns.
pub async fn consume(
    queue: Arc<dyn EventQueue>,
    handler: Arc<dyn EventHandler>,
    options: ConsumerOptions,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut running = tokio::task::JoinSet::new();
    loop {
        // Finished handlers are reaped as they go, so the set holds only what runs.
        while running.try_join_next().is_some() {}
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let room = (1 + slots.available_permits()).min(options.batch);
        // Not dropped at shutdown: a long poll abandoned by its client still takes the
        // messages that arrive during its wait (SQS, and moto, hand them to the closed
        // connection), hidden from every other process for the visibility timeout. So it is
        // waited out, and what it brings is handed back at once.
        let receiving = queue.receive(room, options.wait);
        tokio::pin!(receiving);
        let received = tokio::select! {
            _ = shutdown.cancelled() => {
                if !queue.receives_outlive_their_caller() {
                    break;
                }
                if let Ok(deliveries) = (&mut receiving).await {
                    for delivery in deliveries {
                        if let Err(error) = queue.release(&delivery, Duration::ZERO).await {
                            tracing::warn!(event_id = %delivery.envelope.id, %error, "handing back an event at shutdown failed");
                        }
                    }
                }
                break;
            }
            received = &mut receiving => received,
        };
        let deliveries = match received {
            Ok(deliveries) => deliveries,
            Err(error) => {
                tracing::warn!(%error, "receiving events failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let mut first = Some(first);
        for delivery in deliveries {
            // Only this loop takes slots, and `room` were free: taking one never waits.
            let slot = match first.take() {
                Some(slot) => slot,
                None => match slots.clone().acquire_owned().await {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (queue, handler, retry_delay) = (queue.clone(), handler.clone(), options.retry_delay);
            running.spawn(async move {
                settle(queue, handler, delivery, retry_delay).await;
                drop(slot);
            });
        }
    }
    while running.join_next().await.is_some() {}
}

async fn settle(queue: Arc<dyn EventQueue>, handler: Arc<dyn EventHandler>, delivery: Delivery, retry_delay: Duration) {
    let envelope = delivery.envelope.clone();
    // A task of its own, so a panicking handler is a failed attempt, not a dead consumer.
    let outcome = tokio::spawn(async move { handler.handle(&envelope).await }).await;
    let event = &delivery.envelope;
    let settled = match outcome {
        Ok(Ok(())) => queue.ack(&delivery).await,
        Ok(Err(error)) => {
            tracing::warn!(event_id = %event.id, kind = %event.kind, attempt = event.attempt, %error, "event failed");
            queue.release(&delivery, retry_delay * event.attempt.max(1)).await
        }
        Err(panic) => {
            tracing::error!(event_id = %event.id, kind = %event.kind, attempt = event.attempt, %panic, "event handler panicked");
            queue.release(&delivery, retry_delay * event.attempt.max(1)).await
        }
    };
    if let Err(error) = settled {
        // Not settled: the visibility timeout brings it back.
        tracing::warn!(event_id = %event.id, %error, "settling event failed");
    }
}

/// Handles a Lambda SQS batch, reporting each failed message in `batchItemFailures` so that
/// only those are redelivered (the mapping needs `ReportBatchItemFailures`).
pub async fn handle_sqs_batch(handler: &dyn EventHandler, event: SqsEvent) -> SqsBatchResponse {
    let work = event.records.into_iter().map(|record| async move {
        let id = record.message_id.clone().unwrap_or_default();
        let parsed = envelope_from_sqs(
            record.body.as_deref(),
            record.attributes.get("ApproximateReceiveCount").map(String::as_str),
        );
        let outcome = match parsed {
            Ok(envelope) => handler.handle(&envelope).await.map_err(|e| e.to_string()),
            Err(reason) => Err(reason.to_string()),
        };
        match outcome {
            Ok(()) => None,
            Err(reason) => {
                tracing::warn!(message_id = %id, %reason, "event failed");
                Some(id)
            }
        }
    });
    let failed = futures::future::join_all(work).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .flatten()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessage;

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.into());
        message.body = Some(body.into());
        message.attributes.insert("ApproximateReceiveCount".into(), "2".into());
        message
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_only_its_own_message() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Boom {}
        impl Event for Boom {
            const TYPE: &'static str = "boom";
        }
        let dispatcher = Dispatcher::new().on(|_: Boom, _| async { panic!("handler bug") });
        let boom = serde_json::to_string(&envelope(&Boom {}, None).unwrap()).unwrap();
        let ping = serde_json::to_string(&Envelope::new(PING, None, serde_json::Value::Null)).unwrap();
        let mut event = SqsEvent::default();
        event.records = vec![record("boom", &boom), record("ok", &ping)];
        for _ in 0..2 {
            let response = handle_sqs_batch(&dispatcher, event.clone()).await;
            let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
            assert_eq!(failed, ["boom"]);
        }
    }

    #[tokio::test]
    async fn sqs_batch_reports_exactly_the_failed_messages() {
        let ping = serde_json::to_string(&Envelope::new(PING, None, serde_json::Value::Null)).unwrap();
        let unknown = serde_json::to_string(&Envelope::new("no.such.type", None, serde_json::Value::Null)).unwrap();
        let mut event = SqsEvent::default();
        event.records = vec![record("ok", &ping), record("unknown", &unknown), record("garbage", "not json")];
        let response = handle_sqs_batch(&Dispatcher::new(), event).await;
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["unknown", "garbage"]);
    }
}

#[cfg(test)]
mod shutdown_tests {
    use super::*;
    use crate::platform::queue::InProcessQueue;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Slow {
        started: tokio::sync::Notify,
        finished: AtomicBool,
    }

    #[async_trait]
    impl EventHandler for Slow {
        async fn handle(&self, _: &Envelope) -> Result<(), EventError> {
            self.started.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.finished.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_events_finish_and_settle() {
        let queue = Arc::new(InProcessQueue::new(3, Duration::from_secs(30)));
        queue.send(&Envelope::new("slow", None, serde_json::Value::Null)).await.unwrap();
        let handler = Arc::new(Slow { started: tokio::sync::Notify::new(), finished: AtomicBool::new(false) });
        let shutdown = CancellationToken::new();
        let consumer =
            tokio::spawn(consume(queue.clone(), handler.clone(), ConsumerOptions::default(), shutdown.clone()));
        handler.started.notified().await;
        shutdown.cancel();
        consumer.await.unwrap();
        assert!(handler.finished.load(Ordering::SeqCst), "the in-flight handler ran to the end");
        assert!(queue.pending().await.is_empty(), "and its event was acked");
    }

    #[tokio::test]
    async fn a_failing_in_flight_event_returns_to_the_queue_at_shutdown() {
        struct Fails;
        #[async_trait]
        impl EventHandler for Fails {
            async fn handle(&self, _: &Envelope) -> Result<(), EventError> {
                Err(EventError::Retry("down".into()))
            }
        }
        let queue = Arc::new(InProcessQueue::new(5, Duration::from_secs(30)));
        let event = Envelope::new("x", None, serde_json::Value::Null);
        queue.send(&event).await.unwrap();
        let shutdown = CancellationToken::new();
        let options = ConsumerOptions { retry_delay: Duration::from_secs(60), ..ConsumerOptions::default() };
        let consumer = tokio::spawn(consume(queue.clone(), Arc::new(Fails), options, shutdown.clone()));
        while queue.pending().await.is_empty() {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        consumer.await.unwrap();
        let pending = queue.pending().await;
        assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), [event.id], "still queued for the next start");
    }
}

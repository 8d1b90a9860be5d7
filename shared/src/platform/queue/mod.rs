//! The event queue: one trait, an in-process backend for `berth serve`, and SQS.
//!
//! Delivery is at least once. A handler that fails (or panics, or outlives the visibility
//! timeout) gets the event again; after `max_attempts` deliveries the event is dead-lettered.
//! Handlers must therefore be idempotent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::AccountId;

use crate::platform::clock::unix_now;
use crate::platform::store::StoreError;

mod in_process;
mod sqs;

pub use in_process::InProcessQueue;
pub use sqs::{NotAnEnvelope, SQS_MAX_BATCH, SqsQueue, custom_endpoint, envelope_from_sqs};

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
    /// SQS failed or did not answer.
    #[error("queue backend: {message}")]
    Sqs {
        /// The service's own message (the source's display says only "service error").
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The in-process queue's journal could not be read or written.
    #[error("queue journal: {0}")]
    Journal(#[source] StoreError),
    /// An envelope could not be encoded.
    #[error("invalid envelope: {0}")]
    Encode(#[source] serde_json::Error),
    /// An envelope is over [`MAX_ENVELOPE_BYTES`], or otherwise not one, for the reason given.
    #[error("invalid envelope: {0}")]
    Envelope(String),
    /// A queue was made but its URL was not in the answer.
    #[error("the queue service made a queue but did not answer its URL")]
    NoQueueUrl,
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
    /// Whether a receive dropped while it waits may still take events (a long poll on a
    /// server, which hands them to the closed connection): a stopping consumer then waits it
    /// out and hands back what it brings.
    fn receives_outlive_their_caller(&self) -> bool {
        false
    }
}

fn encode(envelope: &Envelope) -> Result<String, QueueError> {
    let body = serde_json::to_string(envelope).map_err(QueueError::Encode)?;
    if body.len() > MAX_ENVELOPE_BYTES {
        return Err(QueueError::Envelope(format!("{} bytes is over the {MAX_ENVELOPE_BYTES}-byte limit", body.len())));
    }
    Ok(body)
}

/// Shared handle to any queue.
pub type SharedQueue = Arc<dyn EventQueue>;

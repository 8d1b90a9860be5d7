//! The in-process queue of `berth serve`: SQS semantics inside one process, optionally
//! journalled to a local store so its events survive a crash.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Delivery, Envelope, EventQueue, QueueError, encode};
use crate::platform::store::DocumentStore;

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
        let mut queue = Self::new(max_attempts, visibility);
        let dead: Vec<Envelope> = journal
            .list::<Envelope>("dead")
            .await
            .map_err(QueueError::Journal)?
            .into_iter()
            .map(|(_, d)| d.value)
            .collect();
        let mut waiting: Vec<Envelope> = journal
            .list::<Envelope>("events")
            .await
            .map_err(QueueError::Journal)?
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
            written.map_err(QueueError::Journal)?;
            self.journal_settled(&envelope.id).await?;
        }
        Ok(())
    }

    async fn journal_settled(&self, id: &Uuid) -> Result<(), QueueError> {
        let Some(journal) = &self.journal else { return Ok(()) };
        journal.delete(&journal_path("events", id)).await.map_err(QueueError::Journal)
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
            written.map_err(QueueError::Journal)?;
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

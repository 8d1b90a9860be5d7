//! Requests to the event queue, counted by kind. Apart from `metrics`, which the store's own
//! counting uses: the queue's journal is a store, and a module cycle would join them.

use std::time::Duration;

use async_trait::async_trait;

use crate::platform::metrics::QUEUE_REQUESTS;
use crate::platform::queue::{Delivery, Envelope, EventQueue, QueueError, SharedQueue};

/// An event queue whose requests are counted in [`QUEUE_REQUESTS`].
pub struct MeteredQueue {
    inner: SharedQueue,
}

impl MeteredQueue {
    /// Wraps `inner`.
    pub fn wrap(inner: SharedQueue) -> SharedQueue {
        std::sync::Arc::new(Self { inner })
    }
}

fn count(kind: &'static str) {
    metrics::counter!(QUEUE_REQUESTS, "kind" => kind).increment(1);
}

#[async_trait]
impl EventQueue for MeteredQueue {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        count("send");
        self.inner.send(envelope).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        count("receive");
        self.inner.receive(max, wait).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        count("ack");
        self.inner.ack(delivery).await
    }

    async fn release(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        count("release");
        self.inner.release(delivery, delay).await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Envelope>, QueueError> {
        count("dead_letters");
        self.inner.dead_letters(max).await
    }

    fn receives_outlive_their_caller(&self) -> bool {
        self.inner.receives_outlive_their_caller()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::MeteredQueue;
    use crate::platform::metrics::prometheus_builder;
    use crate::platform::queue::{Envelope, InProcessQueue};

    #[tokio::test]
    async fn every_queue_request_is_counted_by_kind() {
        let recorder = prometheus_builder().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let queue = MeteredQueue::wrap(Arc::new(InProcessQueue::new(3, Duration::from_secs(30))));
        for _ in 0..2 {
            queue.send(&Envelope::new("test.event", None, serde_json::Value::Null)).await.unwrap();
        }
        let deliveries = queue.receive(10, Duration::from_millis(10)).await.unwrap();
        assert_eq!(deliveries.len(), 2);
        queue.ack(&deliveries[0]).await.unwrap();
        queue.release(&deliveries[1], Duration::ZERO).await.unwrap();
        let text = handle.render();
        for (kind, count) in [("send", 2), ("receive", 1), ("ack", 1), ("release", 1)] {
            let line = format!("berth_queue_requests_total{{kind=\"{kind}\"}} {count}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}

//! Queue conformance: the same suite against the in-process queue and SQS on moto_server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use berth_shared::platform::aws::SQS;
use berth_shared::platform::events::{ConsumerOptions, EventError, EventHandler, consume};
use berth_shared::platform::queue::{Envelope, EventQueue, InProcessQueue, SqsQueue};
use berth_shared::platform::store::{DocumentStore, StoreError};
use berth_tests::Moto;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const MAX_ATTEMPTS: u32 = 3;

fn options() -> ConsumerOptions {
    ConsumerOptions { batch: 10, wait: Duration::from_secs(1), retry_delay: Duration::ZERO }
}

/// Receives until `want` deliveries came or `patience` receives came back empty.
async fn receive_n(queue: &dyn EventQueue, want: usize) -> Vec<berth_shared::platform::queue::Delivery> {
    let mut got = Vec::new();
    let mut empty = 0;
    while got.len() < want && empty < 5 {
        let batch = queue.receive(want - got.len(), Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            empty += 1;
        }
        got.extend(batch);
    }
    got
}

/// Runs `consume` with `handler` until `done` says so (or 30 s pass), then stops it.
async fn consume_until(queue: Arc<dyn EventQueue>, handler: Arc<dyn EventHandler>, done: impl Fn() -> bool) {
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consume(queue, handler, options(), shutdown.clone()));
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "consumer did not finish in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    consumer.await.unwrap();
}

async fn send_receive_delete(queue: &dyn EventQueue) {
    let sent: Vec<Envelope> = (0..3).map(|i| Envelope::new("test.basic", None, json!({ "i": i }))).collect();
    for envelope in &sent {
        queue.send(envelope).await.unwrap();
    }
    let received = receive_n(queue, 3).await;
    let mut ids: Vec<_> = received.iter().map(|d| d.envelope.id).collect();
    let mut expected: Vec<_> = sent.iter().map(|e| e.id).collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
    for delivery in &received {
        assert_eq!(delivery.envelope.attempt, 1, "first delivery is attempt 1");
        assert_eq!(delivery.envelope.payload, sent.iter().find(|e| e.id == delivery.envelope.id).unwrap().payload);
        queue.ack(delivery).await.unwrap();
    }
    assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "acked events are gone");
}

/// Fails the first attempt of every event, then succeeds. Records the attempts it saw.
#[derive(Default)]
struct FlakyOnce {
    attempts: Mutex<Vec<u32>>,
}

#[async_trait]
impl EventHandler for FlakyOnce {
    async fn handle(&self, event: &Envelope) -> Result<(), EventError> {
        self.attempts.lock().await.push(event.attempt);
        if event.attempt == 1 { Err(EventError::Retry("first attempt fails".into())) } else { Ok(()) }
    }
}

async fn redelivery_after_failure(queue: Arc<dyn EventQueue>) {
    let handler = Arc::new(FlakyOnce::default());
    queue.send(&Envelope::new("test.flaky", None, json!({}))).await.unwrap();
    let seen = handler.clone();
    consume_until(queue.clone(), handler.clone(), move || {
        seen.attempts.try_lock().map(|a| a.len() >= 2).unwrap_or(false)
    })
    .await;
    assert_eq!(*handler.attempts.lock().await, [1, 2], "failed once, redelivered once, then settled");
    assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());
}

struct AlwaysFails(AtomicU32);

#[async_trait]
impl EventHandler for AlwaysFails {
    async fn handle(&self, _: &Envelope) -> Result<(), EventError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(EventError::Retry("always".into()))
    }
}

async fn dead_letter_after_attempts(queue: Arc<dyn EventQueue>) {
    let poison = Envelope::new("test.poison", None, json!({ "bad": true }));
    queue.send(&poison).await.unwrap();
    let handler = Arc::new(AlwaysFails(AtomicU32::new(0)));
    let probe = queue.clone();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let found = dead.clone();
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consume(queue.clone(), handler.clone(), options(), shutdown.clone()));
    let start = std::time::Instant::now();
    loop {
        let letters = probe.dead_letters(10).await.unwrap();
        if letters.iter().any(|e| e.id == poison.id) {
            *found.lock().await = letters;
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "event was never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    consumer.await.unwrap();
    assert_eq!(handler.0.load(Ordering::SeqCst), MAX_ATTEMPTS, "handled exactly max-attempts times");
    let letter = dead.lock().await.iter().find(|e| e.id == poison.id).cloned().unwrap();
    assert_eq!(
        (letter.kind.as_str(), &letter.payload),
        ("test.poison", &poison.payload),
        "dead letter keeps the event"
    );
    assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "dead letters leave the main queue");
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    count: u64,
    applied: Vec<uuid::Uuid>,
}

/// Idempotent: applies each event id once, by compare-and-swap on the tally.
struct CountOnce {
    store: DocumentStore,
    handled: AtomicU32,
}

#[async_trait]
impl EventHandler for CountOnce {
    async fn handle(&self, event: &Envelope) -> Result<(), EventError> {
        self.store
            .modify::<Tally, StoreError, _>("tally.json", |tally| {
                let mut tally = tally.unwrap_or_default();
                if !tally.applied.contains(&event.id) {
                    tally.count += 1;
                    tally.applied.push(event.id);
                }
                Ok(tally)
            })
            .await
            .map_err(|e| EventError::Retry(e.to_string()))?;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn duplicate_changes_nothing(queue: Arc<dyn EventQueue>) {
    let event = Envelope::new("test.count", None, json!({}));
    queue.send(&event).await.unwrap();
    queue.send(&event).await.unwrap();
    let handler = Arc::new(CountOnce { store: DocumentStore::in_memory(), handled: AtomicU32::new(0) });
    let seen = handler.clone();
    consume_until(queue.clone(), handler.clone(), move || seen.handled.load(Ordering::SeqCst) >= 2).await;
    let tally = handler.store.get::<Tally>("tally.json").await.unwrap().unwrap().value;
    assert_eq!(tally.count, 1, "the duplicate changed nothing");
    assert_eq!(tally.applied, [event.id]);
    assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "both deliveries were settled");
}

fn in_process() -> Arc<dyn EventQueue> {
    Arc::new(InProcessQueue::new(MAX_ATTEMPTS, Duration::from_secs(5)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_queue_conforms() {
    send_receive_delete(in_process().as_ref()).await;
    redelivery_after_failure(in_process()).await;
    dead_letter_after_attempts(in_process()).await;
    duplicate_changes_nothing(in_process()).await;
}

/// An event received but never settled comes back after the visibility timeout. The timeout
/// (2 s) is far longer than the look that follows the receive, so a loaded machine cannot make
/// the lease look expired. (Not paused tokio time: its `test-util` feature would reach every
/// binary built with the workspace and put a lock in `Instant::now`.)
#[tokio::test]
async fn in_process_queue_redelivers_unsettled_after_visibility_timeout() {
    let queue = InProcessQueue::new(MAX_ATTEMPTS, Duration::from_secs(2));
    queue.send(&Envelope::new("test.lost", None, json!({}))).await.unwrap();
    let first = queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    let received = std::time::Instant::now();
    let hidden = queue.receive(1, Duration::from_millis(50)).await.unwrap();
    if received.elapsed() < Duration::from_millis(1500) {
        assert!(hidden.is_empty(), "hidden while leased");
    }
    let again = queue.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!((again[0].envelope.id, again[0].envelope.attempt), (first[0].envelope.id, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_queue_on_moto_conforms() {
    let moto = Moto::start();
    let queue = |name: &'static str| {
        let moto = &moto;
        async move {
            let (url, dlq) = moto.queue_with_dead_letters(name, MAX_ATTEMPTS, 5).await;
            Arc::new(SqsQueue::new(moto.aws(&SQS), url, Some(dlq))) as Arc<dyn EventQueue>
        }
    };
    send_receive_delete(queue("basic").await.as_ref()).await;
    redelivery_after_failure(queue("flaky").await).await;
    dead_letter_after_attempts(queue("poison").await).await;
    duplicate_changes_nothing(queue("dupes").await).await;
}

struct Untouched;

#[async_trait]
impl EventHandler for Untouched {
    async fn handle(&self, event: &Envelope) -> Result<(), EventError> {
        panic!("a stopped consumer handled {}", event.id);
    }
}

/// A consumer told to stop while its long poll waits on SQS: the poll is waited out and what it
/// took is handed back, so the next event is not hidden for the visibility timeout (moto, as
/// SQS, hands events to a long poll whose client went away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_sqs_consumer_leaves_no_long_poll_behind_to_take_events() {
    let moto = Moto::start();
    let (url, dlq) = moto.queue_with_dead_letters("orphans", MAX_ATTEMPTS, 60).await;
    let queue: Arc<dyn EventQueue> = Arc::new(SqsQueue::new(moto.aws(&SQS), url, Some(dlq)));
    let shutdown = CancellationToken::new();
    let options = ConsumerOptions { wait: Duration::from_secs(3), ..options() };
    let consumer = tokio::spawn(consume(queue.clone(), Arc::new(Untouched), options, shutdown.clone()));
    // Its receive is waiting on moto now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    let event = Envelope::new("test.orphan", None, json!({}));
    queue.send(&event).await.unwrap();
    consumer.await.unwrap();
    let got = receive_n(queue.as_ref(), 1).await;
    assert_eq!(
        got.first().map(|d| d.envelope.id),
        Some(event.id),
        "the event was hidden by the stopped consumer's poll"
    );
}

/// A queue's own life on moto: created with its attributes, found by name, used, deleted
/// (twice is once), and an error that keeps SQS's code once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_queues_are_created_found_and_deleted_on_moto() {
    let moto = Moto::start();
    let attributes = std::collections::BTreeMap::from([("VisibilityTimeout".to_owned(), "7".to_owned())]);
    let queue = SqsQueue::create_with(moto.aws(&SQS), "news-1", &attributes).await.unwrap();
    assert!(queue.url().ends_with("/news-1"), "{}", queue.url());
    let found = SqsQueue::named(moto.aws(&SQS), "news-1").await.unwrap();
    assert_eq!(found.url(), queue.url());
    let envelope = Envelope::new("test.event", None, json!({ "n": 1 }));
    queue.send(&envelope).await.unwrap();
    let got = receive_n(&found, 1).await;
    assert_eq!((got[0].envelope.id, got[0].envelope.attempt), (envelope.id, 1));
    found.ack(&got[0]).await.unwrap();
    queue.delete_queue().await.unwrap();
    queue.delete_queue().await.unwrap();
    let missing = SqsQueue::named(moto.aws(&SQS), "news-1").await.err().expect("no queue of that name").to_string();
    assert!(missing.contains("GetQueueUrl: HTTP 400: "), "{missing}");
    assert!(missing.contains("QueueDoesNotExist") || missing.contains("NonExistentQueue"), "{missing}");
    let refused = queue.send(&envelope).await.unwrap_err().to_string();
    assert!(refused.starts_with("queue backend: SendMessage: HTTP 400: "), "{refused}");
}

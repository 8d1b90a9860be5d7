//! The functions under the real Lambda emulator (`cargo lambda watch`), fed from SQS on
//! `moto_server` by the event-source mapping emulation of `berth_tests::event_source`:
//! partial batch failures and dead-lettering, a whole-batch function error, and the seed flow
//! with every function under the emulator, state in S3 and events in SQS on moto.
//!
//! The emulator builds the functions into `target/lambda-watch` (see `berth_tests::lambda_watch`);
//! the first build ever takes minutes.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use berth_shared::events::PING;
use berth_shared::queue::Envelope;
use berth_tests::event_source::{EventSourceMapping, Invocation, Outcome};
use berth_tests::lambda_watch::LambdaWatch;
use berth_tests::{Moto, berth_bin, function_key_env};
use serde_json::json;

/// The keys every function needs, made in `dir`, as `(name, value)` pairs.
fn key_env(dir: &Path) -> Vec<(String, String)> {
    function_key_env(&berth_bin("berth"), dir)
        .into_iter()
        .map(|(name, path)| (name.to_owned(), path.display().to_string()))
        .collect()
}

/// Sends `bodies` to `queue` in one `SendMessageBatch`; returns their message ids in order.
async fn send_batch(sqs: &aws_sdk_sqs::Client, queue: &str, bodies: &[String]) -> Vec<String> {
    let entries: Vec<SendMessageBatchRequestEntry> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body).build().unwrap())
        .collect();
    let output = sqs.send_message_batch().queue_url(queue).set_entries(Some(entries)).send().await.expect("send batch");
    assert!(output.failed.is_empty(), "{:?}", output.failed);
    let mut sent = output.successful;
    sent.sort_by_key(|entry| entry.id.parse::<usize>().unwrap());
    sent.into_iter().map(|entry| entry.message_id).collect()
}

/// Messages in `queue`, visible or in flight.
async fn messages_in(sqs: &aws_sdk_sqs::Client, queue: &str) -> u64 {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    attributes.values().map(|count| count.parse::<u64>().unwrap()).sum()
}

/// Waits until the dead-letter queue holds a message, and returns its body (leaving it there).
async fn dead_letter(sqs: &aws_sdk_sqs::Client, dlq: &str, timeout: Duration, watch: &LambdaWatch) -> String {
    let started = Instant::now();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(dlq)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the DLQ");
        let messages = output.messages.unwrap_or_default();
        if let Some(message) = messages.first() {
            assert_eq!(messages.len(), 1, "one message dead-lettered");
            return message.body.clone().unwrap();
        }
        if started.elapsed() > timeout {
            watch.fail(&format!("nothing reached the dead-letter queue within {timeout:?}"));
        }
    }
}

fn deliveries_of(invocations: &[Invocation], id: &str) -> Vec<u32> {
    invocations.iter().flat_map(|i| &i.records).filter(|r| r.message_id == id).map(|r| r.receive_count).collect()
}

const MAX_RECEIVES: u32 = 3;
const VISIBILITY_SECONDS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_message_of_a_batch_is_redelivered_alone_then_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let sqs = moto.sqs();
    let (queue, dlq) = moto.queue_with_dead_letters("publish-checks", MAX_RECEIVES, VISIBILITY_SECONDS).await;
    let mut env = key_env(dir.path());
    env.push(("BERTH_STORE_URL".into(), "memory://".into()));
    let mut watch = LambdaWatch::start("berth-packages", dir.path(), &env);
    watch.ready().await;

    // Three pings and one event of a type the function has no handler for: it fails, always.
    let bad = Envelope::new("berth.no-such-event", None, json!({ "note": "fails on every delivery" }));
    let bodies: Vec<String> = [
        Envelope::new(PING, None, json!({})),
        Envelope::new(PING, None, json!({})),
        bad.clone(),
        Envelope::new(PING, None, json!({})),
    ]
    .iter()
    .map(|envelope| serde_json::to_string(envelope).unwrap())
    .collect();
    let ids = send_batch(&sqs, &queue, &bodies).await;
    let bad_id = ids[2].clone();

    let mut mapping = EventSourceMapping::new(sqs.clone(), &queue, &watch.invoke_url()).await;
    mapping.batching_window = Duration::from_secs(1);
    let running = mapping.spawn();
    let body = dead_letter(&sqs, &dlq, Duration::from_secs(60), &watch).await;
    running_stopped(&running, &watch);
    let invocations = running.invocations();
    running.stop().await;

    // The dead-lettered message is the failing one, byte for byte.
    assert_eq!(body, bodies[2], "the DLQ holds the failing event");
    // First batch: all four, only the bad one reported.
    let first = &invocations[0];
    let mut first_ids: Vec<String> = first.records.iter().map(|r| r.message_id.clone()).collect();
    first_ids.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(first_ids, all, "the first batch holds all four messages: {invocations:#?}");
    assert_eq!(first.outcome, Outcome::Answered { failures: vec![bad_id.clone()] }, "{invocations:#?}");
    // Every later batch is the bad message alone, reported again.
    for later in &invocations[1..] {
        let later_ids: Vec<&str> = later.records.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(later_ids, [bad_id.as_str()], "only the failed message comes back: {invocations:#?}");
        assert_eq!(later.outcome, Outcome::Answered { failures: vec![bad_id.clone()] });
    }
    // The pings were delivered once each; the bad one exactly MAX_RECEIVES times, each after
    // its visibility timeout ran out.
    for id in ids.iter().filter(|id| **id != bad_id) {
        assert_eq!(deliveries_of(&invocations, id), [1], "{id} delivered once: {invocations:#?}");
    }
    assert_eq!(deliveries_of(&invocations, &bad_id), (1..=MAX_RECEIVES).collect::<Vec<_>>(), "{invocations:#?}");
    for pair in invocations.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(u64::from(VISIBILITY_SECONDS) * 1000 - 100),
            "redelivered after {gap:?}, before the visibility timeout: {invocations:#?}"
        );
    }
    // Nothing left in the queue: the pings were deleted, the bad one moved.
    assert_eq!(messages_in(&sqs, &queue).await, 0, "the source queue is empty");
    let log = std::fs::read_to_string(&watch.log).unwrap();
    assert!(
        log.contains("no handler for event type 'berth.no-such-event'"),
        "the function logged why:\n{}",
        watch.tail()
    );
}

/// Fails the test if the mapping could not talk to SQS.
fn running_stopped(running: &berth_tests::event_source::RunningMapping, watch: &LambdaWatch) {
    let errors = running.errors();
    if !errors.is_empty() {
        watch.fail(&format!("the event-source mapping failed: {errors:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_leaves_the_whole_batch_to_be_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let sqs = moto.sqs();
    let (queue, dlq) = moto.queue_with_dead_letters("no-consumer", 2, 1).await;
    let mut env = key_env(dir.path());
    env.push(("BERTH_STORE_URL".into(), "memory://".into()));
    // render consumes no events: an SQS batch is a function error.
    let mut watch = LambdaWatch::start("berth-render", dir.path(), &env);
    watch.ready().await;

    let bodies: Vec<String> =
        (0..2).map(|_| serde_json::to_string(&Envelope::new(PING, None, json!({}))).unwrap()).collect();
    let ids = send_batch(&sqs, &queue, &bodies).await;
    let mut mapping = EventSourceMapping::new(sqs.clone(), &queue, &watch.invoke_url()).await;
    mapping.batching_window = Duration::from_secs(1);
    let running = mapping.spawn();
    // Both messages reach the DLQ (two receives each, both failed).
    let started = Instant::now();
    while messages_in(&sqs, &dlq).await < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "not dead-lettered: {:#?}", running.invocations());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running_stopped(&running, &watch);
    let invocations = running.invocations();
    running.stop().await;
    assert!(!invocations.is_empty());
    for invocation in &invocations {
        match &invocation.outcome {
            Outcome::BatchFailed { reason } => {
                assert!(reason.contains("this function consumes no events"), "{reason}")
            }
            other => panic!("expected a function error, got {other:?}"),
        }
    }
    for id in &ids {
        assert_eq!(deliveries_of(&invocations, id), [1, 2], "{id}: nothing deleted after a function error");
    }
    assert_eq!(messages_in(&sqs, &queue).await, 0);
}

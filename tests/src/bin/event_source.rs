//! `event-source`: the SQS event-source mapping emulation of `berth_tests::event_source` for a
//! local run by hand, next to `cargo lambda watch`:
//!
//! ```sh
//! event-source --queue-url http://127.0.0.1:5001/123456789012/berth-packages \
//!   --invoke-url http://127.0.0.1:9000/2015-03-31/functions/berth-packages/invocations \
//!   [--batch-size 10] [--batching-window-ms 500]
//! ```
//!
//! Credentials and region come from the usual `AWS_*` variables; a queue URL not on
//! amazonaws.com (moto, ElasticMQ) is also the endpoint. One line per invocation (message ids,
//! receive counts, the outcome; never the bodies) until Ctrl-C.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_shared::platform::queue::custom_endpoint;
use berth_tests::event_source::EventSourceMapping;

const USAGE: &str =
    "usage: event-source --queue-url URL --invoke-url URL [--batch-size 1..10] [--batching-window-ms N]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut queue_url = None;
    let mut invoke_url = None;
    let mut batch_size = 10usize;
    let mut window = Duration::from_millis(500);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--queue-url", Some(v)) => queue_url = Some(v),
            ("--invoke-url", Some(v)) => invoke_url = Some(v),
            ("--batch-size", Some(v)) => match v.parse() {
                Ok(n) if (1..=10).contains(&n) => batch_size = n,
                _ => return usage(),
            },
            ("--batching-window-ms", Some(v)) => match v.parse() {
                Ok(ms) => window = Duration::from_millis(ms),
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    let (Some(queue_url), Some(invoke_url)) = (queue_url, invoke_url) else { return usage() };
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    // The SDK's client (the tests' own; Berth's binaries call SQS through their own layer).
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(region.clone()));
    if let Some(endpoint) = custom_endpoint(&queue_url) {
        loader = loader.endpoint_url(endpoint);
    }
    let sqs = aws_sdk_sqs::Client::new(&loader.load().await);
    let mut mapping = match EventSourceMapping::try_new(sqs, &queue_url, &invoke_url).await {
        Ok(mapping) => mapping,
        Err(error) => {
            eprintln!("event-source: {error}");
            return ExitCode::FAILURE;
        }
    };
    mapping.batch_size = batch_size;
    mapping.batching_window = window;
    eprintln!("event-source: {queue_url} -> {invoke_url} (batches of up to {batch_size}, window {window:?})");
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            polled = mapping.poll_once(Duration::from_secs(20), started) => match polled {
                Ok(Some(invocation)) => {
                    let records: Vec<String> = invocation
                        .records
                        .iter()
                        .map(|r| format!("{} (receive {})", r.message_id, r.receive_count))
                        .collect();
                    println!("{:>9.3}s  [{}]  {:?}", invocation.at.as_secs_f64(), records.join(", "), invocation.outcome);
                }
                Ok(None) => {}
                Err(error) => {
                    eprintln!("event-source: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

//! Release fan-out at scale: N simulated hosts (in-process agents with no-op scripts) through
//! the real router, event handlers and an in-memory store that counts its writes.
//! `BENCH_HOSTS` (default 10000) and `BENCH_BATCHES` (default 3).
//!
//! Prints: time to plan and dispatch (release request until every host holds its first job),
//! store writes and queue messages per host, the batch-to-batch overhead (last report of a
//! batch until the first job of the next is handed out), and the process's peak RSS (Berth's
//! router, engine and store together with the simulated agents and their tokens).
//! `BENCH_TRACE_RSS=1` also prints when the RSS grew, and the size of one agent's future;
//! `BENCH_TRACE=1` every store write and `BENCH_TRACE_READS=1` every store read, by path.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

// The in-process call the releases tests use, shared rather than copied.
#[path = "../../../functions/releases/tests/common/mod.rs"]
mod common;

use berth_tests::goals::{self, Goal};
use common::{call, call_bytes};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use berth_shared::names::AccountId;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::{ConsumerOptions, consume};
use berth_shared::platform::queue::{Delivery, Envelope, EventQueue, InProcessQueue, QueueError};
use berth_shared::platform::store::DocumentStore;
use berth_shared::release::{Job, JobKind, Report};
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use serde_json::json;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Counting {
    inner: InMemory,
    writes: AtomicU64,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("counting memory store")
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        // Looked up once: an environment lookup on every write was a few percent of the CPU
        // per host this bench reports.
        static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *TRACE.get_or_init(|| std::env::var_os("BENCH_TRACE").is_some()) {
            eprintln!("write {location}");
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        // Which documents a host costs reads of, by path (how the record and state reuse of
        // the sixth pass was found).
        static TRACE_READS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *TRACE_READS.get_or_init(|| std::env::var_os("BENCH_TRACE_READS").is_some()) {
            eprintln!("read {location}");
        }
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.copy_opts(from, to, options).await
    }
}

struct CountingQueue {
    inner: InProcessQueue,
    sent: AtomicU64,
}

#[async_trait]
impl EventQueue for CountingQueue {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.send(envelope).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.inner.ack(delivery).await
    }
    async fn release(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.inner.release(delivery, delay).await
    }
    async fn dead_letters(&self, max: usize) -> Result<Vec<Envelope>, QueueError> {
        self.inner.dead_letters(max).await
    }
}

#[derive(Default)]
struct Timeline {
    first_job: Option<Instant>,
    first_jobs: usize,
    /// When the last host got its first job.
    all_dispatched: Option<Instant>,
    /// The process's CPU time then.
    dispatch_cpu: Option<Duration>,
    /// Per batch: first run job handed out, last report taken.
    batch_first_job: Vec<Option<Instant>>,
    batch_last_report: Vec<Option<Instant>>,
}

impl Timeline {
    fn handed_out(&mut self, kind: JobKind, batch: usize, hosts: usize) {
        let now = Instant::now();
        self.first_job.get_or_insert(now);
        if kind == JobKind::Pull {
            self.first_jobs += 1;
            if self.first_jobs == hosts {
                self.all_dispatched = Some(now);
                self.dispatch_cpu = berth_tests::cpu_time();
                if std::env::var_os("BENCH_TRACE_RSS").is_some() {
                    eprintln!("dispatched: peak {:?} MiB", berth_tests::peak_rss_mib());
                }
            }
        } else {
            self.batch_first_job[batch].get_or_insert(now);
        }
    }
}

/// What the bench reads of the release request's answer.
#[derive(serde::Deserialize)]
struct Planned {
    id: String,
    batches: Vec<PlannedBatch>,
}

#[derive(serde::Deserialize)]
struct PlannedBatch {
    hosts: Vec<PlannedHost>,
}

#[derive(serde::Deserialize)]
struct PlannedHost {
    host: String,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let hosts: usize = std::env::var("BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let batches: usize = std::env::var("BENCH_BATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let base = FunctionContext::ephemeral();
    let store = Arc::new(Counting::default());
    let queue = Arc::new(CountingQueue {
        inner: InProcessQueue::new(base.config.queue_max_attempts, base.config.queue_visibility),
        sent: AtomicU64::new(0),
    });
    let context =
        FunctionContext { store: DocumentStore::with_native_swap(store.clone()), queue: queue.clone(), ..base.clone() };
    // One process over its own store, as `berth serve` on its data directory is.
    let engine = berth_releases::engine::Engine::new(context.clone()).as_sole_process();
    let router = berth_releases::router(engine.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(consume(
        queue.clone(),
        Arc::new(berth_releases::events(engine)),
        ConsumerOptions { wait: Duration::from_millis(200), ..ConsumerOptions::default() },
        shutdown.clone(),
    ));
    let account = AccountId::parse("bench").unwrap();
    let token = context.account_keys.issue(&account, 3600).unwrap();
    let registry = &context.config.registry.host;

    call(&router, Method::POST, "/v1/applications", &token, Some(json!({ "name": "app" }))).await;
    let (_, group) =
        call(&router, Method::POST, "/v1/applications/app/groups", &token, Some(json!({ "name": "fleet" }))).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    let deployment = json!({
        "name": "noop", "image": { "address": format!("{registry}/bench/app:v1") },
        "working_directory": "/srv/app", "start_script": "true", "stop_script": "true",
    });
    call(&router, Method::POST, "/v1/applications/app/deployments", &token, Some(deployment)).await;
    let registering = Instant::now();
    let host_tokens: Vec<String> = futures::future::join_all((0..hosts).map(|i| {
        let (router, join) = (router.clone(), join.clone());
        async move {
            let (status, registered) =
                call(&router, Method::POST, "/v1/agent/register", &join, Some(json!({ "host": format!("h{i:06}") })))
                    .await;
            assert_eq!(status, StatusCode::OK);
            registered["host_token"].as_str().unwrap().to_owned()
        }
    }))
    .await;
    let rss = berth_tests::peak_rss_mib().map_or("unknown".into(), |m| format!("{m} MiB"));
    println!("registered {hosts} hosts in {:?} (peak RSS so far {rss})", registering.elapsed());

    let timeline = Arc::new(Mutex::new(Timeline {
        batch_first_job: vec![None; batches],
        batch_last_report: vec![None; batches],
        ..Timeline::default()
    }));
    let writes_before = store.writes.load(Ordering::Relaxed);
    let sent_before = queue.sent.load(Ordering::Relaxed);
    let started = Instant::now();
    let cpu_before = berth_tests::cpu_time();
    if std::env::var_os("BENCH_TRACE_RSS").is_some() {
        // When the peak is reached, against the dispatch and batch times printed below.
        std::thread::spawn(move || {
            let mut most = 0;
            loop {
                let rss = berth_tests::rss_mib().unwrap_or(0);
                if rss > most {
                    most = rss;
                    eprintln!("rss {rss} MiB at {:?}", started.elapsed());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    let body = json!({ "application": "app", "deployment": "noop", "group": "fleet", "batches": batches });
    // Asked from a task, as a server's connection task would: not from the bench's own thread.
    let (status, answer) = {
        let (router, token) = (router.clone(), token.clone());
        let body = Some(body.to_string().into_bytes());
        tokio::spawn(async move { call_bytes(&router, Method::POST, "/v1/releases", &token, body).await })
            .await
            .unwrap()
    };
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&answer));
    let planned = started.elapsed();
    // The answer lists every host (about 60 MiB as a JSON value at 100,000): only each host's
    // batch is kept, by the host's number.
    let release: Planned = serde_json::from_slice(&answer).unwrap();
    drop(answer);
    let id = release.id;
    let mut batch_of = vec![usize::MAX; hosts];
    for (b, batch) in release.batches.into_iter().enumerate() {
        for planned in batch.hosts {
            batch_of[planned.host[1..].parse::<usize>().unwrap()] = b;
        }
    }
    assert!(!batch_of.contains(&usize::MAX), "every host is in a batch");
    let batch_of = Arc::new(batch_of);
    if std::env::var_os("BENCH_TRACE_RSS").is_some() {
        eprintln!("after plan: peak {:?} MiB", berth_tests::peak_rss_mib());
    }

    // Each agent is a task of its own, as real agents are processes of their own: the
    // runtime's workers share them, instead of one task polling 100,000 futures in turn.
    let agents = host_tokens.into_iter().enumerate().map(|(i, host_token)| {
        let probe_router = &router;
        let (router, timeline, batch_of) = (router.clone(), timeline.clone(), batch_of.clone());
        let agent = async move {
            let batch = batch_of[i];
            loop {
                let (status, answer) =
                    call_bytes(&router, Method::GET, "/v1/agent/jobs?wait_seconds=30", &host_token, None).await;
                if status == StatusCode::NO_CONTENT {
                    continue;
                }
                // Only the report's bytes are kept across the next call (the job, its answer
                // and the report end with this block): a real agent's state is not this
                // process's, so each simulated one keeps as little as it can.
                let (kind, body) = {
                    let job: Job = serde_json::from_slice(&{ answer }).unwrap();
                    let kind = job.kind;
                    timeline.lock().unwrap().handed_out(kind, batch, hosts);
                    let report = Report::succeeded(job.job_id, job.release, kind);
                    (kind, Some(serde_json::to_vec(&report).unwrap()))
                };
                let (status, answer) = call_bytes(&router, Method::POST, "/v1/agent/reports", &host_token, body).await;
                assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
                if kind == JobKind::Run {
                    timeline.lock().unwrap().batch_last_report[batch] = Some(Instant::now());
                    return;
                }
            }
        };
        if i == 0 && std::env::var_os("BENCH_TRACE_RSS").is_some() {
            eprintln!("agent future: {} bytes", std::mem::size_of_val(&agent));
            let call = call_bytes(probe_router, Method::GET, "/", "", None);
            eprintln!("of which its call: {} bytes", std::mem::size_of_val(&call));
        }
        tokio::spawn(agent)
    });
    for agent in futures::future::join_all(agents).await {
        agent.expect("a simulated agent panicked");
    }
    // Every host reported; wait for the release to end.
    loop {
        let (_, now) = call(&router, Method::GET, &format!("/v1/releases/{id}"), &token, None).await;
        if now["status"] != "running" {
            assert_eq!(now["status"], "succeeded", "{}", now["reason"]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    let writes = store.writes.load(Ordering::Relaxed) - writes_before;
    let sent = queue.sent.load(Ordering::Relaxed) - sent_before;
    let t = std::mem::take(&mut *timeline.lock().unwrap());
    let first = t.first_job.map(|f| f - started).unwrap_or_default();
    let dispatch = t.all_dispatched.map(|f| f - started).unwrap_or_default();
    println!("hosts {hosts}, batches {batches}");
    println!("plan (release request answered):          {planned:?}");
    println!("first job handed out:                     {first:?}");
    let goal = if hosts > 10_000 { 2.0 } else { 1.0 };
    println!("plan and dispatch (every host has a job): {dispatch:?}   goal < {goal} s");
    goals::report(Goal::at_most(format!("plan and dispatch of {hosts} hosts"), dispatch.as_secs_f64(), goal, "s"));
    // On a noisy machine the wall time varies twice over; the CPU it took varies less.
    if let (Some(before), Some(after)) = (cpu_before, t.dispatch_cpu) {
        let cpu = after.saturating_sub(before);
        let per_host = cpu.as_secs_f64() * 1e6 / hosts as f64;
        println!("CPU of plan and dispatch (both cores):   {cpu:?}, {per_host:.0} µs per host");
        goals::report(Goal::at_most(format!("CPU per host of plan and dispatch, {hosts} hosts"), per_host, 40.0, "µs"));
    }
    println!(
        "store writes per host:                    {:.2} ({writes} in all)   goal <= 4",
        writes as f64 / hosts as f64
    );
    println!("queue messages per host:                  {:.2} ({sent} in all)   goal <= 2", sent as f64 / hosts as f64);
    goals::report(Goal::at_most(
        format!("store writes per host, {hosts} hosts"),
        writes as f64 / hosts as f64,
        // Four a host (a successful host's ledger is the fourth) and the release's own few
        // documents on top: about a thousandth of a write a host at 10,000 hosts.
        4.01,
        "",
    ));
    goals::report(Goal::at_most(
        format!("queue messages per host, {hosts} hosts"),
        sent as f64 / hosts as f64,
        2.0,
        "",
    ));
    for b in 1..batches {
        if let (Some(last), Some(first)) = (t.batch_last_report[b - 1], t.batch_first_job[b]) {
            println!(
                "batch {b} -> {} overhead:                 {:?}   goal < 1 s",
                b + 1,
                first.saturating_duration_since(last)
            );
        }
    }
    println!("whole release:                            {total:?}");
    match berth_tests::peak_rss_mib() {
        Some(mib) => {
            println!("peak RSS of the process:                  {mib} MiB   goal <= 512 MiB at 100,000 hosts");
            if hosts >= 100_000 {
                goals::report(Goal::at_most(format!("peak RSS, {hosts} hosts"), mib as f64, 512.0, "MiB"));
            }
        }
        None => println!("peak RSS of the process:                  unknown (no /proc/self/status)"),
    }
    shutdown.cancel();
    let _ = consumer.await;
}

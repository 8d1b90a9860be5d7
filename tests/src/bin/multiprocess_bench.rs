//! Several `berth serve` processes over one S3 bucket and one SQS queue (moto) against one:
//! a release of `BENCH_HOSTS` (default 50) simulated hosts in `BENCH_BATCHES` (default 2)
//! batches, on 1 process and on 2, in alternating order over `BENCH_ROUNDS` (default 3) rounds.
//! Each host's requests go round-robin over the processes (as behind a load balancer), so a
//! report often lands in a process other than the one that advances the release, and a held
//! poll in one other than the one that moved it.
//!
//! `BENCH_BERTH_BINARIES` (paths joined by `:`) runs each `berth` binary given in every round,
//! to compare builds in the same loop (the goal is reported for the first); by default, the
//! `berth` beside this bench.
//!
//! Prints, per run, the release's time (request answered until `succeeded`) and its handoffs
//! (a phase's last report until the next phase's first job); then the medians and the goal:
//! 2 processes take no longer than 1 (a small margin for timing noise, see [`MARGIN`]).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_shared::release::{Job, JobKind, Report};
use berth_tests::berth::BerthServe;
use berth_tests::goals::{self, Goal};
use berth_tests::{Moto, berth_bin};
use serde_json::{Value, json};

const BUCKET: &str = "berth-multiprocess";

/// How far over 1 the ratio may be: a second process adds work of its own on the shared S3
/// and SQS (its own plan, snapshot and report reads, its sweeps: about 15% more store
/// requests here), which costs a little when the store is the bottleneck; a cross-process
/// delay that is slow (a second's refresh, a relisting timer) shows as 20% and more. Medians of
/// a few runs on a loaded machine swing much more than this (load 20 on 2 cores: the same
/// build from 0.94 to 1.43): read the ratio with the load printed beside it.
const MARGIN: f64 = 0.05;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench());
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// When each phase of one run started and ended, as the agents saw it.
#[derive(Debug, Default)]
struct Timeline {
    /// Per phase (0 the pull, then each batch): first and last job handed out, last report
    /// accepted.
    first_job: Vec<Option<Instant>>,
    last_job: Vec<Option<Instant>>,
    last_report: Vec<Option<Instant>>,
}

/// One run's figures.
struct Run {
    total: Duration,
    /// Per phase handoff: the phase's last report until the next one's first job.
    handoffs: Vec<Duration>,
    /// Per phase: its start (the release answered, or the last phase's last report) until
    /// its last host had its job.
    dispatches: Vec<Duration>,
    /// Store and queue requests of every process, from the release request to its end.
    store_requests: f64,
    queue_requests: f64,
    /// The same by kind (`store get`, `queue send`, ...), for the breakdown line.
    by_kind: std::collections::BTreeMap<String, f64>,
}

struct Fleet {
    moto: Moto,
    queue: String,
    dir: tempfile::TempDir,
    keys: Vec<(&'static str, std::path::PathBuf)>,
    http: reqwest::Client,
    token: String,
}

async fn bench() {
    let hosts = setting("BENCH_HOSTS", 50);
    let batches = setting("BENCH_BATCHES", 2);
    let rounds = setting("BENCH_ROUNDS", 3);
    let moto = Moto::start();
    moto.bucket(BUCKET).await;
    let (queue, _) = moto.queue_with_dead_letters("berth-multiprocess", 5, 30).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = berth_tests::function_key_env(&berth_bin("berth"), dir.path());
    let account_keys = berth_shared::platform::http::account::AccountKeys::load(
        &keys[0].1,
        berth_shared::platform::config::DEFAULT_ACCOUNT_ISSUER,
    )
    .unwrap();
    let account = berth_shared::names::AccountId::parse("bench").unwrap();
    let token = account_keys.issue(&account, 3600).unwrap();
    let fleet = Fleet { moto, queue, dir, keys, http: reqwest::Client::new(), token };

    let binaries: Vec<PathBuf> = match std::env::var("BENCH_BERTH_BINARIES") {
        Ok(list) => list.split(':').map(PathBuf::from).collect(),
        Err(_) => vec![berth_bin("berth")],
    };
    println!("{hosts} hosts, {batches} batches, S3 and SQS on moto; load {}", load());
    // Per binary, per process count.
    let mut runs: Vec<[Vec<Run>; 2]> = binaries.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for round in 0..rounds {
        // Alternating order: neither count always runs on a warmer (or busier) machine.
        let order = if round % 2 == 0 { [1, 2] } else { [2, 1] };
        for (b, binary) in binaries.iter().enumerate() {
            for processes in order {
                let run = release(&fleet, binary, (round, b), processes, hosts, batches).await;
                let ms = |d: &[Duration]| d.iter().map(|h| format!("{:.0}", h.as_secs_f64() * 1e3)).collect::<Vec<_>>();
                println!(
                    "round {round}: {}: {processes} process(es): release {:.2} s, handoffs {} ms, \
                     phase start to last job {} ms, store requests {}, queue requests {} (load {})",
                    binary.display(),
                    run.total.as_secs_f64(),
                    ms(&run.handoffs).join(", "),
                    ms(&run.dispatches).join(", "),
                    run.store_requests,
                    run.queue_requests,
                    load()
                );
                let kinds: Vec<String> = run.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
                println!("    by kind: {}", kinds.join(", "));
                runs[b][processes - 1].push(run);
            }
        }
    }
    let median = |runs: &[Run], f: &dyn Fn(&Run) -> f64| {
        let mut figures: Vec<f64> = runs.iter().map(f).collect();
        figures.sort_by(f64::total_cmp);
        figures[figures.len() / 2]
    };
    let total = |r: &Run| r.total.as_secs_f64();
    let handoff = |r: &Run| r.handoffs.iter().map(Duration::as_secs_f64).sum::<f64>();
    let mut ratios = Vec::new();
    for (binary, runs) in binaries.iter().zip(&runs) {
        let (one, two) = (median(&runs[0], &total), median(&runs[1], &total));
        println!(
            "{}: median release: 1 process {one:.2} s, 2 processes {two:.2} s, ratio {:.2}",
            binary.display(),
            two / one
        );
        println!(
            "{}: median of the handoffs' sum: 1 process {:.0} ms, 2 processes {:.0} ms",
            binary.display(),
            median(&runs[0], &handoff) * 1e3,
            median(&runs[1], &handoff) * 1e3
        );
        let requests = |r: &Run| r.store_requests + r.queue_requests;
        println!(
            "{}: median store and queue requests: 1 process {:.0}, 2 processes {:.0}",
            binary.display(),
            median(&runs[0], &requests),
            median(&runs[1], &requests)
        );
        ratios.push(two / one);
    }
    goals::report(Goal::at_most(format!("release-{hosts}-hosts/2-processes-vs-1"), ratios[0], 1.0 + MARGIN, "x"));
    if std::env::var_os("BENCH_KEEP_LOGS").is_some() {
        println!("the processes' logs are kept in {}", fleet.dir.keep().display());
    }
}

/// How often the bench reads the release to see it end (`BENCH_WATCH_MS`, default 10).
fn watch_every() -> Duration {
    Duration::from_millis(setting("BENCH_WATCH_MS", 10) as u64)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Starts `processes` fresh `berth serve` processes on the shared bucket and queue, registers
/// `hosts` hosts in a new group, and times one release.
async fn release(
    fleet: &Fleet,
    binary: &Path,
    (round, build): (usize, usize),
    processes: usize,
    hosts: usize,
    batches: usize,
) -> Run {
    let name = format!("r{round}-b{build}-p{processes}");
    let mut env: Vec<(String, String)> = vec![
        ("BERTH_STORE_URL".into(), format!("s3://{BUCKET}")),
        ("BERTH_S3_ENDPOINT".into(), fleet.moto.endpoint.clone()),
        ("BERTH_QUEUE_URL".into(), fleet.queue.clone()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("BERTH_MAX_POLL_HOLD_SECONDS".into(), "30".into()),
        // Nothing is pulled: the simulated hosts report without one.
        ("BERTH_REGISTRY_HOST".into(), "127.0.0.1:5999".into()),
    ];
    for (key, path) in &fleet.keys {
        env.push(((*key).into(), path.display().to_string()));
    }
    let dir = fleet.dir.path();
    let metrics: Vec<String> = (0..processes).map(|_| format!("127.0.0.1:{}", berth_tests::free_port())).collect();
    let serves: Vec<BerthServe> = (0..processes)
        .map(|p| {
            let data = dir.join(format!("{name}-{p}"));
            let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            env.push(("BERTH_METRICS_LISTEN", &metrics[p]));
            BerthServe::start_binary(binary, &data, &dir.join(format!("{name}-{p}.log")), 0, &env)
        })
        .collect();
    let urls: Arc<Vec<String>> = Arc::new(serves.iter().map(|s| s.url.clone()).collect());
    let http = &fleet.http;
    let call = |url: String, method: reqwest::Method, path: String, bearer: String, body: Option<Value>| async move {
        let mut request = http.request(method, format!("{url}{path}")).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    };
    let first = urls[0].clone();
    let post = reqwest::Method::POST;
    let token = fleet.token.clone();
    let (status, answer) =
        call(first.clone(), post.clone(), "/v1/applications".into(), token.clone(), Some(json!({ "name": name })))
            .await;
    assert_eq!(status, 201, "{answer}");
    let (status, group) = call(
        first.clone(),
        post.clone(),
        format!("/v1/applications/{name}/groups"),
        token.clone(),
        Some(json!({ "name": "fleet" })),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let join = group["join_token"].as_str().unwrap().to_owned();
    let deployment = json!({
        "name": "noop", "image": { "address": "127.0.0.1:5999/bench/app:v1" },
        "working_directory": "/srv/app", "start_script": "true", "stop_script": "true",
    });
    let (status, answer) = call(
        first.clone(),
        post.clone(),
        format!("/v1/applications/{name}/deployments"),
        token.clone(),
        Some(deployment),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let host_tokens: Vec<String> = futures::future::join_all((0..hosts).map(|i| {
        let url = urls[i % processes].clone();
        let (join, post) = (join.clone(), post.clone());
        async move {
            let body = json!({ "host": format!("h{i:04}") });
            let (status, registered) = call(url, post, "/v1/agent/register".into(), join, Some(body)).await;
            assert_eq!(status, 200, "{registered}");
            registered["host_token"].as_str().unwrap().to_owned()
        }
    }))
    .await;

    let phases = batches + 1;
    let timeline = Arc::new(Mutex::new(Timeline {
        first_job: vec![None; phases],
        last_job: vec![None; phases],
        last_report: vec![None; phases],
    }));
    let batch_of = Arc::new(OnceLock::new());
    let agents: Vec<_> = host_tokens
        .into_iter()
        .enumerate()
        .map(|(i, host_token)| {
            let (http, urls, timeline, batch_of) = (http.clone(), urls.clone(), timeline.clone(), batch_of.clone());
            tokio::spawn(agent(http, urls, i, host_token, timeline, batch_of))
        })
        .collect();
    // The agents' first polls are held before the release starts, as an idle fleet's are.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = json!({ "application": name, "deployment": "noop", "group": "fleet", "batches": batches });
    let requests_before = requests(http, &metrics).await;
    let started = Instant::now();
    let (status, created) = call(first.clone(), post, "/v1/releases".into(), token.clone(), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut batches_of = vec![usize::MAX; hosts];
    for (b, batch) in created["batches"].as_array().unwrap().iter().enumerate() {
        for planned in batch["hosts"].as_array().unwrap() {
            batches_of[planned["host"].as_str().unwrap()[1..].parse::<usize>().unwrap()] = b;
        }
    }
    assert!(!batches_of.contains(&usize::MAX), "every host is in a batch");
    batch_of.set(batches_of).unwrap();
    let total = loop {
        let (_, now) =
            call(first.clone(), reqwest::Method::GET, format!("/v1/releases/{id}"), token.clone(), None).await;
        if now["status"] != "running" {
            assert_eq!(now["status"], "succeeded", "{now}");
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the release did not end: {now}\n{}", logs(&serves));
        tokio::time::sleep(watch_every()).await;
    };
    let requests_after = requests(http, &metrics).await;
    for agent in agents {
        agent.await.expect("a simulated agent panicked");
    }
    let t = std::mem::take(&mut *timeline.lock().unwrap());
    let dispatches = (0..phases)
        .map(|p| {
            let start = if p == 0 { Some(started) } else { t.last_report[p - 1] };
            match (start, t.last_job[p]) {
                (Some(start), Some(last)) => last.saturating_duration_since(start),
                _ => Duration::ZERO,
            }
        })
        .collect();
    let handoffs = (1..phases)
        .map(|p| match (t.last_report[p - 1], t.first_job[p]) {
            (Some(last), Some(first)) => first.saturating_duration_since(last),
            _ => Duration::ZERO,
        })
        .collect();
    for serve in serves {
        serve.stop();
    }
    Run {
        total,
        handoffs,
        dispatches,
        store_requests: requests_after.0 - requests_before.0,
        queue_requests: requests_after.1 - requests_before.1,
        by_kind: requests_after
            .2
            .into_iter()
            .map(|(kind, n)| {
                let before = requests_before.2.get(&kind).copied().unwrap_or(0.0);
                (kind, n - before)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect(),
    }
}

/// Store and queue requests every process made so far, from their `/metrics`: in all, and by
/// kind.
async fn requests(http: &reqwest::Client, metrics: &[String]) -> (f64, f64, std::collections::BTreeMap<String, f64>) {
    let mut sums = (0.0, 0.0, std::collections::BTreeMap::new());
    for address in metrics {
        let text = http.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else { continue };
            let value: f64 = value.parse().unwrap_or(0.0);
            let kind = name.split('"').nth(1).unwrap_or("");
            if name.starts_with(berth_shared::platform::metrics::STORE_REQUESTS) {
                sums.0 += value;
                *sums.2.entry(format!("store {kind}")).or_insert(0.0) += value;
            } else if name.starts_with(berth_shared::platform::metrics::QUEUE_REQUESTS) {
                sums.1 += value;
                *sums.2.entry(format!("queue {kind}")).or_insert(0.0) += value;
            }
        }
    }
    sums
}

/// One simulated host: polls for a job, reports it done at once, until its run is reported.
/// Its n-th request goes to process `(i + n) % processes`.
async fn agent(
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
    i: usize,
    token: String,
    timeline: Arc<Mutex<Timeline>>,
    batch_of: Arc<OnceLock<Vec<usize>>>,
) {
    let mut next = i;
    let mut url = || {
        next += 1;
        urls[next % urls.len()].clone()
    };
    // As `berth-agent` does: each poll names the job of its last report.
    let mut reported = String::new();
    loop {
        let response = http
            .get(format!("{}/v1/agent/jobs?wait_seconds=30{reported}", url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == 204 {
            continue;
        }
        assert_eq!(response.status(), 200);
        let job: Job = response.json().await.unwrap();
        let kind = job.kind;
        let phase = match kind {
            JobKind::Pull => 0,
            // A run is handed out after the pull phase, long after the plan was read.
            JobKind::Run => batch_of.get().expect("the plan was read")[i] + 1,
        };
        {
            let mut timeline = timeline.lock().unwrap();
            let now = Instant::now();
            timeline.first_job[phase].get_or_insert(now);
            timeline.last_job[phase] = Some(now);
        }
        reported = format!("&reported={}", job.job_id);
        let report = Report::succeeded(job.job_id, job.release, kind);
        let response = http.post(format!("{}/v1/agent/reports", url())).bearer_auth(&token).json(&report).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
        timeline.lock().unwrap().last_report[phase] = Some(Instant::now());
        if kind == JobKind::Run {
            return;
        }
    }
}

fn logs(serves: &[BerthServe]) -> String {
    serves.iter().map(|s| berth_tests::tail(Path::new(&s.log), 30)).collect::<Vec<_>>().join("\n---\n")
}

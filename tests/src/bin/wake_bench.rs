//! Wake channel bench (issue 27): `WAKE_BENCH_HOSTS` (10,000) hosts, each holding its wake
//! channel (a WebSocket) to one `berth serve`, idle, then one release of all of them in one batch.
//! Prints the resident memory each idle channel costs berth serve, and the latency p50/p99 from
//! the release's creation to each host's job (woken, then fetched with a short poll) and from
//! its wake to its job. The hosts are this process's tasks (the channel and poll the agent
//! makes), not 10,000 agent processes.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::time::{Duration, Instant};

use berth_tests::berth::BerthServe;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn raise_open_files() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[tokio::main]
async fn main() {
    raise_open_files();
    let hosts: usize = std::env::var("WAKE_BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("BERTH_MAX_POLL_HOLD_SECONDS", "0"),
        ("BERTH_HTTP_MAX_CONNECTIONS", "65536"),
        ("BERTH_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "65536"),
        ("RUST_LOG", "warn"),
    ];
    let berth = BerthServe::start(&dir.path().join("data"), &dir.path().join("berth.log"), 0, &env);
    let token = berth.dev_token("acme");
    let http = reqwest::Client::new();
    let post = |path: &str, bearer: &str, body: Value| {
        http.post(format!("{}{path}", berth.url)).bearer_auth(bearer.to_owned()).json(&body).send()
    };
    post("/v1/applications", &token, json!({ "name": "app" })).await.unwrap().error_for_status().unwrap();
    let group: Value =
        post("/v1/applications/app/groups", &token, json!({ "name": "g" })).await.unwrap().json().await.unwrap();
    let join = group["join_token"].as_str().unwrap().to_owned();
    let deployment = json!({
        "name": "d", "image": { "address": "127.0.0.1:5000/acme/web:v1" },
        "working_directory": "/srv/app", "start_script": "true", "stop_script": "true",
    });
    post("/v1/applications/app/deployments", &token, deployment).await.unwrap().error_for_status().unwrap();

    let started = Instant::now();
    let tokens: Vec<String> =
        futures::stream::iter(0..hosts)
            .map(|i| {
                let request = post("/v1/agent/register", &join, json!({ "host": format!("h{i}") }));
                async move {
                    request.await.unwrap().json::<Value>().await.unwrap()["host_token"].as_str().unwrap().to_owned()
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
    eprintln!("wake-bench: {hosts} hosts registered in {:.1} s", started.elapsed().as_secs_f64());

    let before = rss_kib(berth.pid(), "VmRSS:");
    let url = format!("{}/v1/agent/channel", berth.url.replace("http://", "ws://"));
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let sockets: Vec<_> = futures::stream::iter(tokens.iter().cloned())
        .map(|token| {
            let url = url.clone();
            async move {
                let mut request = url.into_client_request().unwrap();
                request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
                let (socket, _) =
                    tokio_tungstenite::connect_async_with_config(request, Some(config), true).await.expect("channel");
                (token, socket)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(berth.pid(), "VmRSS:");
    let per_connection = (after.saturating_sub(before) * 1024) as f64 / hosts as f64;
    println!(
        "wake-bench: {hosts} idle channels: berth serve RSS {before} KiB -> {after} KiB = {per_connection:.0} bytes per idle channel (peak RSS {} KiB)",
        rss_kib(berth.pid(), "VmHWM:")
    );

    // Each host: waits for its wake, then fetches its job with a short poll.
    let jobs_url = format!("{}/v1/agent/jobs?wait_seconds=0", berth.url);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    for (token, mut socket) in sockets {
        let (http, jobs_url, sender) = (http.clone(), jobs_url.clone(), sender.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message
                    && text.contains("wake")
                {
                    let woken = Instant::now();
                    // As the agent does, a poll on a keep-alive connection the server just
                    // closed is sent again.
                    let mut response = http.get(&jobs_url).bearer_auth(&token).send().await;
                    for _ in 0..3 {
                        if response.is_ok() {
                            break;
                        }
                        response = http.get(&jobs_url).bearer_auth(&token).send().await;
                    }
                    if response.expect("a short poll").status() == 200 {
                        let _ = sender.send((woken, Instant::now()));
                        let _ = socket.close(None).await;
                        return;
                    }
                }
            }
        });
    }
    drop(sender);
    let due = Instant::now();
    post("/v1/releases", &token, json!({ "application": "app", "deployment": "d", "group": "g" }))
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut to_job = Vec::with_capacity(hosts);
    let mut wake_to_job = Vec::with_capacity(hosts);
    while to_job.len() < hosts {
        match tokio::time::timeout(Duration::from_secs(120), receiver.recv()).await {
            Ok(Some((woken, got))) => {
                to_job.push(got - due);
                wake_to_job.push(got - woken);
            }
            _ => break,
        }
    }
    assert_eq!(to_job.len(), hosts, "only {} of {hosts} hosts got their job", to_job.len());
    to_job.sort();
    wake_to_job.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "wake-bench: {hosts} hosts: release created -> job p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms; wake -> job p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&to_job, 0.5)),
        ms(percentile(&to_job, 0.99)),
        ms(*to_job.last().unwrap()),
        ms(percentile(&wake_to_job, 0.5)),
        ms(percentile(&wake_to_job, 0.99)),
    );
    berth.stop();
}

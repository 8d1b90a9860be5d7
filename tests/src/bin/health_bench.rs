//! Health-checked releases with real parts: `berth serve`, the Debian registry, the Docker
//! engine (one pull per host) and `BENCH_HEALTH_HOSTS` (default 4) `berth-agent` processes.
//!
//! Prints:
//! - the batch handoff: from a batch's last host turning healthy (its first passing probe,
//!   stamped by the probe command itself) to the next batch's first job (its stop script
//!   starting, stamped by the script), over one-host batches;
//! - the agent's probe overhead per host: the CPU an agent spends per HTTP probe while it
//!   watches its host between batches, against an agent that only polls meanwhile.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berth::BerthServe;
use berth_tests::registry::{Registry, SERVICE};
use berth_tests::{ChildGuard, berth_bin};
use serde_json::{Value, json};

const ACCOUNT: &str = "acme";

struct Bench {
    dir: PathBuf,
    berth: BerthServe,
    token: String,
    http: reqwest::Client,
}

impl Bench {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.berth.url)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("berth serve answers");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// Releases `deployment` and waits for its end (or for `until` to say so first).
    async fn release(&self, body: Value, until: impl Fn(&Value) -> bool) -> Value {
        let id = self.call(reqwest::Method::POST, "/v1/releases", Some(body)).await["id"].as_str().unwrap().to_owned();
        let started = Instant::now();
        loop {
            let release = self.call(reqwest::Method::GET, &format!("/v1/releases/{id}"), None).await;
            if release["status"] != "running" || until(&release) {
                return release;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "release {id} did not end: {release:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Nanosecond stamps, one a line, that a script wrote to `path`.
fn stamps(path: &Path) -> Vec<u128> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// User and system CPU of a process and of the children it waited for, from `/proc`.
fn cpu_of(pid: u32) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<u64> =
        stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = |i: usize| fields.get(i).copied().unwrap_or(0);
    // utime, stime, cutime, cstime are the 12th to 15th fields after the command name.
    (Duration::from_millis((ticks(11) + ticks(12)) * 10), Duration::from_millis((ticks(13) + ticks(14)) * 10))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let hosts: usize = std::env::var("BENCH_HEALTH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(4).max(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let registry_port = Registry::pick_port();
    let registry_host = format!("127.0.0.1:{registry_port}");
    let env = [("BERTH_REGISTRY_HOST", registry_host.as_str()), ("BERTH_REGISTRY_SERVICE", SERVICE)];
    let berth = BerthServe::start(&dir.path().join("data"), &dir.path().join("berth.log"), 0, &env);
    let realm = format!("{}/v1/registry/token", berth.url);
    let _registry = Registry::start(dir.path(), registry_port, &realm, &berth.signing_certificate());
    let token = berth.dev_token(ACCOUNT);
    let bench = Bench { dir: dir.path().to_path_buf(), berth, token, http: reqwest::Client::new() };
    let push_key = Command::new(berth_bin("berth"))
        .args(["credentials", "push", "--url", &bench.berth.url, "--token", &bench.token])
        .output()
        .expect("berth credentials push");
    let push_key = String::from_utf8(push_key.stdout).unwrap().trim().to_owned();
    let image = format!("{registry_host}/{ACCOUNT}/bench:v1");
    berth_tests::docker::build_and_push(dir.path(), &image, "bench\n", ACCOUNT, &push_key);
    let _images = berth_tests::docker::DockerLeftovers { containers: Vec::new(), images: vec![image.clone()] };

    bench.call(reqwest::Method::POST, "/v1/applications", Some(json!({ "name": "bench" }))).await;
    let group = bench.call(reqwest::Method::POST, "/v1/applications/bench/groups", Some(json!({ "name": "g" }))).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    let mut agents = Vec::new();
    for i in 0..hosts {
        let host = format!("h{i}");
        let log = std::fs::File::create(bench.dir.join(format!("agent-{host}.log"))).unwrap();
        let child = Command::new(berth_bin("berth-agent"))
            .args(["--berth-url", &bench.berth.url, "--host-id", &host, "--poll-seconds", "20"])
            .arg("--state-dir")
            .arg(bench.dir.join(format!("state-{host}")))
            .env("BERTH_JOIN_TOKEN", &join)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berth-agent");
        agents.push((host, ChildGuard(child)));
    }
    let started = Instant::now();
    while bench.call(reqwest::Method::GET, "/v1/applications/bench/groups/g", None).await["instances"]
        .as_array()
        .map_or(0, Vec::len)
        < hosts
    {
        assert!(started.elapsed() < Duration::from_secs(30), "agents did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Handoff: one host per batch; the probe stamps its passes, the stop script its start.
    let marks = bench.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let m = marks.display();
    let deployment = |health: Value| {
        json!({
            "name": "web", "image": { "address": image }, "working_directory": bench.dir.join("work"),
            "stop_script": format!("date +%s%N >> {m}/stop-$BERTH_HOST\n"), "start_script": "true\n",
            "health": health,
        })
    };
    let stamped = json!({ "command": format!("date +%s%N >> {m}/healthy-$BERTH_HOST\n"), "interval_seconds": 1 });
    bench.call(reqwest::Method::POST, "/v1/applications/bench/deployments", Some(deployment(stamped))).await;
    let body = json!({ "application": "bench", "deployment": "web", "group": "g", "batches": hosts });
    let done = bench.release(body, |_| false).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let order: Vec<String> = done["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["hosts"][0]["host"].as_str().unwrap().to_owned())
        .collect();
    let handoffs: Vec<f64> = order
        .windows(2)
        .map(|pair| {
            let healthy = stamps(&marks.join(format!("healthy-{}", pair[0])))[0];
            let next = stamps(&marks.join(format!("stop-{}", pair[1])))[0];
            (next as f64 - healthy as f64) / 1e6
        })
        .collect();
    println!(
        "health-bench: batch handoff, last host healthy -> next batch's first job started: median {:.0} ms, max {:.0} ms ({} handoffs, real agents, 1 s probe interval)",
        median(handoffs.clone()),
        handoffs.iter().copied().fold(f64::NAN, f64::max),
        handoffs.len()
    );

    // Probe overhead: batch 1's hosts watch with an HTTP probe through a 12 s pause while the
    // others only poll; the difference in agent CPU, per probe.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let probes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = probes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let counted = counted.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ =
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n").await;
            });
        }
    });
    let http = json!({ "http": { "url": format!("http://{address}/"), "expect_body": "ok" }, "interval_seconds": 1 });
    bench.call(reqwest::Method::PUT, "/v1/applications/bench/deployments/web", Some(deployment(http))).await;
    let watched = hosts / 2;
    let body = json!({
        "application": "bench", "deployment": "web", "group": "g",
        "batch_size": watched, "pause": "seconds", "pause_seconds": 12,
    });
    let paused = bench.release(body, |r| r["phase"]["step"] == "waiting").await;
    let batch: Vec<String> = paused["batches"][0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_owned())
        .collect();
    let before: Vec<(bool, (Duration, Duration))> =
        agents.iter().map(|(host, child)| (batch.contains(host), cpu_of(child.0.id()))).collect();
    let counted_before = probes.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let counted_during = probes.load(std::sync::atomic::Ordering::Relaxed) - counted_before;
    let spent = |watching: bool| -> (f64, f64) {
        let (mut own, mut children, mut n) = (0.0, 0.0, 0.0);
        for ((is_watching, (own_before, children_before)), (_, child)) in before.iter().zip(&agents) {
            if *is_watching == watching {
                let (own_after, children_after) = cpu_of(child.0.id());
                own += (own_after - *own_before).as_secs_f64() * 1e3;
                children += (children_after - *children_before).as_secs_f64() * 1e3;
                n += 1.0;
            }
        }
        (own / n, children / n)
    };
    let (watching_cpu, _) = spent(true);
    let (polling_cpu, _) = spent(false);
    let per_host = counted_during as f64 / watched as f64;
    println!(
        "health-bench: agent probe overhead: {:.2} ms CPU per HTTP probe ({:.1} ms CPU in 10 s for a watching agent against {:.1} ms for one only polling; {per_host:.0} probes per watching host)",
        (watching_cpu - polling_cpu).max(0.0) / per_host.max(1.0),
        watching_cpu,
        polling_cpu
    );
    let done = bench.release_end(&paused).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
}

impl Bench {
    async fn release_end(&self, release: &Value) -> Value {
        let id = release["id"].as_str().unwrap();
        let started = Instant::now();
        loop {
            let release = self.call(reqwest::Method::GET, &format!("/v1/releases/{id}"), None).await;
            if release["status"] != "running" {
                return release;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "release {id} did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

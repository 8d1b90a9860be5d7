//! `lambda-bench` (`make bench`): each function binary under the Lambda emulator next to the
//! same binary as a plain HTTP server.
//!
//! Under the emulator: `cargo lambda watch --only-lambda-apis` serves the Lambda Runtime and
//! Invoke APIs without building or starting anything, and this program spawns the release
//! binary itself with `AWS_LAMBDA_RUNTIME_API` pointing at it, so no cargo build time is
//! counted. *First* is spawn → answer of the first invocation (an API Gateway HTTP API event
//! for `GET /healthz`, sent at once; the emulator holds it until the function asks for work),
//! so it is the function's init plus one invocation; *init* is first minus the warm median,
//! i.e. our own start-up (exec, keys, config, store and queue set-up) plus the runtime's first
//! poll. *Warm* is the median of 50 invocations of the same instance afterwards.
//!
//! As plain HTTP: the same binary without `AWS_LAMBDA_RUNTIME_API`, listening on a free port;
//! first is spawn → first 200 from `GET /healthz`, warm the median of 50 more on one
//! keep-alive connection.
//!
//! Each figure of first/init is the median over several spawns. Functions get their keys from
//! files, and run in two configurations: a `memory://` store with the in-process queue, and
//! as deployed, an `s3://` store and (packages, releases) an SQS queue, whose clients are
//! built at start (nothing listens at their endpoint: neither start-up nor `/healthz` calls
//! it). Goals: init ≤ 20 ms, warm ≤ 1 ms; missing one is reported,
//! not fatal; a function that never answers fails the command.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use berth_tests::goals::{self, Goal};
use berth_tests::lambda_watch::LambdaWatch;
use berth_tests::{free_port, function_key_env, stop_gracefully, workspace_root};
use serde_json::Value;

const FUNCTIONS: [&str; 4] = ["berth-credentials", "berth-packages", "berth-render", "berth-releases"];
/// Spawns per function and mode (after one untimed warm-up spawn).
const SPAWNS: usize = 10;
/// Warm invocations per instance.
const WARM: usize = 50;
const INIT_GOAL: Duration = Duration::from_millis(20);
const WARM_GOAL: Duration = Duration::from_millis(1);
/// A first answer not there by then is a failure.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

struct Figures {
    first: Duration,
    warm: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("lambda-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let bin_dir = exe.parent().ok_or("no directory for own path")?.to_path_buf();
    for name in FUNCTIONS.iter().chain(&["berth"]) {
        if !bin_dir.join(name).is_file() {
            return Err(format!("{} is missing: run `cargo build --release --workspace --bins`", name));
        }
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut env: Vec<(String, String)> = function_key_env(&bin_dir.join("berth"), dir.path())
        .into_iter()
        .map(|(name, path)| (name.to_owned(), path.display().to_string()))
        .collect();
    env.push(("BERTH_LOG_FORMAT".into(), "json".into()));
    let mut in_memory = env.clone();
    in_memory.push(("BERTH_STORE_URL".into(), "memory://".into()));
    // An endpoint nobody serves: the clients are built, never called.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut deployed = env.clone();
    deployed.extend(
        [
            ("BERTH_STORE_URL", "s3://berth-bench".to_owned()),
            ("BERTH_S3_ENDPOINT", nowhere.clone()),
            ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .map(|(name, value)| (name.to_owned(), value)),
    );

    let mut rows = Vec::new();
    for (name, config) in FUNCTIONS.iter().flat_map(|name| [(*name, "memory"), (*name, "s3+sqs")]) {
        let env = if config == "memory" {
            in_memory.clone()
        } else {
            let mut env = deployed.clone();
            if ["berth-packages", "berth-releases"].contains(&name) {
                env.push(("BERTH_QUEUE_URL".into(), format!("{nowhere}/123456789012/{name}")));
            }
            env
        };
        let env = &env;
        let binary = bin_dir.join(name);
        let payload = healthz_event(name)?;
        let emulator = LambdaWatch::start_with(name, dir.path(), &[], &["--only-lambda-apis"]);
        let lambda = measure(SPAWNS, || under_emulator(&binary, name, &emulator, env, &payload))
            .await
            .map_err(|e| format!("{name} under the emulator: {e}\n{}", emulator.tail()))?;
        drop(emulator);
        let http = measure(SPAWNS, || as_http(&binary, env)).await.map_err(|e| format!("{name} as HTTP: {e}"))?;
        rows.push((name, config, lambda, http));
    }

    println!(
        "Functions under the Lambda emulator (cargo lambda watch --only-lambda-apis; release binaries spawned with \
         AWS_LAMBDA_RUNTIME_API, no cargo build counted) and as plain HTTP servers."
    );
    println!(
        "first: spawn to first answer (median of {SPAWNS} spawns); init: first - warm; warm: median of {WARM} invocations."
    );
    println!();
    println!(
        "{:<18} {:<7} | {:>10} {:>10} {:>5} {:>10} {:>5} | {:>10} {:>10}",
        "function", "config", "λ first", "λ init", "", "λ warm", "", "http first", "http warm"
    );
    let mut over = Vec::new();
    for (name, config, lambda, http) in &rows {
        let init = lambda.first.saturating_sub(lambda.warm);
        let (init_ok, warm_ok) = (init <= INIT_GOAL, lambda.warm <= WARM_GOAL);
        if !init_ok || !warm_ok {
            over.push(format!("{name} ({config})"));
        }
        println!(
            "{:<18} {:<7} | {:>10} {:>10} {:>5} {:>10} {:>5} | {:>10} {:>10}",
            name,
            config,
            ms(lambda.first),
            ms(init),
            verdict(init_ok),
            ms(lambda.warm),
            verdict(warm_ok),
            ms(http.first),
            ms(http.warm)
        );
    }
    println!();
    for (name, config, lambda, _) in &rows {
        let init = lambda.first.saturating_sub(lambda.warm);
        let millis = |d: Duration| d.as_secs_f64() * 1e3;
        goals::report(Goal::at_most(
            format!("Lambda init of {name} ({config})"),
            millis(init),
            millis(INIT_GOAL),
            "ms",
        ));
        goals::report(Goal::at_most(
            format!("Lambda warm invoke of {name} ({config})"),
            millis(lambda.warm),
            millis(WARM_GOAL),
            "ms",
        ));
    }
    println!("Goals under the emulator: init <= {} ms, warm <= {} ms.", INIT_GOAL.as_millis(), WARM_GOAL.as_millis());
    println!("Warm under the emulator includes its two loopback HTTP hops (invoke in, /next and /response out).");
    if over.is_empty() {
        println!("All goals met.");
    } else {
        println!("Over a goal (reported, not failed): {}", over.join(", "));
    }
    Ok(())
}

/// `events/<function>/apigw-healthz.json`: an HTTP API v2 event for `GET /healthz`.
fn healthz_event(bin: &str) -> Result<Value, String> {
    let name = bin.trim_start_matches("berth-");
    let path = workspace_root().join("events").join(name).join("apigw-healthz.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One warm-up run, then `spawns` timed ones: the median first answer, and the warm median of
/// the first timed run.
async fn measure<F, Fut>(spawns: usize, mut once: F) -> Result<Figures, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Figures, String>>,
{
    once().await?;
    let mut firsts = Vec::with_capacity(spawns);
    let mut warms = Vec::with_capacity(spawns);
    for _ in 0..spawns {
        let figures = once().await?;
        firsts.push(figures.first);
        warms.push(figures.warm);
    }
    Ok(Figures { first: median(&mut firsts), warm: median(&mut warms) })
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let n = samples.len();
    if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2 }
}

/// Kills the child when dropped (SIGTERM first, as Lambda does at shutdown).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        stop_gracefully(&mut self.0, Duration::from_secs(5));
    }
}

fn spawn(binary: &Path, env: &[(String, String)], extra: &[(String, String)]) -> Result<Running, String> {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("BERTH_") || name.starts_with("AWS_") {
            command.env_remove(&name);
        }
    }
    command
        .envs(env.iter().cloned())
        .envs(extra.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().map(Running).map_err(|e| format!("spawn {}: {e}", binary.display()))
}

async fn under_emulator(
    binary: &Path,
    name: &str,
    emulator: &LambdaWatch,
    env: &[(String, String)],
    payload: &Value,
) -> Result<Figures, String> {
    let http = reqwest::Client::new();
    let invoke = emulator.invoke_url();
    let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    let call = |http: &reqwest::Client| {
        http.post(&invoke).header("content-type", "application/json").body(body.clone()).timeout(ANSWER_WITHIN).send()
    };
    let lambda_env = [
        ("AWS_LAMBDA_RUNTIME_API".to_owned(), format!("{}/.rt/{name}", emulator.url)),
        ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION".to_owned(), "1".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned(), "256".to_owned()),
    ];
    let started = Instant::now();
    let child = spawn(binary, env, &lambda_env)?;
    let first = check(call(&http).await).await?;
    let first_at = started.elapsed();
    if first["statusCode"] != 200 {
        return Err(format!("first invocation answered {first}"));
    }
    let mut warm = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        let t = Instant::now();
        check(call(&http).await).await?;
        warm.push(t.elapsed());
    }
    drop(child);
    Ok(Figures { first: first_at, warm: median(&mut warm) })
}

async fn check(response: Result<reqwest::Response, reqwest::Error>) -> Result<Value, String> {
    let response = response.map_err(|e| format!("invoke: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("invoke answered {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("invoke answer is not JSON ({e}): {text}"))
}

async fn as_http(binary: &Path, env: &[(String, String)]) -> Result<Figures, String> {
    let port = free_port();
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let extra = [
        ("BERTH_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("BERTH_DATA_DIR".to_owned(), PathBuf::from(data.path()).display().to_string()),
    ];
    let url = format!("http://127.0.0.1:{port}/healthz");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let child = spawn(binary, env, &extra)?;
    let first = loop {
        match http.get(&url).timeout(ANSWER_WITHIN).send().await {
            Ok(response) if response.status().is_success() => break started.elapsed(),
            Ok(response) => return Err(format!("GET /healthz answered {}", response.status())),
            Err(_) if started.elapsed() < ANSWER_WITHIN => tokio::time::sleep(Duration::from_micros(200)).await,
            Err(error) => return Err(format!("no answer within {ANSWER_WITHIN:?}: {error}")),
        }
    };
    let mut warm = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        let t = Instant::now();
        let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
        response.bytes().await.map_err(|e| e.to_string())?;
        warm.push(t.elapsed());
    }
    drop(child);
    Ok(Figures { first, warm: median(&mut warm) })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "over" }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

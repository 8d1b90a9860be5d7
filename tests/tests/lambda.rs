//! The functions under Lambda: one binary under the real `cargo lambda watch` emulator (a
//! function URL request for `/healthz`, then the SQS sample from `events/` through
//! `cargo lambda invoke --data-file`), and every sample in `events/` through the same
//! `runtime::invoke` the binaries use, in process.
//!
//! The emulator builds the function itself, into `target/lambda-watch` (not the `target/debug`
//! whose lock the running `cargo test` may hold); its first build takes minutes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_shared::context::FunctionContext;
use berth_shared::events::PING;
use berth_shared::runtime::{Function, finish, invoke};
use berth_tests::{
    ChildGuard, berth_bin, free_port, function_key_env, stop_gracefully, tail, venv_bin, wait_for_port, workspace_root,
};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

/// The function run under the emulator: it has both HTTP routes and an event handler.
const FUNCTION: &str = "packages";
/// Time allowed for the emulator's first build and the first answer.
const FIRST_ANSWER: Duration = Duration::from_secs(15 * 60);

fn sample(function: &str, file: &str) -> PathBuf {
    let path = workspace_root().join("events").join(function).join(file);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The `messageId`s of an SQS sample's records whose envelope is not a `berth.ping`: the ones
/// the function must report in `batchItemFailures`.
fn expected_failures(sqs_event: &Value) -> Vec<String> {
    let records = sqs_event["Records"].as_array().expect("Records");
    assert_eq!(records.len(), 2, "the SQS samples have one ping and one unknown type");
    let failures: Vec<String> = records
        .iter()
        .filter(|record| {
            let body: Value =
                serde_json::from_str(record["body"].as_str().expect("body")).expect("body is an envelope");
            body["type"] != PING
        })
        .map(|record| record["messageId"].as_str().expect("messageId").to_owned())
        .collect();
    assert_eq!(failures.len(), 1, "exactly one record of an unknown type");
    failures
}

fn failure_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {response}"))
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().expect("itemIdentifier").to_owned())
        .collect()
}

/// `cargo lambda watch` for one binary on 127.0.0.1:`port`, run from a temp dir so that its
/// output never lands in the workspace (which it watches).
struct Emulator {
    child: ChildGuard,
    log: PathBuf,
}

impl Emulator {
    fn start(bin: &str, port: u16, dir: &Path) -> Self {
        let mut env = String::from("BERTH_STORE_URL=memory://\n");
        for (name, path) in function_key_env(&berth_bin("berth"), dir) {
            env.push_str(&format!("{name}={}\n", path.display()));
        }
        let env_file = dir.join("lambda.env");
        std::fs::write(&env_file, env).expect("write env file");
        let log = dir.join("watch.log");
        let output = std::fs::File::create(&log).expect("create watch log");
        let root = workspace_root();
        let mut command = Command::new(venv_bin("cargo-lambda"));
        // `--target-dir` would also be passed to `cargo metadata`, which rejects it: the
        // separate target dir goes through the environment instead.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            // What `cargo test` sets for the test process is not meant for the emulator's build.
            if name.starts_with("CARGO_") && name != "CARGO_HOME" {
                command.env_remove(&name);
            }
        }
        command
            .args(["lambda", "watch", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .args(["--package", &format!("berth-{FUNCTION}"), "--bin", bin])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
            .arg("--env-file")
            .arg(&env_file)
            // The other files of the workspace may change while the test runs: no reloads.
            .arg("--ignore-changes")
            .env("CARGO_TARGET_DIR", root.join("target/lambda-watch"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone log handle"))
            .stderr(output);
        let child = ChildGuard(command.spawn().expect("start cargo lambda watch"));
        Self { child, log }
    }

    /// Fails the test with the tail of the emulator's log.
    fn fail(&self, why: &str) -> ! {
        panic!("{why}\n--- last lines of {} ---\n{}", self.log.display(), tail(&self.log, 40));
    }

    /// Fails the test if the emulator has exited or its build has failed.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            self.fail(&format!("cargo lambda watch exited ({status})"));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if log.contains("error: could not compile") || log.contains("error[E") {
            self.fail("the emulator's build of the function failed");
        }
        // The function exited (bad configuration, say): the emulator logs it and keeps the
        // request waiting for an instance that will never come.
        if log.contains("command exited") {
            self.fail("the function exited under the emulator");
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // SIGTERM: the emulator then stops the function it started (SIGKILL would orphan it).
        stop_gracefully(&mut self.child.0, Duration::from_secs(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_under_cargo_lambda_watch_answers_http_and_sqs() {
    let bin = format!("berth-{FUNCTION}");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut emulator = Emulator::start(&bin, port, dir.path());
    // The runtime API listens at once; the function is built and started on the first request.
    let listening =
        tokio::task::spawn_blocking(move || wait_for_port(port, Duration::from_secs(60), "cargo lambda watch"));
    if listening.await.is_err() {
        emulator.fail("cargo lambda watch did not listen");
    }

    // 1. HTTP through the emulator's function URL endpoint (a function URL event, v2 payload).
    let url = format!("http://127.0.0.1:{port}/lambda-url/{bin}/healthz");
    let started = Instant::now();
    let client = reqwest::Client::new();
    let request = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            let response = client.get(&url).timeout(FIRST_ANSWER).send().await?;
            let status = response.status();
            let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, content_type, body))
        }
    });
    while !request.is_finished() {
        emulator.check_alive();
        if started.elapsed() > FIRST_ANSWER {
            request.abort();
            emulator.fail(&format!("GET {url} got no answer within {FIRST_ANSWER:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, content_type, body) = match request.await.expect("request task") {
        Ok(answer) => answer,
        Err(error) => emulator.fail(&format!("GET {url}: {error}")),
    };
    eprintln!("first answer through cargo lambda watch after {:?} (includes its build)", started.elapsed());
    if status != reqwest::StatusCode::OK {
        emulator.fail(&format!("GET {url}: {status}: {body}"));
    }
    assert_eq!(content_type.as_deref(), Some("application/json"), "content type of /healthz");
    let health: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/healthz body is not JSON ({e}): {body}"));
    assert_eq!(health, json!({ "status": "ok", "functions": [FUNCTION] }));

    // 2. The SQS sample through `cargo lambda invoke --data-file`.
    let sqs_sample = sample(FUNCTION, "sqs-ping.json");
    let expected = expected_failures(&read_json(&sqs_sample));
    let response = cargo_lambda_invoke(&bin, &sqs_sample, port, dir.path(), &emulator).await;
    assert_eq!(failure_ids(&response), expected, "batchItemFailures of {}: {response}", sqs_sample.display());

    // 3. The API Gateway sample the same way: the function answers HTTP API v2 events too.
    let http_sample = sample(FUNCTION, "apigw-healthz.json");
    let response = cargo_lambda_invoke(&bin, &http_sample, port, dir.path(), &emulator).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(body, json!({ "status": "ok", "functions": [FUNCTION] }));
}

async fn cargo_lambda_invoke(bin: &str, data_file: &Path, port: u16, dir: &Path, emulator: &Emulator) -> Value {
    let mut command = tokio::process::Command::new(venv_bin("cargo-lambda"));
    command
        .args(["lambda", "invoke", bin, "--data-file"])
        .arg(data_file)
        .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string(), "--output-format", "json"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(60), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => panic!("run cargo lambda invoke: {error}"),
        Err(_) => emulator.fail(&format!("cargo lambda invoke {} took over 60 s", data_file.display())),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        emulator.fail(&format!(
            "cargo lambda invoke {} failed ({}):\n{stdout}\n{}",
            data_file.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("cargo lambda invoke printed no JSON ({e}): {stdout}"))
}

// ---------------------------------------------------------------------------------------
// Every sample in events/, in process
// ---------------------------------------------------------------------------------------

type Build = fn(FunctionContext) -> Function;

const FUNCTIONS: [(&str, Build); 4] = [
    (berth_credentials::NAME, berth_credentials::function),
    (berth_packages::NAME, berth_packages::function),
    (berth_render::NAME, berth_render::function),
    (berth_releases::NAME, berth_releases::function),
];

async fn invoke_sample(build: Build, payload: Value) -> Value {
    let function = build(FunctionContext::ephemeral());
    let router = finish(function.router, vec![function.name]);
    invoke(router, function.events.as_deref(), LambdaEvent::new(payload, Context::default())).await.expect("invoke")
}

#[tokio::test]
async fn every_sample_event_gets_the_documented_answer() {
    let mut files: Vec<PathBuf> = Vec::new();
    for (name, build) in FUNCTIONS {
        let http_sample = sample(name, "apigw-healthz.json");
        let response = invoke_sample(build, read_json(&http_sample)).await;
        assert_eq!(response["statusCode"], 200, "{}: {response}", http_sample.display());
        let body: Value = serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON body");
        assert_eq!(body, json!({ "status": "ok", "functions": [name] }), "{}", http_sample.display());
        files.push(http_sample);

        let sqs_sample = workspace_root().join("events").join(name).join("sqs-ping.json");
        let consumes_events = [berth_packages::NAME, berth_releases::NAME].contains(&name);
        assert_eq!(
            sqs_sample.is_file(),
            consumes_events,
            "{}: an SQS sample exactly for functions with events",
            sqs_sample.display()
        );
        if consumes_events {
            let event = read_json(&sqs_sample);
            let response = invoke_sample(build, event.clone()).await;
            assert_eq!(failure_ids(&response), expected_failures(&event), "{}: {response}", sqs_sample.display());
            files.push(sqs_sample);
        }
    }
    // Nothing else in events/ but the README.
    let mut on_disk: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("events")).expect("events/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            on_disk.extend(std::fs::read_dir(&path).expect("dir").map(|e| e.expect("entry").path()));
        } else {
            assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("README.md"), "unexpected {}", path.display());
        }
    }
    on_disk.sort();
    files.sort();
    assert_eq!(on_disk, files, "every file in events/ is checked here");
}

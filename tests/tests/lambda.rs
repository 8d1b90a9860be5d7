//! The functions under Lambda: one binary under the real `cargo lambda watch` emulator (a
//! function URL request for `/healthz`, then the SQS sample from `events/` through
//! `cargo lambda invoke --data-file`), and every sample in `events/` through the same
//! `runtime::invoke` the binaries use, in process.
//!
//! The emulator builds the function itself, into `target/lambda-watch` (not the `target/debug`
//! whose lock the running `cargo test` may hold); its first build takes minutes. The harness
//! that runs it is `berth_tests::lambda_watch`; `lambda_flow.rs` runs every function under it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::PING;
use berth_shared::platform::runtime::{Function, finish, invoke};
use berth_tests::lambda_watch::{FIRST_ANSWER, LambdaWatch};
use berth_tests::{berth_bin, function_key_env, venv_bin, workspace_root};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

/// The function run under the emulator: it has both HTTP routes and an event handler.
const FUNCTION: &str = "packages";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_under_cargo_lambda_watch_answers_http_and_sqs() {
    let bin = format!("berth-{FUNCTION}");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = vec![("BERTH_STORE_URL".to_owned(), "memory://".to_owned())];
    for (name, path) in function_key_env(&berth_bin("berth"), dir.path()) {
        env.push((name.to_owned(), path.display().to_string()));
    }
    // The runtime API listens at once; the function is built and started on the first request.
    let mut emulator = LambdaWatch::start(&bin, dir.path(), &env);
    let port = emulator.port;

    // 1. HTTP through the emulator's function URL endpoint (a function URL event, v2 payload).
    let url = format!("{}/healthz", emulator.function_url());
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
        if let Some(why) = emulator.broken() {
            emulator.fail(&why);
        }
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

    // 4. Each invocation ended with its CloudWatch embedded metrics on stdout: the two
    // /healthz answers, one in each of their invocations' lines.
    let log = std::fs::read_to_string(&emulator.log).expect("the emulator's log");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| line.find(r#"{"_aws""#).map(|at| &line[at..]))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("an EMF line is not JSON ({e}): {line}")))
        .collect();
    let healthz = "berth_http_requests_total{method=GET,route=/healthz,status=200}";
    let answers: Vec<f64> = lines.iter().filter_map(|line| line[healthz].as_f64()).collect();
    assert_eq!(answers, [1.0, 1.0], "{lines:#?}\n{}", emulator.tail());
    for line in &lines {
        assert_eq!(line["function"], FUNCTION, "{line}");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Berth", "{line}");
    }
}

async fn cargo_lambda_invoke(bin: &str, data_file: &Path, port: u16, dir: &Path, emulator: &LambdaWatch) -> Value {
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
    // The releases function's wake channel: API Gateway WebSocket events. The samples' host
    // token and connection are known to no store: $connect and a ping are refused (401),
    // $disconnect of an unknown connection is fine.
    for (file, status) in [("ws-connect.json", 401), ("ws-ping.json", 401), ("ws-disconnect.json", 200)] {
        let path = sample(berth_releases::NAME, file);
        let response = invoke_sample(berth_releases::function, read_json(&path)).await;
        assert_eq!(response, json!({ "statusCode": status }), "{}", path.display());
        files.push(path);
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

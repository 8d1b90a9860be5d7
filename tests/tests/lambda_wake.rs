//! The wake channel under Lambda (issue 27): the releases function under the real emulator
//! (`cargo lambda watch`), state in S3 and its queue in SQS on `moto_server`, API Gateway's
//! WebSocket events from the samples in `events/releases/`, and wakes posted to moto's API
//! Gateway Management API, read back from moto's request recording.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_tests::event_source::EventSourceMapping;
use berth_tests::lambda_watch::LambdaWatch;
use berth_tests::{Moto, berth_bin, function_key_env, workspace_root};
use object_store::ObjectStoreExt as _;
use serde_json::{Value, json};

const ACCOUNT: &str = "acme";
const BUCKET: &str = "berth-wake";

fn sample(file: &str) -> Value {
    let path = workspace_root().join("events/releases").join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The sample event `file` for connection `id`, with `token` as its bearer (for `$connect`).
fn event(file: &str, id: &str, token: Option<&str>) -> Value {
    let mut event = sample(file);
    event["requestContext"]["connectionId"] = json!(id);
    if let Some(token) = token {
        event["headers"]["Authorization"] = json!(format!("Bearer {token}"));
    }
    event
}

struct Cloud {
    dir: tempfile::TempDir,
    moto: Moto,
    releases: LambdaWatch,
    token: String,
    http: reqwest::Client,
}

impl Cloud {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.releases.function_url());
        let mut request = self.http.request(method, &url).bearer_auth(token).timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn ok(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self.call(reqwest::Method::POST, path, token, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status}: {answer}\n{}", self.releases.tail());
        answer
    }

    async fn invoke(&self, event: &Value) -> Value {
        let response = self.http.post(self.releases.invoke_url()).json(event).send().await.expect("invoke");
        assert_eq!(response.status(), 200, "invoke: {}", self.releases.tail());
        response.json().await.expect("JSON answer")
    }

    async fn channel_record(&self, host: &str) -> Option<Value> {
        let path = format!("accounts/{ACCOUNT}/applications/app/groups/g/channels/{host}.json");
        match self.moto.s3(BUCKET).get(&object_store::path::Path::from(path)).await {
            Ok(got) => Some(serde_json::from_slice(&got.bytes().await.unwrap()).unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading a channel record: {e}"),
        }
    }

    /// The wakes moto's Management API took since the recording was reset: (connection, data).
    async fn posted_wakes(&self) -> Vec<(String, String)> {
        let url = format!("{}/moto-api/recorder/download-recording", self.moto.endpoint);
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["method"] == "POST")
            .filter_map(|entry| {
                let url = entry["url"].as_str()?;
                let id = url.split_once("/@connections/")?.1;
                let body = entry["body"].as_str().unwrap_or_default();
                let data = match entry["body_encoded"].as_bool() {
                    Some(true) => base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default(),
                    _ => body.as_bytes().to_vec(),
                };
                let id = id.replace("%3D", "=");
                Some((id, String::from_utf8_lossy(&data).into_owned()))
            })
            .collect()
    }

    async fn recorder(&self, action: &str) {
        let url = format!("{}/moto-api/recorder/{action}", self.moto.endpoint);
        assert!(self.http.post(url).send().await.unwrap().status().is_success(), "{action}");
    }
}

async fn start() -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start_recording(&dir.path().join("moto-recording"));
    moto.bucket(BUCKET).await;
    let keys: Vec<(String, String)> = function_key_env(&berth_bin("berth"), dir.path())
        .into_iter()
        .map(|(name, path)| (name.to_owned(), path.display().to_string()))
        .collect();
    let account_key = keys.iter().find(|(name, _)| name == "BERTH_ACCOUNT_KEY_FILE").unwrap().1.clone();
    let (queue, dead_letters) = moto.queue_with_dead_letters("berth-releases", 5, 10).await;
    let mut env: Vec<(String, String)> = vec![
        ("BERTH_STORE_URL".into(), format!("s3://{BUCKET}")),
        ("BERTH_S3_ENDPOINT".into(), moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("BERTH_QUEUE_URL".into(), queue.clone()),
        ("BERTH_DEAD_LETTER_QUEUE_URL".into(), dead_letters),
        // moto serves the Management API at its root (`/@connections/{id}`).
        ("BERTH_WAKE_ENDPOINT".into(), moto.endpoint.clone()),
        ("BERTH_LOG_FORMAT".into(), "json".into()),
    ];
    env.extend(keys);
    let mut releases = LambdaWatch::start("berth-releases", dir.path(), &env);
    releases.ready().await;
    let mapping = EventSourceMapping::new(moto.sqs(), &queue, &releases.invoke_url()).await;
    // Dropped with the test: it runs until then.
    std::mem::forget(mapping.spawn());
    let output = std::process::Command::new(berth_bin("berth"))
        .args(["dev-token", "--account", ACCOUNT, "--data-dir"])
        .arg(dir.path())
        .env("BERTH_ACCOUNT_KEY_FILE", Path::new(&account_key))
        .output()
        .unwrap();
    assert!(output.status.success(), "dev-token: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    Cloud { dir, moto, releases, token, http: reqwest::Client::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_lambda_connections_are_recorded_a_release_wakes_its_batch_and_polls_are_never_held() {
    let cloud = start().await;
    let account = cloud.token.clone();
    cloud.ok("/v1/applications", &account, json!({ "name": "app" })).await;
    let group = cloud.ok("/v1/applications/app/groups", &account, json!({ "name": "g" })).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    let deployment = json!({
        "name": "d", "image": { "address": format!("127.0.0.1:5000/{ACCOUNT}/web:v1") },
        "working_directory": cloud.dir.path().join("work"), "start_script": "true", "stop_script": "true",
    });
    cloud.ok("/v1/applications/app/deployments", &account, deployment).await;
    let mut tokens = Vec::new();
    for host in ["h1", "h2", "h3"] {
        let registered = cloud.ok("/v1/agent/register", &join, json!({ "host": host })).await;
        tokens.push((host, registered["host_token"].as_str().unwrap().to_owned()));
    }

    // $connect with a host token records the connection for its host; a bad token is refused.
    for (host, token) in &tokens {
        let answer = cloud.invoke(&event("ws-connect.json", &format!("conn-{host}="), Some(token))).await;
        assert_eq!(answer, json!({ "statusCode": 200 }), "{}", cloud.releases.tail());
        let record = cloud.channel_record(host).await.expect("the connection is recorded");
        assert_eq!(record["connection_id"], format!("conn-{host}="));
    }
    let refused = cloud.invoke(&event("ws-connect.json", "conn-x=", Some("bht_not-a-token"))).await;
    assert_eq!(refused, json!({ "statusCode": 401 }));
    // A recorded connection's ping is taken.
    assert_eq!(cloud.invoke(&event("ws-ping.json", "conn-h1=", None)).await, json!({ "statusCode": 200 }));

    // A poll under Lambda is answered at once, whatever it asks for.
    let started = Instant::now();
    let (status, _) = cloud.call(reqwest::Method::GET, "/v1/agent/jobs?wait_seconds=20", &tokens[0].1, None).await;
    assert_eq!(status, 204);
    assert!(started.elapsed() < Duration::from_secs(3), "a poll was held {:?}", started.elapsed());

    // A release of two batches, without a pull phase first (which would wake every host): its
    // advance (an SQS event) wakes exactly the first batch.
    cloud.recorder("reset-recording").await;
    cloud.recorder("start-recording").await;
    let body = json!({ "application": "app", "deployment": "d", "group": "g", "batches": 2, "pull_first": false });
    let release = cloud.ok("/v1/releases", &account, body).await;
    let first: Vec<String> = release["batches"][0]["hosts"]
        .as_array()
        .expect("batches")
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_owned())
        .collect();
    assert!(!first.is_empty() && first.len() < 3, "{release:#}");
    let expected: Vec<String> = first.iter().map(|host| format!("conn-{host}=")).collect();
    let started = Instant::now();
    let mut posted = Vec::new();
    while posted.len() < expected.len() {
        assert!(started.elapsed() < Duration::from_secs(60), "no wakes posted: {posted:?}\n{}", cloud.releases.tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
        posted = cloud.posted_wakes().await;
    }
    // Nothing else comes for the hosts outside the batch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut posted = cloud.posted_wakes().await;
    posted.sort();
    let mut wanted: Vec<(String, String)> =
        expected.iter().map(|id| (id.clone(), r#"{"type":"wake"}"#.into())).collect();
    wanted.sort();
    assert_eq!(posted, wanted, "wakes for exactly the first batch, and nothing but a wake");

    // $disconnect forgets the connection.
    let answer = cloud.invoke(&event("ws-disconnect.json", "conn-h1=", None)).await;
    assert_eq!(answer, json!({ "statusCode": 200 }));
    assert_eq!(cloud.channel_record("h1").await, None, "the connection's record is removed");
    assert_eq!(cloud.invoke(&event("ws-ping.json", "conn-h1=", None)).await, json!({ "statusCode": 401 }));
}

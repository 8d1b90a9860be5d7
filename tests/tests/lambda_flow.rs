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
use berth_shared::platform::events::PING;
use berth_shared::platform::queue::Envelope;
use berth_tests::client::ApiClient;
use berth_tests::event_source::{EventSourceMapping, Invocation, Outcome, RunningMapping};
use berth_tests::lambda_watch::LambdaWatch;
use berth_tests::registry::{Registry, SERVICE, oci_image, skopeo};
use berth_tests::{ChildGuard, Moto, berth_bin, function_key_env};
use serde_json::{Value, json};

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
    assert_no_mapping_errors(&running, &watch);
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
fn assert_no_mapping_errors(running: &RunningMapping, watch: &LambdaWatch) {
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
    assert_no_mapping_errors(&running, &watch);
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

// ---------------------------------------------------------------------------------------
// The seed flow with every function under the emulator
// ---------------------------------------------------------------------------------------

const ACCOUNT: &str = "acme";
const BUCKET: &str = "berth-state";

/// Berth as `infra/template.yaml` deploys it, locally: four functions under four emulators
/// (each with its own environment), state in S3 and one queue with a dead-letter queue per
/// event-consuming function on moto, the event-source mappings, the sweep schedule, and the
/// real registry whose token realm is the credentials function's URL.
struct Cloud {
    dir: tempfile::TempDir,
    moto: Moto,
    credentials: LambdaWatch,
    packages: LambdaWatch,
    render: LambdaWatch,
    releases: LambdaWatch,
    registry: Registry,
    queues: Vec<(String, String)>,
    mappings: Vec<RunningMapping>,
    schedule: Option<tokio::task::JoinHandle<()>>,
    account_key: String,
    token: String,
    /// The API client; each call goes to the URL of the function its path is routed to.
    api: ApiClient,
    agents: Vec<ChildGuard>,
    /// Images the agent pulled into the Docker engine, removed at the end.
    pulled: Vec<String>,
}

impl Cloud {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let moto = Moto::start();
        moto.bucket(BUCKET).await;
        let registry_port = Registry::pick_port();
        let keys = key_env(dir.path());
        let account_key = keys.iter().find(|(name, _)| name == "BERTH_ACCOUNT_KEY_FILE").unwrap().1.clone();
        let mut common: Vec<(String, String)> = vec![
            ("BERTH_STORE_URL".into(), format!("s3://{BUCKET}")),
            ("BERTH_S3_ENDPOINT".into(), moto.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("BERTH_REGISTRY_HOST".into(), format!("127.0.0.1:{registry_port}")),
            ("BERTH_REGISTRY_SERVICE".into(), SERVICE.into()),
            ("BERTH_LOG_FORMAT".into(), "json".into()),
        ];
        common.extend(keys);
        let with_queue = |queue: &(String, String)| {
            let mut env = common.clone();
            env.push(("BERTH_QUEUE_URL".into(), queue.0.clone()));
            env.push(("BERTH_DEAD_LETTER_QUEUE_URL".into(), queue.1.clone()));
            env.push(("BERTH_QUEUE_MAX_ATTEMPTS".into(), "5".into()));
            env
        };
        let packages_queue = moto.queue_with_dead_letters("berth-packages", 5, 10).await;
        let releases_queue = moto.queue_with_dead_letters("berth-releases", 5, 10).await;
        let credentials = LambdaWatch::start("berth-credentials", dir.path(), &common);
        let packages = LambdaWatch::start("berth-packages", dir.path(), &with_queue(&packages_queue));
        let render = LambdaWatch::start("berth-render", dir.path(), &common);
        // Agents hold polls: more than one instance, as Lambda would scale out.
        let releases = LambdaWatch::start_with(
            "berth-releases",
            dir.path(),
            &with_queue(&releases_queue),
            &["--concurrency", "4"],
        );
        let mut cloud = Self {
            registry: Registry::start(
                dir.path(),
                registry_port,
                &format!("{}/v1/registry/token", credentials.function_url()),
                Path::new(&common.iter().find(|(n, _)| n == "BERTH_SIGNING_CERT_FILE").unwrap().1),
            ),
            dir,
            moto,
            credentials,
            packages,
            render,
            releases,
            queues: vec![packages_queue, releases_queue],
            mappings: Vec::new(),
            schedule: None,
            token: String::new(),
            account_key,
            api: ApiClient::new(String::new()).with_timeout(Duration::from_secs(60)),
            agents: Vec::new(),
            pulled: Vec::new(),
        };
        for watch in [&mut cloud.credentials, &mut cloud.packages, &mut cloud.render, &mut cloud.releases] {
            watch.ready().await;
        }
        let sqs = cloud.moto.sqs();
        for (queue, watch) in [(&cloud.queues[0].0, &cloud.packages), (&cloud.queues[1].0, &cloud.releases)] {
            let mapping = EventSourceMapping::new(sqs.clone(), queue, &watch.invoke_url()).await;
            cloud.mappings.push(mapping.spawn());
        }
        // The template's Sweep schedule (every minute on AWS; every 2 s here, as berth serve does).
        // Its input is the one-record batch the template's schedule sends.
        let envelope = serde_json::to_string(
            &berth_shared::platform::events::envelope(&berth_releases::engine::Sweep {}, None).unwrap(),
        )
        .unwrap();
        let sweep = json!({ "Records": [{
            "messageId": "sweep", "body": envelope, "attributes": { "ApproximateReceiveCount": "1" }, "eventSource": "aws:sqs",
        }] });
        let invoke = cloud.releases.invoke_url();
        cloud.schedule = Some(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let _ = http.post(&invoke).json(&sweep).timeout(Duration::from_secs(60)).send().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }));
        cloud.token = cloud.dev_token(ACCOUNT);
        cloud
    }

    fn dev_token(&self, account: &str) -> String {
        let output = std::process::Command::new(berth_bin("berth"))
            .args(["dev-token", "--account", account, "--data-dir"])
            .arg(self.dir.path())
            .env("BERTH_ACCOUNT_KEY_FILE", &self.account_key)
            .output()
            .unwrap();
        assert!(output.status.success(), "dev-token: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// The function `path` is routed to, as the HTTP API of the template routes it.
    fn function_for(&self, path: &str) -> &LambdaWatch {
        if path.starts_with("/v1/registry/") || path.starts_with("/v1/account") || path.starts_with("/.well-known/") {
            &self.credentials
        } else if path.starts_with("/v1/render") || path.starts_with("/v1/downloads/") || path.ends_with("/render") {
            &self.render
        } else if path.starts_with("/v1/packages") || path.starts_with("/v1/services") {
            &self.packages
        } else {
            &self.releases
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.function_for(path).function_url());
        self.api.call_url(&self.token, method, &url, body).await
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, Some(body)).await;
        assert!((200..300).contains(&status), "{method} {path}: {status}: {answer}\n{}", self.logs_tail());
        answer
    }

    async fn get(&self, path: &str) -> Value {
        let (status, answer) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    fn logs_tail(&self) -> String {
        [&self.credentials, &self.packages, &self.render, &self.releases].iter().map(|w| w.tail()).collect()
    }

    /// Everything every function logged.
    fn all_logs(&self) -> String {
        [&self.credentials, &self.packages, &self.render, &self.releases]
            .iter()
            .map(|w| std::fs::read_to_string(&w.log).unwrap_or_default())
            .collect()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(schedule) = self.schedule.take() {
            schedule.abort();
        }
        for image in &self.pulled {
            let _ = std::process::Command::new("docker").args(["rmi", image]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_runs_with_every_function_under_the_lambda_emulator() {
    let mut cloud = Cloud::start().await;
    let host = cloud.registry.host.clone();

    // 1. A push key from the credentials function, and a push with skopeo: the registry sends
    //    skopeo to its token realm, the credentials function's URL.
    let key = cloud.ok("POST", "/v1/registry/credentials", json!({ "purpose": "push" })).await;
    let password = key["password"].as_str().unwrap().to_owned();
    let creds = format!("{}:{password}", key["username"].as_str().unwrap());
    let layout = cloud.dir.path().join("layout");
    oci_image(&layout, "v1", "Alibaba Spring Sample! v1\n");
    let (ok, err) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{host}/{ACCOUNT}/hello:v1"),
    ]);
    assert!(ok, "skopeo push through the emulated token realm: {err}\n{}", cloud.logs_tail());

    // 2. A package: Creating, then the publish check (SQS on moto -> mapping -> packages
    //    function) settles it Available, pinned to the digest.
    let created = cloud
        .ok(
            "POST",
            "/v1/packages",
            json!({
                "name": "hello_web", "description": "the seed's sample page", "type": "ContainerImage",
                "version": { "name": "v1_0", "images": [{ "repository": format!("{ACCOUNT}/hello"), "tag": "v1" }] },
            }),
        )
        .await;
    assert_eq!(created["version"]["status"], "Creating", "{created}");
    let started = Instant::now();
    let version = loop {
        let version = cloud.get("/v1/packages/hello_web/versions/v1_0").await;
        if version["status"] != "Creating" {
            break version;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still Creating: {version}\n{}", cloud.logs_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(version["status"], "Available", "{version}");
    let digest = version["images"][0]["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{version}");

    // 3. Render: a service on the packages function, rendered by the render function; the
    //    pull key it mints pulls the image through the registry.
    let template = "image: {{ computenest::acrimage::web }}\nauth: {{ computenest::acr::dockerconfigjson }}\nleft: {{resolve:oos:x}}\n";
    cloud
        .ok(
            "PUT",
            "/v1/services/shop",
            json!({
                "templates": { "main": template },
                "relations": { "{{ computenest::acrimage::web }}": { "package": "hello_web", "version": "latest" } },
            }),
        )
        .await;
    let rendered = cloud.ok("POST", "/v1/services/shop/render", json!({ "template": "main" })).await;
    let text = rendered["rendered"].as_str().unwrap().to_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("image: {host}/{ACCOUNT}/hello:v1"), "{text}");
    assert_eq!(lines[2], "left: {{resolve:oos:x}}", "untouched");
    use base64::Engine as _;
    let dockerconfig = lines[1].strip_prefix("auth: ").unwrap().to_owned();
    let decoded = base64::engine::general_purpose::STANDARD.decode(&dockerconfig).expect("base64 dockerconfigjson");
    let authfile = cloud.dir.path().join("rendered-auth.json");
    std::fs::write(&authfile, decoded).unwrap();
    let output = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--authfile"])
        .arg(&authfile)
        .arg(format!("docker://{host}/{ACCOUNT}/hello:v1"))
        .output()
        .unwrap();
    assert!(output.status.success(), "the rendered pull key pulls: {}", String::from_utf8_lossy(&output.stderr));
    let inspected: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());

    // 4. A release of the package version to one shell-only host agent, driven by the
    //    releases queue through the mapping and the sweep schedule.
    cloud.ok("POST", "/v1/applications", json!({ "name": "shop" })).await;
    let group = cloud.ok("POST", "/v1/applications/shop/groups", json!({ "name": "prod" })).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    let markers = cloud.dir.path().join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    let m = markers.display();
    cloud
        .ok(
            "POST",
            "/v1/applications/shop/deployments",
            json!({
                "name": "web", "image": { "package": "hello_web", "version": "v1_0" },
                "working_directory": cloud.dir.path().join("work"),
                "stop_script": "echo \"stopping on $BERTH_HOST\"\n",
                "start_script": format!("echo \"$BERTH_IMAGE\" > {m}/started-$BERTH_HOST\necho \"started on $BERTH_HOST\"\n"),
                "step_timeout_seconds": 60,
            }),
        )
        .await;
    let agent_log = cloud.dir.path().join("agent.log");
    let agent = std::process::Command::new(berth_bin("berth-agent"))
        .args(["--berth-url", &cloud.releases.function_url(), "--host-id", "host-1"])
        .arg("--state-dir")
        .arg(cloud.dir.path().join("agent-state"))
        .env("BERTH_JOIN_TOKEN", &join)
        .args(["--poll-seconds", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .expect("start berth-agent");
    cloud.agents.push(ChildGuard(agent));
    let started = Instant::now();
    loop {
        let group = cloud.get("/v1/applications/shop/groups/prod").await;
        if group["instances"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the agent did not register: {group}\n{}",
            berth_tests::tail(&agent_log, 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let release =
        cloud.ok("POST", "/v1/releases", json!({ "application": "shop", "deployment": "web", "group": "prod" })).await;
    let id = release["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let done = loop {
        let release = cloud.get(&format!("/v1/releases/{id}")).await;
        if release["status"] != "running" {
            break release;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "release still running: {release:#}\nagent:\n{}\n{}",
            berth_tests::tail(&agent_log, 20),
            cloud.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done:#}\nagent:\n{}", berth_tests::tail(&agent_log, 20));
    let pinned = format!("{host}/{ACCOUNT}/hello@{digest}");
    cloud.pulled.push(pinned.clone());
    let started_with = std::fs::read_to_string(markers.join("started-host-1")).expect("the start script ran");
    assert_eq!(started_with.trim(), pinned, "the agent started the pinned package image");
    let logs = cloud.get(&format!("/v1/releases/{id}/hosts/host-1/logs")).await;
    assert!(logs["start"]["stdout"].as_str().unwrap().contains("started on host-1"), "{logs}");
    assert!(logs["pull"]["stdout"].as_str().unwrap().contains(&digest), "docker pulled the pinned image: {logs}");

    // State went to S3 on moto; the queues are drained and nothing was dead-lettered.
    let documents: Vec<String> = {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let store = cloud.moto.s3(BUCKET);
        store.list(None).map_ok(|meta| meta.location.to_string()).try_collect().await.unwrap()
    };
    assert!(
        documents.iter().any(|p| p.starts_with(&format!("accounts/{ACCOUNT}/packages/hello_web/"))),
        "{documents:?}"
    );
    assert!(documents.iter().any(|p| p.starts_with(&format!("releases/{id}/"))), "{documents:?}");
    let sqs = cloud.moto.sqs();
    for (queue, dlq) in &cloud.queues {
        assert_eq!(messages_in(&sqs, dlq).await, 0, "nothing dead-lettered in {dlq}");
        let started = Instant::now();
        while messages_in(&sqs, queue).await > 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "{queue} not drained");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Events went through both mappings: the publish check, and the release's advances.
    let kinds = |mapping: &RunningMapping| -> Vec<String> {
        mapping
            .invocations()
            .iter()
            .flat_map(|i| &i.records)
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        kinds(&cloud.mappings[0]).contains(&"package.version.submitted".to_owned()),
        "{:?}",
        kinds(&cloud.mappings[0])
    );
    let release_events = kinds(&cloud.mappings[1]);
    assert!(
        release_events
            .contains(&<berth_releases::engine::Advance as berth_shared::platform::events::Event>::TYPE.to_owned()),
        "{release_events:?}"
    );
    for mapping in &cloud.mappings {
        assert!(mapping.errors().is_empty(), "{:?}", mapping.errors());
    }

    // No secret handed out reached any function's logs.
    let logs = cloud.all_logs();
    for (what, secret) in [
        ("push key password", password.as_str()),
        ("account token", cloud.token.as_str()),
        ("join token", join.as_str()),
        ("rendered dockerconfigjson", dockerconfig.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} reached the logs");
    }
}

/// The mapping's reading of the function's answer, as Lambda reads it, against a function
/// whose answer is chosen per test case (the queue is moto's, the rules are the mapping's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_reads_answers_as_lambda_does() {
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    use axum::routing::post;

    let function = axum::Router::new().route(
        "/2015-03-31/functions/{case}/invocations",
        post(|UrlPath(case): UrlPath<String>, body: String| async move {
            let event: Value = serde_json::from_str(&body).expect("an SqsEvent");
            let first = event["Records"][0]["messageId"].as_str().expect("messageId").to_owned();
            match case.as_str() {
                "null" => (StatusCode::OK, "null".to_owned()),
                "empty" => (StatusCode::OK, String::new()),
                "none-failed" => (StatusCode::OK, json!({ "batchItemFailures": [] }).to_string()),
                "one-failed" => {
                    (StatusCode::OK, json!({ "batchItemFailures": [{ "itemIdentifier": first }] }).to_string())
                }
                "unknown-id" => {
                    (StatusCode::OK, json!({ "batchItemFailures": [{ "itemIdentifier": "not-in-batch" }] }).to_string())
                }
                "empty-id" => (StatusCode::OK, json!({ "batchItemFailures": [{ "itemIdentifier": "" }] }).to_string()),
                "not-json" => (StatusCode::OK, "ok".to_owned()),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, json!({ "errorType": "Boom" }).to_string()),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, function).await });
    let moto = Moto::start();
    let sqs = moto.sqs();

    // (case, messages left in the queue afterwards out of 2, whether the batch failed whole)
    let cases = [
        ("null", 0, false),
        ("empty", 0, false),
        ("none-failed", 0, false),
        ("one-failed", 1, false),
        ("unknown-id", 2, true),
        ("empty-id", 2, true),
        ("not-json", 2, true),
        ("error", 2, true),
    ];
    for (case, left, whole) in cases {
        let (queue, _) = moto.queue_with_dead_letters(&format!("case-{case}"), 5, 30).await;
        let bodies: Vec<String> =
            (0..2).map(|_| serde_json::to_string(&Envelope::new(PING, None, json!({}))).unwrap()).collect();
        send_batch(&sqs, &queue, &bodies).await;
        let mut mapping =
            EventSourceMapping::new(sqs.clone(), &queue, &format!("{base}/2015-03-31/functions/{case}/invocations"))
                .await;
        mapping.batching_window = Duration::from_millis(300);
        let invocation = mapping.poll_once(Duration::from_secs(5), Instant::now()).await.unwrap().expect("a batch");
        assert_eq!(invocation.records.len(), 2, "{case}: one batch of both");
        assert_eq!(
            matches!(invocation.outcome, Outcome::BatchFailed { .. }),
            whole,
            "{case}: {:?}",
            invocation.outcome
        );
        assert_eq!(messages_in(&sqs, &queue).await, left, "{case}: messages left");
    }
}

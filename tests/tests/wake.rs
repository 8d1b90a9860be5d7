//! The wake channel (issue 27) for real: `berth serve` and `berth-agent` processes, with polls
//! never held (`BERTH_MAX_POLL_HOLD_SECONDS=0`) and the agents' fallback poll a minute apart,
//! so that only the channel explains a job arriving within a second. No Docker: the jobs' image
//! is in no registry, so a host's pull fails at once; what is measured is when the job arrived.
//! The idle test keeps the store on moto S3 with its request recording on, and counts.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berth::BerthServe;
use berth_tests::{ChildGuard, Moto, berth_bin, free_port};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ACCOUNT: &str = "acme";

struct Setup {
    dir: tempfile::TempDir,
    berth: Option<BerthServe>,
    port: u16,
    env: Vec<(String, String)>,
    token: String,
    join: String,
    http: reqwest::Client,
    agents: Vec<(String, PathBuf, ChildGuard)>,
}

impl Setup {
    async fn start(extra_env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![("BERTH_MAX_POLL_HOLD_SECONDS".to_owned(), "0".to_owned())];
        env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let port = free_port();
        let berth = Self::serve(dir.path(), port, &env);
        let token = berth.dev_token(ACCOUNT);
        let mut s = Self {
            dir,
            berth: Some(berth),
            port,
            env,
            token,
            join: String::new(),
            http: reqwest::Client::new(),
            agents: Vec::new(),
        };
        s.post("/v1/applications", json!({ "name": "app" })).await;
        let group = s.post("/v1/applications/app/groups", json!({ "name": "g" })).await;
        s.join = group["join_token"].as_str().unwrap().to_owned();
        let deployment = json!({
            "name": "d", "image": { "address": format!("127.0.0.1:5000/{ACCOUNT}/web:v1") },
            "working_directory": s.dir.path().join("work"), "start_script": "true", "stop_script": "true",
            "step_timeout_seconds": 10,
        });
        s.post("/v1/applications/app/deployments", deployment).await;
        s
    }

    fn serve(dir: &Path, port: u16, env: &[(String, String)]) -> BerthServe {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let log = dir.join(format!("berth-{}.log", uuid::Uuid::new_v4()));
        BerthServe::start(&dir.join("data"), &log, port, &env)
    }

    fn berth(&self) -> &BerthServe {
        self.berth.as_ref().expect("berth serve is running")
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.berth().url)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 200 || status == 201, "POST {path}: {status} {answer}");
        answer
    }

    fn start_agent(&mut self, host: &str, extra: &[&str]) {
        // Without the channel a job would wait a minute for the next poll.
        let interval: &[&str] =
            if extra.contains(&"--poll-interval-seconds") { &[] } else { &["--poll-interval-seconds", "60"] };
        let log = self.dir.path().join(format!("agent-{host}.log"));
        let child = Command::new(berth_bin("berth-agent"))
            .args(["--berth-url", &self.berth().url, "--host-id", host])
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("agent-state-{host}")))
            .env("BERTH_JOIN_TOKEN", &self.join)
            .args(interval)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start berth-agent");
        self.agents.push((host.to_owned(), log, ChildGuard(child)));
    }

    fn agent_log(&self, host: &str) -> String {
        let (_, log, _) = self.agents.iter().find(|(h, _, _)| h == host).expect("agent");
        std::fs::read_to_string(log).unwrap_or_default()
    }

    /// Waits until every agent's log says `what` at least `times` times.
    async fn wait_agents_say(&self, what: &str, times: usize, within: Duration) {
        let start = Instant::now();
        for (host, _, _) in &self.agents {
            while self.agent_log(host).matches(what).count() < times {
                assert!(
                    start.elapsed() < within,
                    "{host} did not say '{what}' {times} times within {within:?}:\n{}",
                    self.agent_log(host)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Creates a release of every host in one batch and answers, per host, how long after the
    /// request was sent its agent had the job.
    async fn release_and_time_jobs(&self) -> (String, Vec<(String, Duration)>) {
        let sent = Instant::now();
        let release = self.post("/v1/releases", json!({ "application": "app", "deployment": "d", "group": "g" })).await;
        let id = release["id"].as_str().unwrap().to_owned();
        let mut arrived = Vec::new();
        let mut waiting: Vec<&str> = self.agents.iter().map(|(h, _, _)| h.as_str()).collect();
        while !waiting.is_empty() {
            waiting.retain(|host| {
                let has = self.agent_log(host).contains(&format!("for release {id}"));
                if has {
                    arrived.push((host.to_string(), sent.elapsed()));
                }
                !has
            });
            if sent.elapsed() > Duration::from_secs(20) {
                let logs: String = waiting.iter().map(|h| format!("{h}:\n{}\n", self.agent_log(h))).collect();
                panic!("no job reached {waiting:?} within 20 s:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (id, arrived)
    }

    async fn wait_ended(&self, id: &str) {
        let start = Instant::now();
        loop {
            let (_, release) = self.call(reqwest::Method::GET, &format!("/v1/releases/{id}"), None).await;
            if release["status"] != "running" {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "release {id} did not end: {release:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn register(&self, host: &str) -> String {
        let response = self
            .http
            .post(format!("{}/v1/agent/register", self.berth().url))
            .bearer_auth(&self.join)
            .json(&json!({ "host": host }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "register {host}");
        response.json::<Value>().await.unwrap()["host_token"].as_str().unwrap().to_owned()
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_channel(berth: &str, token: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!("{}/v1/agent/channel", berth.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

fn max(times: &[(String, Duration)]) -> Duration {
    times.iter().map(|(_, t)| *t).max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_the_wake_channel_get_jobs_within_a_second_and_again_after_berth_restarts() {
    let mut s = Setup::start(&[]).await;
    for host in ["h1", "h2", "h3"] {
        s.start_agent(host, &[]);
    }
    s.wait_agents_say("wake channel open", 1, Duration::from_secs(20)).await;

    let (id, arrived) = s.release_and_time_jobs().await;
    assert!(max(&arrived) < Duration::from_secs(1), "a job took over a second to arrive: {arrived:?}");
    s.wait_ended(&id).await;

    // berth serve goes away and comes back on the same port: the channels drop, the agents
    // poll meanwhile and reconnect (with backoff), and wakes reach them again.
    s.berth.take().unwrap().stop();
    s.wait_agents_say("wake channel closed", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.berth = Some(Setup::serve(s.dir.path(), s.port, &s.env));
    s.wait_agents_say("wake channel open", 2, Duration::from_secs(30)).await;
    let (id, arrived) = s.release_and_time_jobs().await;
    assert!(max(&arrived) < Duration::from_secs(1), "after the restart: {arrived:?}");
    s.wait_ended(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_channel_polls_at_its_interval_and_gets_its_job() {
    let mut s = Setup::start(&[]).await;
    s.start_agent("h1", &["--no-wake-channel", "--poll-interval-seconds", "2"]);
    // Registered (its first poll) and waiting.
    s.wait_agents_say("waiting for work", 1, Duration::from_secs(20)).await;
    let (_, arrived) = s.release_and_time_jobs().await;
    // Not held (the hold is 0), so the next poll comes within the interval and its jitter.
    assert!(max(&arrived) < Duration::from_millis(2400 + 1000), "{arrived:?}");
    assert!(!s.agent_log("h1").contains("wake channel open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_hosts_channel_is_closed_at_once_and_refused_after() {
    let s = Setup::start(&[]).await;
    let token = s.register("h1").await;
    let url = s.berth().url.clone();

    // Only a WebSocket: a plain GET is a problem naming the upgrade.
    let plain = s.http.get(format!("{url}/v1/agent/channel")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(plain.status(), 400);
    let problem: Value = plain.json().await.unwrap();
    assert_eq!((problem["code"].as_str(), problem["field"].as_str()), (Some("not_websocket"), Some("upgrade")));
    // No token, or another kind of token: refused before any upgrade.
    match open_channel(&url, &s.join).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a join token opened a channel: {:?}", other.map(|_| ())),
    }

    let mut socket = open_channel(&url, &token).await.expect("the host's channel opens");
    let (status, _) = s.call(reqwest::Method::DELETE, "/v1/applications/app/groups/g/instances/h1", None).await;
    assert_eq!(status, 204);
    let closed = tokio::time::timeout(Duration::from_secs(2), socket.next()).await.expect("closed within 2 s");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4401, "{frame:?}"),
        other => panic!("expected a close frame, got {other:?}"),
    }
    match open_channel(&url, &token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a removed host's token opened a channel: {:?}", other.map(|_| ())),
    }
}

/// Reads moto's request recording: (method, path) of each request since the last reset.
async fn recorded(moto: &Moto) -> Vec<(String, String)> {
    let text = reqwest::get(format!("{}/moto-api/recorder/download-recording", moto.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|entry| {
            let url = entry["url"].as_str().unwrap_or_default();
            let path = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
            (entry["method"].as_str().unwrap_or_default().to_owned(), format!("/{path}"))
        })
        .collect()
}

async fn recorder(moto: &Moto, action: &str) {
    let url = format!("{}/moto-api/recorder/{action}", moto.endpoint);
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    assert!(response.status().is_success(), "{action}: {}", response.status());
}

/// How idle hosts wait, for the idle measurement.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// On the wake channel, pinging every second (the default is a minute).
    Channel,
    /// Polls held by Berth (20 s asked, 30 s allowed), no channel: today's agents.
    HeldPolls,
    /// Short polls every 2 s, never held, no channel (the fallback, at 1/15 of its default).
    ShortPolls,
}

/// Store requests of `HOSTS` idle hosts waiting as `waiting` for `IDLE`, on moto S3: (reads,
/// writes), berth serve's own upkeep (sweeps, its queue's lease) left out.
async fn idle_store_requests(waiting: Waiting) -> (usize, usize, Vec<(String, String)>) {
    let recording = tempfile::tempdir().unwrap();
    let moto = Moto::start_recording(&recording.path().join("moto-recording"));
    moto.bucket("berth-idle").await;
    let endpoint = moto.endpoint.clone();
    let hold = match waiting {
        Waiting::HeldPolls => "30",
        Waiting::Channel | Waiting::ShortPolls => "0",
    };
    let env = [
        ("BERTH_STORE_URL", "s3://berth-idle"),
        ("BERTH_S3_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("BERTH_MAX_POLL_HOLD_SECONDS", hold),
    ];
    let mut s = Setup::start(&env).await;
    let flags: &[&str] = match waiting {
        Waiting::Channel => &["--heartbeat-seconds", "1"],
        Waiting::HeldPolls => &["--no-wake-channel", "--poll-seconds", "20"],
        Waiting::ShortPolls => &["--no-wake-channel", "--poll-interval-seconds", "2"],
    };
    for i in 0..HOSTS {
        s.start_agent(&format!("h{i}"), flags);
    }
    let ready = match waiting {
        Waiting::Channel => "wake channel open",
        Waiting::HeldPolls | Waiting::ShortPolls => "waiting for work",
    };
    s.wait_agents_say(ready, 1, Duration::from_secs(20)).await;
    // Past the agents' first polls (their seen writes and snapshot reads).
    tokio::time::sleep(Duration::from_secs(2)).await;
    recorder(&moto, "reset-recording").await;
    recorder(&moto, "start-recording").await;
    tokio::time::sleep(IDLE).await;
    recorder(&moto, "stop-recording").await;
    let requests = recorded(&moto).await;
    // berth serve's own upkeep costs the same whatever the fleet, not per host: the sweep lists
    // the active releases and leases every 2 s, the in-process queue reads its lease.
    let per_process = |path: &str| path.contains("list-type") || path.contains("/serve/");
    let host_requests: Vec<(String, String)> = requests.into_iter().filter(|(_, p)| !per_process(p)).collect();
    let reads = host_requests.iter().filter(|(m, _)| m == "GET" || m == "HEAD").count();
    let writes = host_requests.iter().filter(|(m, _)| m == "PUT" || m == "POST" || m == "DELETE").count();
    let per_hour = |n: usize| n as f64 * 3600.0 / IDLE.as_secs_f64() / HOSTS as f64;
    eprintln!(
        "idle {waiting:?}: {HOSTS} hosts for {IDLE:?}: {reads} store reads, {writes} writes = {:.0} reads and {:.0} writes per host per hour",
        per_hour(reads),
        per_hour(writes),
    );
    (reads, writes, host_requests)
}

const HOSTS: usize = 5;
const IDLE: Duration = Duration::from_secs(6);

/// Also the measured input of the cost model in docs/aws.md: run with `--nocapture` for the
/// store requests per idle host per hour of each way of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connected_agents_make_no_store_reads_and_at_most_their_heartbeat_writes() {
    let (reads, writes, requests) = idle_store_requests(Waiting::Channel).await;
    // `last_seen` is written at most once a minute per host: in a few seconds, at most one each.
    assert!(writes <= HOSTS, "{writes} writes by {HOSTS} idle hosts in {IDLE:?}: {requests:#?}");
    assert_eq!(reads, 0, "idle hosts read the store: {requests:#?}");
    // The other ways of waiting, measured alike: each costs reads (a poll reads its group).
    let (short_reads, _, _) = idle_store_requests(Waiting::ShortPolls).await;
    assert!(short_reads > 0, "short polls read the store");
    idle_store_requests(Waiting::HeldPolls).await;
}

/// Two `berth serve` processes on one store and one SQS queue: a release created in one wakes
/// the channel an agent holds in the other (issue 30: each process has a news queue of its own,
/// announced in the store). Without the news the agent would get its job only at its next
/// poll, a minute away. The news queues go when the processes stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_created_in_one_process_wakes_channels_held_in_another() {
    let TwoProcesses { moto, dir, a, b, token } = two_processes("berth-two").await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = http.post(format!("{}{path}", a.url)).bearer_auth(&token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };
    post("/v1/applications", json!({ "name": "app" })).await;
    let group = post("/v1/applications/app/groups", json!({ "name": "g" })).await;
    let deployment = json!({
        "name": "d", "image": { "address": format!("127.0.0.1:5000/{ACCOUNT}/web:v1") },
        "working_directory": dir.path().join("work"), "start_script": "true", "stop_script": "true",
    });
    post("/v1/applications/app/deployments", deployment).await;

    // The agent talks to `b` only, and polls a minute apart.
    let log = dir.path().join("agent.log");
    let _agent = ChildGuard(
        Command::new(berth_bin("berth-agent"))
            .args(["--berth-url", &b.url, "--host-id", "h1", "--poll-interval-seconds", "60"])
            .arg("--state-dir")
            .arg(dir.path().join("agent-state"))
            .env("BERTH_JOIN_TOKEN", group["join_token"].as_str().unwrap())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while !agent_log().contains("wake channel open") {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", agent_log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each release is moved first by whichever process takes its advance from the shared
    // queue, so one release could wake `b`'s channel by luck: five in a row cannot.
    for _ in 0..5 {
        let release = post("/v1/releases", json!({ "application": "app", "deployment": "d", "group": "g" })).await;
        let id = release["id"].as_str().unwrap().to_owned();
        let sent = Instant::now();
        while !agent_log().contains(&format!("for release {id}")) {
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "the agent on the other process was not woken:\n{}\n{}\n{}",
                agent_log(),
                a.logs(),
                b.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!("release {id}: the job reached the other process's channel in {:?}", sent.elapsed());
        // The job's image is in no registry: the release fails at once and the next may start.
        loop {
            let got = http.get(format!("{}/v1/releases/{id}", a.url)).bearer_auth(&token).send().await.unwrap();
            if got.json::<Value>().await.unwrap()["status"] != "running" {
                break;
            }
            assert!(sent.elapsed() < Duration::from_secs(30), "release {id} did not end");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    a.stop();
    b.stop();
    assert_eq!(news_queues(&moto, "berth-two").await, 0, "a stopped process removes its news queue");
}

/// Two `berth serve` processes on one file store and one SQS queue (moto), once each has made
/// its news queue, and an account token.
struct TwoProcesses {
    moto: Moto,
    dir: tempfile::TempDir,
    a: BerthServe,
    b: BerthServe,
    token: String,
}

async fn two_processes(queue_name: &str) -> TwoProcesses {
    let moto = Moto::start();
    let sqs = moto.sqs();
    let queue = sqs.create_queue().queue_name(queue_name).send().await.unwrap().queue_url.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let account_key = berth_tests::write_account_key(dir.path()).display().to_string();
    let store = format!("file://{}", dir.path().join("store").display());
    let env = [
        ("BERTH_STORE_URL", store.as_str()),
        ("BERTH_ACCOUNT_KEY_FILE", account_key.as_str()),
        ("BERTH_QUEUE_URL", queue.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("BERTH_MAX_POLL_HOLD_SECONDS", "0"),
    ];
    let serve =
        |name: &str| BerthServe::start(&dir.path().join(name), &dir.path().join(format!("{name}.log")), 0, &env);
    let (a, b) = (serve("a"), serve("b"));
    let started = Instant::now();
    while news_queues(&moto, queue_name).await < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "each process makes its news queue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys = berth_shared::platform::http::account::AccountKeys::load(
        Path::new(&account_key),
        berth_shared::platform::config::DEFAULT_ACCOUNT_ISSUER,
    )
    .unwrap();
    let token = keys.issue(&berth_shared::names::AccountId::parse(ACCOUNT).unwrap(), 600).unwrap();
    TwoProcesses { moto, dir, a, b, token }
}

/// The news queues of the processes on the SQS queue `queue_name`.
async fn news_queues(moto: &Moto, queue_name: &str) -> usize {
    let listed = moto.sqs().list_queues().queue_name_prefix(format!("{queue_name}-news-")).send().await.unwrap();
    listed.queue_urls.unwrap_or_default().len()
}

/// Two `berth serve` processes on one store and one SQS queue: a host token rotated in one is
/// refused in the other as soon as the news of its revocation arrives. The other process
/// keeps the host record it read to authenticate the token for five seconds (news tells it of
/// revocations), so without that news the old token would act there that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_in_one_process_is_refused_in_another_on_its_news() {
    let TwoProcesses { moto: _moto, dir: _dir, a, b, token } = two_processes("berth-revoke").await;
    let http = reqwest::Client::new();
    let post = |url: &str, path: &str, bearer: &str, body: Value| {
        let request = http.post(format!("{url}{path}")).bearer_auth(bearer).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };
    post(&a.url, "/v1/applications", &token, json!({ "name": "app" })).await;
    let group = post(&a.url, "/v1/applications/app/groups", &token, json!({ "name": "g" })).await;
    let join = group["join_token"].as_str().unwrap();
    let registered = post(&a.url, "/v1/agent/register", join, json!({ "host": "h1" })).await;
    let old = registered["host_token"].as_str().unwrap().to_owned();
    let poll = |bearer: &str| {
        let request = http.get(format!("{}/v1/agent/jobs?wait_seconds=0", b.url)).bearer_auth(bearer);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // `b` reads the record to authenticate the token, and keeps it.
    assert_eq!(poll(&old).await, 204);
    let rotated = post(&a.url, "/v1/agent/register", &old, json!({ "host": "h1" })).await;
    let rotated_at = Instant::now();
    while poll(&old).await != 401 {
        assert!(
            rotated_at.elapsed() < Duration::from_secs(4),
            "the old token still acts in the other process:\n{}\n{}",
            a.logs(),
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("the rotated token was refused in the other process after {:?}", rotated_at.elapsed());
    assert_eq!(poll(rotated["host_token"].as_str().unwrap()).await, 204, "the new token acts");
    a.stop();
    b.stop();
}

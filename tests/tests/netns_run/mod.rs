//! The run shared by the netns tests: hosts on their own network (see `netns.rs`), set up
//! through the first two phases. Its phases are methods; tests add their own in `impl Run`
//! blocks of their files.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_shared::release::REPORT_GRACE_SECONDS;
use berth_tests::berth::BerthServe;
use berth_tests::client::ApiClient;
use berth_tests::docker::{DockerLeftovers, build_and_push, seed_start_script, seed_stop_script};
use berth_tests::netns::Network;
use berth_tests::registry::{Registry, SERVICE};
use berth_tests::{berth_bin, free_port};
use serde_json::{Value, json};

pub const ACCOUNT: &str = "acme";
pub const HOSTS: usize = 5;
/// Short, so the cut host's deadline comes soon: two steps after its batch starts (the image
/// was pulled before any batch) plus Berth's `REPORT_GRACE_SECONDS`, 30 s, which is not
/// configurable. Long enough for a pull or a `docker run` on a loaded machine.
pub const STEP_TIMEOUT_SECONDS: u64 = 10;
/// How long each agent's poll is held. Its HTTP timeout is this plus 30 s, so a poll that
/// was in flight when the link went is abandoned long before the link comes back (a job
/// written into the dead connection is never delivered late).
pub const POLL_SECONDS: &str = "5";

/// One run: the network and its agents, the registry and Berth. Fields drop in order, so
/// the agents stop (with their namespaces) before Berth, and containers go whatever happens.
pub struct Run {
    pub network: Network,
    pub _docker: DockerLeftovers,
    pub _registry: Registry,
    pub berth: BerthServe,
    pub berth_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub token: String,
    /// The API client, at berth serve's URL (the same across restarts: the port is kept).
    pub api: ApiClient,
    /// Host ids, in the network's host order.
    pub hosts: Vec<String>,
    /// Each host's published port.
    pub ports: Vec<(String, u16)>,
    /// The pid of each host's agent.
    pub agents: Vec<u32>,
    v1: String,
    v2: String,
}

/// A port free on `ip` (Berth listens there and nowhere else).
fn free_port_on(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind on the bridge address").local_addr().expect("local addr").port()
}

impl Run {
    pub async fn start(test: &str) -> Option<Self> {
        let network = Network::create_or_skip(HOSTS, test)?;
        let dir = tempfile::tempdir().unwrap();
        let registry_port = free_port();
        let registry_host = format!("127.0.0.1:{registry_port}");
        let env = [("BERTH_REGISTRY_HOST", registry_host.as_str()), ("BERTH_REGISTRY_SERVICE", SERVICE)];
        let berth_addr = SocketAddr::from((network.gateway, free_port_on(network.gateway)));
        let berth = BerthServe::start_at(
            &berth_bin("berth"),
            &dir.path().join("data"),
            &dir.path().join("berth.log"),
            berth_addr,
            &env,
        );
        let realm = format!("{}/v1/registry/token", berth.url);
        let registry = Registry::start(dir.path(), registry_port, &realm, &berth.signing_certificate());
        let token = berth.dev_token(ACCOUNT);
        let hosts: Vec<String> = (1..=HOSTS).map(|i| format!("n{i}")).collect();
        let mut ports = Vec::new();
        while ports.len() < HOSTS {
            let port = free_port();
            if !ports.iter().any(|(_, p)| *p == port) {
                ports.push((hosts[ports.len()].clone(), port));
            }
        }
        let run_tag = format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let container_prefix = format!("berth-netns-{run_tag}");
        let v1 = format!("{registry_host}/{ACCOUNT}/hello:v1");
        let v2 = format!("{registry_host}/{ACCOUNT}/hello:v2");
        let docker = DockerLeftovers {
            containers: hosts.iter().map(|h| format!("{container_prefix}-{h}")).collect(),
            images: vec![v1.clone(), v2.clone()],
        };
        let api = ApiClient::new(berth.url.clone());
        let mut run = Self {
            network,
            _docker: docker,
            _registry: registry,
            berth,
            berth_addr,
            dir,
            token,
            api,
            hosts,
            ports,
            agents: Vec::new(),
            v1,
            v2,
        };
        let push_key = run.push_key();
        build_and_push(run.dir.path(), &run.v1, "Alibaba Spring Sample! v1\n", ACCOUNT, &push_key);
        build_and_push(run.dir.path(), &run.v2, "Alibaba Spring Sample! v2\n", ACCOUNT, &push_key);

        run.post("/v1/applications", json!({ "name": "shop" })).await;
        let group = run.post("/v1/applications/shop/groups", json!({ "name": "prod" })).await;
        let join = group["join_token"].as_str().unwrap().to_owned();
        for (name, image) in [("web-v1", run.v1.clone()), ("web-v2", run.v2.clone())] {
            let body = json!({
                "name": name, "image": { "address": image },
                "working_directory": run.dir.path().join("deploy"),
                "start_script": seed_start_script(&image, &container_prefix, &run.ports),
                "stop_script": seed_stop_script(&container_prefix),
                "step_timeout_seconds": STEP_TIMEOUT_SECONDS,
            });
            run.post("/v1/applications/shop/deployments", body).await;
        }
        for i in 0..HOSTS {
            run.start_agent(i, &join).await;
        }
        run.wait_for_hosts(HOSTS).await;
        Some(run)
    }

    pub fn push_key(&self) -> String {
        let output = std::process::Command::new(berth_bin("berth"))
            .args(["credentials", "push", "--url", &self.berth.url, "--token", &self.token])
            .output()
            .unwrap();
        assert!(output.status.success(), "berth credentials push: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    pub fn agent_log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("agent-{}.log", self.hosts[i]))
    }

    /// Starts host `i`'s agent in its namespace and checks that it runs there.
    pub async fn start_agent(&mut self, i: usize, join: &str) {
        let mut command = self.network.command_in(i, &berth_bin("berth-agent"));
        command
            .args(["--berth-url", &self.berth.url, "--host-id", &self.hosts[i], "--poll-seconds", POLL_SECONDS])
            // A cut link must show within the test's deadlines: a ping every 5 s, answered
            // within the agent's 10 s, or its channel is reopened.
            .args(["--heartbeat-seconds", "5"])
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("agent-state-{}", self.hosts[i])))
            // Never in argv, where `ps` shows it.
            .env("BERTH_JOIN_TOKEN", join)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.agent_log(i)).unwrap());
        let pid = self.network.spawn(command);
        // `ip netns exec` enters the namespace and then execs the agent: wait for that.
        let start = Instant::now();
        while !self.network.runs_in(pid, i) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "agent {pid} never ran in {}",
                self.network.hosts[i].netns
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.agents.push(pid);
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.call(&self.token, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 200 || status == 201, "POST {path}: {status} {answer}");
        answer
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, answer) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    pub async fn wait_for_hosts(&self, count: usize) {
        let start = Instant::now();
        loop {
            let group = self.get("/v1/applications/shop/groups/prod").await;
            if group["instances"].as_array().unwrap().len() == count {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{count} hosts did not register: {group}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The agents' and Berth's last lines, for failure messages.
    pub fn logs(&self) -> String {
        let agents: String = (0..self.hosts.len())
            .map(|i| format!("agent {}:\n{}\n", self.hosts[i], berth_tests::tail(&self.agent_log(i), 15)))
            .collect();
        format!("{agents}berth:\n{}", berth_tests::tail(&self.berth.log, 30))
    }

    pub async fn release(&self, body: Value) -> String {
        self.post("/v1/releases", body).await["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the release satisfies `done`; fails with the release and the logs if not.
    pub async fn wait_release(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, release) = self.call(reqwest::Method::GET, &format!("/v1/releases/{id}"), None).await;
            if status == 200 && done(&release) {
                return release;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "release {id} never reached {what}: {release:#}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn finished(&self, id: &str) -> Value {
        self.wait_release(id, "an end", |r| r["status"] != "running").await
    }

    /// Waits until host `i`'s container answers `page` on its port.
    pub async fn serves(&self, i: usize, page: &str) {
        let url = format!("http://127.0.0.1:{}/hello", self.ports[i].1);
        let start = Instant::now();
        loop {
            let got = match reqwest::get(&url).await {
                Ok(response) if response.status().is_success() => response.text().await.ok(),
                _ => None,
            };
            if got.as_deref() == Some(page) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "host {} does not serve {page:?} on {url}: {got:?}\n{}",
                self.hosts[i],
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn host<'a>(release: &'a Value, host: &str) -> &'a Value {
        release["batches"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["hosts"].as_array().unwrap())
            .find(|h| h["host"] == host)
            .unwrap_or_else(|| panic!("{host} is not in {release:#}"))
    }

    /// The group's entry for `host`, if it lists one.
    pub async fn instance(&self, host: &str) -> Option<Value> {
        let group = self.get("/v1/applications/shop/groups/prod").await;
        group["instances"].as_array().unwrap().iter().find(|i| i["host"] == host).cloned()
    }

    /// The deployment a host runs (its ledger, as the group shows it), if any.
    pub async fn runs(&self, host: &str) -> Option<String> {
        self.instance(host).await.and_then(|i| i["runs"]["deployment"].as_str().map(str::to_owned))
    }

    pub fn index(&self, host: &str) -> usize {
        self.hosts.iter().position(|h| h == host).unwrap()
    }

    /// Phase 1: every host gets v1 over its own link, and every container answers.
    pub async fn everyone_gets_v1(&self) {
        let id = self.release(json!({ "application": "shop", "deployment": "web-v1", "group": "prod" })).await;
        let done = self.finished(&id).await;
        assert_eq!(done["status"], "succeeded", "{done:#}\n{}", self.logs());
        for (i, host) in self.hosts.iter().enumerate() {
            assert_eq!(Self::host(&done, host)["state"], "succeeded", "{done:#}");
            self.serves(i, "Alibaba Spring Sample! v1\n").await;
        }
    }

    /// Phase 2: v2 in two batches with a manual pause between them. During the pause the link
    /// of a host of the second batch is cut; that host never gets its job, fails with
    /// `step: report` at its phase deadline and keeps serving v1, and the release succeeds
    /// within `max_failures: 1`. The link is then restored. Returns the cut host's index.
    pub async fn v2_with_a_cut_link(&self) -> usize {
        let body = json!({
            "application": "shop", "deployment": "web-v2", "group": "prod",
            "batches": 2, "pause": "manual", "max_failures": 1,
        });
        let plan = self.post("/v1/releases?dry_run=true", body.clone()).await;
        let batches: Vec<Vec<String>> = serde_json::from_value(plan["batches"].clone()).unwrap();
        assert_eq!((batches.len(), batches.concat().len()), (2, HOSTS), "{plan}");
        let victim = self.index(&batches[1][0]);
        let id = self.release(body).await;
        let paused =
            self.wait_release(&id, "the pause after batch 1", |r| r["phase"]["step"] == "awaiting_confirm").await;
        for host in &batches[0] {
            assert_eq!(Self::host(&paused, host)["state"], "succeeded", "{paused:#}");
            self.serves(self.index(host), "Alibaba Spring Sample! v2\n").await;
        }

        self.network.cut(victim);
        let cut_at = Instant::now();
        self.post(&format!("/v1/releases/{id}/confirm"), json!({})).await;
        let done = self.finished(&id).await;
        assert_eq!(done["status"], "succeeded", "one failed host is within max_failures 1: {done:#}\n{}", self.logs());
        let failed = Self::host(&done, &self.hosts[victim]);
        assert_eq!((failed["state"].as_str(), failed["step"].as_str()), (Some("failed"), Some("report")), "{failed}");
        assert!(failed["reason"].as_str().unwrap().contains("no report from the agent"), "{failed}");
        // Failed at its deadline, not before: two steps and the report grace after the batch
        // started (Berth counts whole seconds, hence the slack).
        let deadline = Duration::from_secs(2 * STEP_TIMEOUT_SECONDS + REPORT_GRACE_SECONDS - 2);
        assert!(cut_at.elapsed() >= deadline, "the host had its grace: failed after {:?}", cut_at.elapsed());
        for (i, host) in self.hosts.iter().enumerate().filter(|(i, _)| *i != victim) {
            assert_eq!(Self::host(&done, host)["state"], "succeeded", "{done:#}");
            self.serves(i, "Alibaba Spring Sample! v2\n").await;
        }
        // Cut off from Berth, not from its engine: the host's old container still serves, and
        // the group shows it running v1, the others v2.
        self.serves(victim, "Alibaba Spring Sample! v1\n").await;
        for (i, host) in self.hosts.iter().enumerate() {
            let expected = if i == victim { "web-v1" } else { "web-v2" };
            assert_eq!(self.runs(host).await.as_deref(), Some(expected), "{host}: {:?}", self.instance(host).await);
        }
        assert!(!self.network.connected(victim, self.berth_addr), "no connection to Berth crossed the cut link");

        self.network.restore(victim);
        // Back once it holds a poll again (its backoff and TCP retries take a few seconds).
        let start = Instant::now();
        while !self.network.connected(victim, self.berth_addr) {
            assert!(start.elapsed() < Duration::from_secs(60), "the host never reconnected\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        victim
    }
}

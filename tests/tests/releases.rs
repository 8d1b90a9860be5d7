//! Releases for real: `berth serve`, the Debian `docker-registry` with Berth as its token
//! server, the Docker engine, and `berth-agent` processes. The image is built here (FROM
//! scratch with Debian's static busybox serving `/hello`) and pushed with a push key.

use berth_tests::docker::{docker, docker_login};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berth::BerthServe;
use berth_tests::client::ApiClient;
use berth_tests::registry::{Registry, SERVICE};
use berth_tests::{ChildGuard, berth_bin, free_port};
use serde_json::{Value, json};

const ACCOUNT: &str = "acme";

/// Alarm gates and load-balancer draining (issue 26), with this file's harness.
#[path = "release_gates/mod.rs"]
mod release_gates;

struct Setup {
    dir: tempfile::TempDir,
    berth: Option<BerthServe>,
    port: u16,
    env: Vec<(String, String)>,
    registry: Registry,
    token: String,
    /// The API client, at berth serve's URL (the same across restarts: the port is kept).
    api: ApiClient,
    agents: Vec<ChildGuard>,
}

impl Setup {
    fn start(extra_env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry_port = Registry::pick_port();
        let host = format!("127.0.0.1:{registry_port}");
        let mut env = vec![
            ("BERTH_REGISTRY_HOST".to_owned(), host.clone()),
            ("BERTH_REGISTRY_SERVICE".to_owned(), SERVICE.to_owned()),
            // The same registry under another name, as a VPC address would be.
            ("BERTH_REGISTRY_PRIVATE_HOST".to_owned(), format!("localhost:{registry_port}")),
        ];
        env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let port = free_port();
        let berth = Self::serve(dir.path(), port, &env);
        let realm = format!("{}/v1/registry/token", berth.url);
        let registry = Registry::start(dir.path(), registry_port, &realm, &berth.signing_certificate());
        let token = berth.dev_token(ACCOUNT);
        let api = ApiClient::new(berth.url.clone());
        Self { dir, berth: Some(berth), port, env, registry, token, api, agents: Vec::new() }
    }

    fn serve(dir: &Path, port: u16, env: &[(String, String)]) -> BerthServe {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let log = dir.join(format!("berth-{}.log", uuid::Uuid::new_v4()));
        BerthServe::start(&dir.join("data"), &log, port, &env)
    }

    fn berth(&self) -> &BerthServe {
        self.berth.as_ref().expect("berth serve is running")
    }

    /// `kill -9` of berth serve, then a fresh start on the same port and data directory.
    fn crash_and_restart(&mut self) {
        drop(self.berth.take()); // ChildGuard sends SIGKILL
        self.berth = Some(Self::serve(self.dir.path(), self.port, &self.env));
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.call(&self.token, method, path, body).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 200 || status == 201, "POST {path}: {status} {answer}");
        answer
    }

    async fn get(&self, path: &str) -> Value {
        let (status, answer) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    /// Builds a FROM-scratch busybox image serving `page` at `/hello`, pushes it with a push
    /// key, and removes it locally so the agent really pulls it. Returns its address.
    fn push_image(&self, repository: &str, tag: &str, page: &str) -> String {
        let context = self.dir.path().join(format!("image-{tag}"));
        std::fs::create_dir_all(context.join("www")).unwrap();
        std::fs::copy("/bin/busybox", context.join("busybox")).expect("busybox-static is missing: run `make deps`");
        std::fs::write(context.join("www/hello"), page).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nEXPOSE 8080\n\
             ENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
        )
        .unwrap();
        let address = format!("{}/{ACCOUNT}/{repository}:{tag}", self.registry.host);
        // No cache: tests build alike images in parallel and `docker rmi` theirs, which with
        // the legacy builder can delete a cached step another build is using.
        docker(&["build", "--no-cache", "-q", "-t", &address, context.to_str().unwrap()], None);
        let config = self.dir.path().join(format!("docker-push-{tag}"));
        std::fs::create_dir_all(&config).unwrap();
        let key = self.push_key();
        docker_login(&config, &self.registry.host, ACCOUNT, &key);
        docker(&["push", &address], Some(&config));
        docker(&["rmi", &address], None);
        address
    }

    fn push_key(&self) -> String {
        let output = Command::new(berth_bin("berth"))
            .args(["credentials", "push", "--url", &self.berth().url, "--token", &self.token])
            .output()
            .unwrap();
        assert!(output.status.success(), "berth credentials push: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn start_agent(&mut self, join_token: &str, host: &str) {
        let log = std::fs::File::create(self.dir.path().join(format!("agent-{host}.log"))).unwrap();
        let state = self.dir.path().join(format!("agent-state-{host}"));
        let child = Command::new(berth_bin("berth-agent"))
            .args(["--berth-url", &self.berth().url, "--host-id", host])
            .arg("--state-dir")
            .arg(&state)
            // Never in argv, where `ps` shows it.
            .env("BERTH_JOIN_TOKEN", join_token)
            .env("AGENT_CANARY", "the agent's own environment")
            // Long holds: the polls must still end promptly when berth serve stops.
            .args(["--poll-seconds", "25"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berth-agent");
        self.agents.push(ChildGuard(child));
    }

    async fn wait_for_hosts(&self, app: &str, group: &str, count: usize) {
        let start = Instant::now();
        loop {
            let group = self.get(&format!("/v1/applications/{app}/groups/{group}")).await;
            if group["instances"].as_array().unwrap().len() == count {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{count} hosts did not register: {group}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the release satisfies `done`; fails with the release and the logs if not.
    async fn wait_release(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, release) = self.call(reqwest::Method::GET, &format!("/v1/releases/{id}"), None).await;
            if status == 200 && done(&release) {
                return release;
            }
            if start.elapsed() > Duration::from_secs(120) {
                let agents: String = std::fs::read_dir(self.dir.path())
                    .unwrap()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("agent-"))
                    .map(|e| format!("{:?}:\n{}\n", e.file_name(), berth_tests::tail(&e.path(), 20)))
                    .collect();
                panic!(
                    "release {id} never reached {what}: {release:#}\n{agents}\nberth:\n{}",
                    berth_tests::tail(&self.berth().log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn release(&self, body: Value) -> String {
        let release = self.post("/v1/releases", body).await;
        release["id"].as_str().unwrap().to_owned()
    }

    async fn finished(&self, id: &str) -> Value {
        self.wait_release(id, "an end", |r| r["status"] != "running").await
    }

    async fn scaling(&self, app: &str, group: &str) -> Value {
        self.get(&format!("/v1/applications/{app}/groups/{group}")).await["scaling"].clone()
    }
}

/// Removes a container when dropped, whatever the test's outcome.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

fn host_states(release: &Value) -> Vec<(String, String)> {
    release["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["hosts"].as_array().unwrap().clone())
        .map(|h| (h["host"].as_str().unwrap().to_owned(), h["state"].as_str().unwrap().to_owned()))
        .collect()
}

fn state_of(release: &Value, host: &str) -> String {
    host_states(release).into_iter().find(|(h, _)| h == host).map(|(_, s)| s).unwrap_or_default()
}

async fn http_get(url: &str) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// The seed's start script, with a free port and a unique container name.
fn seed_start_script(address: &str, container: &str, port: u16) -> String {
    format!(
        "### The Docker image is pulled by the agent before this runs.\n\
         function start_application() {{\n  image_name=\"{address}\"\n  container_name=\"{container}\"\n  \
         docker run -d -p {port}:8080 --name ${{container_name}} ${{image_name}}\n}}\n\nstart_application\n"
    )
}

/// The seed's stop script: removes the container if present, succeeds if not.
fn seed_stop_script(container: &str) -> String {
    format!(
        "function stop_application() {{\n  container_name=\"{container}\"\n  \
         container_id=$(docker ps -aq -f name=^${{container_name}}$)\n  if [ -n \"$container_id\" ]; then\n    \
         docker rm -f $container_id\n  fi\n}}\n\nstop_application\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_releases_a_container_and_a_second_release_replaces_it() {
    let mut s = Setup::start(&[]);
    let v1 = s.push_image("hello", "v1", "Alibaba Spring Sample! v1\n");
    let v2 = s.push_image("hello", "v2", "Alibaba Spring Sample! v2\n");
    let container = Container(format!("berth-seed-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let port = free_port();
    let workdir = s.dir.path().join("deploy/root");

    // v2 is published as a package; its deployment names the package version, pinned to
    // the digest the publish check found.
    s.post(
        "/v1/packages",
        json!({
            "name": "hello_web", "description": "the seed's sample page", "type": "ContainerImage",
            "version": { "name": "v2_0", "images": [{ "repository": format!("{ACCOUNT}/hello"), "tag": "v2" }] },
        }),
    )
    .await;
    let mut published = Value::Null;
    for _ in 0..100 {
        published = s.get("/v1/packages/hello_web/versions/v2_0").await;
        if published["status"] != "Creating" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published["status"], "Available", "{published}");
    let digest = published["images"][0]["digest"].as_str().unwrap();
    let v2_pinned = format!("{}/{ACCOUNT}/hello@{digest}", s.registry.host);
    assert!(v2.ends_with(":v2"));

    // The provider's side through the CLI: application, group (its join token on stdout),
    // the first deployment from script files.
    let (url, token) = (s.berth().url.clone(), s.token.clone());
    let cli = |args: &[&str]| {
        let mut command = tokio::process::Command::new(berth_bin("berth"));
        command.args(args).args(["--url", &url, "--token", &token]);
        command.output()
    };
    let ok = |output: std::process::Output| {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "berth: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    ok(cli(&["application", "create", "shop"]).await.unwrap());
    let join = ok(cli(&["group", "create", "--application", "shop", "prod"]).await.unwrap()).trim().to_owned();
    assert!(join.starts_with("bjt_"), "{join}");
    let scripts = s.dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("start.sh"), seed_start_script(&v1, &container.0, port)).unwrap();
    std::fs::write(scripts.join("stop.sh"), seed_stop_script(&container.0)).unwrap();
    let created = ok(cli(&[
        "deployment",
        "create",
        "--application",
        "shop",
        "web-v1",
        "--image",
        &v1,
        "--working-directory",
        workdir.to_str().unwrap(),
        "--start-script",
        scripts.join("start.sh").to_str().unwrap(),
        "--stop-script",
        scripts.join("stop.sh").to_str().unwrap(),
    ])
    .await
    .unwrap());
    assert_eq!(created.trim(), format!("deployment web-v1 created: {v1}"));
    for (name, image, address) in [("web-v2", json!({ "package": "hello_web", "version": "v2_0" }), v2_pinned.clone())]
    {
        let deployment = s
            .post(
                "/v1/applications/shop/deployments",
                json!({
                    "name": name, "image": image, "working_directory": workdir,
                    "start_script": seed_start_script(&address, &container.0, port),
                    "stop_script": seed_stop_script(&container.0), "step_timeout_seconds": 120,
                }),
            )
            .await;
        let resolved = &deployment["image"];
        let shown = format!(
            "{}/{}{}",
            resolved["registry"].as_str().unwrap(),
            resolved["repository"].as_str().unwrap(),
            resolved["reference"].as_str().unwrap()
        );
        assert_eq!(shown, address, "{deployment}");
    }
    s.start_agent(&join, "host-1");
    s.wait_for_hosts("shop", "prod", 1).await;

    let first = s.release(json!({ "application": "shop", "deployment": "web-v1", "group": "prod" })).await;
    let done = s.finished(&first).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(state_of(&done, "host-1"), "succeeded");
    assert!(workdir.is_dir(), "the working directory was created");
    let url = format!("http://127.0.0.1:{port}/hello");
    let mut page = None;
    for _ in 0..50 {
        page = http_get(&url).await;
        if page.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(page.as_deref(), Some("Alibaba Spring Sample! v1\n"));
    let first_id = docker(&["ps", "-q", "-f", &format!("name=^{}$", container.0)], None);

    let logs = s.get(&format!("/v1/releases/{first}/hosts/host-1/logs")).await;
    assert_eq!(logs["state"], "succeeded");
    assert!(
        logs["start"]["stdout"].as_str().unwrap().trim().len() >= 12,
        "docker run -d printed the container id: {logs}"
    );
    assert!(logs["pull"]["stdout"].as_str().unwrap().contains("v1"), "pull output kept: {logs}");

    // The join token rotates (the CLI prints the new one) and the agent restarts knowing only
    // the old one: it carries on with the host token it saved, without registering again.
    let output = cli(&["group", "rotate-join-token", "--application", "shop", "prod"]).await.unwrap();
    assert!(output.status.success(), "rotate-join-token: {}", String::from_utf8_lossy(&output.stderr));
    let rotated = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(rotated.starts_with("bjt_") && rotated != join, "{rotated}");
    drop(s.agents.pop());
    s.start_agent(&join, "host-1");

    // The second release through the CLI, as a provider would: --watch follows it to its end.
    let output =
        cli(&["release", "create", "--application", "shop", "--deployment", "web-v2", "--group", "prod", "--watch"])
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "berth release create --watch: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout.lines().next().unwrap_or_default();
    assert!(summary.starts_with("release ") && summary.ends_with(": succeeded"), "{stdout}");
    assert!(stdout.contains("host-1") && stdout.contains("succeeded"), "{stdout}");
    let second = summary["release ".len()..summary.len() - ": succeeded".len()].to_owned();
    let done = s.get(&format!("/v1/releases/{second}")).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let mut page = None;
    for _ in 0..50 {
        page = http_get(&url).await;
        if page.as_deref() == Some("Alibaba Spring Sample! v2\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(page.as_deref(), Some("Alibaba Spring Sample! v2\n"), "the second release replaced the page");
    let running = docker(&["ps", "-q", "-f", &format!("name=^{}$", container.0)], None);
    assert_eq!(running.lines().count(), 1, "exactly one container");
    assert_ne!(running.trim(), first_id.trim(), "a new container replaced the old one");
    let logs = s.get(&format!("/v1/releases/{second}/hosts/host-1/logs")).await;
    assert!(
        logs["stop"]["stdout"].as_str().unwrap().contains(first_id.trim()),
        "the stop script removed the first container: {logs}"
    );

    let output = cli(&["release", "logs", &second, "--host", "host-1"]).await.unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "berth release logs: {printed}");
    assert!(printed.contains("----- stop stdout") && printed.contains(first_id.trim()), "{printed}");

    let restarted = std::fs::read_to_string(s.dir.path().join("agent-host-1.log")).unwrap();
    assert!(!restarted.contains("registered"), "the restarted agent used its saved host token: {restarted}");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(s.dir.path().join("agent-state-host-1/host-token.json")).unwrap())
            .unwrap();
    let host_token = saved["host_token"].as_str().unwrap().to_owned();
    assert!(host_token.starts_with("bht_"));

    // No secret handed out reached the logs.
    let server_log = s.berth().logs();
    assert!(!server_log.contains(&join), "the join token is not logged");
    assert!(!server_log.contains(&rotated), "the rotated join token is not logged");
    assert!(!server_log.contains(&host_token), "the host token is not logged");
    assert!(!server_log.contains(&s.token), "the account token is not logged");

    // Agents hold 25 s polls; a graceful stop still ends within 10 s (stop() asserts it).
    s.berth.take().unwrap().stop();
}

/// Five agents in a scaling group, shell-only scripts, three batches: budgets, cancel, confirm.
struct Fleet {
    s: Setup,
    markers: PathBuf,
}

const HOSTS: [&str; 5] = ["a1", "a2", "a3", "a4", "a5"];

impl Fleet {
    async fn start(env: &[(&str, &str)]) -> Self {
        let mut s = Setup::start(env);
        let image = s.push_image("tool", "v1", "tool\n");
        let markers = s.dir.path().join("markers");
        std::fs::create_dir_all(&markers).unwrap();
        s.post("/v1/applications", json!({ "name": "svc" })).await;
        let group = s.post("/v1/applications/svc/groups", json!({ "name": "asg", "kind": "scaling" })).await;
        let join = group["join_token"].as_str().unwrap().to_owned();
        let m = markers.display();
        s.post(
            "/v1/applications/svc/deployments",
            json!({
                "name": "job", "image": { "address": image },
                "working_directory": s.dir.path().join("work"),
                "stop_script": "echo \"stopping on $BERTH_HOST\"\n",
                "start_script": format!(
                    "touch {m}/ran-$BERTH_HOST-$BERTH_RELEASE_ID\n\
                     env > {m}/env-$BERTH_HOST\n\
                     if [ -e {m}/fail-$BERTH_HOST ]; then echo \"failing on purpose on $BERTH_HOST\" >&2; exit 3; fi\n\
                     echo \"started $BERTH_IMAGE on $BERTH_HOST in $PWD\"\n"
                ),
                "step_timeout_seconds": 60,
            }),
        )
        .await;
        for host in HOSTS {
            s.start_agent(&join, host);
        }
        s.wait_for_hosts("svc", "asg", 5).await;
        Self { s, markers }
    }

    fn fail(&self, hosts: &[&str]) {
        for entry in std::fs::read_dir(&self.markers).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("fail-") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        for host in hosts {
            std::fs::write(self.markers.join(format!("fail-{host}")), "").unwrap();
        }
    }

    fn ran(&self, host: &str, release: &str) -> bool {
        self.markers.join(format!("ran-{host}-{release}")).exists()
    }

    async fn assert_scaling_resumed(&self, releases: u32) {
        let scaling = self.s.scaling("svc", "asg").await;
        assert_eq!(scaling["paused"], false, "{scaling}");
        assert_eq!(scaling["pauses"], releases, "one pause per release: {scaling}");
        assert_eq!(scaling["resumes"], releases, "one resume per release: {scaling}");
        assert!(scaling.get("lease").is_none_or(Value::is_null), "{scaling}");
    }

    /// One failing host within the budget: the release succeeds with that host failed.
    async fn within_budget(&self) -> Value {
        self.fail(&["a1"]);
        let body =
            json!({ "application": "svc", "deployment": "job", "group": "asg", "batches": 3, "max_failures": 1 });
        let id = self.s.release(body).await;
        let done = self.s.finished(&id).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        let states = host_states(&done);
        assert_eq!(
            states,
            [("a1", "failed"), ("a2", "succeeded"), ("a3", "succeeded"), ("a4", "succeeded"), ("a5", "succeeded")]
                .map(|(h, s)| (h.to_owned(), s.to_owned()))
        );
        let a1 = &done["batches"][0]["hosts"][0];
        assert_eq!((a1["step"].as_str(), a1["exit_code"].as_i64()), (Some("start"), Some(3)), "{a1}");
        let logs = self.s.get(&format!("/v1/releases/{id}/hosts/a1/logs")).await;
        assert!(logs["start"]["stderr"].as_str().unwrap().contains("failing on purpose on a1"), "{logs}");
        assert!(logs["stop"]["stdout"].as_str().unwrap().contains("stopping on a1"), "{logs}");
        // Scripts see PATH, HOME, LANG and the job's BERTH_* variables, nothing else of the
        // agent's environment (it holds the join token and a canary).
        let env = std::fs::read_to_string(self.markers.join("env-a2")).unwrap();
        let names: Vec<&str> = env.lines().filter_map(|line| line.split_once('=').map(|(name, _)| name)).collect();
        let bash_own = ["PWD", "SHLVL", "_", "OLDPWD"];
        for name in &names {
            assert!(
                ["PATH", "HOME", "LANG"].contains(name) || bash_own.contains(name) || name.starts_with("BERTH_"),
                "{name} reached the script: {env}"
            );
        }
        assert!(!env.contains("BERTH_JOIN_TOKEN") && !env.contains("AGENT_CANARY"), "{env}");
        for wanted in ["BERTH_RELEASE_ID", "BERTH_JOB_ID", "BERTH_IMAGE", "BERTH_HOST", "BERTH_STEP", "PATH"] {
            assert!(names.contains(&wanted), "{wanted} missing: {env}");
        }
        done
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_three_batches_keep_the_failure_budgets_and_always_resume_scaling() {
    let fleet = Fleet::start(&[]).await;
    let s = &fleet.s;

    let plan = s
        .post(
            "/v1/releases?dry_run=true",
            json!({ "application": "svc", "deployment": "job", "group": "asg", "batches": 3 }),
        )
        .await;
    assert_eq!(plan["batches"], json!([["a1", "a2"], ["a3", "a4"], ["a5"]]));
    assert_eq!(s.get("/v1/applications/svc/groups/asg").await["active_release"], Value::Null, "a dry run does nothing");

    fleet.within_budget().await;
    fleet.assert_scaling_resumed(1).await;

    // Beyond the budget: a1 and a3 fail, so batch 3 never starts.
    fleet.fail(&["a1", "a3"]);
    let body = json!({ "application": "svc", "deployment": "job", "group": "asg", "batches": 3, "max_failures": 1 });
    let id = s.release(body).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert!(done["reason"].as_str().unwrap().contains("later batches were not started"), "{done}");
    assert_eq!(state_of(&done, "a5"), "skipped");
    assert!(!fleet.ran("a5", &id), "a5's start script never ran");
    assert!(fleet.ran("a4", &id));
    fleet.assert_scaling_resumed(2).await;

    // Manual pauses: confirm one batch, then cancel before the last.
    fleet.fail(&[]);
    let body = json!({ "application": "svc", "deployment": "job", "group": "asg", "batches": 3, "pause": "manual" });
    let id = s.release(body).await;
    let waiting = s.wait_release(&id, "awaiting confirmation", |r| r["phase"]["step"] == "awaiting_confirm").await;
    assert_eq!(waiting["phase"]["next"], 1);
    assert_eq!(s.scaling("svc", "asg").await["paused"], true, "scaling is paused during the release");
    let (status, problem) = s.call(reqwest::Method::POST, &format!("/v1/releases/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{problem}");
    let (status, problem) = s.call(reqwest::Method::POST, &format!("/v1/releases/{id}/confirm"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("not_awaiting_confirmation")), "{problem}");
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "cancelled");
    assert_eq!(state_of(&done, "a1"), "succeeded");
    assert_eq!(state_of(&done, "a3"), "skipped");
    assert!(!fleet.ran("a3", &id));
    fleet.assert_scaling_resumed(3).await;

    let body = json!({ "application": "svc", "deployment": "job", "group": "asg", "batch_size": 2, "pause": "manual" });
    let id = s.release(body).await;
    s.wait_release(&id, "awaiting confirmation", |r| r["phase"]["step"] == "awaiting_confirm").await;
    s.post(&format!("/v1/releases/{id}/confirm"), json!({})).await;
    s.wait_release(&id, "the second pause", |r| r["phase"]["next"] == 2).await;
    s.post(&format!("/v1/releases/{id}/confirm"), json!({})).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert!(HOSTS.iter().all(|h| fleet.ran(h, &id)));
    fleet.assert_scaling_resumed(4).await;

    // The same image pulled over the registry's private address.
    let mut private = s.get("/v1/applications/svc/deployments/job").await;
    let image = format!(
        "{}/{}{}",
        private["image"]["registry"].as_str().unwrap(),
        private["image"]["repository"].as_str().unwrap(),
        private["image"]["reference"].as_str().unwrap()
    );
    private["name"] = json!("job-private");
    private["image"] = json!({ "address": image });
    private["registry_endpoint"] = json!("private");
    private.as_object_mut().unwrap().remove("created_at");
    s.post("/v1/applications/svc/deployments", private).await;
    let id = s.release(json!({ "application": "svc", "deployment": "job-private", "group": "asg" })).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let logs = s.get(&format!("/v1/releases/{id}/hosts/a2/logs")).await;
    let private_image = image.replace("127.0.0.1", "localhost");
    assert!(logs["start"]["stdout"].as_str().unwrap().contains(&format!("started {private_image} on a2")), "{logs}");
    fleet.assert_scaling_resumed(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_delivered_twice_gives_the_same_final_state() {
    let fleet = Fleet::start(&[("BERTH_QUEUE_DELIVER_TWICE", "1")]).await;
    fleet.within_budget().await;
    fleet.assert_scaling_resumed(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_survives_kill_9_of_berth_serve_and_scaling_is_resumed() {
    let mut fleet = Fleet::start(&[]).await;
    fleet.fail(&[]);
    let body = json!({
        "application": "svc", "deployment": "job", "group": "asg", "batches": 3, "pause": "seconds", "pause_seconds": 3,
    });
    let id = fleet.s.release(body).await;
    fleet.s.wait_release(&id, "the pause after batch 1", |r| r["phase"]["step"] == "waiting").await;
    fleet.s.crash_and_restart();
    let done = fleet.s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert!(HOSTS.iter().all(|h| fleet.ran(h, &id)));
    fleet.assert_scaling_resumed(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_problems_naming_the_field() {
    let s = Setup::start(&[]);
    s.post("/v1/applications", json!({ "name": "app" })).await;
    let group = s.post("/v1/applications/app/groups", json!({ "name": "g" })).await;
    let image = format!("{}/{ACCOUNT}/web:v1", s.registry.host);
    let deployment = |patch: Value| {
        let mut body = json!({
            "name": "d", "image": { "address": image }, "working_directory": "/srv/app",
            "start_script": "true", "stop_script": "true",
        });
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        body
    };
    let cases = [
        (json!({ "working_directory": "srv/app" }), "working_directory", "not_absolute"),
        (json!({ "platform": "windows" }), "platform", "unsupported_platform"),
        (json!({ "start_script": "#!/usr/bin/env python3\nprint()" }), "start_script", "unsupported_script_language"),
        (
            json!({ "image": { "address": format!("{}/other/web:v1", s.registry.host) } }),
            "image",
            "image_outside_namespace",
        ),
        (json!({ "name": "Bad Name" }), "name", "invalid_name"),
    ];
    for (patch, field, code) in cases {
        let (status, problem) =
            s.call(reqwest::Method::POST, "/v1/applications/app/deployments", Some(deployment(patch.clone()))).await;
        assert_eq!(
            (status, problem["field"].as_str(), problem["code"].as_str()),
            (400, Some(field), Some(code)),
            "{patch}: {problem}"
        );
    }
    s.post("/v1/applications/app/deployments", deployment(json!({}))).await;
    let release = |patch: Value| {
        let mut body = json!({ "application": "app", "deployment": "d", "group": "g" });
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        body
    };
    let (status, problem) = s.call(reqwest::Method::POST, "/v1/releases", Some(release(json!({})))).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("group_empty")), "{problem}");
    for (patch, field) in [
        (json!({ "batches": 2, "batch_size": 1 }), "batches"),
        (json!({ "percents": [60, 30] }), "percents"),
        (json!({ "pause": "seconds" }), "pause_seconds"),
        (json!({ "pause": "sometimes" }), "pause"),
    ] {
        let (status, problem) = s.call(reqwest::Method::POST, "/v1/releases", Some(release(patch.clone()))).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{patch}: {problem}");
    }
    let (status, _) = s.call(reqwest::Method::GET, &format!("/v1/releases/{}", uuid::Uuid::new_v4()), None).await;
    assert_eq!(status, 404);
    // Agents need a real host token; the join token only registers.
    for token in ["bht_not-a-token", group["join_token"].as_str().unwrap()] {
        let response =
            s.api.http.get(format!("{}/v1/agent/jobs?host=h1", s.berth().url)).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
    let registered: Value = s
        .api
        .http
        .post(format!("{}/v1/agent/register", s.berth().url))
        .bearer_auth(group["join_token"].as_str().unwrap())
        .json(&json!({ "host": "h1" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A held poll with nothing to do answers 204 after its wait, not before.
    let started = Instant::now();
    let response = s
        .api
        .http
        .get(format!("{}/v1/agent/jobs?wait_seconds=1", s.berth().url))
        .bearer_auth(registered["host_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(started.elapsed() >= Duration::from_millis(900), "the poll was held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_failures_timeouts_and_silent_hosts_fail_hosts_not_the_fan_out() {
    let mut s = Setup::start(&[]);
    let image = s.push_image("slow", "v1", "slow\n");
    let missing = format!("{}/{ACCOUNT}/slow:v404", s.registry.host);
    let marks = s.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let m = marks.display();
    s.post("/v1/applications", json!({ "name": "ops" })).await;
    let group = s.post("/v1/applications/ops/groups", json!({ "name": "g", "kind": "scaling" })).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    let deployment = |name: &str, image: &str| {
        json!({
            "name": name, "image": { "address": image }, "working_directory": s.dir.path().join("work"),
            "stop_script": format!("touch {m}/stopped-$BERTH_HOST\nif [ \"$BERTH_HOST\" = bad ]; then echo 'no such container' >&2; exit 1; fi\n"),
            "start_script": format!(
                "touch {m}/started-$BERTH_HOST\n\
                 if [ \"$BERTH_HOST\" = slow ]; then sleep 300 & echo $! > {m}/child-pid; wait; fi\n\
                 if [ \"$BERTH_HOST\" = fine ]; then head -c 6291456 /dev/zero | tr '\\0' x; echo done >&2; fi\n"
            ),
            // Short, as `slow` waits it out; long enough for a docker pull on a loaded machine.
            "step_timeout_seconds": 4,
        })
    };
    s.post("/v1/applications/ops/deployments", deployment("gone", &missing)).await;
    s.post("/v1/applications/ops/deployments", deployment("hang", &image)).await;
    for host in ["bad", "fine", "slow"] {
        s.start_agent(&join, host);
    }
    // A host that registers and then never polls (its agent died).
    let (status, _) = {
        let response = s
            .api
            .http
            .post(format!("{}/v1/agent/register", s.berth().url))
            .bearer_auth(&join)
            .json(&json!({ "host": "ghost" }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 200);
    s.wait_for_hosts("ops", "g", 4).await;

    // The image is not there: every pull fails, no host is stopped, the release fails.
    let id = s.release(json!({ "application": "ops", "deployment": "gone", "group": "g", "max_failures": 1 })).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert!(done["reason"].as_str().unwrap().contains("no host was stopped"), "{done}");
    assert!(std::fs::read_dir(&marks).unwrap().next().is_none(), "no stop or start script ran");
    let logs = s.get(&format!("/v1/releases/{id}/hosts/fine/logs")).await;
    assert_eq!(logs["result"]["step"], "pull", "{logs}");
    assert!(!logs["pull"]["stderr"].as_str().unwrap().is_empty(), "docker pull's own error is kept: {logs}");
    assert_eq!(s.scaling("ops", "g").await["paused"], false);

    // Pulling in the batch: `bad`'s stop script fails, `slow`'s start script outlives its
    // timeout and is killed with its child, `ghost` never reports. `fine` succeeds.
    let started = Instant::now();
    let body =
        json!({ "application": "ops", "deployment": "hang", "group": "g", "pull_first": false, "max_failures": 3 });
    let id = s.release(body).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "three failures are within max_failures 3: {done:#}");
    let host = |name: &str| {
        done["batches"][0]["hosts"].as_array().unwrap().iter().find(|h| h["host"] == name).unwrap().clone()
    };
    assert_eq!(host("fine")["state"], "succeeded");
    // 6 MiB of output, kept whole (stored in parts, as no one document may be that large).
    let logs = s.get(&format!("/v1/releases/{id}/hosts/fine/logs")).await;
    let stdout = logs["start"]["stdout"].as_str().unwrap();
    assert_eq!((stdout.len(), stdout.bytes().all(|b| b == b'x')), (6 << 20, true));
    assert_eq!(logs["start"]["stderr"], "done\n");
    let bad = host("bad");
    assert_eq!(
        (bad["state"].as_str(), bad["step"].as_str(), bad["exit_code"].as_i64()),
        (Some("failed"), Some("stop"), Some(1))
    );
    assert!(bad["reason"].as_str().unwrap().contains("must also succeed when nothing is running"), "{bad}");
    assert!(!marks.join("started-bad").exists(), "after a failed stop, start does not run");
    let logs = s.get(&format!("/v1/releases/{id}/hosts/bad/logs")).await;
    assert_eq!(logs["stop"]["stderr"], "no such container\n", "{logs}");
    let slow = host("slow");
    assert_eq!((slow["state"].as_str(), slow["step"].as_str()), (Some("failed"), Some("start")), "{slow}");
    assert!(slow["reason"].as_str().unwrap().contains("did not finish within 4 s"), "{slow}");
    let child: i32 = std::fs::read_to_string(marks.join("child-pid")).unwrap().trim().parse().unwrap();
    let child_gone = || {
        !Path::new(&format!("/proc/{child}")).exists()
            || std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| s.contains(") Z "))
    };
    let waited = Instant::now();
    while !child_gone() && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(child_gone(), "the script's child was killed with its process group");
    let ghost = host("ghost");
    assert_eq!((ghost["state"].as_str(), ghost["step"].as_str()), (Some("failed"), Some("report")), "{ghost}");
    assert!(ghost["reason"].as_str().unwrap().contains("no report from the agent"), "{ghost}");
    assert!(started.elapsed() >= Duration::from_secs(30), "the silent host had its grace period");
    let scaling = s.scaling("ops", "g").await;
    assert_eq!((scaling["paused"].as_bool(), scaling["resumes"].as_u64()), (Some(false), Some(2)), "{scaling}");
}

/// `berth ARGS --output json` against the setup's Berth: its JSON answer (or `Null` when the
/// command prints nothing on stdout), failing the test when the command fails.
async fn berth_json(s: &Setup, args: &[&str]) -> Value {
    let output = tokio::process::Command::new(berth_bin("berth"))
        .args(args)
        .args(["--url", &s.berth().url, "--token", &s.token, "--output", "json"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "berth {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or(Value::Null)
}

/// A start script serving `image` on each host's own port (hosts share one Docker engine here).
fn fleet_start_script(image: &str, ports: &[(&str, u16)], fail_on: Option<&str>) -> String {
    let cases: String = ports.iter().map(|(host, port)| format!("  {host}) port={port};;\n")).collect();
    let fail = fail_on.map_or(String::new(), |host| {
        format!("if [ \"$BERTH_HOST\" = {host} ]; then echo \"{host} refuses this revision\" >&2; exit 3; fi\n")
    });
    format!(
        "case \"$BERTH_HOST\" in\n{cases}esac\n{fail}docker run -d -p $port:8080 --name berth-fleet-{}-$BERTH_HOST {image}\n",
        ports[0].1
    )
}

fn fleet_stop_script(first_port: u16) -> String {
    format!("docker rm -f berth-fleet-{first_port}-$BERTH_HOST >/dev/null 2>&1 || true\n")
}

async fn page_on(port: u16) -> Option<String> {
    http_get(&format!("http://127.0.0.1:{port}/hello")).await
}

async fn wait_page(port: u16, page: &str, what: &str) {
    let start = Instant::now();
    while page_on(port).await.as_deref() != Some(page) {
        assert!(start.elapsed() < Duration::from_secs(120), "{what}: port {port} serves {:?}", page_on(port).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn instance<'a>(group: &'a Value, host: &str) -> &'a Value {
    group["instances"].as_array().unwrap().iter().find(|i| i["host"] == host).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_living_fleet_revises_rolls_back_converges_and_forgets_removed_hosts() {
    let mut s = Setup::start(&[]);
    let v1 = s.push_image("fleet", "v1", "fleet v1\n");
    let v2 = s.push_image("fleet", "v2", "fleet v2\n");
    let ports = [("h1", free_port()), ("h2", free_port()), ("h3", free_port())];
    let _containers: Vec<Container> =
        ports.iter().map(|(host, _)| Container(format!("berth-fleet-{}-{host}", ports[0].1))).collect();
    let port = |host: &str| ports.iter().find(|(h, _)| *h == host).unwrap().1;
    let workdir = s.dir.path().join("fleet-work");
    let revision = |image: &str, fail_on: Option<&str>| {
        json!({
            "name": "web", "image": { "address": image }, "working_directory": workdir,
            "start_script": fleet_start_script(image, &ports, fail_on), "stop_script": fleet_stop_script(ports[0].1),
            "step_timeout_seconds": 60,
        })
    };
    s.post("/v1/applications", json!({ "name": "fleet" })).await;
    let group = s.post("/v1/applications/fleet/groups", json!({ "name": "prod", "stale_after_seconds": 600 })).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    assert_eq!(s.post("/v1/applications/fleet/deployments", revision(&v1, None)).await["revision"], 1);
    s.start_agent(&join, "h1");
    s.start_agent(&join, "h2");
    s.wait_for_hosts("fleet", "prod", 2).await;
    let release = |extra: Value| {
        let mut body = json!({ "application": "fleet", "deployment": "web", "group": "prod" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };

    // Revision 1, then revision 2 (a PUT): each host's ledger says what it runs and ran.
    let r1 = s.release(release(json!({}))).await;
    assert_eq!(s.finished(&r1).await["status"], "succeeded");
    wait_page(port("h1"), "fleet v1\n", "r1 on h1").await;
    let (status, updated) =
        s.call(reqwest::Method::PUT, "/v1/applications/fleet/deployments/web", Some(revision(&v2, None))).await;
    assert_eq!((status, updated["revision"].as_u64()), (200, Some(2)), "{updated}");
    let r2 = s.release(release(json!({ "batches": 2 }))).await;
    let done = s.finished(&r2).await;
    assert_eq!((done["status"].as_str(), done["revision"].as_u64()), (Some("succeeded"), Some(2)), "{done:#}");
    for host in ["h1", "h2"] {
        wait_page(port(host), "fleet v2\n", "r2").await;
    }
    let group = s.get("/v1/applications/fleet/groups/prod").await;
    let h1 = instance(&group, "h1");
    assert_eq!((h1["runs"]["revision"].as_u64(), h1["ran_before"]["revision"].as_u64()), (Some(2), Some(1)), "{h1}");
    assert_eq!(h1["runs"]["image"], v2.as_str());
    assert!(h1["last_seen"].as_u64().unwrap() > 0 && h1["stale"] == false, "{h1}");

    // Rollback by hand, through the CLI: both hosts serve revision 1 again.
    let rollback = berth_json(&s, &["release", "rollback", &r2]).await;
    assert_eq!((rollback["revision"].as_u64(), rollback["trigger"]["of"].as_str()), (Some(1), Some(r2.as_str())));
    let rollback_id = rollback["id"].as_str().unwrap().to_owned();
    assert_eq!(s.finished(&rollback_id).await["status"], "succeeded");
    for host in ["h1", "h2"] {
        wait_page(port(host), "fleet v1\n", "the rollback").await;
    }
    let (status, again) = s.call(reqwest::Method::POST, &format!("/v1/releases/{r2}/rollback"), None).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("already_rolled_back")), "{again}");

    // A new host converges to the last good release (the rollback: revision 1) by itself.
    s.start_agent(&join, "h3");
    wait_page(port("h3"), "fleet v1\n", "h3's convergence").await;
    let group = s.get("/v1/applications/fleet/groups/prod").await;
    let h3 = instance(&group, "h3").clone();
    let convergence = h3["convergence"].as_str().expect("h3 converged").to_owned();
    let converged = s.finished(&convergence).await;
    assert_eq!(
        (converged["status"].as_str(), converged["trigger"]["kind"].as_str()),
        (Some("succeeded"), Some("convergence"))
    );
    assert_eq!(converged["trigger"]["of"], rollback_id.as_str());
    assert_eq!(host_states(&converged), [("h3".to_owned(), "succeeded".to_owned())]);
    let h3 = instance(&s.get("/v1/applications/fleet/groups/prod").await, "h3").clone();
    assert_eq!(
        (h3["runs"]["revision"].as_u64(), h3["runs"]["release"].as_str()),
        (Some(1), Some(convergence.as_str()))
    );

    // A failing revision with auto_rollback: h1 refuses revision 3, the release fails, and its
    // rollback puts every host it changed back on revision 1.
    s.call(reqwest::Method::PUT, "/v1/applications/fleet/deployments/web", Some(revision(&v2, Some("h1")))).await;
    let r3 = s.release(release(json!({ "auto_rollback": true }))).await;
    let failed = s.finished(&r3).await;
    assert_eq!((failed["status"].as_str(), failed["revision"].as_u64()), (Some("failed"), Some(3)), "{failed:#}");
    let auto = s.wait_release(&r3, "its rollback", |r| r["rollback"].is_string()).await["rollback"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = s.finished(&auto).await;
    assert_eq!(
        (back["status"].as_str(), back["trigger"]["automatic"].as_bool()),
        (Some("succeeded"), Some(true)),
        "{back:#}"
    );
    assert_eq!(back["revision"], 1);
    for (host, _) in &ports {
        wait_page(port(host), "fleet v1\n", "the automatic rollback").await;
    }
    let group = s.get("/v1/applications/fleet/groups/prod").await;
    for (host, _) in &ports {
        assert_eq!(instance(&group, host)["runs"]["revision"], 1, "{host}: {group:#}");
    }

    // Listings through the CLI, newest first.
    // A host that polls while r3 fails may start a convergence to the last good release, which
    // the automatic rollback then supersedes (cancelled): a race this listing does not check.
    let releases = berth_json(&s, &["group", "releases", "--application", "fleet", "prod", "--page-size", "4"]).await;
    let listed: Vec<&Value> = releases["releases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["id"] == convergence.as_str() || !(r["status"] == "cancelled" && r["trigger"]["kind"] == "convergence")
        })
        .take(3)
        .collect();
    let ids: Vec<&str> = listed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [auto.as_str(), r3.as_str(), convergence.as_str()], "{releases:#}");
    assert_eq!(listed[1]["status"], "failed");
    assert!(releases["next_page_token"].is_string());
    let revisions = berth_json(&s, &["deployment", "revisions", "--application", "fleet", "web"]).await;
    let numbers: Vec<u64> =
        revisions["revisions"].as_array().unwrap().iter().map(|r| r["revision"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [3, 2, 1]);
    let deployments = berth_json(&s, &["deployment", "list", "--application", "fleet"]).await;
    assert_eq!(
        (deployments["deployments"][0]["name"].as_str(), deployments["deployments"][0]["revisions"].as_u64()),
        (Some("web"), Some(3))
    );
    let groups = berth_json(&s, &["group", "list", "--application", "fleet"]).await;
    assert_eq!(groups["groups"][0]["last_release"]["id"], auto.as_str());
    let apps = berth_json(&s, &["application", "list"]).await;
    assert_eq!(apps["applications"][0]["name"], "fleet");

    // h2 is removed: its agent's token is refused, its join token cannot bring it back (the
    // agent stops), and the next plan has only h1 and h3.
    berth_json(&s, &["group", "remove-host", "--application", "fleet", "--group", "prod", "h2"]).await;
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(s.dir.path().join("agent-h2.log")).unwrap_or_default();
        if log.contains("host_removed") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "h2's agent never learnt it was removed: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(instance(&s.get("/v1/applications/fleet/groups/prod").await, "h2").is_null(), "h2 did not come back");
    let plan = s.post("/v1/releases?dry_run=true", release(json!({}))).await;
    assert_eq!(plan["batches"], json!([["h1", "h3"]]), "{plan}");

    // Deletes: 409 while a release runs on the group, 204 once it ended.
    s.call(reqwest::Method::PUT, "/v1/applications/fleet/deployments/web", Some(revision(&v1, None))).await;
    let r4 = s.release(release(json!({ "batches": 2, "pause": "manual" }))).await;
    s.wait_release(&r4, "awaiting confirmation", |r| r["phase"]["step"] == "awaiting_confirm").await;
    for path in
        ["/v1/applications/fleet/deployments/web", "/v1/applications/fleet/groups/prod", "/v1/applications/fleet"]
    {
        let (status, problem) = s.call(reqwest::Method::DELETE, path, None).await;
        assert_eq!((status, problem["code"].as_str()), (409, Some("release_in_progress")), "{path}: {problem}");
    }
    s.post(&format!("/v1/releases/{r4}/cancel"), json!({})).await;
    let (status, _) = s.call(reqwest::Method::DELETE, "/v1/applications/fleet", None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call(reqwest::Method::GET, "/v1/applications/fleet/groups/prod", None).await;
    assert_eq!(status, 404);
    assert_eq!(s.get(&format!("/v1/releases/{r4}")).await["status"], "cancelled", "releases stay readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_not_seen_for_stale_after_seconds_is_skipped_not_failed_and_converges_when_back() {
    let mut s = Setup::start(&[]);
    let image = s.push_image("stale", "v1", "stale v1\n");
    s.post("/v1/applications", json!({ "name": "quiet" })).await;
    let (status, problem) = s
        .call(
            reqwest::Method::POST,
            "/v1/applications/quiet/groups",
            Some(json!({ "name": "g", "stale_after_seconds": 5 })),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("stale_after_seconds")), "{problem}");
    let stale_after = berth_shared::release::MIN_STALE_AFTER_SECONDS;
    let group =
        s.post("/v1/applications/quiet/groups", json!({ "name": "g", "stale_after_seconds": stale_after })).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    let markers = s.dir.path().join("stale-markers");
    std::fs::create_dir_all(&markers).unwrap();
    s.post(
        "/v1/applications/quiet/deployments",
        json!({
            "name": "job", "image": { "address": image }, "working_directory": s.dir.path().join("stale-work"),
            "stop_script": "true\n",
            "start_script": format!("touch {}/ran-$BERTH_HOST-$BERTH_RELEASE_ID\n", markers.display()),
            "step_timeout_seconds": 60,
        }),
    )
    .await;
    // h1 polls all along; h2 registers and then says nothing (its agent is not started).
    s.start_agent(&join, "h1");
    let registered = reqwest::Client::new()
        .post(format!("{}/v1/agent/register", s.berth().url))
        .bearer_auth(&join)
        .json(&json!({ "host": "h2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let h2_token = registered.json::<Value>().await.unwrap()["host_token"].as_str().unwrap().to_owned();
    s.wait_for_hosts("quiet", "g", 2).await;
    // Past stale_after_seconds (a polling host's last_seen is at most about 80 s old).
    tokio::time::sleep(Duration::from_secs(stale_after + 5)).await;
    let group = s.get("/v1/applications/quiet/groups/g").await;
    assert_eq!(
        (instance(&group, "h1")["stale"].as_bool(), instance(&group, "h2")["stale"].as_bool()),
        (Some(false), Some(true)),
        "{group:#}"
    );

    let id = s.release(json!({ "application": "quiet", "deployment": "job", "group": "g" })).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "h2 does not fail the release: {done:#}");
    assert_eq!(host_states(&done), [("h1".to_owned(), "succeeded".to_owned())]);
    let skipped = &done["skipped_hosts"][0];
    assert_eq!((skipped["host"].as_str(), skipped["state"].as_str()), (Some("h2"), Some("skipped")), "{done:#}");
    assert!(skipped["reason"].as_str().unwrap().contains("stale_after_seconds"), "{skipped}");
    assert_eq!(done["summary"]["skipped"], 1);
    assert!(!markers.join(format!("ran-h2-{id}")).exists());

    // h2 comes back: its first poll records it and hands it its convergence to the release.
    let job = reqwest::Client::new()
        .get(format!("{}/v1/agent/jobs?wait_seconds=5", s.berth().url))
        .bearer_auth(&h2_token)
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 200);
    let job: Value = job.json().await.unwrap();
    let convergence = s.get(&format!("/v1/releases/{}", job["release"].as_str().unwrap())).await;
    assert_eq!(
        (convergence["trigger"]["kind"].as_str(), convergence["trigger"]["of"].as_str()),
        (Some("convergence"), Some(id.as_str()))
    );
    let group = s.get("/v1/applications/quiet/groups/g").await;
    assert_eq!(instance(&group, "h2")["stale"], false, "seen again");
}

#[path = "releases/health.rs"]
mod health;

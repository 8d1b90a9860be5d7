//! The AWS Auto Scaling adapter for real: an Auto Scaling group in moto_server (a launch
//! configuration and a group in us-east-1a, made with the Rust SDK), `berth serve` with
//! `BERTH_AUTO_SCALING=aws` pointed at it, the Debian `docker-registry`, and `berth-agent`
//! processes that register with the group's instance ids. Every release is seen suspending
//! exactly the eight processes while it runs, and ends with them resumed, read back with
//! `DescribeAutoScalingGroups`: success, failure, cancel, and `kill -9` of berth serve.
//!
//! The harness is a trimmed copy of the one in `releases.rs` (that file's `Setup` is private
//! to it); the start scripts wait for a gate file, so "during the release" is a state the test
//! holds, not a moment it hopes to catch.

use berth_tests::docker::{docker, docker_login};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client;
use berth_tests::berth::BerthServe;
use berth_tests::client::ApiClient;
use berth_tests::registry::{Registry, SERVICE};
use berth_tests::{ChildGuard, Moto, berth_bin, free_port};
use serde_json::{Value, json};

const ACCOUNT: &str = "acme";
/// What a release suspends (and resumes), as the issue lists it.
const PROCESSES: [&str; 8] = [
    "Launch",
    "Terminate",
    "HealthCheck",
    "ReplaceUnhealthy",
    "AZRebalance",
    "AlarmNotification",
    "ScheduledActions",
    "AddToLoadBalancer",
];
/// Generous: the machine is shared by several builds and test runs.
const PATIENCE: Duration = Duration::from_secs(120);

fn autoscaling(moto: &Moto) -> Client {
    let credentials = aws_sdk_autoscaling::config::Credentials::new("test", "test", None, None, "berth-tests");
    let config = aws_sdk_autoscaling::Config::builder()
        .behavior_version(aws_sdk_autoscaling::config::BehaviorVersion::latest())
        .region(aws_sdk_autoscaling::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(&moto.endpoint)
        .build();
    Client::from_conf(config)
}

/// An Auto Scaling group of `size` instances in moto; returns their instance ids.
async fn auto_scaling_group(asg: &Client, name: &str, size: i32) -> Vec<String> {
    let launch = format!("{name}-launch");
    asg.create_launch_configuration()
        .launch_configuration_name(&launch)
        .image_id("ami-12c6146b")
        .instance_type("t2.micro")
        .send()
        .await
        .expect("create launch configuration in moto");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(&launch)
        .min_size(0)
        .max_size(10)
        .desired_capacity(size)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("create Auto Scaling group in moto");
    let ids = members(asg, name).await;
    assert_eq!(ids.len(), size as usize, "moto launched the group's instances: {ids:?}");
    ids
}

async fn describe(asg: &Client, name: &str) -> aws_sdk_autoscaling::types::AutoScalingGroup {
    let output =
        asg.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await.expect("describe in moto");
    output.auto_scaling_groups.unwrap_or_default().into_iter().next().expect("the group exists")
}

async fn members(asg: &Client, name: &str) -> Vec<String> {
    describe(asg, name).await.instances.unwrap_or_default().into_iter().filter_map(|i| i.instance_id).collect()
}

/// The group's suspended processes as `DescribeAutoScalingGroups` reads them back.
async fn suspended(asg: &Client, name: &str) -> BTreeSet<String> {
    describe(asg, name)
        .await
        .suspended_processes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.process_name)
        .collect()
}

fn eight() -> BTreeSet<String> {
    PROCESSES.iter().map(|p| p.to_string()).collect()
}

/// Waits until moto shows exactly the eight processes suspended.
async fn wait_suspended(asg: &Client, name: &str) {
    let start = Instant::now();
    loop {
        let now = suspended(asg, name).await;
        if now == eight() {
            return;
        }
        assert!(now.is_subset(&eight()), "only the eight processes are suspended, nothing else: {now:?}");
        assert!(start.elapsed() < PATIENCE, "the release never suspended the processes: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until moto shows nothing suspended (a resume may lag the release's end by a sweep).
async fn wait_resumed(asg: &Client, name: &str) {
    let start = Instant::now();
    loop {
        let now = suspended(asg, name).await;
        if now.is_empty() {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "the processes were never resumed: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    markers: PathBuf,
    _moto: Moto,
    asg: Client,
}

impl Setup {
    fn start() -> Self {
        // moto must start, else the test fails here (Moto::start panics): never a skip.
        let moto = Moto::start();
        let asg = autoscaling(&moto);
        let dir = tempfile::tempdir().unwrap();
        let registry_port = Registry::pick_port();
        let env: Vec<(String, String)> = [
            ("BERTH_REGISTRY_HOST", format!("127.0.0.1:{registry_port}")),
            ("BERTH_REGISTRY_SERVICE", SERVICE.to_owned()),
            ("BERTH_AUTO_SCALING", "aws".to_owned()),
            // The SDK's own variable: only Auto Scaling goes to moto.
            ("AWS_ENDPOINT_URL_AUTO_SCALING", moto.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            // No instance metadata lookups on a machine that is not EC2.
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let port = free_port();
        let berth = Self::serve(dir.path(), port, &env);
        let realm = format!("{}/v1/registry/token", berth.url);
        let registry = Registry::start(dir.path(), registry_port, &realm, &berth.signing_certificate());
        let token = berth.dev_token(ACCOUNT);
        let markers = dir.path().join("markers");
        std::fs::create_dir_all(&markers).unwrap();
        let api = ApiClient::new(berth.url.clone());
        Self { dir, berth: Some(berth), port, env, registry, token, api, agents: Vec::new(), markers, _moto: moto, asg }
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

    /// A FROM-scratch image (only busybox) pushed with a push key and removed locally, so the
    /// agents really pull it. Returns its address.
    fn push_image(&self) -> String {
        let context = self.dir.path().join("image");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::copy("/bin/busybox", context.join("busybox")).expect("busybox-static is missing: run `make deps`");
        std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\n").unwrap();
        let address = format!("{}/{ACCOUNT}/asg-tool:v1", self.registry.host);
        docker(&["build", "--no-cache", "-q", "-t", &address, context.to_str().unwrap()], None);
        let config = self.dir.path().join("docker-push");
        std::fs::create_dir_all(&config).unwrap();
        let output = Command::new(berth_bin("berth"))
            .args(["credentials", "push", "--url", &self.berth().url, "--token", &self.token])
            .output()
            .unwrap();
        assert!(output.status.success(), "berth credentials push: {}", String::from_utf8_lossy(&output.stderr));
        let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        docker_login(&config, &self.registry.host, ACCOUNT, &key);
        docker(&["push", &address], Some(&config));
        docker(&["rmi", &address], None);
        address
    }

    /// A berth-agent for `host`, registering with the EC2 instance id `instance` (the flag;
    /// `BERTH_INSTANCE_ID` is its environment form).
    fn start_agent(&mut self, join_token: &str, host: &str, instance: &str) {
        let log = std::fs::File::create(self.dir.path().join(format!("agent-{host}.log"))).unwrap();
        let state = self.dir.path().join(format!("agent-state-{host}"));
        let child = Command::new(berth_bin("berth-agent"))
            .args(["--berth-url", &self.berth().url, "--host-id", host, "--instance-id", instance])
            .arg("--state-dir")
            .arg(&state)
            .env("BERTH_JOIN_TOKEN", join_token)
            .args(["--poll-seconds", "5"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berth-agent");
        self.agents.push(ChildGuard(child));
    }

    /// Application `svc`, scaling group `web` naming the Auto Scaling group `asg_name`, a
    /// deployment whose start script waits for the release's gate (and fails on hosts marked
    /// to), and one agent per `(host, instance id)`.
    async fn fleet(&mut self, asg_name: &str, hosts: &[(&str, &str)]) {
        let image = self.push_image();
        self.post("/v1/applications", json!({ "name": "svc" })).await;
        let group = self
            .post(
                "/v1/applications/svc/groups",
                json!({ "name": "web", "kind": "scaling", "auto_scaling_group": asg_name }),
            )
            .await;
        assert_eq!(group["auto_scaling_group"], asg_name, "{group}");
        let join = group["join_token"].as_str().unwrap().to_owned();
        let m = self.markers.display();
        self.post(
            "/v1/applications/svc/deployments",
            json!({
                "name": "job", "image": { "address": image },
                "working_directory": self.dir.path().join("work"),
                "stop_script": "echo \"stopping on $BERTH_HOST\"\n",
                "start_script": format!(
                    "touch {m}/started-$BERTH_HOST-$BERTH_RELEASE_ID\n\
                     while [ ! -e {m}/go-$BERTH_RELEASE_ID ]; do sleep 0.1; done\n\
                     if [ -e {m}/fail-$BERTH_HOST ]; then echo \"failing on purpose on $BERTH_HOST\" >&2; exit 3; fi\n\
                     touch {m}/ran-$BERTH_HOST-$BERTH_RELEASE_ID\n"
                ),
                "step_timeout_seconds": 300,
            }),
        )
        .await;
        for (host, instance) in hosts {
            self.start_agent(&join, host, instance);
        }
        let start = Instant::now();
        loop {
            let group = self.get("/v1/applications/svc/groups/web").await;
            let registered: Vec<(String, String)> = group["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["host"].as_str().unwrap().to_owned(), i["instance_id"].as_str().unwrap_or("").to_owned()))
                .collect();
            if registered.len() == hosts.len() {
                let want: Vec<(String, String)> = hosts.iter().map(|(h, i)| (h.to_string(), i.to_string())).collect();
                assert_eq!(registered, want, "each host registered its instance id");
                return;
            }
            assert!(start.elapsed() < PATIENCE, "hosts did not register: {group}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn open_gate(&self, release: &str) {
        std::fs::write(self.markers.join(format!("go-{release}")), "").unwrap();
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

    async fn release(&self, body: Value) -> String {
        let release = self.post("/v1/releases", body).await;
        release["id"].as_str().unwrap().to_owned()
    }

    async fn wait_release(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, release) = self.call(reqwest::Method::GET, &format!("/v1/releases/{id}"), None).await;
            if status == 200 && done(&release) {
                return release;
            }
            if start.elapsed() > PATIENCE {
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

    async fn finished(&self, id: &str) -> Value {
        self.wait_release(id, "an end", |r| r["status"] != "running").await
    }

    async fn scaling(&self) -> Value {
        self.get("/v1/applications/svc/groups/web").await["scaling"].clone()
    }

    /// Berth's record agrees with moto: not paused, no lease, one pause and one resume per release.
    async fn assert_resumed(&self, name: &str, releases: u64) {
        wait_resumed(&self.asg, name).await;
        let start = Instant::now();
        loop {
            let scaling = self.scaling().await;
            if scaling["paused"] == false {
                assert_eq!((scaling["pauses"].as_u64(), scaling["resumes"].as_u64()), (Some(releases), Some(releases)));
                assert!(scaling.get("lease").is_none_or(Value::is_null) && scaling.get("error").is_none(), "{scaling}");
                return;
            }
            assert!(start.elapsed() < PATIENCE, "the lease was never released: {scaling}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hosts_of(release: &Value) -> Vec<String> {
    release["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["hosts"].as_array().unwrap().clone())
        .map(|h| h["host"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_suspend_the_auto_scaling_group_and_resume_it_on_success_failure_and_cancel() {
    let mut s = Setup::start();
    let name = "berth-web";
    let ids = auto_scaling_group(&s.asg, name, 3).await;
    s.fleet(name, &[("a1", &ids[0]), ("a2", &ids[1]), ("a3", &ids[2])]).await;

    // a3's instance leaves the Auto Scaling group: it is not planned any more.
    let plan =
        s.post("/v1/releases?dry_run=true", json!({ "application": "svc", "deployment": "job", "group": "web" })).await;
    assert_eq!(plan["batches"], json!([["a1", "a2", "a3"]]), "{plan}");
    s.asg
        .detach_instances()
        .auto_scaling_group_name(name)
        .instance_ids(&ids[2])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("detach an instance in moto");
    assert_eq!(members(&s.asg, name).await, ids[..2]);
    let plan =
        s.post("/v1/releases?dry_run=true", json!({ "application": "svc", "deployment": "job", "group": "web" })).await;
    assert_eq!(plan["batches"], json!([["a1", "a2"]]), "{plan}");
    assert!(suspended(&s.asg, name).await.is_empty(), "a dry run suspends nothing");

    // Success: suspended while the hosts run, resumed after.
    let id = s.release(json!({ "application": "svc", "deployment": "job", "group": "web" })).await;
    wait_suspended(&s.asg, name).await;
    let running = s.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(hosts_of(&running), ["a1", "a2"], "{running}");
    assert_eq!(s.scaling().await["lease"]["auto_scaling_group"], name);
    s.open_gate(&id);
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert!(s.ran("a1", &id) && s.ran("a2", &id) && !s.ran("a3", &id), "a3 left the group and ran nothing");
    s.assert_resumed(name, 1).await;

    // Failure: a1's start script fails; the release fails, the processes are resumed.
    s.fail(&["a1"]);
    let id = s.release(json!({ "application": "svc", "deployment": "job", "group": "web" })).await;
    wait_suspended(&s.asg, name).await;
    s.open_gate(&id);
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    let a1 = &done["batches"][0]["hosts"][0];
    assert_eq!((a1["state"].as_str(), a1["exit_code"].as_i64()), (Some("failed"), Some(3)), "{a1}");
    s.assert_resumed(name, 2).await;
    s.fail(&[]);

    // Cancel while waiting for confirmation after the first batch.
    let body = json!({ "application": "svc", "deployment": "job", "group": "web", "batches": 2, "pause": "manual" });
    let id = s.release(body).await;
    s.open_gate(&id);
    s.wait_release(&id, "awaiting confirmation", |r| r["phase"]["step"] == "awaiting_confirm").await;
    assert_eq!(suspended(&s.asg, name).await, eight(), "still suspended between batches");
    let (status, cancelled) = s.call(reqwest::Method::POST, &format!("/v1/releases/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{cancelled}");
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "cancelled", "{done:#}");
    assert!(!s.ran("a2", &id), "the second batch never started");
    s.assert_resumed(name, 3).await;

    // A group naming an Auto Scaling group AWS does not know: no release starts, and the
    // problem says which group.
    // Made with the CLI, which passes the name on.
    let output = Command::new(berth_bin("berth"))
        .args(["group", "create", "--application", "svc", "ghost", "--kind", "scaling"])
        .args(["--auto-scaling-group", "no-such-group", "--url", &s.berth().url, "--token", &s.token])
        .output()
        .unwrap();
    assert!(output.status.success(), "berth group create: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(s.get("/v1/applications/svc/groups/ghost").await["auto_scaling_group"], "no-such-group");
    let body = json!({ "application": "svc", "deployment": "job", "group": "ghost" });
    let (status, problem) = s.call(reqwest::Method::POST, "/v1/releases", Some(body)).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("auto_scaling_group_not_found")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("no-such-group"), "{problem}");
}

/// The adapter itself against moto: the eight processes exactly, idempotent calls, an
/// unknown group named as such on suspend and taken as nothing-to-resume on resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_adapter_suspends_exactly_the_eight_processes_and_names_unknown_groups() {
    use berth_releases::scaling::{AwsAutoScaling, ScalingAdapter, ScalingError, ScalingTarget};
    let moto = Moto::start();
    let asg = autoscaling(&moto);
    let ids = auto_scaling_group(&asg, "direct", 1).await;
    let adapter = AwsAutoScaling::with_client(moto.aws(&berth_shared::platform::aws::AUTO_SCALING));
    let target = |name: &str| ScalingTarget {
        group: berth_releases::store_layout::GroupRef {
            account: berth_shared::names::AccountId::parse(ACCOUNT).unwrap(),
            application: "svc".into(),
            group: "web".into(),
        },
        auto_scaling_group: Some(name.to_owned()),
    };
    for _ in 0..2 {
        adapter.suspend(&target("direct")).await.unwrap();
        assert_eq!(suspended(&asg, "direct").await, eight());
    }
    let members = adapter.members(&target("direct")).await.unwrap().unwrap();
    assert_eq!(members.iter().map(|m| m.instance_id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(members[0].lifecycle_state, "InService");
    for _ in 0..2 {
        adapter.resume(&target("direct")).await.unwrap();
        assert!(suspended(&asg, "direct").await.is_empty());
    }
    assert_eq!(adapter.suspend(&target("nowhere")).await, Err(ScalingError::NotFound("nowhere".into())));
    assert_eq!(adapter.members(&target("nowhere")).await, Err(ScalingError::NotFound("nowhere".into())));
    assert_eq!(adapter.resume(&target("nowhere")).await, Ok(()), "a group that is gone has nothing suspended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_berth_serve_mid_release_still_ends_with_the_processes_resumed() {
    let mut s = Setup::start();
    let name = "berth-crash";
    let ids = auto_scaling_group(&s.asg, name, 2).await;
    s.fleet(name, &[("b1", &ids[0]), ("b2", &ids[1])]).await;

    let id = s.release(json!({ "application": "svc", "deployment": "job", "group": "web", "batches": 2 })).await;
    wait_suspended(&s.asg, name).await;
    // b1 is in its start script: the release is mid-way, the pause is only in the lease.
    let start = Instant::now();
    while !s.markers.join(format!("started-b1-{id}")).exists() {
        assert!(start.elapsed() < PATIENCE, "b1 never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.crash_and_restart();
    assert_eq!(suspended(&s.asg, name).await, eight(), "a kill -9 resumes nothing by itself");
    s.open_gate(&id);
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert!(s.ran("b1", &id) && s.ran("b2", &id));
    s.assert_resumed(name, 1).await;
}

/// The default VPC moto keeps in us-east-1 (a target group needs one), by the EC2 query API.
async fn default_vpc(moto: &Moto) -> String {
    let answer = reqwest::Client::new()
        .post(&moto.endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Action=DescribeVpcs&Version=2016-11-15")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = answer.find("<vpcId>").expect("moto lists its default VPC") + "<vpcId>".len();
    answer[start..].split('<').next().unwrap().to_owned()
}

/// The target group adapter against moto's ELBv2 (Rust SDK): putting back registers the
/// targets (instance ids, else host names), draining deregisters them (twice is the same as
/// once) and shows them drained, an unknown target group is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_group_adapter_deregisters_and_registers_targets_in_moto() {
    use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetHealthStateEnum, TargetTypeEnum};
    use berth_releases::balancer::{BalancerAdapter, Member, TargetGroup};
    let moto = Moto::start();
    let credentials = aws_sdk_elasticloadbalancingv2::config::Credentials::new("test", "test", None, None, "tests");
    let config = aws_sdk_elasticloadbalancingv2::Config::builder()
        .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
        .region(aws_sdk_elasticloadbalancingv2::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(&moto.endpoint)
        .build();
    let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(config);
    let created = elb
        .create_target_group()
        .name("web")
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(default_vpc(&moto).await)
        .target_type(TargetTypeEnum::Instance)
        .send()
        .await
        .expect("create a target group in moto");
    let arn = created.target_groups()[0].target_group_arn().unwrap().to_owned();
    let lb =
        berth_shared::release::LoadBalancer { haproxy: None, target_group_arn: Some(arn.clone()), drain_seconds: 0 };
    let members = [
        Member { host: "h1".into(), instance_id: Some("i-0123456789abcdef0".into()) },
        Member { host: "h2".into(), instance_id: None },
    ];
    let states = || async {
        let answer = elb.describe_target_health().target_group_arn(&arn).send().await.unwrap();
        let mut states: Vec<(String, Option<TargetHealthStateEnum>)> = answer
            .target_health_descriptions()
            .iter()
            .map(|d| (d.target().unwrap().id().unwrap().to_owned(), d.target_health().unwrap().state().cloned()))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    };
    let adapter = TargetGroup::with_client(moto.aws(&berth_shared::platform::aws::ELB_V2));
    adapter.put_back(&lb, &members).await.unwrap();
    let registered: Vec<String> = states().await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(registered, ["h2", "i-0123456789abcdef0"], "instance ids, else host names");
    for _ in 0..2 {
        adapter.drain(&lb, &members[..1]).await.unwrap();
        assert!(adapter.drained(&lb, &members[..1]).await.unwrap());
        let left: Vec<String> = states().await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(left, ["h2"], "only h1 was deregistered");
    }
    adapter.take_out(&lb, &members[..1]).await.unwrap();
    adapter.put_back(&lb, &members[..1]).await.unwrap();
    assert_eq!(states().await.len(), 2, "h1 is back");
    let gone =
        berth_shared::release::LoadBalancer { target_group_arn: Some(arn.replace("/web/", "/gone/")), ..lb.clone() };
    let error = adapter.put_back(&gone, &members).await.unwrap_err().to_string();
    assert!(error.starts_with("target group: ") && error.contains("TargetGroupNotFound"), "{error}");
}

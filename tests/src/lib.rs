//! Harness for Berth's end-to-end tests: real components on free loopback ports.
//!
//! Components come from `make deps` (the venv in `.venv/`). A component that cannot start
//! fails the test loudly; nothing is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "the end-to-end harness: a panic fails the test or bench that called it"
)]

pub mod attack;
pub mod berth;
pub mod client;
pub mod docker;
pub mod event_source;
pub mod goals;
pub mod lambda_watch;
pub mod netns;
pub mod prometheus;
pub mod registry;
pub mod signing;
pub mod snapshot;
pub mod stack;
pub mod webdriver;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// A loopback port nobody is listening on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind loopback").local_addr().expect("local addr").port()
}

/// A program installed into the project venv by `make deps`.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(path.exists(), "{} is missing: run `make deps` first", path.display());
    path
}

/// A binary of this workspace, built by `cargo build --workspace` (the Makefile does this
/// before running tests).
pub fn berth_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>; a bench binary sits in target/release itself.
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// Waits until something accepts connections on `port`, or panics after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    wait_for_addr(std::net::SocketAddr::from(([127, 0, 0, 1], port)), timeout, what)
}

/// Waits until something accepts connections on `addr`, or panics after `timeout`.
pub fn wait_for_addr(addr: std::net::SocketAddr, timeout: Duration, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < timeout, "{what} did not listen on {addr} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moto_server` on a free loopback port: S3 and SQS.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _child: ChildGuard,
}

impl Moto {
    /// Starts moto_server and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        let mut command = Command::new(venv_bin("moto_server"));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        Self::spawn(command, port)
    }

    /// A moto whose request recording (`/moto-api/recorder/...`) writes to `file`, to count
    /// what a component asked of S3 and SQS.
    pub fn start_recording(file: &Path) -> Self {
        let port = free_port();
        let mut command = Command::new(venv_bin("moto_server"));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]).env("MOTO_RECORDER_FILEPATH", file);
        Self::spawn(command, port)
    }

    /// A moto that serves one request at a time. moto checks `If-Match` and then writes, so
    /// two threads can both pass the check (seen: 3 of 2,000 raced increments lost on a loaded
    /// machine); S3 itself decides conditional writes atomically. Conformance of compare-and-
    /// swap is tested against this one. No SQS long polls: they would hold the only thread.
    pub fn start_serialised() -> Self {
        let port = free_port();
        let mut command = Command::new(venv_bin("python"));
        command.args([
            "-c",
            "import sys\n\
             from werkzeug.serving import run_simple\n\
             from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app\n\
             app = DomainDispatcherApplication(create_backend_app)\n\
             run_simple('127.0.0.1', int(sys.argv[1]), app, threaded=False, request_handler=MotoRequestHandler)\n",
            &port.to_string(),
        ]);
        Self::spawn(command, port)
    }

    fn spawn(mut command: Command, port: u16) -> Self {
        // `BENCH_MOTO_LOG`: moto's request log (one line per request, with its path) to a file,
        // to see which requests a bench's figure is made of.
        let stderr = match std::env::var_os("BENCH_MOTO_LOG") {
            Some(file) => Stdio::from(std::fs::File::create(file).expect("create the moto log")),
            None => Stdio::null(),
        };
        let child = command.stdout(Stdio::null()).stderr(stderr).spawn().expect("start moto_server");
        let child = ChildGuard(child);
        wait_for_port(port, Duration::from_secs(30), "moto_server");
        Self { endpoint: format!("http://127.0.0.1:{port}"), _child: child }
    }

    /// An SQS client for this moto with static test credentials.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let credentials = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "berth-tests");
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(&self.endpoint)
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    /// A client of Berth's own AWS request layer for `service` on this moto, with static test
    /// credentials.
    pub fn aws(
        &self,
        service: &'static berth_shared::platform::aws::Service,
    ) -> berth_shared::platform::aws::AwsClient {
        berth_shared::platform::aws::AwsClient::from_env(service, "us-east-1", Duration::from_secs(30))
            .with_endpoint(&self.endpoint)
            .with_credentials("test", "test", None)
    }

    /// Creates a queue with a dead-letter queue taking messages after `max_receives`.
    /// Returns (queue URL, dead-letter queue URL).
    pub async fn queue_with_dead_letters(
        &self,
        name: &str,
        max_receives: u32,
        visibility_seconds: u32,
    ) -> (String, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let sqs = self.sqs();
        let dlq = sqs.create_queue().queue_name(format!("{name}-dlq")).send().await.expect("create DLQ");
        let dlq_url = dlq.queue_url.expect("DLQ URL");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("DLQ attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("DLQ ARN");
        let redrive = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives }).to_string();
        let queue = sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_seconds.to_string())
            .send()
            .await
            .expect("create queue");
        (queue.queue_url.expect("queue URL"), dlq_url)
    }

    /// An S3 store for `bucket` on this moto with static test credentials.
    pub fn s3(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("S3 store on moto")
    }

    /// Creates an S3 bucket (moto accepts unsigned requests).
    pub async fn bucket(&self, name: &str) {
        let response =
            reqwest::Client::new().put(format!("{}/{name}", self.endpoint)).send().await.expect("create bucket");
        assert!(response.status().is_success(), "create bucket: {}", response.status());
    }
}

/// Writes a fresh P-256 account key (PKCS#8 PEM) to `dir/account.pem` and returns its path,
/// for `BERTH_ACCOUNT_KEY_FILE`.
pub fn write_account_key(dir: &Path) -> PathBuf {
    let path = dir.join("account.pem");
    std::fs::write(&path, berth_shared::platform::pem::generate_private_key_pem()).expect("write account key");
    path
}

/// Sends SIGTERM, waits up to `grace` for the process to exit, then kills it. For processes
/// that must clean up children of their own (`cargo lambda watch` runs the function in a
/// process group of its own, which SIGKILL would leave behind).
pub fn stop_gracefully(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a (log) file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The key environment a function binary needs, made fresh in `dir`: an account key
/// (`BERTH_ACCOUNT_KEY_FILE`) and a signing key with its certificate (`BERTH_SIGNING_KEY_FILE`,
/// `BERTH_SIGNING_CERT_FILE`), the latter by `berth keys generate` of the `berth` binary given.
pub fn function_key_env(berth: &Path, dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let account = write_account_key(dir);
    let output =
        Command::new(berth).args(["keys", "generate", "--out"]).arg(dir).output().expect("run berth keys generate");
    assert!(output.status.success(), "berth keys generate: {}", String::from_utf8_lossy(&output.stderr));
    vec![
        ("BERTH_ACCOUNT_KEY_FILE", account),
        ("BERTH_SIGNING_KEY_FILE", dir.join("signing.key.pem")),
        ("BERTH_SIGNING_CERT_FILE", dir.join("signing.crt.pem")),
    ]
}

/// Peak resident set size of this process in MiB (`VmHWM`), where /proc exists.
pub fn peak_rss_mib() -> Option<u64> {
    rss_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM:")
}

/// Resident set size of this process now, in MiB.
pub fn rss_mib() -> Option<u64> {
    rss_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:")
}

/// CPU time this process has used so far (user and system, all threads), from
/// `/proc/self/stat` in the kernel's clock ticks (Linux's `USER_HZ` is 100 on every
/// architecture Berth builds for).
pub fn cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: utime and stime are the 14th and
    // 15th fields of the line, the 12th and 13th after it.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// Peak resident set size of another process in MiB, while it runs.
pub fn peak_rss_mib_of(pid: u32) -> Option<u64> {
    rss_field(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmHWM:")
}

/// Resident set size of another process now, in MiB.
pub fn rss_mib_of(pid: u32) -> Option<u64> {
    rss_field(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS:")
}

fn rss_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024)
}

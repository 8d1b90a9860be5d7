//! `cargo lambda watch` (the real Lambda emulator of the `cargo-lambda` package in `.venv/`)
//! serving one function binary on a free loopback port, with that function's own environment,
//! as Lambda gives each function its own configuration.
//!
//! Notes that matter:
//! - the emulator builds the function itself (`cargo run`) on the first request, into
//!   `target/lambda-watch`, not the `target/debug` whose lock the running `cargo test` may
//!   hold; the first build ever takes minutes, later ones only check freshness;
//! - `--target-dir` would also be passed to `cargo metadata`, which rejects it, so the target
//!   dir goes through `CARGO_TARGET_DIR`; the `CARGO_*` variables `cargo test` sets for the
//!   test process are removed, and so are `BERTH_*` ones: the function sees only what the env
//!   file says;
//! - it runs in a temporary directory so that nothing it writes lands in the workspace it
//!   watches, and with `--ignore-changes` so that other engineers' edits cause no reloads;
//! - a function URL request `GET /lambda-url/<bin>/a/b` reaches the function's router as
//!   `GET /a/b` (the prefix does not survive), and `POST /2015-03-31/functions/<bin>/invocations`
//!   invokes it with any payload (an SQS batch, say); a function error answers 500.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ChildGuard, free_port, stop_gracefully, tail, venv_bin, wait_for_port, workspace_root};

/// Time allowed for the emulator's first build and the first answer.
pub const FIRST_ANSWER: Duration = Duration::from_secs(15 * 60);

/// A running `cargo lambda watch` for one binary.
pub struct LambdaWatch {
    /// The binary, e.g. `berth-packages`.
    pub bin: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log (the function's stderr too).
    pub log: PathBuf,
    child: ChildGuard,
}

impl LambdaWatch {
    /// Starts the emulator for `bin` (a binary of package `bin`) with `env` for the function,
    /// working in `dir`. Returns once the runtime API listens; the function is built and
    /// started on the first request (see [`LambdaWatch::ready`]).
    pub fn start(bin: &str, dir: &Path, env: &[(String, String)]) -> Self {
        Self::start_with(bin, dir, env, &[])
    }

    /// As [`LambdaWatch::start`], with extra `cargo lambda watch` flags (`--concurrency N`, say).
    pub fn start_with(bin: &str, dir: &Path, env: &[(String, String)], flags: &[&str]) -> Self {
        let dir = dir.join(bin);
        std::fs::create_dir_all(&dir).expect("emulator dir");
        let env_file = dir.join("lambda.env");
        let lines: String = env.iter().map(|(name, value)| format!("{name}={value}\n")).collect();
        std::fs::write(&env_file, lines).expect("write env file");
        let log = dir.join("watch.log");
        let output = std::fs::File::create(&log).expect("create watch log");
        let root = workspace_root();
        let port = free_port();
        let mut command = Command::new(venv_bin("cargo-lambda"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if (name.starts_with("CARGO_") && name != "CARGO_HOME") || name.starts_with("BERTH_") {
                command.env_remove(&name);
            }
        }
        command
            .args(["lambda", "watch", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .args(["--package", bin, "--bin", bin])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
            .arg("--env-file")
            .arg(&env_file)
            .arg("--ignore-changes")
            .args(flags)
            .env("CARGO_TARGET_DIR", root.join("target/lambda-watch"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone log handle"))
            .stderr(output);
        let child = ChildGuard(command.spawn().expect("start cargo lambda watch"));
        let watch = Self { bin: bin.to_owned(), url: format!("http://127.0.0.1:{port}"), port, log, child };
        wait_for_port(port, Duration::from_secs(60), "cargo lambda watch");
        watch
    }

    /// The function URL of this function: `base` + `path` reaches its router as `path`.
    pub fn function_url(&self) -> String {
        format!("{}/lambda-url/{}", self.url, self.bin)
    }

    /// The Lambda Invoke API endpoint of this function.
    pub fn invoke_url(&self) -> String {
        format!("{}/2015-03-31/functions/{}/invocations", self.url, self.bin)
    }

    /// The last lines of the emulator's log.
    pub fn tail(&self) -> String {
        format!("--- last lines of {} ---\n{}", self.log.display(), tail(&self.log, 40))
    }

    /// Fails the test with the tail of the emulator's log.
    pub fn fail(&self, why: &str) -> ! {
        panic!("{}: {why}\n{}", self.bin, self.tail());
    }

    /// Why the emulator cannot answer any more, if it cannot: it exited, its build failed, or
    /// the function exited (the emulator would keep requests waiting for it forever).
    pub fn broken(&mut self) -> Option<String> {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            return Some(format!("cargo lambda watch exited ({status})"));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if log.contains("error: could not compile") || log.contains("error[E") {
            return Some("the emulator's build of the function failed".into());
        }
        if log.contains("command exited") {
            return Some("the function exited under the emulator".into());
        }
        None
    }

    /// Waits until the function answers `GET /healthz` through its function URL (building it
    /// first if needed), failing the test if the emulator breaks or [`FIRST_ANSWER`] passes.
    pub async fn ready(&mut self) {
        let url = format!("{}/healthz", self.function_url());
        let started = Instant::now();
        let request = tokio::spawn({
            let url = url.clone();
            async move {
                let response = reqwest::Client::new().get(&url).timeout(FIRST_ANSWER).send().await?;
                Ok::<_, reqwest::Error>((response.status(), response.text().await?))
            }
        });
        while !request.is_finished() {
            if let Some(why) = self.broken() {
                request.abort();
                self.fail(&why);
            }
            if started.elapsed() > FIRST_ANSWER {
                request.abort();
                self.fail(&format!("GET {url} got no answer within {FIRST_ANSWER:?}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        match request.await.expect("request task") {
            Ok((status, _)) if status == reqwest::StatusCode::OK => {}
            Ok((status, body)) => self.fail(&format!("GET {url}: {status}: {body}")),
            Err(error) => self.fail(&format!("GET {url}: {error}")),
        }
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        // SIGTERM: the emulator then stops the function it started (SIGKILL would orphan it).
        stop_gracefully(&mut self.child.0, Duration::from_secs(10));
    }
}

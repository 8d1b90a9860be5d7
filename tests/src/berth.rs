//! `berth serve` as a child process on a free port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ChildGuard, berth_bin, free_port, wait_for_addr};

/// A running `berth serve` with its data directory and JSON log file.
pub struct BerthServe {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory.
    pub data: PathBuf,
    /// Where its stderr (JSON logs) goes.
    pub log: PathBuf,
    child: ChildGuard,
}

impl BerthServe {
    /// Starts `berth serve` with `data` as data directory, logging to `log`, on `port`
    /// (0 for any), with extra environment.
    pub fn start(data: &Path, log: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_binary(&berth_bin("berth"), data, log, port, env)
    }

    /// As [`BerthServe::start`], with a given `berth` binary (a release build, say).
    pub fn start_binary(binary: &Path, data: &Path, log: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        let port = if port == 0 { free_port() } else { port };
        Self::start_at(binary, data, log, SocketAddr::from(([127, 0, 0, 1], port)), env)
    }

    /// As [`BerthServe::start_binary`], listening on `listen` only (a bridge address that
    /// hosts in other network namespaces reach, say); `url` names that address.
    pub fn start_at(binary: &Path, data: &Path, log: &Path, listen: SocketAddr, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", &listen.to_string()])
            .env("BERTH_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("create log file"));
        for name in ["BERTH_ACCOUNT_KEY_FILE", "BERTH_STORE_URL", "BERTH_SIGNING_KEY_FILE", "BERTH_SIGNING_CERT_FILE"] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let child = ChildGuard(command.spawn().expect("start berth serve"));
        wait_for_addr(listen, Duration::from_secs(30), "berth serve");
        Self { url: format!("http://{listen}"), data: data.to_path_buf(), log: log.to_path_buf(), child }
    }

    /// An account token from `berth dev-token`.
    pub fn dev_token(&self, account: &str) -> String {
        let output = Command::new(berth_bin("berth"))
            .args(["dev-token", "--account", account, "--data-dir"])
            .arg(&self.data)
            .output()
            .expect("run berth dev-token");
        assert!(output.status.success(), "dev-token: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8 token").trim().to_owned()
    }

    /// The signing certificate `berth serve` made (the registry's `rootcertbundle`).
    pub fn signing_certificate(&self) -> PathBuf {
        self.data.join("keys/signing.crt.pem")
    }

    /// Sends SIGTERM and asserts a clean exit within 10 s.
    pub fn stop(mut self) {
        let pid = self.child.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                assert!(status.success(), "berth serve exited with {status} after SIGTERM");
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "berth serve did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id (to read its memory figures).
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

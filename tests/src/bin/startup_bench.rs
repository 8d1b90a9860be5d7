//! `startup-bench` (`make bench`): size of each release binary and the time from exec to its
//! first successful `GET /healthz`, against the goals (≤ 10 MB, ≤ 20 ms median).
//!
//! Missing a goal is reported, not fatal; a binary that is missing or never becomes healthy
//! fails the command. Start-up is also given as a multiple of exec→exit of `/bin/true` on the
//! same machine in the same run, since absolute times on shared machines are noisy.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use berth_tests::goals::{self, Goal};
use berth_tests::{free_port, function_key_env, tail};

/// Timed runs per binary (after one untimed warm-up run).
const RUNS: usize = 20;
/// Size goal of a function binary, in bytes (10 MB, decimal).
const SIZE_GOAL: u64 = 10_000_000;
/// Size goal of the `berth` binary (`berth serve` runs every function in one process).
const SERVE_SIZE_GOAL: u64 = 12_000_000;
/// Median start-up goal.
const STARTUP_GOAL: Duration = Duration::from_millis(20);
/// A run that is not healthy by then has failed.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// Pause between polls: short, so polling neither misses much nor starves the child.
const POLL_PAUSE: Duration = Duration::from_micros(200);

const FUNCTIONS: [&str; 4] = ["berth-credentials", "berth-packages", "berth-render", "berth-releases"];

struct Row {
    name: String,
    size: u64,
    size_goal: u64,
    median: Duration,
    p90: Duration,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("startup-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// How a binary is started.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A function binary: keys from the environment, default (file://) store in the data dir.
    Function,
    /// `berth serve` on an empty data dir: it makes its account and signing keys first.
    Serve,
    /// `berth serve` on a data dir that already has its keys (every start after the first).
    ServeWithKeys,
}

fn run() -> Result<(), String> {
    // This binary is built into the same directory as the others (target/release).
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let dir = exe.parent().ok_or("no directory for own path")?.to_path_buf();
    let berth = dir.join("berth");
    let binaries: Vec<(String, PathBuf, Kind)> = FUNCTIONS
        .iter()
        .map(|name| (name.to_string(), dir.join(name), Kind::Function))
        .chain([
            ("berth serve".to_owned(), berth.clone(), Kind::Serve),
            ("berth serve (keys)".to_owned(), berth.clone(), Kind::ServeWithKeys),
        ])
        .collect();
    for (_, path, _) in &binaries {
        if !path.is_file() {
            return Err(format!("{} is missing: run `cargo build --release --workspace --bins` first", path.display()));
        }
    }

    // Keys, made once (they are inputs, not state); each run still has a data dir of its own.
    let keys = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let key_env = function_key_env(&berth, keys.path());

    let baseline = bin_true()?;
    let mut rows = Vec::new();
    for (name, path, kind) in &binaries {
        let size = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
        startup(path, *kind, &key_env).map_err(|e| format!("{name} (warm-up): {e}"))?;
        let mut times = Vec::with_capacity(RUNS);
        for run in 1..=RUNS {
            times.push(startup(path, *kind, &key_env).map_err(|e| format!("{name} (run {run}): {e}"))?);
        }
        times.sort();
        let size_goal = if *kind == Kind::Function { SIZE_GOAL } else { SERVE_SIZE_GOAL };
        rows.push(Row { name: name.clone(), size, size_goal, median: median(&times), p90: p90(&times) });
    }

    println!(
        "Start-up: exec to first 200 from GET /healthz, {RUNS} runs each (after 1 warm-up), each on a fresh port and data dir"
    );
    println!("Baseline: exec to exit of /bin/true, median of {RUNS}: {}", ms(baseline));
    println!();
    println!(
        "{:<18} {:>11} {:>9} {:>5}   {:>9} {:>9} {:>9} {:>5}",
        "binary", "bytes", "MB", "size", "median", "p90", "x true", "start"
    );
    for row in &rows {
        println!(
            "{:<18} {:>11} {:>9.2} {:>5}   {:>9} {:>9} {:>8.1}x {:>5}",
            row.name,
            row.size,
            row.size as f64 / 1e6,
            verdict(row.size <= row.size_goal),
            ms(row.median),
            ms(row.p90),
            row.median.as_secs_f64() / baseline.as_secs_f64(),
            verdict(row.median <= STARTUP_GOAL),
        );
    }
    println!();
    println!(
        "Goals: size <= {} MB (stripped release binary; `berth` <= {} MB), median start-up <= {} ms.",
        SIZE_GOAL / 1_000_000,
        SERVE_SIZE_GOAL / 1_000_000,
        STARTUP_GOAL.as_millis()
    );
    println!("Functions: keys from BERTH_*_FILE, default file:// store in a fresh data dir each run.");
    println!("`berth serve`: fresh empty data dir each run, so it first makes its account and signing keys;");
    println!("`berth serve (keys)`: fresh data dir that already holds those keys, as on every start after the first.");
    for row in &rows {
        // `berth serve (keys)` is the same binary as `berth serve`: its size is one goal.
        if row.name != "berth serve (keys)" {
            let name = if row.name == "berth serve" { "berth" } else { &row.name };
            goals::report(Goal::at_most(
                format!("size of stripped {name}"),
                row.size as f64 / 1e6,
                row.size_goal as f64 / 1e6,
                "MB",
            ));
        }
        goals::report(Goal::at_most(
            format!("start-up of {}", row.name),
            row.median.as_secs_f64() * 1e3,
            STARTUP_GOAL.as_secs_f64() * 1e3,
            "ms",
        ));
    }
    let over: Vec<&str> =
        rows.iter().filter(|r| r.size > r.size_goal || r.median > STARTUP_GOAL).map(|r| r.name.as_str()).collect();
    if over.is_empty() {
        println!("All goals met.");
    } else {
        println!("Over a goal (reported, not failed): {}", over.join(", "));
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "over" }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Median of sorted samples.
fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2 }
}

/// 90th percentile of sorted samples (nearest rank).
fn p90(sorted: &[Duration]) -> Duration {
    let rank = (sorted.len() * 9).div_ceil(10).max(1);
    sorted[rank - 1]
}

/// Median exec→exit of `/bin/true`.
fn bin_true() -> Result<Duration, String> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..=RUNS {
        let start = Instant::now();
        let status = Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("/bin/true: {e}"))?;
        times.push(start.elapsed());
        if !status.success() {
            return Err(format!("/bin/true: {status}"));
        }
    }
    times.remove(0); // warm-up
    times.sort();
    Ok(median(&times))
}

/// Kills the child when dropped, whatever happened.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run: exec, then poll `GET /healthz` until it answers 200.
fn startup(path: &Path, kind: Kind, key_env: &[(&str, PathBuf)]) -> Result<Duration, String> {
    let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    if kind == Kind::ServeWithKeys {
        // Where `berth serve` looks for them: DATA/keys/{account,signing.key,signing.crt}.pem.
        let keys = data.path().join("keys");
        std::fs::create_dir_all(&keys).map_err(|e| format!("{}: {e}", keys.display()))?;
        for (_, file) in key_env {
            let target = keys.join(file.file_name().expect("key file name"));
            std::fs::copy(file, &target).map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = data.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new(path);
    for name in ["AWS_LAMBDA_RUNTIME_API", "BERTH_STORE_URL", "BERTH_QUEUE_URL"]
        .into_iter()
        .chain(key_env.iter().map(|(n, _)| *n))
    {
        command.env_remove(name);
    }
    command.env("BERTH_LOG_FORMAT", "json").stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    if kind != Kind::Function {
        command.args(["serve", "--data-dir"]).arg(data.path()).args(["--listen", &listen]);
    } else {
        // The default store: file:// in the data directory.
        command
            .env("BERTH_DATA_DIR", data.path())
            .env("BERTH_LISTEN", &listen)
            .envs(key_env.iter().map(|(n, p)| (n, p)));
    }
    let address: SocketAddr = listen.parse().expect("loopback address");

    let start = Instant::now();
    let mut child = Killed(command.spawn().map_err(|e| format!("exec {}: {e}", path.display()))?);
    loop {
        if healthz(address) {
            return Ok(start.elapsed());
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!(
                "exited ({status}) before answering GET /healthz on {listen}; stderr:\n{}",
                tail(&log, 10)
            ));
        }
        if start.elapsed() > HEALTHY_WITHIN {
            return Err(format!(
                "no 200 from GET /healthz on {listen} within {HEALTHY_WITHIN:?}; stderr:\n{}",
                tail(&log, 10)
            ));
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// Whether `GET /healthz` on `address` answers 200 right now.
fn healthz(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else { return false };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    // The status line is all that is needed: "HTTP/1.1 200 ".
    let mut head = [0u8; 12];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => read += n,
        }
    }
    &head == b"HTTP/1.1 200"
}

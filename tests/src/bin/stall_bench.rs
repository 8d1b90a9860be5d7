//! `make bench` part: the availability attacks of issue 24 on `berth serve` (the build next to
//! this binary, or `BERTH_BIN`), with `/healthz` and an authenticated render measured meanwhile
//! from another loopback address: p99 latencies, failures and the server's peak RSS per attack.
//! `BENCH_NESTED_DEPTH` (100,000) sets the YAML nesting; run it against an older build to compare.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::time::Duration;

use berth_tests::attack::{self, ATTACKERS, Target, during};
use berth_tests::berth::BerthServe;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    attack::raise_open_files(8192);
    let binary = std::env::var_os("BERTH_BIN").map_or_else(|| berth_tests::berth_bin("berth"), Into::into);
    let depth = std::env::var("BENCH_NESTED_DEPTH").ok().and_then(|d| d.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let start = |name: &str| {
        // A fresh server for each attack: one that an attack left busy does not spoil the next.
        let data = dir.path().join(name);
        let serve = BerthServe::start_binary(&binary, &data, &dir.path().join(format!("{name}.log")), 0, &[]);
        let target = Target {
            url: serve.url.clone(),
            address: serve.url.trim_start_matches("http://").parse().expect("address"),
            pid: serve.pid(),
            honest_token: serve.dev_token("acme"),
            attacker_token: serve.dev_token("mallory"),
        };
        (serve, target)
    };
    println!("stall-bench: {}", binary.display());
    let (serve, target) = start("nested");
    let figures = during(
        &target,
        "nested YAML, 4 at once",
        attack::nested_yaml(&target, depth, Duration::from_secs(10), Duration::from_secs(5)),
    )
    .await;
    println!("{figures}");
    // Each attack on a fresh server, the last one stopped: one still busy must not slow the next.
    drop(serve);
    let (serve, target) = start("slow");
    let figures = during(
        &target,
        "1,100 slow bodies",
        attack::slow_bodies(&target, 1100, &ATTACKERS[..1], Duration::from_secs(20)),
    )
    .await;
    println!("{figures}");
    drop(serve);
    let (serve, target) = start("idle");
    let figures = during(
        &target,
        "2,000 idle connections",
        attack::idle_connections(&target, 2000, &ATTACKERS[..1], Duration::from_secs(20)),
    )
    .await;
    println!("{figures}");
    drop(serve);
    let (_serve, target) = start("unread");
    let figures = during(&target, "10 unread answers of 9 MiB", async {
        attack::unread_answers(&target, 10, 9, Duration::from_secs(60)).await.to_string()
    })
    .await;
    println!("{figures}");
}

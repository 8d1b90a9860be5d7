//! `make run`'s flow, non-interactively: `scripts/run.sh --check` (the same script, a flag)
//! on free ports and a fresh data directory, twice (a second run needs no clean-up). Each
//! step checks its own result; the script fails naming the step and the log to read.

use std::process::Command;

use berth_tests::{free_port, workspace_root};

fn run_check(data: &std::path::Path, container: &str) -> (bool, String) {
    let output = Command::new(workspace_root().join("scripts/run.sh"))
        .arg("--check")
        .env("BERTH_DATA_DIR", data)
        .env("BERTH_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("BERTH_REGISTRY_HOST", format!("127.0.0.1:{}", free_port()))
        .env("BERTH_DEMO_PORT", free_port().to_string())
        .env("BERTH_DEMO_CONTAINER", container)
        .output()
        .expect("run scripts/run.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn the_whole_seed_flow_passes_every_step_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("berth-data");
    let container = format!("berth-demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    for round in 1..=2 {
        let (ok, text) = run_check(&data, &container);
        assert!(ok, "round {round} failed:\n{text}");
        for step in ["1/5 push", "2/5 package", "3/5 render", "4/5 release", "5/5 check", "every step passed"] {
            assert!(text.contains(step), "round {round}: no '{step}' in:\n{text}");
        }
        assert!(text.contains("is Available, pinned to sha256:"), "{text}");
        assert!(text.contains("Alibaba Spring Sample!"), "{text}");
        assert!(text.contains(": succeeded"), "{text}");
        // The release itself checked the seed's /hello: its host passed at step: health.
        let release: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("demo/release.json")).unwrap()).unwrap();
        let host = &release["batches"][0]["hosts"][0];
        assert_eq!((host["state"].as_str(), host["step"].as_str()), (Some("succeeded"), Some("health")), "{release:#}");
        // The pull key is shown shortened, never whole.
        let rendered = std::fs::read_to_string(data.join("demo/rendered.yaml")).unwrap();
        let key = rendered.lines().find_map(|l| l.trim().strip_prefix(".dockerconfigjson: ")).unwrap();
        assert!(key.len() > 100 && !text.contains(key), "the whole pull key reached the terminal");
    }
    let running = Command::new("docker").args(["ps", "-aq", "-f", &format!("name=^{container}$")]).output().unwrap();
    assert!(running.stdout.is_empty(), "the demo container was removed at the end");
}

#[test]
fn a_failing_step_names_itself_and_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("berth-data");
    // A registry port already taken: start-up fails before anything else runs.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(workspace_root().join("scripts/run.sh"))
        .arg("--check")
        .env("BERTH_DATA_DIR", &data)
        .env("BERTH_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("BERTH_REGISTRY_HOST", taken.local_addr().unwrap().to_string())
        .env("BERTH_DEMO_PORT", free_port().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("failed at step \"start-up\"") && stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("read ") && stderr.contains("logs/berth.log"), "{stderr}");
}

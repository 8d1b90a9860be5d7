//! Bad configuration stops a function binary at once: exit code 2 and one line on stderr that
//! names the variable at fault.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{ChildGuard, berth_bin, free_port, function_key_env};

/// Runs `berth-credentials` with a clean environment, valid settings, then `vars` on top (and a
/// free port to listen on, should it start after all); returns (exit code, stdout, stderr).
fn run_credentials(vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    // Everything else valid, so that the variable under test is the only thing wrong.
    let keys = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(berth_bin("berth-credentials"));
    command.env_clear().env("BERTH_LISTEN", format!("127.0.0.1:{}", free_port())).env("BERTH_STORE_URL", "memory://");
    for (name, path) in function_key_env(&berth_bin("berth"), keys.path()) {
        command.env(name, path);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = ChildGuard(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start berth-credentials"),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "berth-credentials with {vars:?} did not exit within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.0.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    child.0.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    (status.code(), stdout, stderr)
}

fn assert_one_line_naming(vars: &[(&str, &str)], variable: &str) -> String {
    let (code, stdout, stderr) = run_credentials(vars);
    assert_eq!(code, Some(2), "exit code with {vars:?}; stderr: {stderr}");
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "not exactly one line on stderr with {vars:?}: {stderr:?}"
    );
    assert!(stderr.starts_with("berth-credentials: "), "the line names the binary: {stderr:?}");
    assert!(stderr.contains(variable), "the line names {variable}: {stderr:?}");
    assert!(stdout.is_empty(), "nothing on stdout: {stdout:?}");
    stderr
}

#[test]
fn an_unknown_store_scheme_is_one_line_naming_berth_store_url() {
    let line = assert_one_line_naming(&[("BERTH_STORE_URL", "ftp://x")], "BERTH_STORE_URL");
    assert!(line.contains("'ftp'"), "the line says what is wrong: {line:?}");
}

#[test]
fn a_missing_key_file_is_one_line_naming_berth_account_key_file() {
    let line = assert_one_line_naming(&[("BERTH_ACCOUNT_KEY_FILE", "/nonexistent/key.pem")], "BERTH_ACCOUNT_KEY_FILE");
    assert!(line.contains("/nonexistent/key.pem"), "the line names the file: {line:?}");
}

//! The local store under `kill -9`: a writer process is killed with SIGKILL at random points,
//! 200 times, and after each kill every write it had acknowledged is readable and no document
//! is empty or torn.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_shared::platform::store::DocumentStore;
use serde::Deserialize;

const ITERATIONS: usize = 200;

#[derive(Deserialize)]
struct Counter {
    value: u64,
    history: Vec<u64>,
}

/// A small xorshift, seeded from the clock and printed, so a failing run can be told apart.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every `.json` file under `dir` (staging and lock files aside) is whole JSON.
fn no_empty_or_torn_file(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != ".locks" {
                no_empty_or_torn_file(&path);
            }
        } else if name.ends_with(".json") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!bytes.is_empty(), "{} is empty", path.display());
            let counter: Result<Counter, _> = serde_json::from_slice(&bytes);
            let counter = counter.unwrap_or_else(|e| panic!("{} is torn: {e}", path.display()));
            assert!(!counter.history.is_empty(), "{} lost its padding", path.display());
        }
    }
}

#[tokio::test]
async fn every_acknowledged_write_survives_sigkill_and_nothing_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut dice = Dice(seed);
    let mut acknowledged: HashMap<String, u64> = HashMap::new();
    let mut kills_mid_stream = 0;
    for iteration in 0..ITERATIONS {
        let mut writer = Command::new(env!("CARGO_BIN_EXE_store-writer"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the writer");
        let stdout = writer.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // Killed once it is writing (the first acknowledgement), after a random while more.
        let first = received.recv_timeout(Duration::from_secs(20));
        assert!(first.is_ok(), "iteration {iteration} (seed {seed}): the writer acknowledged nothing in 20 s");
        std::thread::sleep(Duration::from_micros(dice.below(20_000)));
        // Child::kill is SIGKILL on Unix: no destructor, no flush, no chance to tidy up.
        writer.kill().unwrap();
        let status = writer.wait().unwrap();
        assert!(status.code().is_none(), "iteration {iteration}: the writer ended by itself: {status}");
        reader.join().unwrap();
        let mut lines: Vec<String> = first.into_iter().collect();
        lines.extend(received.try_iter());
        if lines.len() > 1 {
            kills_mid_stream += 1;
        }
        for line in lines {
            let (path, value) = line.split_once(' ').unwrap();
            if path.starts_with("counters/") {
                let value: u64 = value.parse().unwrap();
                let max = acknowledged.entry(path.to_owned()).or_default();
                *max = (*max).max(value);
            }
        }

        no_empty_or_torn_file(dir.path());
        let store = DocumentStore::local(dir.path().to_path_buf()).unwrap();
        for (path, value) in &acknowledged {
            let stored = store.get::<Counter>(path).await.unwrap();
            let stored = stored.unwrap_or_else(|| panic!("iteration {iteration} (seed {seed}): {path} is gone"));
            assert!(
                stored.value.value >= *value,
                "iteration {iteration} (seed {seed}): {path} went back from acknowledged {value} to {}",
                stored.value.value
            );
        }
        let listed = store.list::<Counter>("scratch").await.unwrap();
        assert!(listed.len() <= 5);
    }
    assert!(acknowledged.len() > 1, "the writers got past their first document");
    assert!(kills_mid_stream > ITERATIONS / 2, "most kills hit a writer mid-stream ({kills_mid_stream})");
}

//! `infra/openapi.yaml` against the server, as schemathesis sees it: `scripts/api-fuzz.sh`
//! (what `make api-fuzz` runs) with every check and a few examples per operation, against a
//! fresh `berth serve`. It fails on any answer that is a 5xx, any schema-valid request refused,
//! any schema-violating request accepted, and any response that breaks its documented schema;
//! `make api-fuzz` runs more examples (20 by default).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::process::Command;
use std::time::Instant;

/// Examples per operation: enough for each body's forms, few enough to stay near a minute.
const EXAMPLES: &str = "3";
/// A seed that found nothing on the description and server this test was written against.
const SEED: &str = "99697658607475681489190631044829731522";

#[test]
fn schemathesis_finds_every_answer_as_documented() {
    let root = berth_tests::workspace_root();
    // The venv's schemathesis, and the berth the workspace built: missing is a failure.
    berth_tests::venv_bin("st");
    let berth = berth_tests::berth_bin("berth");
    let started = Instant::now();
    let output = Command::new(root.join("scripts/api-fuzz.sh"))
        .env("API_FUZZ_BERTH", &berth)
        .env("API_FUZZ_EXAMPLES", EXAMPLES)
        // The same cases every run, so a failure here is a change's and can be replayed;
        // `make api-fuzz` explores with a new seed each time.
        .env("API_FUZZ_SEED", SEED)
        .output()
        .expect("run scripts/api-fuzz.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(400)..].join("\n");
    assert!(output.status.success(), "schemathesis found problems ({}):\n{tail}", output.status);
    // It ran: every documented operation selected was tested.
    let count = |label: &str| {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label}\n{tail}"));
        line.split(':').nth(1).unwrap().trim().split('/').next().unwrap().trim().parse::<usize>().unwrap()
    };
    let (selected, tested) = (count("Selected:"), count("Tested:"));
    assert!(selected >= 70 && tested == selected, "{tested} of {selected} operations tested:\n{tail}");
    println!("schemathesis: {tested} operations, {EXAMPLES} examples each, in {:?}", started.elapsed());
}

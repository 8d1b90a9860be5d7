//! The last step of `make bench` and `make bench-quick`: every goal the benches reported in
//! the `BENCH_SUMMARY` file, how far each figure is from it, and a failing exit when one is over.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::process::ExitCode;

use berth_tests::goals::Goal;

fn main() -> ExitCode {
    let Some(path) = std::env::var_os("BENCH_SUMMARY") else {
        eprintln!("bench-summary: BENCH_SUMMARY names no file");
        return ExitCode::FAILURE;
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("bench-summary: {}: {e}", std::path::Path::new(&path).display());
            return ExitCode::FAILURE;
        }
    };
    let goals: Vec<Goal> = text.lines().filter_map(Goal::parse).collect();
    let over: Vec<&Goal> = goals.iter().filter(|g| !g.ok()).collect();
    println!();
    println!("summary: {} goals, {} ok, {} over", goals.len(), goals.len() - over.len(), over.len());
    for goal in &goals {
        println!("{}", goal.line());
    }
    if goals.is_empty() {
        eprintln!("bench-summary: no goal was reported");
        return ExitCode::FAILURE;
    }
    if over.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("over: {}", over.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join("; "));
        ExitCode::FAILURE
    }
}

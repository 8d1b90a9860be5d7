//! The end-to-end tests as one binary: each file beside this one is a module of it, so the
//! suite links the AWS SDK and the harness once instead of once per file. Run one file's tests
//! with a filter: `cargo test -p berth-tests --test e2e releases::`.
//!
//! `tests/Cargo.toml` has `autotests = false`: a file added here that is not declared below
//! would not be compiled at all, so [`every_file_is_part_of_the_binary`] fails on one.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

mod api_fuzz;
mod autoscaling;
mod computenest;
mod console;
mod crash;
mod instances;
mod isolation;
mod lambda;
mod lambda_flow;
mod lambda_wake;
mod make_run;
mod metrics;
mod netns;
mod openapi;
mod packages;
mod queue;
mod registry;
mod releases;
mod render;
mod serve;
mod startup;
mod store;
mod token_kinds;
mod wake;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `tests/tests` is reachable from this file through `mod` declarations
/// (with or without `#[path]`): none is silently left out of the binary.
#[test]
fn every_file_is_part_of_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut declared = BTreeSet::new();
    let mut pending = vec![root.join("main.rs")];
    while let Some(file) = pending.pop() {
        if !declared.insert(file.clone()) {
            continue;
        }
        pending.extend(modules_of(&file));
    }
    let missing: Vec<_> = rust_files(&root).into_iter().filter(|file| !declared.contains(file)).collect();
    assert!(missing.is_empty(), "files in tests/tests that no `mod` declares (so never compiled): {missing:?}");
    for file in &declared {
        assert!(file.exists(), "a `mod` declares {}, which does not exist", file.display());
    }
}

/// The files `file` declares as modules: `mod name;`, or `#[path = "..."] mod name;`.
fn modules_of(file: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(file).unwrap();
    let dir = file.parent().unwrap();
    let owns_directory = matches!(file.file_name().and_then(|n| n.to_str()), Some("main.rs" | "mod.rs"));
    let mut path_attribute = None;
    let mut modules = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#[path = \"") {
            path_attribute = rest.strip_suffix("\"]").map(str::to_owned);
            continue;
        }
        let declaration =
            line.strip_prefix("pub ").unwrap_or(line).strip_prefix("mod ").and_then(|r| r.strip_suffix(';'));
        if let Some(name) = declaration {
            let base = if owns_directory { dir.to_path_buf() } else { dir.join(file.file_stem().unwrap()) };
            modules.push(match path_attribute.take() {
                Some(path) => dir.join(path),
                None if base.join(format!("{name}.rs")).exists() => base.join(format!("{name}.rs")),
                None => base.join(name).join("mod.rs"),
            });
        } else if !line.starts_with("#[") {
            path_attribute = None;
        }
    }
    modules
}

fn rust_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.insert(path);
        }
    }
    files
}

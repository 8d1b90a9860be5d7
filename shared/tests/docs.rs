//! The docs stay true to the code: the configuration page names every variable the programs
//! read, every relative link in the README and `docs/` reaches a file (and a heading, when it
//! names one), and the README stays short enough to read in one sitting.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The program sources: every crate's `src/`, without the unit tests at the end of a file.
fn program_sources() -> Vec<(PathBuf, String)> {
    let root = repo();
    let mut dirs = vec![root.join("shared/src"), root.join("cli/src"), root.join("agent/src")];
    dirs.push(root.join("credential-helper/src"));
    for entry in std::fs::read_dir(root.join("functions")).expect("functions/") {
        dirs.push(entry.expect("an entry").path().join("src"));
    }
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&dir, &mut files);
    }
    files
        .into_iter()
        .map(|path| {
            let text = read(&path);
            let program = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
            (path, program)
        })
        .collect()
}

/// Every `"BERTH_..."` (and `"RUST_LOG"`) string literal: the variables the programs read or
/// hand to the scripts they run.
fn variables_in(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (start, _) in source.match_indices("\"BERTH_").chain(source.match_indices("\"RUST_LOG\"")) {
        let rest = &source[start + 1..];
        let name: String =
            rest.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        if rest[name.len()..].starts_with('"') {
            found.insert(name);
        }
    }
    found
}

#[test]
fn the_configuration_page_names_every_variable_the_programs_read() {
    let page = read(&repo().join("docs/configuration.md"));
    let mut missing = Vec::new();
    let mut seen = 0;
    for (path, source) in program_sources() {
        for name in variables_in(&source) {
            seen += 1;
            if !page.contains(&format!("`{name}`")) {
                missing.push(format!("{name} (read in {})", path.strip_prefix(repo()).unwrap_or(&path).display()));
            }
        }
    }
    assert!(seen > 30, "the scan found only {seen} variables: it no longer sees the code");
    assert!(missing.is_empty(), "docs/configuration.md does not name: {missing:#?}");
}

#[test]
fn the_variable_scan_sees_literals_and_only_whole_names() {
    let found = variables_in(r#"env = "BERTH_URL", var("BERTH_X_2") "BERTH_PARTIAL-x" "RUST_LOG""#);
    let expected: BTreeSet<String> = ["BERTH_URL", "BERTH_X_2", "RUST_LOG"].map(String::from).into();
    assert_eq!(found, expected);
}

/// A heading's anchor as GitHub makes it: lowercase, punctuation dropped, spaces to hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The text outside fenced code blocks, line by line.
fn prose_lines(markdown: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(line);
        }
    }
    lines
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    prose_lines(markdown)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor_of(l.trim_start_matches('#')))
        .collect()
}

/// The targets of `[text](target)` links, outside code.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        // Inline code may hold `](` that is no link.
        let outside_code: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for (at, _) in outside_code.match_indices("](") {
            let rest = &outside_code[at + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].to_owned());
            }
        }
    }
    targets
}

fn markdown_pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).expect("docs/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in markdown_pages() {
        let text = read(&page);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if file.is_empty() { page.clone() } else { page.parent().expect("a folder").join(file) };
            if !resolved.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if !anchor.is_empty()
                && resolved.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&resolved)).contains(anchor)
            {
                broken.push(format!("{}: {target} (no such heading)", page.display()));
            }
        }
    }
    assert!(checked > 20, "only {checked} links checked: the scan no longer sees them");
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn headings_become_github_anchors() {
    assert_eq!(anchor_of(" Running on Lambda, another FaaS, and AWS"), "running-on-lambda-another-faas-and-aws");
    assert_eq!(anchor_of("Compute Nest's own API: the SDK"), "compute-nests-own-api-the-sdk");
    let targets = link_targets("see [a](x.md#b) and `[c](not-a-link)`\n```\n[d](nor-this)\n```\n");
    assert_eq!(targets, ["x.md#b"]);
}

#[test]
fn the_readme_is_short() {
    let lines = read(&repo().join("README.md")).lines().count();
    assert!(lines <= 150, "README.md has {lines} lines; move detail into docs/");
}

//! The crate's two layers, read from its sources: `platform` (plumbing) imports nothing of the
//! domain, and no import cycle joins its modules. A module is a file (a folder with `mod.rs`
//! is one module with its children); the units compared are `platform::X` for the platform
//! and each concept (`credentials`, `package`, `release`, ...) for the domain. `names` is the
//! leaf both layers stand on: it imports nothing.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The unit a source file belongs to: `platform::store`, `platform::http`, `release`, ...
fn unit_of(relative: &str) -> String {
    let mut parts: Vec<&str> = relative.trim_end_matches(".rs").split('/').collect();
    if parts.last() == Some(&"mod") {
        parts.pop();
    }
    match parts.as_slice() {
        ["platform", module, ..] => format!("platform::{module}"),
        [first, ..] => (*first).to_owned(),
        [] => unreachable!("a file has a name"),
    }
}

/// The units each unit's files name with `crate::...` (imports and paths alike, tests
/// included: a platform test that needs the domain belongs to the domain).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("the source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            if relative == "lib.rs" || !relative.ends_with(".rs") {
                continue;
            }
            let unit = unit_of(&relative);
            let text = std::fs::read_to_string(&path).expect("a source file");
            let named = graph.entry(unit.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let mut segments = rest.split("::").map(|s| {
                    let end = s.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(s.len());
                    &s[..end]
                });
                let first = segments.next().unwrap_or_default();
                let target = match first {
                    "platform" => format!("platform::{}", segments.next().unwrap_or_default()),
                    other => other.to_owned(),
                };
                if !target.is_empty() && target != unit && target != "platform::" {
                    named.insert(target);
                }
            }
        }
    }
    graph
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Edges that break the layering: the platform naming the domain, or `names` naming anything.
fn violations(graph: &Graph) -> Vec<String> {
    let mut wrong = Vec::new();
    for (unit, named) in graph {
        for target in named {
            let allowed = match unit.as_str() {
                "names" => false,
                u if u.starts_with("platform::") => target.starts_with("platform::") || target == "names",
                _ => true,
            };
            if !allowed {
                wrong.push(format!("{unit} -> {target}"));
            }
        }
    }
    wrong
}

/// A cycle of imports, if there is one (depth-first search for a back edge).
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'a>(
        unit: &'a str,
        graph: &'a Graph,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|u| *u == unit) {
            let mut found: Vec<String> = path[at..].iter().map(|u| (*u).to_owned()).collect();
            found.push(unit.to_owned());
            return Some(found);
        }
        if !done.insert(unit) {
            return None;
        }
        path.push(unit);
        for next in graph.get(unit).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|unit| visit(unit, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_platform_imports_nothing_of_the_domain() {
    let graph = imports();
    assert!(graph.contains_key("platform::store") && graph.contains_key("release"), "the sources were read");
    assert!(graph["render"].contains("template"), "imports are read: {:?}", graph["render"]);
    let wrong = violations(&graph);
    assert!(wrong.is_empty(), "the platform (and names) must not import the domain: {wrong:?}");
}

#[test]
fn no_import_cycle_joins_the_modules() {
    if let Some(found) = cycle(&imports()) {
        panic!("import cycle: {}", found.join(" -> "));
    }
}

#[test]
fn planted_violations_and_cycles_are_found() {
    assert_eq!(unit_of("platform/http/error.rs"), "platform::http");
    assert_eq!(unit_of("release/mod.rs"), "release");
    let graph: Graph =
        [("platform::http", vec!["template", "names"]), ("template", vec!["platform::http"]), ("names", vec![])]
            .into_iter()
            .map(|(u, t)| (u.to_owned(), t.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(violations(&graph), ["platform::http -> template"]);
    assert_eq!(cycle(&graph).unwrap(), ["platform::http", "template", "platform::http"]);
}

/// The files of one folder of the crate (`credentials`) and the files of that folder each names
/// with `crate::FOLDER::FILE` (a file is `FOLDER::FILE`; `mod.rs`, the folder's front, is left
/// out).
fn file_imports(folder: &str) -> Graph {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(folder);
    let mut texts = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("the folder") {
        let path = entry.expect("an entry").path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && stem != "mod" {
            texts.insert(format!("{folder}::{stem}"), std::fs::read_to_string(&path).expect("a source file"));
        }
    }
    let needle = format!("crate::{folder}::");
    let mut graph = Graph::new();
    for (unit, text) in &texts {
        let named = graph.entry(unit.clone()).or_default();
        for (at, _) in text.match_indices(&needle) {
            let rest = &text[at + needle.len()..];
            // `crate::credentials::scope::...` or `crate::credentials::{scope, temporary_key::X}`.
            let names = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').map(str::trim).collect(),
                None => vec![rest],
            };
            for name in names {
                let end = name.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(name.len());
                let target = format!("{folder}::{}", &name[..end]);
                if texts.contains_key(&target) && &target != unit {
                    named.insert(target);
                }
            }
        }
    }
    graph
}

#[test]
fn no_import_cycle_joins_the_files_of_the_credentials() {
    let graph = file_imports("credentials");
    assert!(graph["credentials::scope"].contains("credentials::temporary_key"), "imports are read: {graph:?}");
    if let Some(found) = cycle(&graph) {
        panic!("import cycle: {}", found.join(" -> "));
    }
}

//! Byte-for-byte snapshots of parts of a local file store (`file://DATA/store`), to prove
//! that something did not change: every document under the given folders, and given single
//! documents (recorded as absent when they are not there).
//!
//! The file store keeps its OS locks in `store/.locks/` (never under a document's folder) and
//! stages each write as `.{uuid}.tmp` beside the document before renaming it; both are left
//! out, as neither is a document.

use std::collections::BTreeMap;
use std::path::Path;

/// Relative path (from the store's root, `/`-separated) → the document's bytes, or `None`
/// for a document asked for by name that does not exist.
pub type Snapshot = BTreeMap<String, Option<Vec<u8>>>;

/// Whether a file name is the store's own bookkeeping rather than a document.
fn is_bookkeeping(name: &str) -> bool {
    name == ".locks" || (name.starts_with('.') && name.ends_with(".tmp")) || name.ends_with(".lock")
}

/// Every document under each folder of `folders` and each single document of `documents`
/// (all relative to `store`). A folder that does not exist contributes nothing.
pub fn take(store: &Path, folders: &[String], documents: &[String]) -> Snapshot {
    let mut snapshot = Snapshot::new();
    for folder in folders {
        walk(store, &store.join(folder), &mut snapshot);
    }
    for document in documents {
        let bytes = std::fs::read(store.join(document)).ok();
        snapshot.insert(document.clone(), bytes);
    }
    snapshot
}

fn walk(store: &Path, dir: &Path, into: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_bookkeeping(&name) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(store, &path, into);
        } else {
            let relative = path.strip_prefix(store).expect("under the store").to_string_lossy().replace('\\', "/");
            // A file removed between listing and reading is a change the diff reports.
            into.insert(relative, std::fs::read(&path).ok());
        }
    }
}

/// Documents present in the snapshot (not counting named documents that are absent).
pub fn documents(snapshot: &Snapshot) -> usize {
    snapshot.values().filter(|v| v.is_some()).count()
}

/// What differs between two snapshots, one line per document: added, removed or changed
/// (with both contents, shortened, when they are text).
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let shown = |bytes: &Option<Vec<u8>>| match bytes {
        None => "<absent>".to_owned(),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let mut short: String = text.chars().take(400).collect();
            if short.len() < text.len() {
                short.push_str("...");
            }
            short
        }
    };
    let mut changes = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => changes.push(format!("removed {path}: was {}", shown(old))),
            Some(new) if new != old => changes.push(format!("changed {path}: {} -> {}", shown(old), shown(new))),
            Some(_) => {}
        }
    }
    for (path, new) in after {
        if !before.contains_key(path) {
            changes.push(format!("added {path}: {}", shown(new)));
        }
    }
    changes
}

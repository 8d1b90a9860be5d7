//! The `file://` store's writes: `LocalFileSystem` has no `PutMode::Update`, so every write
//! takes an OS file lock beside the document, compares the content digest it was given, and
//! replaces the file by rename.

use std::path::PathBuf;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::{StoreError, Version, backend, content_version};
use crate::platform::digest::sha256_hex;

/// What a local write expects to find.
pub(super) enum Expect {
    /// Nothing: a create.
    Absent,
    /// The document at this version: a swap.
    At(Version),
    /// Whatever is there: a put or a delete.
    Anything,
}

/// Every local write (create, swap, put, delete) under its document's lock, off the async
/// threads: the file calls block.
pub(super) async fn local_write(
    store: &LocalFileSystem,
    locks: &std::path::Path,
    location: &Path,
    path: &str,
    expect: Expect,
    bytes: Option<Bytes>,
) -> Result<Version, StoreError> {
    crate::platform::metrics::store::count(if bytes.is_some() { "put" } else { "delete" });
    let file = store.path_to_filesystem(location).map_err(backend)?;
    let lock = lock_path(locks, path);
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || local_swap(&file, &lock, &path, expect, bytes.as_deref()))
        .await
        .map_err(StoreError::Interrupted)?
}

/// The locked read-compare-write of the local store; `bytes: None` deletes. An acknowledged
/// write is on disk: the staged bytes are synced before the rename, and the directory after it,
/// so a power loss leaves the old document or the new one, never an empty or torn one.
fn local_swap(
    file: &std::path::Path,
    lock: &std::path::Path,
    path: &str,
    expect: Expect,
    bytes: Option<&[u8]>,
) -> Result<Version, StoreError> {
    let io = |source: std::io::Error| StoreError::Io { path: path.to_owned(), source };
    let guard = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock).map_err(io)?;
    guard.lock().map_err(io)?;
    match expect {
        Expect::Absent if file.exists() => return Err(StoreError::AlreadyExists(path.to_owned())),
        Expect::At(expected) => {
            let current = match std::fs::read(file) {
                Ok(current) => current,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::NotFound(path.to_owned()));
                }
                Err(e) => return Err(io(e)),
            };
            if content_version(&current) != expected {
                return Err(StoreError::Conflict(path.to_owned()));
            }
        }
        _ => {}
    }
    let parent = file.parent().ok_or_else(|| StoreError::Backend(format!("{path}: no parent directory")))?;
    let Some(bytes) = bytes else {
        return match std::fs::remove_file(file) {
            Ok(()) => sync_directory(parent).map(|()| content_version(&[])).map_err(io),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(content_version(&[])),
            Err(e) => Err(io(e)),
        };
    };
    if !parent.is_dir() {
        std::fs::create_dir_all(parent).map_err(io)?;
        // The new folders' own entries, up to one that already was there.
        let mut folder = parent;
        while let Some(above) = folder.parent() {
            sync_directory(above).map_err(io)?;
            if above.join(".locks").is_dir() || above.parent().is_none() {
                break;
            }
            folder = above;
        }
    }
    // The temporary name does not end in `.json`, so listings never see it.
    let staging = parent.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let mut staged = std::fs::File::create(&staging).map_err(io)?;
    std::io::Write::write_all(&mut staged, bytes).map_err(io)?;
    staged.sync_all().map_err(io)?;
    drop(staged);
    std::fs::rename(&staging, file).map_err(io)?;
    sync_directory(parent).map_err(io)?;
    drop(guard);
    Ok(content_version(bytes))
}

fn sync_directory(folder: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

/// How many lock files the local store keeps at most: documents share them by the first hex
/// digits of their path's digest (one lock is held at a time, so sharing cannot deadlock).
pub const LOCK_STRIPES: usize = 4096;

fn lock_path(locks: &std::path::Path, path: &str) -> PathBuf {
    let digest = sha256_hex(path.as_bytes());
    locks.join(format!("{}.lock", digest.get(..3).unwrap_or_default()))
}

/// Removes `.*.tmp` staging files older than `age` below `root` (a crashed writer's).
pub(super) fn remove_stale_staging(root: &std::path::Path, age: std::time::Duration) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                pending.push(path);
            } else if name.starts_with('.')
                && name.ends_with(".tmp")
                && entry.metadata().and_then(|m| m.modified()).is_ok_and(|at| at.elapsed().is_ok_and(|e| e >= age))
            {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::store::DocumentStore;

    #[test]
    fn documents_share_a_bounded_number_of_lock_files() {
        let locks = std::path::Path::new("/locks");
        let files: std::collections::BTreeSet<PathBuf> =
            (0..50_000).map(|i| lock_path(locks, &format!("accounts/a/packages/p{i}.json"))).collect();
        assert!(files.len() <= LOCK_STRIPES, "{}", files.len());
        assert!(files.len() > LOCK_STRIPES / 2, "the stripes are used: {}", files.len());
    }

    #[tokio::test]
    async fn a_crashed_writers_staging_files_are_removed_at_open_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("accounts/acme");
        std::fs::create_dir_all(&folder).unwrap();
        let stale = folder.join(".dead-writer.tmp");
        let fresh = folder.join(".live-writer.tmp");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&fresh, b"half").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
        let store = DocumentStore::local(root.path().to_path_buf()).unwrap();
        assert!(!stale.exists() && fresh.exists());
        // Creates go through the lock too: one winner, and the loser sees AlreadyExists.
        store.create("accounts/acme/x.json", &1).await.unwrap();
        assert!(matches!(store.create("accounts/acme/x.json", &2).await, Err(StoreError::AlreadyExists(_))));
        assert_eq!(store.get::<i32>("accounts/acme/x.json").await.unwrap().unwrap().value, 1);
    }
}

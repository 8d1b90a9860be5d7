//! Typed JSON documents over `object_store`, with conditional create and compare-and-swap.
//!
//! S3 (and S3-compatible stores) and `memory://` do compare-and-swap natively (`If-Match`).
//! `LocalFileSystem` has no `PutMode::Update`, so for `file://` an update takes an OS file
//! lock beside the document, compares the content digest it was given, and replaces the
//! file by rename. That is correct across threads and processes sharing one data directory.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::platform::config::{S3Settings, StoreLocation};
use crate::platform::digest::sha256_hex;
use crate::platform::metrics::store::MeteredStore;

/// How many times [`DocumentStore::modify`] retries a lost compare-and-swap before giving up.
pub const MODIFY_ATTEMPTS: usize = 64;
/// Largest document the store will read or write.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// Errors of the document store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No document at the path.
    #[error("{0} not found")]
    NotFound(String),
    /// Conditional create found a document already there.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Compare-and-swap lost: the document changed since it was read.
    #[error("{0} changed since it was read")]
    Conflict(String),
    /// The document is not valid JSON of the expected type, or is too large.
    #[error("{path} is not a valid document: {reason}")]
    Corrupt {
        path: String,
        /// Why.
        reason: String,
    },
    /// The backing store failed.
    #[error("object store: {0}")]
    Backend(String),
}

/// The version of a stored document, opaque to callers: an e-tag, or for `file://`
/// the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document with the version it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The document.
    pub value: T,
    /// Pass this to [`DocumentStore::update`].
    pub version: Version,
}

#[derive(Clone)]
enum Swap {
    /// The store supports `PutMode::Update` itself.
    Native,
    /// Local filesystem: lock file + digest compare + rename.
    Local { store: Arc<LocalFileSystem>, locks: PathBuf },
}

/// A store of JSON documents addressed by `/`-separated paths.
#[derive(Clone)]
pub struct DocumentStore {
    inner: Arc<dyn ObjectStore>,
    swap: Swap,
    label: &'static str,
}

impl fmt::Debug for DocumentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocumentStore").field("backend", &self.label).finish()
    }
}

impl DocumentStore {
    /// Opens the store a [`StoreLocation`] names.
    pub fn open(location: &StoreLocation, s3: &S3Settings) -> Result<Self, StoreError> {
        match location {
            StoreLocation::Memory => Ok(Self::in_memory()),
            StoreLocation::File(root) => Self::local(root.clone()),
            StoreLocation::S3 { bucket } => {
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).with_region(&s3.region);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                let store = builder.build().map_err(|e| StoreError::Backend(e.to_string()))?;
                Ok(Self { inner: MeteredStore::wrap(Arc::new(store)), swap: Swap::Native, label: "s3" })
            }
        }
    }

    /// A store over any `ObjectStore` that implements `PutMode::Update` itself
    /// (S3 and S3-compatible stores, GCS, Azure, `InMemory`).
    pub fn with_native_swap(store: Arc<dyn ObjectStore>) -> Self {
        Self { inner: MeteredStore::wrap(store), swap: Swap::Native, label: "object store" }
    }

    /// A fresh in-memory store.
    pub fn in_memory() -> Self {
        Self { inner: MeteredStore::wrap(Arc::new(InMemory::new())), swap: Swap::Native, label: "memory" }
    }

    /// A store under a local directory, created if missing. Staging files that a crashed
    /// writer left (older than a minute, so never a live writer's) are removed.
    pub fn local(root: PathBuf) -> Result<Self, StoreError> {
        let locks = root.join(".locks");
        std::fs::create_dir_all(&locks)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", locks.display())))?;
        remove_stale_staging(&root, std::time::Duration::from_secs(60));
        let store = Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(|e| StoreError::Backend(e.to_string()))?);
        Ok(Self { inner: MeteredStore::wrap(store.clone()), swap: Swap::Local { store, locks }, label: "file" })
    }

    /// Reads a document, or `None` if there is none.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let location = parse_path(path)?;
        let result = match self.inner.get(&location).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let e_tag = result.meta.e_tag.clone();
        let bytes = result.bytes().await.map_err(backend)?;
        let version = match self.swap {
            Swap::Native => Version(e_tag.ok_or_else(|| StoreError::Backend("store returned no e-tag".into()))?),
            Swap::Local { .. } => content_version(&bytes),
        };
        Ok(Some(Versioned { value: decode(path, &bytes)?, version }))
    }

    /// Creates a document; fails with [`StoreError::AlreadyExists`] if one is there.
    pub async fn create<T: Serialize>(&self, path: &str, value: &T) -> Result<Version, StoreError> {
        let location = parse_path(path)?;
        let bytes = encode(path, value)?;
        if let Swap::Local { store, locks } = &self.swap {
            return local_write(store, locks, &location, path, Expect::Absent, Some(bytes)).await;
        }
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.inner.put_opts(&location, PutPayload::from(bytes.clone()), options).await {
            Ok(result) => self.version_after_put(result.e_tag, &bytes, &location).await,
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                Err(StoreError::AlreadyExists(path.to_owned()))
            }
            Err(e) => Err(backend(e)),
        }
    }

    /// Replaces a document only if it is still at `expected`; fails with
    /// [`StoreError::Conflict`] otherwise.
    pub async fn update<T: Serialize>(&self, path: &str, value: &T, expected: &Version) -> Result<Version, StoreError> {
        let location = parse_path(path)?;
        let bytes = encode(path, value)?;
        match &self.swap {
            Swap::Native => {
                let mode = PutMode::Update(UpdateVersion { e_tag: Some(expected.0.clone()), version: None });
                let options = PutOptions { mode, ..Default::default() };
                match self.inner.put_opts(&location, PutPayload::from(bytes.clone()), options).await {
                    Ok(result) => self.version_after_put(result.e_tag, &bytes, &location).await,
                    Err(object_store::Error::Precondition { .. }) => Err(StoreError::Conflict(path.to_owned())),
                    Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(path.to_owned())),
                    Err(e) => Err(backend(e)),
                }
            }
            Swap::Local { store, locks } => {
                local_write(store, locks, &location, path, Expect::At(expected.clone()), Some(bytes)).await
            }
        }
    }

    /// Writes a document whatever is there. Use only for documents with a single writer.
    pub async fn put<T: Serialize>(&self, path: &str, value: &T) -> Result<Version, StoreError> {
        let location = parse_path(path)?;
        let bytes = encode(path, value)?;
        if let Swap::Local { store, locks } = &self.swap {
            return local_write(store, locks, &location, path, Expect::Anything, Some(bytes)).await;
        }
        let result = self.inner.put(&location, PutPayload::from(bytes.clone())).await.map_err(backend)?;
        self.version_after_put(result.e_tag, &bytes, &location).await
    }

    /// Deletes a document; deleting a missing one is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        let location = parse_path(path)?;
        if let Swap::Local { store, locks } = &self.swap {
            return local_write(store, locks, &location, path, Expect::Anything, None).await.map(|_| ());
        }
        match self.inner.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// Writes raw bytes (an uploaded file) at `path`, replacing what is there. Paths of raw
    /// objects must not end in `.json`, so document listings never see them.
    pub async fn put_object(&self, path: &str, bytes: Bytes) -> Result<(), StoreError> {
        let location = parse_path(path)?;
        self.inner.put(&location, PutPayload::from(bytes)).await.map_err(backend)?;
        Ok(())
    }

    /// Reads raw bytes written by [`DocumentStore::put_object`], or `None`.
    pub async fn get_object(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        let location = parse_path(path)?;
        match self.inner.get(&location).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(backend)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// Deletes a raw object; a missing one is not an error.
    pub async fn delete_object(&self, path: &str) -> Result<(), StoreError> {
        let location = parse_path(path)?;
        match self.inner.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// Paths of the documents under `prefix` (a folder), sorted.
    pub async fn list_paths(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let location = parse_path(prefix)?;
        let mut paths: Vec<String> = self
            .inner
            .list(Some(&location))
            .map_ok(|meta| meta.location.to_string())
            .try_filter(|p| futures::future::ready(p.ends_with(".json")))
            .try_collect()
            .await
            .map_err(backend)?;
        paths.sort();
        Ok(paths)
    }

    /// The names of the folders directly under `prefix` (not their contents), sorted: one
    /// listing call however much each folder holds.
    pub async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let location = parse_path(prefix)?;
        let listed = match self.inner.list_with_delimiter(Some(&location)).await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut names: Vec<String> =
            listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        names.sort();
        Ok(names)
    }

    /// The documents under `prefix`, sorted by path. Documents deleted while listing are skipped.
    pub async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, Versioned<T>)>, StoreError> {
        let paths = self.list_paths(prefix).await?;
        let documents: Vec<Option<(String, Versioned<T>)>> = futures::stream::iter(paths)
            .map(|path| async move { Ok::<_, StoreError>(self.get(&path).await?.map(|doc| (path, doc))) })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(documents.into_iter().flatten().collect())
    }

    /// Read-modify-write with compare-and-swap, retried while other writers win.
    /// `change` sees the current document (or `None`) and returns the new one, or an error
    /// that aborts without writing.
    pub async fn modify<T, E, F>(&self, path: &str, mut change: F) -> Result<Versioned<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<StoreError>,
        F: FnMut(Option<T>) -> Result<T, E>,
    {
        for attempt in 0..MODIFY_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let current = self.get::<T>(path).await?;
            let (value, version) = match current {
                Some(doc) => (Some(doc.value), Some(doc.version)),
                None => (None, None),
            };
            let next = change(value)?;
            let written = match &version {
                Some(version) => self.update(path, &next, version).await,
                None => self.create(path, &next).await,
            };
            match written {
                Ok(version) => return Ok(Versioned { value: next, version }),
                Err(StoreError::Conflict(_) | StoreError::AlreadyExists(_) | StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(path.to_owned()).into())
    }

    async fn version_after_put(
        &self,
        e_tag: Option<String>,
        bytes: &[u8],
        location: &Path,
    ) -> Result<Version, StoreError> {
        match (&self.swap, e_tag) {
            (Swap::Local { .. }, _) => Ok(content_version(bytes)),
            (Swap::Native, Some(tag)) => Ok(Version(tag)),
            (Swap::Native, None) => {
                let meta = self.inner.head(location).await.map_err(backend)?;
                meta.e_tag.map(Version).ok_or_else(|| StoreError::Backend("store returned no e-tag".into()))
            }
        }
    }
}

/// Waits a random time that grows with the attempt (up to ~64 ms), so contending writers
/// spread out instead of colliding again.
async fn backoff(attempt: usize) {
    let mut random = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut random);
    let ceiling_us = 1000u64 << attempt.min(6);
    let wait = u64::from(u16::from_le_bytes(random)) * ceiling_us / u64::from(u16::MAX);
    tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
}

/// What a local write expects to find.
enum Expect {
    /// Nothing: a create.
    Absent,
    /// The document at this version: a swap.
    At(Version),
    /// Whatever is there: a put or a delete.
    Anything,
}

/// Every local write (create, swap, put, delete) under its document's lock, off the async
/// threads: the file calls block.
async fn local_write(
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
        .map_err(|e| StoreError::Backend(e.to_string()))?
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
    let io = |e: std::io::Error| StoreError::Backend(format!("{path}: {e}"));
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
fn remove_stale_staging(root: &std::path::Path, age: std::time::Duration) {
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

fn content_version(bytes: &[u8]) -> Version {
    Version(format!("sha256:{}", sha256_hex(bytes)))
}

fn parse_path(path: &str) -> Result<Path, StoreError> {
    Path::parse(path).map_err(|e| StoreError::Corrupt { path: path.to_owned(), reason: e.to_string() })
}

fn encode<T: Serialize>(path: &str, value: &T) -> Result<Bytes, StoreError> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| StoreError::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
        });
    }
    Ok(Bytes::from(bytes))
}

fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { path: path.to_owned(), reason: e.to_string() })
}

fn backend(error: object_store::Error) -> StoreError {
    match error {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
        other => StoreError::Backend(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

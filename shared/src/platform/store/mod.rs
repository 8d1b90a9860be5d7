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

mod local;

pub use local::LOCK_STRIPES;
use local::{Expect, local_write, remove_stale_staging};

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
    /// The document is not what it should be, for the reason given.
    #[error("{path} is not a valid document: {reason}")]
    Corrupt {
        path: String,
        /// Why.
        reason: String,
    },
    /// The document is not JSON of the expected type.
    #[error("{path} is not a valid document: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The document is over [`MAX_DOCUMENT_BYTES`].
    #[error("{path} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { path: String },
    /// The path is not one the store can hold.
    #[error("'{path}' is not a store path: {source}")]
    InvalidPath {
        path: String,
        #[source]
        source: object_store::path::Error,
    },
    /// The object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[source] object_store::Error),
    /// The local store's files failed.
    #[error("object store: {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A local write's blocking task did not finish (it panicked).
    #[error("object store: a local write did not finish: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
    /// The backing store failed in a way it described in words.
    #[error("object store: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the backing store failed (a caller may retry later), rather than the document,
    /// its path or the compare-and-swap.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::ObjectStore(_) | Self::Io { .. } | Self::Interrupted(_) | Self::Backend(_))
    }
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
                // Its HTTP client is built on first use: not in the function's cold start.
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(&s3.region)
                    .with_http_connector(crate::platform::deferred_http::DeferredConnector);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                let store = builder.build().map_err(StoreError::ObjectStore)?;
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
            .map_err(|source| StoreError::Io { path: locks.display().to_string(), source })?;
        remove_stale_staging(&root, std::time::Duration::from_secs(60));
        let store = Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(StoreError::ObjectStore)?);
        Ok(Self { inner: MeteredStore::wrap(store.clone()), swap: Swap::Local { store, locks }, label: "file" })
    }

    /// Reads a document, or `None` if there is none.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let Some((bytes, version)) = self.read(path).await? else { return Ok(None) };
        Ok(Some(Versioned { value: decode(path, &bytes)?, version }))
    }

    /// A document's bytes and version. The reads and writes below keep what does not depend on
    /// the document's type out of the generic methods: compiled once, not once per type (27
    /// copies of a read in `berth`).
    async fn read(&self, path: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
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
        Ok(Some((bytes, version)))
    }

    /// Creates a document; fails with [`StoreError::AlreadyExists`] if one is there.
    pub async fn create<T: Serialize>(&self, path: &str, value: &T) -> Result<Version, StoreError> {
        self.create_bytes(path, encode(path, value)?).await
    }

    async fn create_bytes(&self, path: &str, bytes: Bytes) -> Result<Version, StoreError> {
        let location = parse_path(path)?;
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
        self.update_bytes(path, encode(path, value)?, expected).await
    }

    async fn update_bytes(&self, path: &str, bytes: Bytes, expected: &Version) -> Result<Version, StoreError> {
        let location = parse_path(path)?;
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
        self.put_bytes(path, encode(path, value)?).await
    }

    async fn put_bytes(&self, path: &str, bytes: Bytes) -> Result<Version, StoreError> {
        let location = parse_path(path)?;
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
    pub async fn modify<T, E, F>(&self, path: &str, change: F) -> Result<Versioned<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<StoreError>,
        F: FnMut(Option<T>) -> Result<T, E>,
    {
        self.modify_from(path, None, change).await
    }

    /// [`Self::modify`], starting from a document the caller has just read (one read fewer
    /// when no one wrote it since; read again if someone did).
    pub async fn modify_from<T, E, F>(
        &self,
        path: &str,
        read: Option<Versioned<T>>,
        mut change: F,
    ) -> Result<Versioned<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<StoreError>,
        F: FnMut(Option<T>) -> Result<T, E>,
    {
        let mut read = read;
        for attempt in 0..MODIFY_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let current = match read.take() {
                Some(doc) => Some(doc),
                None => self.get::<T>(path).await?,
            };
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

fn content_version(bytes: &[u8]) -> Version {
    Version(format!("sha256:{}", sha256_hex(bytes)))
}

fn parse_path(path: &str) -> Result<Path, StoreError> {
    Path::parse(path).map_err(|source| StoreError::InvalidPath { path: path.to_owned(), source })
}

fn encode<T: Serialize>(path: &str, value: &T) -> Result<Bytes, StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Json { path: path.to_owned(), source })?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(StoreError::TooLarge { path: path.to_owned() });
    }
    Ok(Bytes::from(bytes))
}

fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Json { path: path.to_owned(), source })
}

fn backend(error: object_store::Error) -> StoreError {
    match error {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
        other => StoreError::ObjectStore(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_modify_from_a_stale_read_reads_again_and_loses_no_write() {
        let dir = tempfile::tempdir().unwrap();
        for store in [DocumentStore::in_memory(), DocumentStore::local(dir.path().to_path_buf()).unwrap()] {
            store.put("a.json", &1).await.unwrap();
            let stale = store.get::<i32>("a.json").await.unwrap();
            store.put("a.json", &5).await.unwrap();
            let mut seen = Vec::new();
            let add = |seen: &mut Vec<Option<i32>>, v: Option<i32>| {
                seen.push(v);
                Ok::<_, StoreError>(v.unwrap_or(0) + 1)
            };
            let done = store.modify_from("a.json", stale, |v| add(&mut seen, v)).await.unwrap();
            assert_eq!((done.value, &seen[..]), (6, &[Some(1), Some(5)][..]), "the write lost to another, then read");
            // From a current read, the change sees that read and writes once.
            let current = store.get::<i32>("a.json").await.unwrap();
            seen.clear();
            let done = store.modify_from("a.json", current, |v| add(&mut seen, v)).await.unwrap();
            assert_eq!((done.value, &seen[..]), (7, &[Some(6)][..]));
            assert_eq!(store.get::<i32>("a.json").await.unwrap().map(|d| d.value), Some(7));
        }
    }
}

//! Who uses a store with an in-process queue. Events of such a queue are seen by its process
//! only, so two `berth serve` processes on one store, each with its own, leave an event of a
//! process that died waiting for the other's sweep (minutes). A process with an in-process
//! queue holds a lease in the store, renewed every few seconds; another one, from another data
//! directory, is refused at start while the lease is fresh: share an SQS queue instead.

use std::time::Duration;

use berth_shared::platform::clock::unix_now;
use berth_shared::platform::store::{DocumentStore, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The lease's document.
const PATH: &str = "serve/in-process-queue.json";
/// How often the holder renews it.
const RENEW: Duration = Duration::from_secs(5);
/// A lease not renewed for this long is free (its holder was killed).
const STALE_SECONDS: u64 = 20;

#[derive(Serialize, Deserialize)]
struct Lease {
    /// `host:data-dir` of the process holding it.
    owner: String,
    at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "another berth serve ({0}) uses this store with its own in-process queue: each would see only its own events. \
         Give every process on a shared store the same SQS queue (BERTH_QUEUE_URL), or a store of its own"
    )]
    Shared(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Takes (or renews) the lease for `owner`, unless another owner renewed it lately.
async fn take(store: &DocumentStore, owner: &str) -> Result<(), LeaseError> {
    let now = unix_now();
    store
        .modify::<Lease, LeaseError, _>(PATH, |current| match current {
            Some(lease) if lease.owner != owner && now.saturating_sub(lease.at) < STALE_SECONDS => {
                Err(LeaseError::Shared(lease.owner))
            }
            _ => Ok(Lease { owner: owner.to_owned(), at: now }),
        })
        .await
        .map(|_| ())
}

/// Takes the lease and keeps renewing it until `shutdown`, then gives it back (the task ends
/// once it did).
pub async fn hold(
    store: DocumentStore,
    owner: String,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, LeaseError> {
    take(&store, &owner).await?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RENEW) => {}
            }
            if let Err(e) = take(&store, &owner).await {
                tracing::error!(error = %e, "the in-process queue's lease on the store");
            }
        }
        if let Ok(Some(lease)) = store.get::<Lease>(PATH).await
            && lease.value.owner == owner
        {
            let _ = store.delete(PATH).await;
        }
    }))
}

/// This process as a lease owner: the host and the data directory (a restart after `kill -9`
/// is the same owner).
pub fn owner(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{}:{}", host.trim(), dir.display())
}

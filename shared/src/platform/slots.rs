//! A limit that holds under concurrency: `limit` slot documents (`PREFIX/{i}.json`), each
//! held by at most one holder. A slot is taken by a conditional create, or by a compare-and-swap
//! of a freed slot (or of one whose holder is gone), so racing takers never share a slot and
//! never number more than `limit`, in one process or many. Counting first and creating second
//! let 20 racing creates all pass a limit of 10.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::platform::store::{DocumentStore, StoreError, Version};

/// How long a slot whose holder is not there yet is left alone: its taker writes the holder
/// just after taking it.
pub const ORPHAN_AFTER_SECONDS: u64 = 60;

/// One slot: who holds it, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The holder's id; `None` once freed.
    pub holder: Option<String>,
    /// When it was taken or freed (seconds since the epoch).
    pub at: u64,
}

/// What a taker learns of a held slot's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// It holds the slot and counts toward the limit.
    Counts,
    /// It no longer counts (revoked, expired, deleted): its slot may be taken.
    Gone,
    /// It does not exist (yet): its slot may be taken once older than [`ORPHAN_AFTER_SECONDS`].
    Missing,
}

fn slot_path(prefix: &str, index: usize) -> String {
    format!("{prefix}/{index}.json")
}

/// Takes a free slot under `prefix` for `holder`, starting the search at `start` (spread racing
/// takers), and answers its index; `None` when all `limit` slots are held by holders that
/// count. `holder_state` says whether a slot's holder still counts.
pub async fn take<F, Fut>(
    store: &DocumentStore,
    prefix: &str,
    limit: usize,
    start: usize,
    holder: &str,
    now: u64,
    mut holder_state: F,
) -> Result<Option<usize>, StoreError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Holder, StoreError>>,
{
    let mine = Slot { holder: Some(holder.to_owned()), at: now };
    for step in 0..limit {
        let index = (start + step) % limit.max(1);
        let path = slot_path(prefix, index);
        let Some(current) = store.get::<Slot>(&path).await? else {
            match store.create(&path, &mine).await {
                Ok(_) => return Ok(Some(index)),
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e),
            }
        };
        let takeable = match &current.value.holder {
            None => true,
            Some(other) => match holder_state(other.clone()).await? {
                Holder::Counts => false,
                Holder::Gone => true,
                Holder::Missing => now.saturating_sub(current.value.at) >= ORPHAN_AFTER_SECONDS,
            },
        };
        if takeable {
            match store.update(&path, &mine, &current.version).await {
                Ok(_) => return Ok(Some(index)),
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

/// Frees slot `index` if `holder` still holds it (a compare-and-swap: a slot taken over since is
/// left to its new holder).
pub async fn free(store: &DocumentStore, prefix: &str, index: usize, holder: &str, now: u64) -> Result<(), StoreError> {
    let path = slot_path(prefix, index);
    for _ in 0..8 {
        let Some(current) = store.get::<Slot>(&path).await? else { return Ok(()) };
        if current.value.holder.as_deref() != Some(holder) {
            return Ok(());
        }
        let version: Version = current.version;
        match store.update(&path, &Slot { holder: None, at: now }, &version).await {
            Ok(_) | Err(StoreError::NotFound(_)) => return Ok(()),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict(path))
}

/// A start index for `holder`'s search, spread over `limit` (so racing takers rarely probe the
/// same slots in the same order).
pub fn start_for(holder: &str, limit: usize) -> usize {
    let digest = crate::platform::digest::sha256_hex(holder.as_bytes());
    usize::from_str_radix(digest.get(..8).unwrap_or_default(), 16).unwrap_or(0) % limit.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn racing_takers_never_pass_the_limit_and_freed_or_gone_slots_are_taken_again() {
        let store = DocumentStore::in_memory();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let holder = format!("h{i}");
                    let start = start_for(&holder, 10);
                    take(&store, "slots", 10, start, &holder, 1000, |_| async { Ok(Holder::Counts) }).await.unwrap()
                })
            })
            .collect();
        let mut taken: Vec<usize> = Vec::new();
        for task in tasks {
            taken.extend(task.await.unwrap());
        }
        taken.sort_unstable();
        assert_eq!(taken, (0..10).collect::<Vec<_>>(), "ten takers, one slot each");
        let holder_of = |i| {
            let store = store.clone();
            async move { store.get::<Slot>(&slot_path("slots", i)).await.unwrap().unwrap().value.holder.unwrap() }
        };
        let first = holder_of(3).await;
        free(&store, "slots", 3, "someone-else", 1001).await.unwrap();
        let full = take(&store, "slots", 10, 0, "late", 1001, |_| async { Ok(Holder::Counts) }).await.unwrap();
        assert_eq!(full, None, "freeing by another holder changed nothing");
        free(&store, "slots", 3, &first, 1001).await.unwrap();
        assert_eq!(
            take(&store, "slots", 10, 0, "late", 1001, |_| async { Ok(Holder::Counts) }).await.unwrap(),
            Some(3)
        );
        // A missing holder's slot waits out the orphan delay; a gone one's is taken at once.
        let missing = |_| async { Ok(Holder::Missing) };
        assert_eq!(take(&store, "slots", 10, 0, "next", 1030, missing).await.unwrap(), None);
        assert!(take(&store, "slots", 10, 0, "next", 1000 + ORPHAN_AFTER_SECONDS, missing).await.unwrap().is_some());
        assert!(take(&store, "slots", 10, 0, "again", 1001, |_| async { Ok(Holder::Gone) }).await.unwrap().is_some());
    }
}

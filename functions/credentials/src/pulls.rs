//! Who pulled what: the token endpoint counts, per instance, the repositories each registry
//! token grants pull on and the time of the newest, in memory, and writes them at most once per
//! flush interval (`BERTH_PULL_FLUSH_SECONDS`) per instance, never a store write per token.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use berth_shared::platform::clock::rfc3339;
use berth_shared::platform::store::{DocumentStore, StoreError};
use berth_shared::service::instance::InstancePulls;
use parking_lot::Mutex;

/// Counts not yet written, per pulls document.
#[derive(Default)]
struct Pending {
    counts: BTreeMap<String, u64>,
    last_pull: u64,
    last_flush: Option<Instant>,
}

/// The aggregator of one process.
pub struct PullCounter {
    store: DocumentStore,
    interval: Duration,
    pending: Mutex<HashMap<String, Pending>>,
    ticker: OnceLock<()>,
}

impl PullCounter {
    /// A counter writing to `store` at most once per `interval` per instance.
    pub fn new(store: DocumentStore, interval: Duration) -> Arc<Self> {
        Arc::new(Self { store, interval, pending: Mutex::new(HashMap::new()), ticker: OnceLock::new() })
    }

    /// Records a token granting pull on `repositories` for the instance whose pulls document is
    /// `path`. Writes at once if the instance's last write is an interval old; else the ticker will.
    pub fn record(self: &Arc<Self>, path: &str, repositories: impl IntoIterator<Item = String>, now: u64) {
        let due = {
            let mut pending = self.pending.lock();
            let entry = pending.entry(path.to_owned()).or_default();
            for repository in repositories {
                *entry.counts.entry(repository).or_default() += 1;
            }
            entry.last_pull = entry.last_pull.max(now);
            take_if_due(entry, self.interval)
        };
        if let Some((counts, last_pull)) = due {
            let (counter, path) = (self.clone(), path.to_owned());
            tokio::spawn(async move { counter.write(&path, counts, last_pull).await });
        }
        self.ticker.get_or_init(|| {
            let counter = Arc::downgrade(self);
            let period = (self.interval / 2).max(Duration::from_millis(200));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(counter) = counter.upgrade() else { return };
                    counter.flush_due().await;
                }
            });
        });
    }

    /// Writes every instance's counts whose last write is an interval old.
    pub async fn flush_due(&self) {
        let due: Vec<(String, BTreeMap<String, u64>, u64)> = {
            let mut pending = self.pending.lock();
            pending
                .iter_mut()
                .filter_map(|(path, entry)| take_if_due(entry, self.interval).map(|(c, at)| (path.clone(), c, at)))
                .collect()
        };
        for (path, counts, last_pull) in due {
            self.write(&path, counts, last_pull).await;
        }
    }

    async fn write(&self, path: &str, counts: BTreeMap<String, u64>, last_pull: u64) {
        let written = self
            .store
            .modify(path, |current: Option<InstancePulls>| {
                let mut pulls = current.unwrap_or_default();
                for (repository, count) in &counts {
                    *pulls.repositories.entry(repository.clone()).or_default() += count;
                }
                let at = rfc3339(last_pull);
                if pulls.last_pull_at.as_ref().is_none_or(|previous| *previous < at) {
                    pulls.last_pull_at = Some(at);
                }
                Ok::<_, StoreError>(pulls)
            })
            .await;
        if let Err(error) = written {
            // Counts are telemetry: losing one interval's is logged, never fails a pull.
            tracing::warn!(error = %error, "pull counts not written");
        }
    }
}

/// The counts to write now, if there are any and the last write is an interval old.
fn take_if_due(entry: &mut Pending, interval: Duration) -> Option<(BTreeMap<String, u64>, u64)> {
    let due = entry.last_flush.is_none_or(|at| at.elapsed() >= interval);
    if !due || entry.counts.is_empty() {
        return None;
    }
    entry.last_flush = Some(Instant::now());
    Some((std::mem::take(&mut entry.counts), entry.last_pull))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_are_aggregated_and_written_at_most_once_per_interval() {
        let store = DocumentStore::in_memory();
        let counter = PullCounter::new(store.clone(), Duration::from_millis(400));
        let path = "accounts/acme/instance-pulls/u.json";
        counter.record(path, ["acme/web".to_owned()], 100);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = store.get::<InstancePulls>(path).await.unwrap().unwrap();
        assert_eq!(first.value.repositories["acme/web"], 1, "the first token is written at once");
        for at in 101..111 {
            counter.record(path, ["acme/web".to_owned(), "acme/db".to_owned()], at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let held = store.get::<InstancePulls>(path).await.unwrap().unwrap();
        assert_eq!(held.version, first.version, "no write within the interval");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let flushed = store.get::<InstancePulls>(path).await.unwrap().unwrap().value;
        assert_eq!(flushed.repositories["acme/web"], 11);
        assert_eq!(flushed.repositories["acme/db"], 10);
        assert_eq!(flushed.last_pull_at.as_deref(), Some(rfc3339(110).as_str()));
    }
}

//! Where the host tokens this process has seen point. A token's index entry (its host and
//! group) is created once and only ever deleted, never changed, so it is read once per
//! process instead of on every poll and report. The host's own record alone says whether the
//! token acts for the host: a cached place grants nothing by itself. The record is read again
//! for a request unless this process read it for the same token within [`RECORD_REUSE`] (a
//! host's poll, report and next poll come moments apart: three reads become one), and this
//! process forgets it at once when it re-registers or removes the host.

use super::*;

use std::collections::HashSet;
use std::time::Instant;

use crate::store_layout::HostRecord;

/// Places kept at most: past this the cache starts again. About 60 bytes each with their host
/// ids; 100,000 hosts keep about 9 MiB.
const MAX_TOKEN_PLACES: usize = 200_000;

/// How long a host record read to authenticate a token answers that token's next requests in
/// this process. A token revoked in another process (the host registered again, or removed)
/// acts here that much longer at most: no longer than a job already on its way to the host.
const RECORD_REUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Records kept for reuse at most (about 300 bytes each): the hosts of a phase that poll
/// within [`RECORD_REUSE`] of each other, not the fleet.
const MAX_RECENT_RECORDS: usize = 8192;

/// The cache, keyed by the first 128 bits of the token's SHA-256. A collision (never met in
/// practice) only points a token at a host whose record does not name it, which
/// [`Engine::forget_token_place`] then undoes.
#[derive(Default)]
pub(super) struct TokenPlaces {
    places: Mutex<Places>,
}

#[derive(Default)]
struct Places {
    by_token: HashMap<u128, (Arc<GroupRef>, Box<str>)>,
    /// Each group once, shared by its hosts' places and the requests made from them.
    groups: HashSet<Arc<GroupRef>>,
    /// Records that named the token, as read, and when.
    recent: HashMap<u128, (Instant, Arc<Versioned<HostRecord>>)>,
}

/// The cache key of a token's hex SHA-256.
fn key(digest: &str) -> Option<u128> {
    digest.get(..32).and_then(|half| u128::from_str_radix(half, 16).ok())
}

impl Engine {
    /// Where the token with this digest points, if this process has read it.
    pub fn token_place(&self, digest: &str) -> Option<layout::HostRef> {
        let key = key(digest)?;
        let places = self.token_places.places.lock();
        let (group, host) = places.by_token.get(&key)?;
        Some(layout::HostRef { group: group.clone(), host: host.to_string() })
    }

    /// Keeps where a token points, once its host's record named it.
    pub fn remember_token_place(&self, digest: &str, host: &layout::HostRef) {
        let Some(key) = key(digest) else { return };
        let mut places = self.token_places.places.lock();
        if places.by_token.len() >= MAX_TOKEN_PLACES {
            *places = Places::default();
        }
        let group = match places.groups.get(&*host.group) {
            Some(shared) => shared.clone(),
            None => {
                places.groups.insert(host.group.clone());
                host.group.clone()
            }
        };
        places.by_token.insert(key, (group, host.host.as_str().into()));
    }

    /// Drops a token's place and its record: its host's record did not name it, or this
    /// process rotated it or removed the host.
    pub fn forget_token_place(&self, digest: &str) {
        if let Some(key) = key(digest) {
            let mut places = self.token_places.places.lock();
            places.by_token.remove(&key);
            places.recent.remove(&key);
        }
    }

    /// Drops the record kept for this token: this process wrote the host's record.
    pub fn forget_recent_record(&self, digest: &str) {
        if let Some(key) = key(digest) {
            self.token_places.places.lock().recent.remove(&key);
        }
    }

    /// The host record read for this token within [`RECORD_REUSE`], if any.
    pub fn recent_record(&self, digest: &str) -> Option<Arc<Versioned<HostRecord>>> {
        let key = key(digest)?;
        let places = self.token_places.places.lock();
        let (at, record) = places.recent.get(&key)?;
        (at.elapsed() < RECORD_REUSE).then(|| record.clone())
    }

    /// Keeps a host record just read that names this token, for [`Self::recent_record`].
    pub fn note_record(&self, digest: &str, record: &Arc<Versioned<HostRecord>>) {
        let Some(key) = key(digest) else { return };
        let mut places = self.token_places.places.lock();
        if places.recent.len() >= MAX_RECENT_RECORDS {
            places.recent.retain(|_, (at, _)| at.elapsed() < RECORD_REUSE);
            if places.recent.len() >= MAX_RECENT_RECORDS {
                return;
            }
        }
        places.recent.insert(key, (Instant::now(), record.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(group: &str, host: &str) -> layout::HostRef {
        let account = berth_shared::names::AccountId::parse("acme").unwrap();
        layout::HostRef {
            group: Arc::new(GroupRef { account, application: "app".into(), group: group.into() }),
            host: host.into(),
        }
    }

    fn digest(n: u8) -> String {
        berth_shared::platform::digest::sha256_hex(&[n])
    }

    #[test]
    fn places_are_kept_shared_per_group_forgotten_and_bounded() {
        let engine = Engine::new(FunctionContext::ephemeral());
        assert_eq!(engine.token_place(&digest(1)), None);
        engine.remember_token_place(&digest(1), &host("web", "h1"));
        engine.remember_token_place(&digest(2), &host("web", "h2"));
        assert_eq!(engine.token_place(&digest(1)), Some(host("web", "h1")));
        assert_eq!(engine.token_place(&digest(2)), Some(host("web", "h2")));
        assert_eq!(engine.token_places.places.lock().groups.len(), 1, "one copy of the group");
        engine.forget_token_place(&digest(1));
        assert_eq!(engine.token_place(&digest(1)), None);
        assert_eq!(engine.token_place("not hex"), None, "a malformed digest is not a key");

        for n in 0..MAX_TOKEN_PLACES {
            let digest = format!("{n:064x}");
            engine.remember_token_place(&digest, &host("web", "h"));
        }
        let places = engine.token_places.places.lock();
        assert!(places.by_token.len() <= MAX_TOKEN_PLACES, "{}", places.by_token.len());
    }
}

//! Where the host tokens this process has seen point. A token names its host's place itself
//! ([`host_token`]); one from before is looked up in its index entry (created once and only
//! ever deleted, never changed), once per process instead of on every poll and report. The
//! host's own record alone says whether the token acts for the host: a cached place grants
//! nothing by itself. The record is read again for a request unless this process read it for
//! the same token within [`RECORD_REUSE`] (a host's poll, report and next poll come moments
//! apart: three reads become one), and this process forgets it at once when it re-registers
//! or removes the host. Where every revocation reaches this process at once (it is the only
//! process, or the others tell it as news) a record answers for [`RECORD_REUSE_TOLD`]: a
//! host's requests over a whole release, spread over processes, cost one read in each.

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

/// As [`RECORD_REUSE`], where revocations made elsewhere are told (news) or there is no
/// elsewhere (the only process): the bound on a revocation whose news was lost, as the
/// group's snapshot is re-read every five seconds under news.
const RECORD_REUSE_TOLD: std::time::Duration = std::time::Duration::from_secs(5);

/// Digests a revocation tells in one message (64 bytes each: far below a queue message's
/// 256 KiB); more are told in several.
pub(super) const MAX_REVOCATIONS_TOLD: usize = 1024;

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
    /// When `recent`, full, was last rid of its expired records (at most once per reuse
    /// period: a scan on every note of a full cache was quadratic in a large fleet).
    swept: Option<Instant>,
}

/// Random characters of a host token after its prefix (32 bytes in URL-safe base64).
const RANDOM_CHARS: usize = 43;

/// A new host token for `host`: its kind's prefix, 32 random bytes, then where its host's
/// record is (`account/application/group/host`, URL-safe base64). A process that has not
/// seen the token finds the record without reading the token's index: at a host's first
/// request in each process (each Lambda instance), one read fewer. Where it points grants
/// nothing: the record found must name the whole token's digest.
pub fn host_token(host: &layout::HostRef) -> String {
    use base64::Engine as _;
    let GroupRef { account, application, group } = &*host.group;
    let place = format!("{account}/{application}/{group}/{}", host.host);
    let mut token = berth_shared::platform::token_kind::HOST_TOKEN.mint();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(place, &mut token);
    token
}

/// Where a host token made by [`host_token`] says its host is (tokens from before name none).
pub fn place_in_token(token: &str) -> Option<layout::HostRef> {
    use base64::Engine as _;
    let rest = token.strip_prefix(berth_shared::platform::token_kind::HOST_TOKEN.prefix)?;
    let encoded = rest.get(RANDOM_CHARS..).filter(|p| !p.is_empty())?;
    let place = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let place = String::from_utf8(place).ok()?;
    let mut parts = place.split('/');
    let (account, application, group, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let names_ok = [application, group, host].iter().all(|n| release::validate_name("host", n).is_ok());
    if parts.next().is_some() || !names_ok {
        return None;
    }
    let account = berth_shared::names::AccountId::parse(account).ok()?;
    let group = GroupRef { account, application: application.into(), group: group.into() };
    Some(layout::HostRef { group: Arc::new(group), host: host.into() })
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

    /// The host record read for this token within the reuse period, if any.
    pub fn recent_record(&self, digest: &str) -> Option<Arc<Versioned<HostRecord>>> {
        let key = key(digest)?;
        let reuse = self.record_reuse();
        let places = self.token_places.places.lock();
        let (at, record) = places.recent.get(&key)?;
        (at.elapsed() < reuse).then(|| record.clone())
    }

    /// How long a host record read here answers its token: [`RECORD_REUSE_TOLD`] where every
    /// revocation reaches this process at once, [`RECORD_REUSE`] elsewhere (under Lambda, or
    /// before the others tell this process).
    fn record_reuse(&self) -> std::time::Duration {
        let told = self.news.get().is_some_and(|news| news.heard());
        if told || self.sole.load(std::sync::atomic::Ordering::Relaxed) { RECORD_REUSE_TOLD } else { RECORD_REUSE }
    }

    /// Revokes host tokens this process replaced or whose hosts it removed: forgotten here at
    /// once, and told to the other processes, which forget them as they hear it.
    pub async fn revoke_tokens(&self, digests: &[String]) {
        for digest in digests {
            self.forget_token_place(digest);
        }
        for chunk in digests.chunks(MAX_REVOCATIONS_TOLD) {
            self.tell_revoked(chunk).await;
        }
    }

    /// Keeps a host record just read that names this token, for [`Self::recent_record`].
    pub fn note_record(&self, digest: &str, record: &Arc<Versioned<HostRecord>>) {
        let Some(key) = key(digest) else { return };
        let reuse = self.record_reuse();
        let mut places = self.token_places.places.lock();
        if places.recent.len() >= MAX_RECENT_RECORDS && !places.recent.contains_key(&key) {
            if places.swept.is_some_and(|at| at.elapsed() < reuse) {
                return;
            }
            places.recent.retain(|_, (at, _)| at.elapsed() < reuse);
            places.swept = Some(Instant::now());
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
    fn a_host_token_names_its_host_and_nothing_else_passes_for_one() {
        let longest = "a".repeat(berth_shared::names::MAX_NAME_LEN);
        let account = berth_shared::names::AccountId::parse(&"b".repeat(berth_shared::names::MAX_ACCOUNT_ID_LEN));
        let group = GroupRef { account: account.unwrap(), application: longest.clone(), group: longest.clone() };
        let far = layout::HostRef { group: Arc::new(group), host: longest };
        for place in [host("web", "h1"), far] {
            let token = host_token(&place);
            assert!(token.starts_with("bht_") && token.len() <= 1024, "{}", token.len());
            assert_eq!(place_in_token(&token), Some(place.clone()));
            assert_ne!(host_token(&place), token, "random");
            assert_eq!(berth_shared::platform::secret::redact(&token), "[redacted]", "blanked whole in logs");
        }
        use base64::Engine as _;
        let encode = |place: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(place);
        let minted = berth_shared::platform::token_kind::HOST_TOKEN.mint();
        let random = minted.strip_prefix("bht_").unwrap();
        for refused in [
            berth_shared::platform::token_kind::HOST_TOKEN.mint(), // one from before: read through its index
            format!("bht_{random}{}", encode("acme/app/web")),
            format!("bht_{random}{}", encode("acme/app/web/h1/more")),
            format!("bht_{random}{}", encode("acme/app/../h1")),
            format!("bht_{random}{}", encode("ACME/app/web/h1")),
            format!("bht_{random}not base64!"),
            format!("bjt_{random}{}", encode("acme/app/web/h1")),
        ] {
            assert_eq!(place_in_token(&refused), None, "{refused}");
        }
    }

    async fn record(engine: &Engine, digest: &str) -> Arc<Versioned<HostRecord>> {
        let value = HostRecord { host_token_sha256: Some(digest.to_owned()), ..HostRecord::default() };
        let path = format!("records/{digest}.json");
        engine.store().put(&path, &value).await.unwrap();
        Arc::new(engine.store().get::<HostRecord>(&path).await.unwrap().unwrap())
    }

    /// A record kept to authenticate a token answers it for 100 ms where a revocation made
    /// elsewhere may not reach this process, for five seconds where every one does (the only
    /// process; news), and not once the token is revoked, here or by news.
    #[tokio::test]
    async fn a_kept_record_answers_longer_only_where_revocations_reach_the_process() {
        let shared = Engine::new(FunctionContext::ephemeral());
        let sole = Engine::new(FunctionContext::ephemeral()).as_sole_process();
        for engine in [&shared, &sole] {
            engine.remember_token_place(&digest(1), &host("web", "h1"));
            engine.note_record(&digest(1), &record(engine, &digest(1)).await);
            engine.remember_token_place(&digest(2), &host("web", "h2"));
            engine.note_record(&digest(2), &record(engine, &digest(2)).await);
        }
        tokio::time::sleep(RECORD_REUSE + std::time::Duration::from_millis(20)).await;
        assert!(shared.recent_record(&digest(1)).is_none(), "100 ms where revocations may not reach it");
        assert!(sole.recent_record(&digest(1)).is_some(), "longer where every revocation is made here");
        sole.revoke_tokens(&[digest(1)]).await;
        assert!(sole.recent_record(&digest(1)).is_none() && sole.token_place(&digest(1)).is_none());
        sole.heard_revoked(&super::news::TokensRevoked { digests: vec![digest(2), "not hex".into()] });
        assert!(sole.recent_record(&digest(2)).is_none(), "forgotten on news of its revocation");
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

//! Temporary keys already verified: the token endpoint's ES256 check of a key's signature is
//! its one costly step besides signing, and a registry client presents the same key for every
//! token of a session (one per repository and action), so a key verified once is taken again
//! without the signature check, until it expires.
//!
//! What an attacker can and cannot do with it:
//! - Entries are keyed by SHA-256 of the exact password presented, and only a password whose
//!   signature verified enters: a hit needs that very string, which only the key's holder has.
//!   A refused password is never kept, so garbage costs its verification every time, as before.
//! - It is bounded ([`CAPACITY`] entries, none over [`MAX_CACHED_PASSWORD`] bytes): a tenant
//!   cycling through many keys of its own only evicts entries, whose owners then pay one
//!   verification again. Eviction is by generation: when the newer half is full, the older is
//!   dropped whole, so no entry is kept longer than two generations of use.
//! - Expiry is checked on every hit, as the signature check would; the username must still be
//!   the key's subject. Revocation is unchanged: a key exchanged for an instance credential is
//!   checked against the instance on every request after this, and the signing keys (which a
//!   rotation removes) are fixed for the life of the process that holds the cache.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::credentials::temporary_key::{self, KeyGrant, KeyRefusal};
use crate::platform::jws::SigningKeys;

/// Most keys kept by the token endpoint (two generations of half this).
pub const CAPACITY: usize = 4096;
/// Longest password kept: a key limited to many repositories is verified every time, so that
/// the cache's memory stays within a few MiB.
pub const MAX_CACHED_PASSWORD: usize = 2048;

type Digest = [u8; 32];

/// Keys verified by this process, for the [`SigningKeys`] they were verified with.
pub struct VerifiedKeys {
    keys: SigningKeys,
    generations: Mutex<Generations>,
}

struct Generations {
    /// Entries of one generation.
    half: usize,
    current: HashMap<Digest, KeyGrant>,
    previous: HashMap<Digest, KeyGrant>,
}

impl Generations {
    fn get(&mut self, digest: &Digest) -> Option<KeyGrant> {
        if let Some(grant) = self.current.get(digest) {
            return Some(grant.clone());
        }
        // Still in use: moved to the current generation so it outlives the next turnover.
        let grant = self.previous.remove(digest)?;
        self.insert(*digest, grant.clone());
        Some(grant)
    }

    fn insert(&mut self, digest: Digest, grant: KeyGrant) {
        if self.current.len() >= self.half {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(digest, grant);
    }

    fn remove(&mut self, digest: &Digest) {
        self.current.remove(digest);
        self.previous.remove(digest);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

impl VerifiedKeys {
    /// An empty cache in front of `keys`.
    pub fn new(keys: SigningKeys) -> Self {
        Self::with_capacity(keys, CAPACITY)
    }

    /// An empty cache of at most `capacity` keys (at least 2).
    pub fn with_capacity(keys: SigningKeys, capacity: usize) -> Self {
        let half = (capacity / 2).max(1);
        let generations = Generations { half, current: HashMap::new(), previous: HashMap::new() };
        Self { keys, generations: Mutex::new(generations) }
    }

    /// What [`temporary_key::verify`] answers, at `now` (seconds since the epoch), without the
    /// signature check for a password that passed it before.
    pub fn verify(&self, username: &str, password: &str, now: u64) -> Result<KeyGrant, KeyRefusal> {
        if password.len() > MAX_CACHED_PASSWORD {
            return temporary_key::verify(&self.keys, username, password);
        }
        let digest = digest(password);
        let cached = self.lock().get(&digest);
        if let Some(grant) = cached {
            // The checks of `SigningKeys::verify` that depend on time (no leeway).
            if grant.exp < now {
                self.lock().remove(&digest);
                return Err(KeyRefusal::Expired);
            }
            if grant.sub.as_str() != username {
                return Err(KeyRefusal::Invalid);
            }
            return Ok(grant);
        }
        let grant = temporary_key::verify(&self.keys, username, password)?;
        self.lock().insert(digest, grant.clone());
        Ok(grant)
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn digest(password: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, password.as_bytes()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::temporary_key::{KeyPurpose, mint};
    use crate::names::{AccountId, RepositoryName};
    use crate::platform::clock::unix_now;

    fn key(keys: &SigningKeys, account: &str, ttl: u64, now: u64) -> String {
        let account = AccountId::parse(account).unwrap();
        mint(keys, "r", &account, KeyPurpose::Pull, None, ttl, now).unwrap().password.expose().clone()
    }

    #[test]
    fn a_verified_key_is_taken_again_until_it_expires_and_only_for_its_username() {
        let keys = SigningKeys::generate();
        let cache = VerifiedKeys::new(keys.clone());
        let now = unix_now();
        let password = key(&keys, "acme", 60, now);
        assert_eq!(cache.verify("acme", &password, now).unwrap().sub.as_str(), "acme");
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.verify("acme", &password, now + 60).unwrap().sub.as_str(), "acme", "a hit, exp included");
        assert_eq!(cache.verify("other", &password, now), Err(KeyRefusal::Invalid), "another username");
        assert_eq!(cache.verify("acme", &password, now + 61), Err(KeyRefusal::Expired), "expired though cached");
        assert!(cache.is_empty(), "the expired key left the cache");
    }

    #[test]
    fn a_refused_password_is_never_kept_nor_one_that_differs_by_a_byte() {
        let keys = SigningKeys::generate();
        let cache = VerifiedKeys::new(keys.clone());
        let now = unix_now();
        let password = key(&keys, "acme", 60, now);
        let mut forged = password.clone();
        forged.pop();
        forged.push(if password.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(cache.verify("acme", &forged, now), Err(KeyRefusal::Invalid));
        assert!(cache.is_empty());
        cache.verify("acme", &password, now).unwrap();
        assert_eq!(cache.verify("acme", &forged, now), Err(KeyRefusal::Invalid), "the cached key's neighbour");
        let stranger = key(&SigningKeys::generate(), "acme", 60, now);
        assert_eq!(cache.verify("acme", &stranger, now), Err(KeyRefusal::Invalid), "another signer's key");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_the_keys_in_use() {
        let keys = SigningKeys::generate();
        let capacity = 64;
        let cache = VerifiedKeys::with_capacity(keys.clone(), capacity);
        let now = unix_now();
        let kept = key(&keys, "acme", 600, now);
        cache.verify("acme", &kept, now).unwrap();
        for i in 0..capacity * 3 {
            cache.verify("acme", &key(&keys, "acme", 600, now), now).unwrap();
            if i % 16 == 0 {
                cache.verify("acme", &kept, now).unwrap();
            }
            assert!(cache.len() <= capacity);
        }
        assert!(cache.lock().get(&digest(&kept)).is_some(), "a key in use outlives the turnovers");
        // A key limited to many repositories is long: verified every time, never kept.
        let many: Vec<RepositoryName> =
            (0..80).map(|i| RepositoryName::parse(&format!("acme/repository-number-{i}")).unwrap()).collect();
        let account = AccountId::parse("acme").unwrap();
        let long = mint(&keys, "r", &account, KeyPurpose::Pull, Some(many), 600, now).unwrap();
        let long = long.password.expose();
        assert!(long.len() > MAX_CACHED_PASSWORD);
        cache.verify("acme", long, now).unwrap();
        assert!(cache.lock().get(&digest(long)).is_none());
    }
}

//! Group membership: when a host counts as stale, when a poll records `last_seen`, and
//! whether a removed host may register again.

use super::*;

/// How long a host may go unseen before releases skip it, when the group does not say.
pub const DEFAULT_STALE_AFTER_SECONDS: u64 = 600;
/// Shortest `stale_after_seconds`: longer than a poll's `last_seen` write interval plus the
/// longest held poll, so a host that polls is never taken for stale.
pub const MIN_STALE_AFTER_SECONDS: u64 = 120;
// A polling host's stored `last_seen` is at most the write interval plus one held poll
// (30 s) old: the shortest stale_after must exceed that, or live hosts would be skipped.
const _: () = assert!(MIN_STALE_AFTER_SECONDS > LAST_SEEN_WRITE_SECONDS + 30);
/// Longest `stale_after_seconds` (30 days).
pub const MAX_STALE_AFTER_SECONDS: u64 = 30 * 86_400;
/// A poll writes `last_seen` only when the stored value is at least this old: at most one
/// write a minute per host, whatever the poll rate.
pub const LAST_SEEN_WRITE_SECONDS: u64 = 60;
/// Most stale hosts a release lists by name (the rest are only counted), so its plan stays
/// one bounded document.
pub const MAX_LISTED_STALE: usize = 10_000;

/// Validates a group's `stale_after_seconds` (absent: the default).
pub fn validate_stale_after(value: Option<u64>) -> Result<u64, ApiError> {
    let value = value.unwrap_or(DEFAULT_STALE_AFTER_SECONDS);
    if !(MIN_STALE_AFTER_SECONDS..=MAX_STALE_AFTER_SECONDS).contains(&value) {
        return Err(ApiError::invalid(
            "stale_after_seconds",
            "out_of_range",
            format!("must be {MIN_STALE_AFTER_SECONDS} to {MAX_STALE_AFTER_SECONDS}"),
        ));
    }
    Ok(value)
}

/// When a host was last heard of: its last recorded poll, or its registration.
pub fn seen_at(registered_at: u64, last_seen: Option<u64>) -> u64 {
    last_seen.map_or(registered_at, |seen| seen.max(registered_at))
}

/// Whether a host last seen at `seen` is stale at `now`.
pub fn is_stale(seen: u64, stale_after: u64, now: u64) -> bool {
    now.saturating_sub(seen) >= stale_after
}

/// Whether a poll at `now` should write `last_seen`: the stored value is older than
/// [`LAST_SEEN_WRITE_SECONDS`], and this process has not written it that recently (a
/// process-local cache, so held polls of a host cost no read-modify-write either).
pub fn should_record_seen(stored: u64, written_here: Option<u64>, now: u64) -> bool {
    let fresh = |at: u64| now.saturating_sub(at) < LAST_SEEN_WRITE_SECONDS;
    !fresh(stored) && !written_here.is_some_and(fresh)
}

/// Why a release skips a stale host, as its view shows it.
pub fn stale_reason(seen: u64, stale_after: u64, now: u64) -> String {
    format!(
        "not seen for {} s (the group's stale_after_seconds is {stale_after}); skipped, not counted as a failure",
        now.saturating_sub(seen)
    )
}

/// Splits a group's hosts (id, last seen) into those a release plans and those it skips as stale.
pub fn split_stale(hosts: Vec<(String, u64)>, stale_after: u64, now: u64) -> (Vec<String>, Vec<(String, u64)>) {
    let (stale, live): (Vec<_>, Vec<_>) = hosts.into_iter().partition(|(_, seen)| is_stale(*seen, stale_after, now));
    (live.into_iter().map(|(host, _)| host).collect(), stale)
}

/// A removed host's record: it may not register again with the join token of the time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// When it was removed.
    pub removed_at: u64,
    /// SHA-256 of the group's join token when it was removed (`None`: there was none).
    pub join_token_sha256: Option<String>,
}

/// Whether a host removed as `removal` may register with the join token of digest `token`:
/// only with a join token made after the removal (rotating the token lets removed hosts
/// back), so an agent that still holds the old token cannot undo a removal by itself.
pub fn may_rejoin(removal: Option<&Removal>, token: &str) -> bool {
    removal.is_none_or(|r| r.join_token_sha256.as_deref() != Some(token))
}

/// A registered host, as far as a new registration of its name is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered<'a> {
    /// Whether a host token acts for it now.
    pub has_token: bool,
    /// SHA-256 of the join token it registered with (`None`: registered before Berth kept it).
    pub joined_with: Option<&'a str>,
    /// When it was last heard of.
    pub seen: u64,
}

/// Whether a holder of the join token of digest `token` may register the name of a host
/// registered as `registered`, replacing its token. A live host's name is not taken over with
/// the join token alone (anyone holding it could lock the real host out): only once the host
/// is stale, or the join token was rotated since the host registered (an operator's act). The
/// host itself rotates its token with its current host token instead.
pub fn may_take_over(registered: Option<Registered<'_>>, token: &str, stale_after: u64, now: u64) -> bool {
    registered.is_none_or(|r| {
        !r.has_token || is_stale(r.seen, stale_after, now) || r.joined_with.is_some_and(|joined| joined != token)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_after_has_bounds_and_a_default() {
        assert_eq!(validate_stale_after(None).unwrap(), DEFAULT_STALE_AFTER_SECONDS);
        assert_eq!(validate_stale_after(Some(MIN_STALE_AFTER_SECONDS)).unwrap(), MIN_STALE_AFTER_SECONDS);
        for bad in [0, MIN_STALE_AFTER_SECONDS - 1, MAX_STALE_AFTER_SECONDS + 1] {
            assert!(matches!(
                validate_stale_after(Some(bad)),
                Err(ApiError::Invalid { field, code: "out_of_range", .. }) if field == "stale_after_seconds"
            ));
        }
    }

    #[test]
    fn hosts_unseen_for_stale_after_are_skipped_the_others_planned() {
        assert_eq!(seen_at(100, None), 100);
        assert_eq!(seen_at(100, Some(250)), 250);
        assert_eq!(seen_at(300, Some(250)), 300, "a re-registration counts as seen");
        let hosts = vec![("a".to_owned(), 1000), ("b".to_owned(), 400), ("c".to_owned(), 881)];
        let (live, stale) = split_stale(hosts, 120, 1000);
        assert_eq!(live, ["a", "c"]);
        assert_eq!(stale, [("b".to_owned(), 400)]);
        assert!(is_stale(880, 120, 1000) && !is_stale(881, 120, 1000));
        assert!(stale_reason(400, 120, 1000).contains("600 s"));
    }

    #[test]
    fn last_seen_is_written_at_most_once_a_minute() {
        assert!(!should_record_seen(1000, None, 1059));
        assert!(should_record_seen(1000, None, 1060));
        assert!(!should_record_seen(1000, Some(1030), 1070), "this process wrote it lately");
        assert!(should_record_seen(1000, Some(1005), 1070));
    }

    #[test]
    fn a_removed_host_rejoins_only_with_a_newer_join_token() {
        let removal = Removal { removed_at: 1, join_token_sha256: Some("old".into()) };
        assert!(!may_rejoin(Some(&removal), "old"));
        assert!(may_rejoin(Some(&removal), "new"));
        assert!(may_rejoin(None, "old"));
    }

    #[test]
    fn a_live_host_is_taken_over_only_once_stale_or_after_a_rotation() {
        let live = Registered { has_token: true, joined_with: Some("join1"), seen: 1000 };
        assert!(may_take_over(None, "join1", 600, 1000), "a new name");
        assert!(!may_take_over(Some(live), "join1", 600, 1000), "live, same join token");
        assert!(!may_take_over(Some(Registered { joined_with: None, ..live }), "join1", 600, 1000));
        assert!(may_take_over(Some(live), "join2", 600, 1000), "the join token was rotated since");
        assert!(may_take_over(Some(live), "join1", 600, 1600), "stale");
        assert!(may_take_over(Some(Registered { has_token: false, ..live }), "join1", 600, 1000));
    }
}

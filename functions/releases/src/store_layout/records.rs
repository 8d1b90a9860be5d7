//! The documents the releases function stores (their paths are built in [`super`]).

use berth_shared::names::AccountId;
use berth_shared::release::{GroupKind, LastRelease, Ledger, Phase, Ran, Release, ReleaseStatus};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    pub created_at: u64,
}

/// An application group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// Static or scaling.
    pub kind: GroupKind,
    /// SHA-256 (hex) of its join token; the token itself is shown once. `None` once revoked:
    /// no host joins until a new one is made.
    #[serde(default)]
    pub join_token_sha256: Option<String>,
    /// The release running on it, if any (one at a time).
    #[serde(default)]
    pub active_release: Option<String>,
    pub created_at: u64,
    /// The AWS Auto Scaling group a scaling group's pause is carried out on (`None`: the
    /// built-in adapter records it only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<String>,
    /// The load balancer its hosts are drained from before they stop (see [`berth_shared::release::LoadBalancer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<berth_shared::release::LoadBalancer>,
    /// Hosts not seen for this long are skipped by releases.
    #[serde(default = "default_stale_after")]
    pub stale_after_seconds: u64,
    /// The last release (not a convergence) that ended on it: hosts that join converge to
    /// its revision when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_release: Option<LastRelease>,
    /// Set while the group is being deleted: no release or host starts on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

fn default_stale_after() -> u64 {
    berth_shared::release::DEFAULT_STALE_AFTER_SECONDS
}

/// A host that joined a group: its record, stored under the group's `instances/` (the name
/// of the folder predates this type's; a service instance is `berth_shared::service::Instance`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostRecord {
    /// Host id, as the agent names itself.
    pub host: String,
    /// Registered (or last re-registered) at.
    pub registered_at: u64,
    /// SHA-256 (hex) of the host's current token. Only this one acts for the host: another
    /// registration replaces it, and the index entry of an older one is not enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_token_sha256: Option<String>,
    /// SHA-256 (hex) of the join token it registered with: a join token rotated since may take
    /// its name over (`release::may_take_over`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token_sha256: Option<String>,
    /// The EC2 instance the host said it is (matched against its Auto Scaling group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Last poll recorded (at most once a minute); `None`: none since registering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
    /// What the host runs and ran before.
    #[serde(default)]
    pub ledger: Ledger,
    /// The host's latest convergence release, if it ever converged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convergence: Option<String>,
}

impl HostRecord {
    /// When the host was last heard of.
    pub fn seen(&self) -> u64 {
        berth_shared::release::seen_at(self.registered_at, self.last_seen)
    }
}

/// A host as listings show it (without its token's digest).
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    /// Its latest convergence release, if any.
    pub convergence: Option<String>,
    /// Host id.
    pub host: String,
    /// When it was last heard of (a poll, at most a minute old while it polls, or its registration).
    pub last_seen: u64,
    /// The revision it ran before `runs`.
    pub ran_before: Option<Ran>,
    pub registered_at: u64,
    /// The EC2 instance id it registered with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The revision it runs (its last successful start), if any.
    pub runs: Option<Ran>,
    /// Whether releases skip it now (not seen for the group's `stale_after_seconds`).
    pub stale: bool,
}

impl HostView {
    /// The view of a host of a group whose hosts go stale after `stale_after` seconds.
    pub fn new(instance: HostRecord, stale_after: u64, now: u64) -> Self {
        let last_seen = instance.seen();
        Self {
            convergence: instance.convergence,
            host: instance.host,
            instance_id: instance.instance_id,
            last_seen,
            ran_before: instance.ledger.previous,
            registered_at: instance.registered_at,
            runs: instance.ledger.current,
            stale: berth_shared::release::is_stale(last_seen, stale_after, now),
        }
    }
}

/// Where a host is, found from its host token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredHostRef", into = "StoredHostRef")]
pub struct HostRef {
    /// Shared: every agent request makes one, from the token cache's copy of its group.
    pub group: Arc<GroupRef>,
    /// The host id.
    pub host: String,
}

/// A [`HostRef`] as stored: one flat object. Read through this rather than with
/// `#[serde(flatten)]`, which buffers every field first: every agent request reads one, and
/// that buffering was a tenth of a 100,000-host dispatch's CPU.
#[derive(Serialize, Deserialize)]
struct StoredHostRef {
    account: AccountId,
    application: String,
    group: String,
    host: String,
}

impl From<StoredHostRef> for HostRef {
    fn from(s: StoredHostRef) -> Self {
        let group = GroupRef { account: s.account, application: s.application, group: s.group };
        Self { group: Arc::new(group), host: s.host }
    }
}

impl From<HostRef> for StoredHostRef {
    fn from(h: HostRef) -> Self {
        let group = Arc::unwrap_or_clone(h.group);
        Self { account: group.account, application: group.application, group: group.group, host: h.host }
    }
}

/// Where a group is, found from a join token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupRef {
    /// Owning account.
    pub account: AccountId,
    pub application: String,
    pub group: String,
}

/// An index entry: a release the sweep keeps driving until it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActiveRelease {
    /// The owning account.
    pub account: AccountId,
}

/// An index entry: a group whose scaling a release paused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseIndex {
    pub group: GroupRef,
}

/// An entry of a group's release index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseEntry {
    pub id: String,
}

/// The part of a release that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseState {
    /// Where it is.
    pub status: ReleaseStatus,
    /// The step.
    pub phase: Phase,
    /// When the phase began.
    pub phase_started_at: u64,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

impl ReleaseState {
    /// The state part of a release.
    pub fn of(release: &Release) -> Self {
        Self {
            status: release.status,
            phase: release.phase,
            phase_started_at: release.phase_started_at,
            reason: release.reason.clone(),
            finished_at: release.finished_at,
        }
    }

    /// The plan with this state.
    pub fn on(self, plan: &Release) -> Release {
        Release {
            status: self.status,
            phase: self.phase,
            phase_started_at: self.phase_started_at,
            reason: self.reason,
            finished_at: self.finished_at,
            ..plan.clone()
        }
    }
}

/// A host's logs as stored: inline, or a head whose text is in `parts` further documents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredLogs {
    /// The logs (without text when in parts).
    #[serde(flatten)]
    pub logs: berth_shared::release::HostLogs,
    /// How many part documents hold the text.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A host's wake channel on API Gateway (under Lambda): the connection a wake is posted to.
/// A newer connection of the host replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// API Gateway's connection id.
    pub connection_id: String,
    /// When it connected (seconds since the epoch).
    pub connected_at: u64,
}

/// An API Gateway connection's host, for its `$disconnect` and messages (which carry only the
/// connection id), with the digest of the host token it connected with: once the host's
/// record names another token (removed, or registered again), the connection is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelConnection {
    /// The host.
    pub host: HostRef,
    /// SHA-256 (hex) of the host token it connected with.
    pub token_sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_token_entry_is_stored_as_the_flat_object_it_always_was() {
        // As `#[serde(flatten)]` wrote it: entries written before still read.
        let stored = r#"{"account":"acme","application":"app","group":"web","host":"h1"}"#;
        let read: HostRef = serde_json::from_str(stored).unwrap();
        let group =
            GroupRef { account: AccountId::parse("acme").unwrap(), application: "app".into(), group: "web".into() };
        assert_eq!(read, HostRef { group: Arc::new(group), host: "h1".into() });
        assert_eq!(serde_json::to_string(&read).unwrap(), stored);
    }
}

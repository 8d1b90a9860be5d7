//! Where the releases function keeps its documents, and the small documents only it uses.
//!
//! ```text
//! accounts/{acct}/applications/{app}/application.json
//! accounts/{acct}/applications/{app}/deployments/{name}.json          the current revision (CAS)
//! accounts/{acct}/applications/{app}/deployment-revisions/{name}/{n}.json  every revision, created once
//! accounts/{acct}/applications/{app}/groups/{group}/group.json
//! accounts/{acct}/applications/{app}/groups/{group}/scaling.json      built-in scaling adapter
//! accounts/{acct}/applications/{app}/groups/{group}/instances/{host}.json   last_seen, ledger (CAS)
//! accounts/{acct}/applications/{app}/groups/{group}/removed/{host}.json     a removed host's tombstone
//! accounts/{acct}/applications/{app}/groups/{group}/releases/{key}.json     release index, newest first
//! accounts/{acct}/applications/{app}/groups/{group}/channels/{host}.json   its API Gateway wake channel
//! channel-connections/{sha256 of connection id}.json                  API Gateway connection -> host
//! join-tokens/{sha256 of token}.json                                  join token -> group
//! host-tokens/{sha256 of token}.json                                  host token -> host
//! releases/{id}/plan.json                                             the release as created (immutable)
//! releases/{id}/release.json                                          its state: status, phase (CAS)
//! releases/{id}/pulls/{host}.json                                     pull outcome, created once
//! releases/{id}/hosts/{host}.json                                     final outcome, created once
//! releases/{id}/logs/{host}.json                                      stop/start output
//! releases/{id}/logs/{host}/part-{n}.json                             ... when it is large
//! active-releases/{id}.json                                           what the sweep drives
//! scaling-leases/{id}.json                                            what the reaper checks
//! ```

use berth_shared::names::AccountId;
use berth_shared::release::{GroupKind, JobKind, LastRelease, Ledger, Phase, Ran, Release, ReleaseStatus};
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

/// A host that joined a group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Instance {
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

impl Instance {
    /// When the host was last heard of.
    pub fn seen(&self) -> u64 {
        berth_shared::release::seen_at(self.registered_at, self.last_seen)
    }
}

/// A host as listings show it (without its token's digest).
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
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

impl InstanceView {
    /// The view of a host of a group whose hosts go stale after `stale_after` seconds.
    pub fn new(instance: Instance, stale_after: u64, now: u64) -> Self {
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

/// `accounts/{acct}/applications/{app}`.
pub fn application(account: &AccountId, app: &str) -> String {
    format!("accounts/{account}/applications/{app}")
}

/// The application document.
pub fn application_doc(account: &AccountId, app: &str) -> String {
    format!("{}/application.json", application(account, app))
}

pub fn deployment(account: &AccountId, app: &str, name: &str) -> String {
    format!("{}/deployments/{name}.json", application(account, app))
}

/// An application's deployments folder (flat: one document per deployment).
pub fn deployments(account: &AccountId, app: &str) -> String {
    format!("{}/deployments", application(account, app))
}

/// The applications folder of an account.
pub fn applications(account: &AccountId) -> String {
    format!("accounts/{account}/applications")
}

/// An application's groups folder.
pub fn groups(account: &AccountId, app: &str) -> String {
    format!("{}/groups", application(account, app))
}

/// A deployment's revisions folder.
pub fn revisions(account: &AccountId, app: &str, name: &str) -> String {
    format!("{}/deployment-revisions/{name}", application(account, app))
}

/// One revision of a deployment, zero-padded so listings sort by number.
pub fn revision(account: &AccountId, app: &str, name: &str, number: u64) -> String {
    format!("{}/{number:010}.json", revisions(account, app, name))
}

/// A removed host's tombstone.
pub fn removed(group: &GroupRef, host: &str) -> String {
    format!("{}/removed/{host}.json", group_dir(group))
}

/// A group's release index folder.
pub fn group_releases(group: &GroupRef) -> String {
    format!("{}/releases", group_dir(group))
}

/// A release's entry in its group's index: the key (from its creation in milliseconds) sorts
/// newest first.
pub fn group_release(group: &GroupRef, created_ms: u64, id: &str) -> String {
    format!("{}/{}.json", group_releases(group), berth_shared::release::newest_key(created_ms, id))
}

/// An entry of a group's release index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseEntry {
    pub id: String,
}

/// A group's folder.
pub fn group_dir(group: &GroupRef) -> String {
    format!("{}/groups/{}", application(&group.account, &group.application), group.group)
}

/// A group's document.
pub fn group_doc(group: &GroupRef) -> String {
    format!("{}/group.json", group_dir(group))
}

/// A group's scaling state.
pub fn scaling(group: &GroupRef) -> String {
    format!("{}/scaling.json", group_dir(group))
}

/// A group's instances folder.
pub fn instances(group: &GroupRef) -> String {
    format!("{}/instances", group_dir(group))
}

/// One instance.
pub fn instance(group: &GroupRef, host: &str) -> String {
    // Not through `instances`: every agent request builds this one.
    format!("{}/instances/{host}.json", group_dir(group))
}

/// The join-token index entry.
pub fn join_token(sha256: &str) -> String {
    format!("join-tokens/{sha256}.json")
}

/// The host-token index entry.
pub fn host_token(sha256: &str) -> String {
    format!("host-tokens/{sha256}.json")
}

/// A release's state (small, moved by compare-and-swap).
pub fn release(id: &str) -> String {
    format!("releases/{id}/release.json")
}

/// A release's plan: the whole release as created, never rewritten, so every process may
/// cache it and polls need not parse thousands of hosts.
pub fn plan(id: &str) -> String {
    format!("releases/{id}/plan.json")
}

/// One part of the hosts of a large release's plan (see `berth_shared::release::split_plan`).
pub fn plan_part(id: &str, index: usize) -> String {
    format!("releases/{id}/plan-hosts/{index:05}.json")
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

/// The alarm gate's record of a release ([`berth_shared::release::AlarmState`]).
pub fn alarms(id: &str) -> String {
    format!("releases/{id}/alarms.json")
}

/// What a release did with its group's load balancer ([`berth_shared::release::BalancerState`]).
pub fn balancer(id: &str) -> String {
    format!("releases/{id}/balancer.json")
}

/// A release's pull outcomes folder.
pub fn pulls(id: &str) -> String {
    format!("releases/{id}/pulls")
}

/// One host's pull outcome.
pub fn pull(id: &str, host: &str) -> String {
    format!("releases/{id}/pulls/{host}.json")
}

/// A release's host outcomes folder.
pub fn results(id: &str) -> String {
    format!("releases/{id}/hosts")
}

/// One host's final outcome.
pub fn result(id: &str, host: &str) -> String {
    format!("releases/{id}/hosts/{host}.json")
}

/// The folder of a release's hosts whose health check runs (written when it starts).
pub fn verifying(id: &str) -> String {
    format!("releases/{id}/verifying")
}

/// One host's note that its health check runs.
pub fn verifying_host(id: &str, host: &str) -> String {
    format!("releases/{id}/verifying/{host}.json")
}

/// The folder of a release's hosts that turned unhealthy after their run succeeded.
pub fn unhealthy(id: &str) -> String {
    format!("releases/{id}/unhealthy")
}

/// One host's [`berth_shared::release::Unhealthy`].
pub fn unhealthy_host(id: &str, host: &str) -> String {
    format!("releases/{id}/unhealthy/{host}.json")
}

/// One host's logs.
pub fn logs(id: &str, host: &str) -> String {
    format!("releases/{id}/logs/{host}.json")
}

/// Where the logs of a host's job of `kind` live: the run's in `logs/`, a pull-first pull's
/// in `pull-logs/`, both stored the same way (inline, or a head and parts).
pub fn job_logs(kind: JobKind, id: &str, host: &str) -> String {
    match kind {
        JobKind::Run => logs(id, host),
        JobKind::Pull => format!("releases/{id}/pull-logs/{host}.json"),
    }
}

/// The folder of the parts of [`job_logs`].
pub fn job_logs_parts(kind: JobKind, id: &str, host: &str) -> String {
    match kind {
        JobKind::Run => format!("releases/{id}/logs/{host}"),
        JobKind::Pull => format!("releases/{id}/pull-logs/{host}"),
    }
}

/// One part of [`job_logs`], written by the report (split) or uploaded by the agent.
pub fn job_logs_part(kind: JobKind, id: &str, host: &str, part: usize) -> String {
    format!("{}/part-{part:06}.json", job_logs_parts(kind, id, host))
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

/// The active-releases index folder.
pub const ACTIVE: &str = "active-releases";

/// An active-release entry.
pub fn active(id: &str) -> String {
    format!("{ACTIVE}/{id}.json")
}

/// The scaling-lease index folder.
pub const LEASES: &str = "scaling-leases";

/// A lease index entry.
pub fn lease(id: &str) -> String {
    format!("{LEASES}/{id}.json")
}

/// The last path segment without `.json`.
pub fn stem(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path).trim_end_matches(".json")
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

    #[test]
    fn a_hosts_record_is_under_its_groups_instances() {
        let group =
            GroupRef { account: AccountId::parse("acme").unwrap(), application: "app".into(), group: "web".into() };
        assert_eq!(instance(&group, "h1"), "accounts/acme/applications/app/groups/web/instances/h1.json");
        assert_eq!(instance(&group, "h1"), format!("{}/h1.json", instances(&group)));
    }
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

/// A host's wake channel record.
pub fn channel(group: &GroupRef, host: &str) -> String {
    format!("{}/channels/{host}.json", group_dir(group))
}

/// A connection's host: keyed by the digest of its id (API Gateway's ids hold `=` and may hold `/`).
pub fn channel_connection(connection_id: &str) -> String {
    format!("channel-connections/{}.json", berth_shared::platform::digest::sha256_hex(connection_id.as_bytes()))
}

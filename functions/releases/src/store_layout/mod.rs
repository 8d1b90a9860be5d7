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
//! host-tokens/{sha256 of token}.json                                  host token -> host (tokens from before they named it)
//! releases/{id}/plan.json                                             the release as created (immutable)
//! releases/{id}/release.json                                          its state: status, phase (CAS)
//! releases/{id}/pulls/{host}.json                                     pull outcome, created once
//! releases/{id}/hosts/{host}.json                                     final outcome, created once
//! releases/{id}/logs/{host}.json                                      stop/start output
//! releases/{id}/logs/{host}/part-{n}.json                             ... when it is large
//! active-releases/{id}.json                                           what the sweep drives
//! scaling-leases/{id}.json                                            what the reaper checks
//! ```
//!
//! The paths are built here, in one place; the documents stored at them are in `records.rs`.

use berth_shared::names::AccountId;
use berth_shared::release::JobKind;

mod records;

pub use records::*;

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

/// A group's host records folder ([`HostRecord`]s; `instances/` in the store).
pub fn host_records(group: &GroupRef) -> String {
    format!("{}/instances", group_dir(group))
}

/// One host's record.
pub fn host_record(group: &GroupRef, host: &str) -> String {
    // Not through `host_records`: every agent request builds this one.
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

/// A host's wake channel record.
pub fn channel(group: &GroupRef, host: &str) -> String {
    format!("{}/channels/{host}.json", group_dir(group))
}

/// A connection's host: keyed by the digest of its id (API Gateway's ids hold `=` and may hold `/`).
pub fn channel_connection(connection_id: &str) -> String {
    format!("channel-connections/{}.json", berth_shared::platform::digest::sha256_hex(connection_id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_record_is_under_its_groups_instances() {
        let group =
            GroupRef { account: AccountId::parse("acme").unwrap(), application: "app".into(), group: "web".into() };
        assert_eq!(host_record(&group, "h1"), "accounts/acme/applications/app/groups/web/instances/h1.json");
        assert_eq!(host_record(&group, "h1"), format!("{}/h1.json", host_records(&group)));
    }
}

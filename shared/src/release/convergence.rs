//! Convergence: a host that joins (or comes back to) a group whose last release succeeded
//! gets that release's revision by itself, as a one-host release of its own.

use super::*;

/// The last release (not a convergence) that ended on a group, as the group records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRelease {
    pub id: String,
    pub status: ReleaseStatus,
    /// The revision it rolled out.
    #[serde(flatten)]
    pub revision: RevisionId,
    pub finished_at: u64,
}

/// Why a host converges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// It registered (a new host, or one whose agent lost its identity: it may run nothing).
    Registered,
    /// It polled again after being stale: it converges if its ledger is not on the revision.
    Returned,
    /// It polled while behind the last release (it failed it: its link was cut, its agent
    /// was down): it converges if its ledger is not on the revision, once per release.
    Behind,
}

/// The release whose revision a host should converge to, if any: the group's last release
/// succeeded, none runs now, and (for a returning host) the host does not run its revision.
pub fn convergence_target<'a>(
    last: Option<&'a LastRelease>,
    running: bool,
    ledger: &Ledger,
    arrival: Arrival,
) -> Option<&'a LastRelease> {
    let last = last.filter(|l| l.status == ReleaseStatus::Succeeded)?;
    if running {
        return None;
    }
    let runs_it = ledger.current.as_ref().is_some_and(|c| c.revision == last.revision);
    match arrival {
        Arrival::Registered => Some(last),
        Arrival::Returned | Arrival::Behind if !runs_it => Some(last),
        Arrival::Returned | Arrival::Behind => None,
    }
}

/// The id of a host's convergence to `target`; `epoch` tells arrivals apart (the
/// registration time, or the `last_seen` the host came back from), so duplicate polls and
/// registrations of one arrival name one convergence and a later arrival a new one.
pub fn convergence_id(group: &str, host: &str, target: &str, epoch: &str) -> String {
    derived_id(&["berth-converge", group, host, target, epoch])
}

/// The options of a convergence: one host, one batch, pulled within the run, no failures.
pub fn convergence_options() -> ReleaseOptions {
    ReleaseOptions {
        batching: Batching::Count(1),
        pause: PauseMode::None,
        pause_seconds: 0,
        pause_timeout_seconds: DEFAULT_PAUSE_TIMEOUT_SECONDS,
        max_failures: 0,
        max_failures_per_batch: 0,
        pull_first: false,
        auto_rollback: false,
        budgets_asked: None,
        batch_max_failures: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(status: ReleaseStatus, revision: u64) -> LastRelease {
        LastRelease {
            id: "r1".into(),
            status,
            revision: RevisionId { deployment: "web".into(), revision, image: "i".into(), scripts_sha256: "s".into() },
            finished_at: 0,
        }
    }

    #[test]
    fn hosts_converge_only_to_a_succeeded_release_and_never_during_one() {
        let ok = last(ReleaseStatus::Succeeded, 2);
        let none = Ledger::default();
        assert!(convergence_target(Some(&ok), false, &none, Arrival::Registered).is_some());
        assert!(convergence_target(Some(&ok), true, &none, Arrival::Registered).is_none(), "a release runs");
        let failed = last(ReleaseStatus::Failed, 2);
        assert!(convergence_target(Some(&failed), false, &none, Arrival::Registered).is_none());
        assert!(convergence_target(None, false, &none, Arrival::Registered).is_none());
        let on_it = Ledger {
            current: Some(Ran { revision: ok.revision.clone(), release: "r1".into(), at: 0 }),
            previous: None,
        };
        assert!(convergence_target(Some(&ok), false, &on_it, Arrival::Returned).is_none(), "runs it already");
        assert!(convergence_target(Some(&ok), false, &none, Arrival::Returned).is_some());
        assert!(convergence_target(Some(&ok), false, &on_it, Arrival::Registered).is_some(), "may be rebuilt");
    }

    #[test]
    fn one_arrival_names_one_convergence() {
        let id = convergence_id("g", "h", "r1", "100");
        assert_eq!(id, convergence_id("g", "h", "r1", "100"));
        assert_ne!(id, convergence_id("g", "h", "r1", "160"));
        assert_ne!(id, convergence_id("g", "h2", "r1", "100"));
    }
}

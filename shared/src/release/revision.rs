//! Deployment revisions and each host's ledger of what it runs: the revision a release put
//! on it and the one before, from which a rollback plans where each host goes back to.

use super::*;

/// Which revision of which deployment: what a host runs, and what a release rolled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionId {
    /// The deployment's name.
    pub deployment: String,
    /// Its revision number (from 1).
    pub revision: u64,
    /// The image address (tag or digest) of that revision.
    pub image: String,
    /// SHA-256 of the working directory and the stop and start scripts of that revision.
    pub scripts_sha256: String,
}

impl RevisionId {
    /// The revision a deployment document is.
    pub fn of(deployment: &Deployment) -> Self {
        let mut scripts =
            format!("{}\0{}\0{}", deployment.working_directory, deployment.stop_script, deployment.start_script);
        // The health check is part of the revision; a deployment without one hashes as before.
        if let Some(health) = &deployment.health {
            scripts.push('\0');
            scripts.push_str(&serde_json::to_string(health).unwrap_or_default());
        }
        Self {
            deployment: deployment.name.clone(),
            revision: deployment.revision,
            image: deployment.image.address(),
            scripts_sha256: crate::platform::digest::sha256_hex(scripts.as_bytes()),
        }
    }
}

/// One run recorded in a host's ledger: the revision, and the release whose plan holds it
/// (plans are never rewritten, so a rollback can always read the revision back from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredRan", into = "StoredRan")]
pub struct Ran {
    pub revision: RevisionId,
    /// The release that ran it on the host.
    pub release: String,
    /// When the host reported it started.
    pub at: u64,
}

/// A [`Ran`] as stored: one flat object. Not `#[serde(flatten)]`, which buffers every field
/// first, on each read of a host's record (every agent request reads one).
#[derive(Serialize, Deserialize)]
struct StoredRan {
    deployment: String,
    revision: u64,
    image: String,
    scripts_sha256: String,
    release: String,
    at: u64,
}

impl From<StoredRan> for Ran {
    fn from(s: StoredRan) -> Self {
        let revision = RevisionId {
            deployment: s.deployment,
            revision: s.revision,
            image: s.image,
            scripts_sha256: s.scripts_sha256,
        };
        Self { revision, release: s.release, at: s.at }
    }
}

impl From<Ran> for StoredRan {
    fn from(r: Ran) -> Self {
        let RevisionId { deployment, revision, image, scripts_sha256 } = r.revision;
        Self { deployment, revision, image, scripts_sha256, release: r.release, at: r.at }
    }
}

/// What a host runs and ran before, kept on its instance record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The revision the last successful run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Ran>,
    /// The one before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Ran>,
}

/// The ledger after a successful run; `None` when it records this release already (a
/// duplicate report or a reconciliation writes nothing).
pub fn record_run(ledger: &Ledger, ran: Ran) -> Option<Ledger> {
    if ledger.current.as_ref().is_some_and(|c| c.release == ran.release) {
        return None;
    }
    Some(Ledger { previous: ledger.current.clone(), current: Some(ran) })
}

/// Where rolling `release` back puts a host, from its ledger and its result in that release:
/// a host the release started goes back to the run before; a host whose stop or start failed
/// (or that never reported: it may have stopped) goes back to what it ran before the release.
/// A host the release did not touch (skipped, or its pull failed) stays as it is (`None`).
pub fn rollback_target(ledger: &Ledger, release: &str, result: Option<&HostResult>) -> Option<Ran> {
    let result = result?;
    let current = ledger.current.as_ref();
    if result.ok {
        return current.filter(|c| c.release == release).and(ledger.previous.clone());
    }
    match result.step {
        Step::Stop | Step::Start | Step::Health | Step::Report => current.filter(|c| c.release != release).cloned(),
        Step::Pull => None,
    }
}

/// The revision a rollback goes back to and the hosts it puts there, from each host's target.
/// One release runs one revision, so hosts that would go back to different revisions are a
/// conflict (roll them forward with a release of the revision wanted instead).
pub fn plan_rollback(release: &str, targets: Vec<(String, Option<Ran>)>) -> Result<(Ran, Vec<String>), ApiError> {
    let mut chosen: Option<Ran> = None;
    let mut hosts = Vec::new();
    for (host, target) in targets {
        let Some(target) = target else { continue };
        match &chosen {
            None => chosen = Some(target),
            Some(c) if c.revision == target.revision => {}
            Some(c) => {
                return Err(ApiError::Conflict {
                    code: "previous_revisions_differ",
                    message: format!(
                        "hosts of release {release} ran different revisions before it (revision {} of '{}' and revision {} of '{}'); \
                         release the revision you want instead",
                        c.revision.revision,
                        c.revision.deployment,
                        target.revision.revision,
                        target.revision.deployment
                    ),
                });
            }
        }
        hosts.push(host);
    }
    let chosen = chosen.ok_or_else(|| ApiError::Conflict {
        code: "nothing_to_roll_back",
        message: format!("no host of release {release} has a previous revision to go back to"),
    })?;
    Ok((chosen, hosts))
}

/// A release id derived from `parts` (a UUID-shaped digest), so that every process and every
/// duplicate computes the same one and conditional creates keep exactly one.
pub fn derived_id(parts: &[&str]) -> String {
    let digest = crate::platform::digest::sha256_hex(parts.join("\0").as_bytes());
    format!(
        "{}-{}-8{}-{}-{}",
        digest.get(..8).unwrap_or_default(),
        digest.get(8..12).unwrap_or_default(),
        digest.get(13..16).unwrap_or_default(),
        digest.get(16..20).unwrap_or_default(),
        digest.get(20..32).unwrap_or_default()
    )
}

/// The id of the release that rolls `release` back (manual or automatic: there is one).
pub fn rollback_id(release: &str) -> String {
    derived_id(&["berth-rollback", release])
}

/// The next revision of a deployment, validated like a new one; its name must stay, and an
/// `expected` revision (the caller's) must still be the current one.
pub fn next_revision(
    current: &Deployment,
    mut next: Deployment,
    expected: Option<u64>,
) -> Result<Deployment, ApiError> {
    if next.name != current.name {
        return Err(ApiError::invalid("name", "name_mismatch", "the body's name must be the deployment's name"));
    }
    if let Some(expected) = expected
        && expected != current.revision
    {
        return Err(ApiError::Conflict {
            code: "revision_conflict",
            message: format!("the deployment is at revision {}, not {expected}", current.revision),
        });
    }
    next.revision = current.revision + 1;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(release: &str, revision: u64) -> Ran {
        Ran {
            revision: RevisionId {
                deployment: "web".into(),
                revision,
                image: format!("r/acme/web:v{revision}"),
                scripts_sha256: "s".into(),
            },
            release: release.into(),
            at: 0,
        }
    }

    fn result(ok: bool, step: Step) -> HostResult {
        HostResult { ok, step, exit_code: None, reason: None, at: 0 }
    }

    #[test]
    fn a_run_is_stored_as_the_flat_object_it_always_was() {
        // As `#[serde(flatten)]` wrote it: records written before still read.
        let stored =
            r#"{"deployment":"web","revision":2,"image":"r/acme/web:v2","scripts_sha256":"s","release":"r2","at":0}"#;
        let read: Ran = serde_json::from_str(stored).unwrap();
        assert_eq!(read, ran("r2", 2));
        assert_eq!(serde_json::to_string(&read).unwrap(), stored);
    }

    #[test]
    fn the_ledger_keeps_the_run_before_and_ignores_duplicates() {
        let first = record_run(&Ledger::default(), ran("r1", 1)).unwrap();
        assert_eq!((first.current.as_ref().unwrap().release.as_str(), first.previous.as_ref()), ("r1", None));
        assert_eq!(record_run(&first, ran("r1", 1)), None, "the same release again");
        let second = record_run(&first, ran("r2", 2)).unwrap();
        assert_eq!(second.previous, first.current);
        assert_eq!(second.current.unwrap().revision.revision, 2);
    }

    #[test]
    fn a_rollback_sends_changed_hosts_back_and_leaves_the_others() {
        let moved = Ledger { current: Some(ran("r2", 2)), previous: Some(ran("r1", 1)) };
        let untouched = Ledger { current: Some(ran("r1", 1)), previous: None };
        assert_eq!(rollback_target(&moved, "r2", Some(&result(true, Step::Start))), Some(ran("r1", 1)));
        assert_eq!(rollback_target(&moved, "r2", None), None, "skipped by the release");
        assert_eq!(rollback_target(&untouched, "r2", Some(&result(false, Step::Start))), Some(ran("r1", 1)));
        assert_eq!(rollback_target(&untouched, "r2", Some(&result(false, Step::Report))), Some(ran("r1", 1)));
        assert_eq!(rollback_target(&untouched, "r2", Some(&result(false, Step::Pull))), None, "nothing stopped");
        let newer = Ledger { current: Some(ran("r3", 3)), previous: Some(ran("r2", 2)) };
        assert_eq!(rollback_target(&newer, "r2", Some(&result(true, Step::Start))), None, "moved on since");
        let fresh = Ledger { current: Some(ran("r2", 2)), previous: None };
        assert_eq!(rollback_target(&fresh, "r2", Some(&result(true, Step::Start))), None, "nothing before");
    }

    #[test]
    fn a_rollback_plans_one_revision() {
        let (target, hosts) = plan_rollback(
            "r2",
            vec![("a".into(), Some(ran("r1", 1))), ("b".into(), None), ("c".into(), Some(ran("c1", 1)))],
        )
        .unwrap();
        assert_eq!((target.revision.revision, hosts), (1, vec!["a".to_owned(), "c".to_owned()]));
        let code = |targets| match plan_rollback("r2", targets) {
            Err(ApiError::Conflict { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(vec![("a".into(), None)]), "nothing_to_roll_back");
        assert_eq!(
            code(vec![("a".into(), Some(ran("r1", 1))), ("b".into(), Some(ran("r0", 3)))]),
            "previous_revisions_differ"
        );
    }

    #[test]
    fn an_update_is_the_next_revision_of_the_same_name() {
        let current = Deployment {
            name: "web".into(),
            image: ImageRef { registry: "r".into(), repository: "acme/web".into(), reference: ":v1".into() },
            working_directory: "/srv".into(),
            start_script: "true".into(),
            stop_script: "true".into(),
            step_timeout_seconds: 10,
            registry_endpoint: RegistryEndpoint::Public,
            created_at: 0,
            revision: 3,
            health: None,
        };
        let next = Deployment { start_script: "echo v2".into(), revision: 1, ..current.clone() };
        assert_eq!(next_revision(&current, next.clone(), None).unwrap().revision, 4);
        assert_eq!(next_revision(&current, next.clone(), Some(3)).unwrap().revision, 4);
        assert!(matches!(
            next_revision(&current, next.clone(), Some(2)),
            Err(ApiError::Conflict { code: "revision_conflict", .. })
        ));
        let renamed = Deployment { name: "api".into(), ..next };
        assert!(matches!(next_revision(&current, renamed, None), Err(ApiError::Invalid { code: "name_mismatch", .. })));
        assert_ne!(
            RevisionId::of(&current),
            RevisionId::of(&Deployment { stop_script: "x".into(), ..current.clone() })
        );
    }

    #[test]
    fn derived_ids_are_stable_uuids() {
        let id = rollback_id("r1");
        assert_eq!(id, rollback_id("r1"));
        assert_ne!(id, rollback_id("r2"));
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
}

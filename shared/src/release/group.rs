//! Application groups: static or scaling, and the lease by which a release pauses scaling.

use super::*;

/// Whether a group's hosts come and go by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A fixed set of hosts.
    #[default]
    Static,
    /// A scaling group: scaling is paused during a release and resumed afterwards.
    Scaling,
}

/// Scaling state of a group as the built-in adapter records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScalingState {
    /// Whether a release holds the pause (its lease is recorded).
    pub paused: bool,
    /// Whether the adapter confirmed that scaling activities are suspended. Set only after it
    /// answered; until then no host of the release is stopped.
    #[serde(default)]
    pub suspended: bool,
    /// The lease that holds the pause, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<ScalingLease>,
    /// How many times scaling was paused (for audits and tests).
    #[serde(default)]
    pub pauses: u32,
    /// How many times scaling was resumed.
    #[serde(default)]
    pub resumes: u32,
}

/// A durable claim on a group's scaling pause by one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingLease {
    /// The release holding it.
    pub release: String,
    /// Seconds since the epoch after which a reaper may resume scaling.
    pub expires_at: u64,
}

/// Takes (or renews) the pause for `release`. A lease of another release that has expired
/// is taken over; a live one of another release is a conflict.
pub fn take_lease(state: &ScalingState, release: &str, now: u64) -> Result<ScalingState, String> {
    let mut next = state.clone();
    match &state.lease {
        Some(lease) if lease.release != release && lease.expires_at > now => {
            return Err(format!("scaling is paused by release {}", lease.release));
        }
        _ => {}
    }
    if !state.paused {
        next.pauses += 1;
    }
    next.paused = true;
    next.lease = Some(ScalingLease { release: release.to_owned(), expires_at: now + LEASE_SECONDS });
    Ok(next)
}

/// Records that the adapter suspended scaling for `release`'s lease; a lease that moved on
/// meanwhile is left alone.
pub fn confirm_suspended(state: &ScalingState, release: &str) -> ScalingState {
    let mut next = state.clone();
    if state.lease.as_ref().is_some_and(|l| l.release == release) {
        next.suspended = true;
    }
    next
}

/// Releases `release`'s pause; anything else (no lease, another release's lease) is left alone.
pub fn release_lease(state: &ScalingState, release: &str) -> ScalingState {
    let mut next = state.clone();
    if state.lease.as_ref().is_some_and(|l| l.release == release) {
        next.lease = None;
        next.suspended = false;
        if state.paused {
            next.paused = false;
            next.resumes += 1;
        }
    }
    next
}

/// Whether a lease needs renewing: less than half its life is left.
pub fn lease_needs_renewal(state: &ScalingState, release: &str, now: u64) -> bool {
    match &state.lease {
        Some(lease) if lease.release == release => lease.expires_at < now + LEASE_SECONDS / 2,
        _ => true,
    }
}

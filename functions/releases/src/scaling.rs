//! The seam to a group's auto-scaling service. Berth's own record of a pause is the durable
//! lease in `scaling.json` (taken and released by compare-and-swap, reaped when it expires);
//! an adapter carries the pause out. The built-in adapter has nothing to carry out: the
//! recorded state is what it exposes (`GET .../groups/{group}` shows it). A cloud adapter
//! (ESS `SuspendProcesses`, AWS Auto Scaling `SuspendProcesses`) implements the same trait.

use async_trait::async_trait;

use crate::store_layout::GroupRef;

/// Suspends and resumes a scaling group's activities. Both calls must be idempotent: the
/// fan-out calls `suspend` on every lease renewal and `resume` again after a crash.
#[async_trait]
pub trait ScalingAdapter: Send + Sync {
    /// Suspends scaling activities of the group.
    async fn suspend(&self, group: &GroupRef) -> Result<(), String>;
    /// Resumes them.
    async fn resume(&self, group: &GroupRef) -> Result<(), String>;
}

/// The built-in adapter: the lease record is the state; nothing else to call.
pub struct Recorded;

#[async_trait]
impl ScalingAdapter for Recorded {
    async fn suspend(&self, group: &GroupRef) -> Result<(), String> {
        tracing::debug!(group = %group.group, "scaling suspended (recorded)");
        Ok(())
    }

    async fn resume(&self, group: &GroupRef) -> Result<(), String> {
        tracing::debug!(group = %group.group, "scaling resumed (recorded)");
        Ok(())
    }
}

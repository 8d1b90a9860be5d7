//! Plans of groups that name an AWS Auto Scaling group: a host whose instance left the Auto
//! Scaling group (or is leaving it) is not planned, so a retired instance neither times out
//! nor spends the release's failure budget.

use futures::{StreamExt, TryStreamExt};

use super::*;
use crate::scaling::ScalingError;
use crate::store_layout::HostRecord;

/// Host records read at once while matching hosts to the group's instances.
const READ_CONCURRENCY: usize = 32;

impl Engine {
    /// `hosts` without those whose registered instance id is no longer an instance of the
    /// group's Auto Scaling group (`DescribeAutoScalingGroups`). A group naming none, and
    /// hosts that registered without an instance id, are left as they are.
    pub async fn drop_hosts_outside_auto_scaling_group(
        &self,
        reference: &GroupRef,
        group: &Group,
        hosts: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let Some(name) = &group.auto_scaling_group else { return Ok(hosts) };
        let target = ScalingTarget { group: reference.clone(), auto_scaling_group: Some(name.clone()) };
        let members = match self.scaling.members(&target).await {
            Ok(Some(members)) => members,
            Ok(None) => return Ok(hosts),
            Err(why @ ScalingError::NotFound(_)) => {
                return Err(ApiError::Conflict { code: "auto_scaling_group_not_found", message: why.to_string() });
            }
            Err(why @ ScalingError::NotConfigured(_)) => {
                return Err(ApiError::Conflict { code: "auto_scaling_unavailable", message: why.to_string() });
            }
            Err(ScalingError::Backend(why)) => {
                tracing::warn!(auto_scaling_group = %name, %why, "could not list the Auto Scaling group's instances");
                return Err(ApiError::Unavailable("AWS Auto Scaling"));
            }
        };
        let store = self.store();
        let registered: Vec<(String, Option<String>)> = futures::stream::iter(hosts)
            .map(|host| async move {
                let instance = store.get::<HostRecord>(&layout::host_record(reference, &host)).await?;
                Ok::<_, StoreError>((host, instance.and_then(|i| i.value.instance_id)))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let before = registered.len();
        let kept = release::hosts_in_auto_scaling_group(registered, &members);
        if kept.len() < before {
            tracing::info!(
                group = %reference.group,
                auto_scaling_group = %name,
                dropped = before - kept.len(),
                "hosts whose instance left the Auto Scaling group are not planned"
            );
        }
        Ok(kept)
    }
}

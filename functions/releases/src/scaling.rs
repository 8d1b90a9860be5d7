//! The seam to a group's auto-scaling service. Berth's own record of a pause is the durable
//! lease in `scaling.json` (taken and released by compare-and-swap, reaped when it expires);
//! an adapter carries the pause out. The built-in adapter has nothing to carry out: the
//! recorded state is what it exposes (`GET .../groups/{group}` shows it). [`AwsAutoScaling`]
//! suspends and resumes an AWS Auto Scaling group's processes; [`PerGroup`] picks one of the
//! two for each group: the AWS one when the group names an Auto Scaling group.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_autoscaling::error::DisplayErrorContext;
use berth_shared::platform::config::{AutoScaling, Config};
use berth_shared::release::{GroupMember, SUSPENDED_PROCESSES};

use crate::aws::LazyClient;
use crate::store_layout::GroupRef;

/// What a pause is carried out on: the group, and the AWS Auto Scaling group it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingTarget {
    /// Berth's group.
    pub group: GroupRef,
    /// The AWS Auto Scaling group's name, if the group names one.
    pub auto_scaling_group: Option<String>,
}

/// Why a suspend, resume or listing did not happen. Displays as one line, shown on the group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalingError {
    /// AWS knows no Auto Scaling group of that name (in the configured region and account).
    #[error("AWS Auto Scaling group '{0}' does not exist")]
    NotFound(String),
    /// The group names an Auto Scaling group but this process does not talk to AWS.
    #[error("the group names AWS Auto Scaling group '{0}' but BERTH_AUTO_SCALING is not aws here")]
    NotConfigured(String),
    /// AWS refused or did not answer (throttling, credentials, network): worth retrying.
    #[error("AWS Auto Scaling: {0}")]
    Backend(String),
}

/// Suspends and resumes a scaling group's activities. Both calls must be idempotent: the
/// fan-out calls `suspend` again until it is confirmed and `resume` again after a crash.
#[async_trait]
pub trait ScalingAdapter: Send + Sync {
    /// Suspends scaling activities of the group.
    async fn suspend(&self, target: &ScalingTarget) -> Result<(), ScalingError>;
    /// Resumes them.
    async fn resume(&self, target: &ScalingTarget) -> Result<(), ScalingError>;
    /// The group's instances as the scaling service lists them; `None` when it keeps no list
    /// (every registered host is planned).
    async fn members(&self, _target: &ScalingTarget) -> Result<Option<Vec<GroupMember>>, ScalingError> {
        Ok(None)
    }
    /// Whether groups may name an AWS Auto Scaling group here.
    fn reaches_auto_scaling(&self) -> bool {
        false
    }
}

/// The built-in adapter: the lease record is the state; nothing else to call.
pub struct Recorded;

#[async_trait]
impl ScalingAdapter for Recorded {
    async fn suspend(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        tracing::debug!(group = %target.group.group, "scaling suspended (recorded)");
        Ok(())
    }

    async fn resume(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        tracing::debug!(group = %target.group.group, "scaling resumed (recorded)");
        Ok(())
    }
}

/// Picks the adapter per group: a group naming an Auto Scaling group goes to `aws` (an error
/// if there is none here), any other to [`Recorded`].
pub struct PerGroup {
    aws: Option<Arc<dyn ScalingAdapter>>,
}

impl PerGroup {
    /// With `aws` for groups that name an Auto Scaling group (`None`: they are refused).
    pub fn new(aws: Option<Arc<dyn ScalingAdapter>>) -> Self {
        Self { aws }
    }

    fn pick(&self, target: &ScalingTarget) -> Result<&dyn ScalingAdapter, ScalingError> {
        match (&target.auto_scaling_group, &self.aws) {
            (None, _) => Ok(&Recorded),
            (Some(_), Some(aws)) => Ok(aws.as_ref()),
            (Some(name), None) => Err(ScalingError::NotConfigured(name.clone())),
        }
    }
}

#[async_trait]
impl ScalingAdapter for PerGroup {
    async fn suspend(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        self.pick(target)?.suspend(target).await
    }

    async fn resume(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        self.pick(target)?.resume(target).await
    }

    async fn members(&self, target: &ScalingTarget) -> Result<Option<Vec<GroupMember>>, ScalingError> {
        self.pick(target)?.members(target).await
    }

    fn reaches_auto_scaling(&self) -> bool {
        self.aws.is_some()
    }
}

/// The adapter the configuration asks for: [`PerGroup`], with [`AwsAutoScaling`] when
/// `BERTH_AUTO_SCALING=aws`.
pub fn for_config(config: &Config) -> Arc<dyn ScalingAdapter> {
    let aws: Option<Arc<dyn ScalingAdapter>> = match config.auto_scaling {
        AutoScaling::Off => None,
        AutoScaling::Aws => Some(Arc::new(AwsAutoScaling::new(&config.s3.region))),
    };
    Arc::new(PerGroup::new(aws))
}

/// Longest reason kept from an AWS error (the SDK's context can carry a whole response).
const MAX_REASON_CHARS: usize = 400;
/// Longest one AWS call may take, retries included: an advance waits for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// AWS Auto Scaling: `SuspendProcesses` and `ResumeProcesses` of [`SUSPENDED_PROCESSES`],
/// `DescribeAutoScalingGroups` for the members. The client is made on first use (the SDK's
/// configuration loads asynchronously, the function is built synchronously), from the SDK's
/// usual sources: credentials chain, `AWS_ENDPOINT_URL_AUTO_SCALING` / `AWS_ENDPOINT_URL`.
pub struct AwsAutoScaling {
    client: LazyClient<aws_sdk_autoscaling::Client>,
}

impl AwsAutoScaling {
    /// For `region` (`AWS_REGION`).
    pub fn new(region: &str) -> Self {
        Self { client: LazyClient::new(region, CALL_TIMEOUT, aws_sdk_autoscaling::Client::new) }
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: aws_sdk_autoscaling::Client) -> Self {
        Self { client: LazyClient::with_client(client, aws_sdk_autoscaling::Client::new) }
    }

    async fn client(&self) -> &aws_sdk_autoscaling::Client {
        self.client.get().await
    }

    fn name(target: &ScalingTarget) -> Result<&str, ScalingError> {
        target
            .auto_scaling_group
            .as_deref()
            .ok_or_else(|| ScalingError::Backend("the group names no Auto Scaling group".into()))
    }

    /// The named group's description, `None` if AWS has none of that name.
    async fn describe(&self, name: &str) -> Result<Option<aws_sdk_autoscaling::types::AutoScalingGroup>, ScalingError> {
        let output = self
            .client()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(backend)?;
        Ok(output
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.auto_scaling_group_name.as_deref() == Some(name)))
    }

    /// Turns a failed call into [`ScalingError::NotFound`] when the group is gone (AWS and
    /// moto answer an unknown group differently, a describe tells them apart), else keeps it.
    async fn explain(&self, name: &str, error: ScalingError) -> ScalingError {
        match self.describe(name).await {
            Ok(None) => ScalingError::NotFound(name.to_owned()),
            _ => error,
        }
    }
}

fn backend(error: impl std::error::Error) -> ScalingError {
    let text = DisplayErrorContext(error).to_string();
    ScalingError::Backend(text.chars().take(MAX_REASON_CHARS).collect())
}

fn processes() -> Vec<String> {
    SUSPENDED_PROCESSES.iter().map(|p| (*p).to_owned()).collect()
}

#[async_trait]
impl ScalingAdapter for AwsAutoScaling {
    async fn suspend(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        let name = Self::name(target)?;
        let sent = self
            .client()
            .await
            .suspend_processes()
            .auto_scaling_group_name(name)
            .set_scaling_processes(Some(processes()))
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(group = %target.group.group, auto_scaling_group = name, "AWS Auto Scaling processes suspended");
                Ok(())
            }
            Err(error) => Err(self.explain(name, backend(error)).await),
        }
    }

    async fn resume(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        let name = Self::name(target)?;
        let sent = self
            .client()
            .await
            .resume_processes()
            .auto_scaling_group_name(name)
            .set_scaling_processes(Some(processes()))
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(group = %target.group.group, auto_scaling_group = name, "AWS Auto Scaling processes resumed");
                Ok(())
            }
            // A group that is gone has nothing suspended: the resume is done, or the lease
            // would be retried for ever.
            Err(error) => match self.explain(name, backend(error)).await {
                ScalingError::NotFound(_) => {
                    tracing::warn!(auto_scaling_group = name, "AWS Auto Scaling group is gone; nothing to resume");
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    async fn members(&self, target: &ScalingTarget) -> Result<Option<Vec<GroupMember>>, ScalingError> {
        let name = Self::name(target)?;
        let group = self.describe(name).await?.ok_or_else(|| ScalingError::NotFound(name.to_owned()))?;
        let members = group
            .instances
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| {
                Some(GroupMember {
                    instance_id: i.instance_id?,
                    lifecycle_state: i.lifecycle_state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                })
            })
            .collect();
        Ok(Some(members))
    }

    fn reaches_auto_scaling(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(asg: Option<&str>) -> ScalingTarget {
        ScalingTarget {
            group: GroupRef {
                account: berth_shared::names::AccountId::parse("acme").unwrap(),
                application: "app".into(),
                group: "g".into(),
            },
            auto_scaling_group: asg.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn groups_without_an_auto_scaling_group_keep_the_recorded_adapter() {
        let off = PerGroup::new(None);
        assert!(!off.reaches_auto_scaling());
        assert_eq!(off.suspend(&target(None)).await, Ok(()));
        assert_eq!(off.members(&target(None)).await, Ok(None), "no list: every host is planned");
        assert_eq!(off.suspend(&target(Some("web"))).await, Err(ScalingError::NotConfigured("web".into())));
        assert_eq!(off.resume(&target(Some("web"))).await, Err(ScalingError::NotConfigured("web".into())));
        let on = PerGroup::new(Some(Arc::new(AwsAutoScaling::new("us-east-1"))));
        assert!(on.reaches_auto_scaling());
        assert_eq!(on.resume(&target(None)).await, Ok(()), "a group without one never reaches AWS");
    }
}

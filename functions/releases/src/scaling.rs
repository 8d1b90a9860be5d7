//! The seam to a group's auto-scaling service. Berth's own record of a pause is the durable
//! lease in `scaling.json` (taken and released by compare-and-swap, reaped when it expires);
//! an adapter carries the pause out. The built-in adapter has nothing to carry out: the
//! recorded state is what it exposes (`GET .../groups/{group}` shows it). [`AwsAutoScaling`]
//! suspends and resumes an AWS Auto Scaling group's processes; [`PerGroup`] picks one of the
//! two for each group: the AWS one when the group names an Auto Scaling group.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_shared::platform::aws::{self, AUTO_SCALING, AwsClient};
use berth_shared::platform::config::{AutoScaling, Config};
use berth_shared::release::{GroupMember, SUSPENDED_PROCESSES};

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

/// Longest reason kept from an AWS error.
const MAX_REASON_CHARS: usize = 400;
/// Longest one AWS call may take, retries included: an advance waits for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The API version of the awsQuery protocol's Auto Scaling.
const API_VERSION: &str = "2011-01-01";

/// AWS Auto Scaling: `SuspendProcesses` and `ResumeProcesses` of [`SUSPENDED_PROCESSES`],
/// `DescribeAutoScalingGroups` for the members, through the shared AWS request layer
/// (credentials from the environment, endpoint `AWS_ENDPOINT_URL_AUTO_SCALING` /
/// `AWS_ENDPOINT_URL`).
pub struct AwsAutoScaling {
    client: AwsClient,
}

/// A group as `DescribeAutoScalingGroups` lists it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Described {
    name: String,
    members: Vec<GroupMember>,
}

impl AwsAutoScaling {
    /// For `region` (`AWS_REGION`).
    pub fn new(region: &str) -> Self {
        Self { client: AwsClient::from_env(&AUTO_SCALING, region, CALL_TIMEOUT) }
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: AwsClient) -> Self {
        Self { client }
    }

    fn name(target: &ScalingTarget) -> Result<&str, ScalingError> {
        target
            .auto_scaling_group
            .as_deref()
            .ok_or_else(|| ScalingError::Backend("the group names no Auto Scaling group".into()))
    }

    /// The named group's description, `None` if AWS has none of that name.
    async fn describe(&self, name: &str) -> Result<Option<Described>, ScalingError> {
        let params = [("AutoScalingGroupNames.member.1".to_owned(), name.to_owned())];
        let xml = self.client.query("DescribeAutoScalingGroups", API_VERSION, &params).await.map_err(backend)?;
        let groups = read_groups(&xml).map_err(backend)?;
        Ok(groups.into_iter().find(|g| g.name == name))
    }

    /// `SuspendProcesses` or `ResumeProcesses` of the eight processes.
    async fn processes(&self, action: &'static str, name: &str) -> Result<(), ScalingError> {
        let mut params = vec![("AutoScalingGroupName".to_owned(), name.to_owned())];
        params.extend(
            SUSPENDED_PROCESSES
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("ScalingProcesses.member.{}", i + 1), (*p).to_owned())),
        );
        self.client.query(action, API_VERSION, &params).await.map_err(backend)?;
        Ok(())
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

fn backend(error: impl std::fmt::Display) -> ScalingError {
    ScalingError::Backend(error.to_string().chars().take(MAX_REASON_CHARS).collect())
}

/// The groups of a `DescribeAutoScalingGroups` answer, each with its instances' ids and
/// lifecycle states.
fn read_groups(xml: &str) -> Result<Vec<Described>, String> {
    const GROUP: [&str; 4] =
        ["DescribeAutoScalingGroupsResponse", "DescribeAutoScalingGroupsResult", "AutoScalingGroups", "member"];
    let (mut groups, mut group, mut answered) = (Vec::new(), Described::default(), false);
    // The instance being read: its id and lifecycle state.
    let mut member = (String::new(), String::new());
    aws::xml::walk(xml, |path, text| {
        answered |= aws::xml::is(path, &["DescribeAutoScalingGroupsResponse"]);
        let Some(rest) = aws::xml::under(path, &GROUP) else { return };
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match (rest.as_slice(), text) {
            (["AutoScalingGroupName"], Some(name)) => group.name = name,
            (["Instances", "member", "InstanceId"], Some(id)) => member.0 = id,
            (["Instances", "member", "LifecycleState"], Some(state)) => member.1 = state,
            (["Instances", "member"], _) => {
                let (instance_id, lifecycle_state) = std::mem::take(&mut member);
                if !instance_id.is_empty() {
                    group.members.push(GroupMember { instance_id, lifecycle_state });
                }
            }
            ([], _) => groups.push(std::mem::take(&mut group)),
            _ => {}
        }
    })
    .map_err(|e| e.to_string())?;
    if answered { Ok(groups) } else { Err("an answer that is not DescribeAutoScalingGroupsResponse".into()) }
}

#[async_trait]
impl ScalingAdapter for AwsAutoScaling {
    async fn suspend(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        let name = Self::name(target)?;
        match self.processes("SuspendProcesses", name).await {
            Ok(()) => {
                tracing::info!(group = %target.group.group, auto_scaling_group = name, "AWS Auto Scaling processes suspended");
                Ok(())
            }
            Err(error) => Err(self.explain(name, error).await),
        }
    }

    async fn resume(&self, target: &ScalingTarget) -> Result<(), ScalingError> {
        let name = Self::name(target)?;
        match self.processes("ResumeProcesses", name).await {
            Ok(()) => {
                tracing::info!(group = %target.group.group, auto_scaling_group = name, "AWS Auto Scaling processes resumed");
                Ok(())
            }
            // A group that is gone has nothing suspended: the resume is done, or the lease
            // would be retried for ever.
            Err(error) => match self.explain(name, error).await {
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
        Ok(Some(group.members))
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

    #[test]
    fn a_describe_answer_gives_each_group_and_its_instances() {
        let xml = r#"<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
  <DescribeAutoScalingGroupsResult>
    <AutoScalingGroups>
      <member>
        <AutoScalingGroupName>web</AutoScalingGroupName>
        <Instances>
          <member><InstanceId>i-1</InstanceId><LifecycleState>InService</LifecycleState><Tags><member><Key>InstanceId</Key></member></Tags></member>
          <member><LifecycleState>Pending</LifecycleState><InstanceId>i-2</InstanceId></member>
        </Instances>
        <SuspendedProcesses><member><ProcessName>Launch</ProcessName></member></SuspendedProcesses>
      </member>
      <member><AutoScalingGroupName>empty</AutoScalingGroupName><Instances/></member>
    </AutoScalingGroups>
  </DescribeAutoScalingGroupsResult>
</DescribeAutoScalingGroupsResponse>"#;
        let member = |id: &str, state: &str| GroupMember { instance_id: id.into(), lifecycle_state: state.into() };
        assert_eq!(
            read_groups(xml).unwrap(),
            [
                Described { name: "web".into(), members: vec![member("i-1", "InService"), member("i-2", "Pending")] },
                Described { name: "empty".into(), members: vec![] },
            ]
        );
        assert!(read_groups("<ErrorResponse/>").is_err());
        assert!(read_groups(&"<a>".repeat(100)).is_err());
    }
}

//! The seam to a group's load balancer: a host is drained (no new connections), taken out
//! before its stop script runs, and put back once healthy. [`Haproxy`] speaks HAProxy's
//! runtime API (TCP or a unix socket); [`TargetGroup`] deregisters and registers targets of an
//! AWS target group. [`PerKind`] picks one per group. Every call is idempotent: the engine
//! repeats them after a crash or a failed call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::error::DisplayErrorContext;
use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthStateEnum};
use berth_shared::platform::config::Config;
use berth_shared::release::{HaproxyBackend, LoadBalancer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::aws::LazyClient;

/// A host as the load balancer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Berth's host name (HAProxy's server name, by default).
    pub host: String,
    /// The EC2 instance it registered as (a target group's target id when set).
    pub instance_id: Option<String>,
}

/// Why a load balancer call did not happen. Displays as one line, shown on the release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalancerError {
    /// The group names a target group but this process does not talk to AWS.
    #[error("the group names an AWS target group but BERTH_TARGET_GROUPS is not aws here")]
    NotConfigured,
    /// The load balancer refused or did not answer: worth retrying.
    #[error("{0}")]
    Backend(String),
}

/// Drains, takes out and puts back a group's hosts.
#[async_trait]
pub trait BalancerAdapter: Send + Sync {
    /// Stops sending new connections to `hosts`.
    async fn drain(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError>;
    /// Whether `hosts` have no connection left (or the load balancer says draining is over).
    async fn drained(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<bool, BalancerError>;
    /// Takes `hosts` out altogether: their scripts may run.
    async fn take_out(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError>;
    /// Puts `hosts` back into service.
    async fn put_back(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError>;
    /// Whether this process can drive `lb`.
    fn reaches(&self, lb: &LoadBalancer) -> Result<(), BalancerError>;
}

/// Longest one call may take: an advance waits for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest runtime API answer read (`show stat` of a large configuration is bigger than a
/// command's answer, still far below this).
const MAX_ANSWER_BYTES: u64 = 8 << 20;
/// Longest reason kept from an error.
const MAX_REASON_CHARS: usize = 400;

fn backend(text: impl std::fmt::Display) -> BalancerError {
    BalancerError::Backend(text.to_string().chars().take(MAX_REASON_CHARS).collect())
}

/// HAProxy over its runtime API, one command a connection (the API's non-interactive mode):
/// `set server B/S state drain|maint|ready`, and `show stat` for the servers' sessions.
pub struct Haproxy;

impl Haproxy {
    /// Sends one command and reads the whole answer (the API closes after it).
    pub async fn command(api: &str, command: &str) -> Result<String, BalancerError> {
        let exchange = async {
            let api = api.strip_prefix("unix:").unwrap_or(api);
            if api.starts_with('/') {
                let stream = tokio::net::UnixStream::connect(api).await?;
                Self::exchange(stream, command).await
            } else {
                let stream = tokio::net::TcpStream::connect(api).await?;
                Self::exchange(stream, command).await
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(backend(format_args!("HAProxy runtime API at {api}: {e}"))),
            Err(_) => Err(backend(format_args!("HAProxy runtime API at {api}: no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, command: &str) -> std::io::Result<String> {
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut stream).take(MAX_ANSWER_BYTES).read_to_end(&mut answer).await?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    async fn set_state(lb: &HaproxyBackend, hosts: &[Member], state: &str) -> Result<(), BalancerError> {
        for member in hosts {
            let server = lb.server_of(&member.host);
            let answer =
                Self::command(&lb.runtime_api, &format!("set server {}/{server} state {state}", lb.backend)).await?;
            // Success answers nothing; anything else is HAProxy's reason ("No such server.").
            let answer = answer.trim();
            if !answer.is_empty() {
                return Err(backend(format_args!(
                    "HAProxy: set server {}/{server} state {state}: {answer}",
                    lb.backend
                )));
            }
        }
        Ok(())
    }

    fn config(lb: &LoadBalancer) -> Result<&HaproxyBackend, BalancerError> {
        lb.haproxy.as_ref().ok_or_else(|| backend("the group names no HAProxy backend"))
    }
}

/// The current sessions (`scur`) of `servers` of `backend` in `show stat` CSV; `None` for
/// a server the answer does not list.
pub fn sessions(stat: &str, backend: &str, servers: &[String]) -> Vec<Option<u64>> {
    let mut lines = stat.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(scur)) = (column("pxname"), column("svname"), column("scur")) else {
        return vec![None; servers.len()];
    };
    let mut found = std::collections::HashMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.get(px) == Some(&backend)
            && let (Some(name), Some(count)) = (fields.get(sv), fields.get(scur).and_then(|c| c.parse::<u64>().ok()))
        {
            found.insert(*name, count);
        }
    }
    servers.iter().map(|s| found.get(s.as_str()).copied()).collect()
}

#[async_trait]
impl BalancerAdapter for Haproxy {
    async fn drain(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        Self::set_state(Self::config(lb)?, hosts, "drain").await
    }

    async fn drained(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<bool, BalancerError> {
        let config = Self::config(lb)?;
        let stat = Self::command(&config.runtime_api, "show stat").await?;
        let servers: Vec<String> = hosts.iter().map(|m| config.server_of(&m.host)).collect();
        let counts = sessions(&stat, &config.backend, &servers);
        if let Some(server) = counts.iter().zip(&servers).find_map(|(count, server)| count.is_none().then_some(server))
        {
            return Err(backend(format_args!("HAProxy: no server {}/{server} in show stat", config.backend)));
        }
        Ok(counts.iter().all(|c| *c == Some(0)))
    }

    async fn take_out(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        Self::set_state(Self::config(lb)?, hosts, "maint").await
    }

    async fn put_back(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        Self::set_state(Self::config(lb)?, hosts, "ready").await
    }

    fn reaches(&self, _lb: &LoadBalancer) -> Result<(), BalancerError> {
        Ok(())
    }
}

/// Each group's load balancer to the adapter of its kind: HAProxy always, target groups
/// with `aws` (else refused).
pub struct PerKind {
    aws: Option<Arc<dyn BalancerAdapter>>,
}

impl PerKind {
    /// With `aws` for target groups (`None`: they are refused).
    pub fn new(aws: Option<Arc<dyn BalancerAdapter>>) -> Self {
        Self { aws }
    }

    fn pick(&self, lb: &LoadBalancer) -> Result<&dyn BalancerAdapter, BalancerError> {
        match (&lb.target_group_arn, &self.aws) {
            (None, _) => Ok(&Haproxy),
            (Some(_), Some(aws)) => Ok(aws.as_ref()),
            (Some(_), None) => Err(BalancerError::NotConfigured),
        }
    }
}

#[async_trait]
impl BalancerAdapter for PerKind {
    async fn drain(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        self.pick(lb)?.drain(lb, hosts).await
    }
    async fn drained(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<bool, BalancerError> {
        self.pick(lb)?.drained(lb, hosts).await
    }
    async fn take_out(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        self.pick(lb)?.take_out(lb, hosts).await
    }
    async fn put_back(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        self.pick(lb)?.put_back(lb, hosts).await
    }
    fn reaches(&self, lb: &LoadBalancer) -> Result<(), BalancerError> {
        self.pick(lb).map(|_| ())
    }
}

/// The adapter the configuration asks for: [`PerKind`], with [`TargetGroup`] when
/// `BERTH_TARGET_GROUPS=aws`.
pub fn for_config(config: &Config) -> Arc<dyn BalancerAdapter> {
    let aws = config.target_groups.then(|| Arc::new(TargetGroup::new(&config.s3.region)) as Arc<dyn BalancerAdapter>);
    Arc::new(PerKind::new(aws))
}

/// An AWS target group: `DeregisterTargets` drains (AWS's deregistration delay), draining is
/// over once `DescribeTargetHealth` shows none `draining`, `RegisterTargets` puts back.
/// Targets are the hosts' EC2 instance ids (their names when they registered none).
pub struct TargetGroup {
    client: LazyClient<aws_sdk_elasticloadbalancingv2::Client>,
}

impl TargetGroup {
    /// For `region` (`AWS_REGION`), from the SDK's usual sources.
    pub fn new(region: &str) -> Self {
        Self { client: LazyClient::new(region, CALL_TIMEOUT, aws_sdk_elasticloadbalancingv2::Client::new) }
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        Self { client: LazyClient::with_client(client, aws_sdk_elasticloadbalancingv2::Client::new) }
    }

    async fn client(&self) -> &aws_sdk_elasticloadbalancingv2::Client {
        self.client.get().await
    }

    fn arn(lb: &LoadBalancer) -> Result<&str, BalancerError> {
        lb.target_group_arn.as_deref().ok_or_else(|| backend("the group names no target group"))
    }

    fn targets(hosts: &[Member]) -> Result<Vec<TargetDescription>, BalancerError> {
        Ok(hosts
            .iter()
            .map(|m| TargetDescription::builder().id(m.instance_id.as_deref().unwrap_or(&m.host)).build())
            .collect())
    }

    /// Each target's health state, in order.
    async fn states(
        &self,
        lb: &LoadBalancer,
        hosts: &[Member],
    ) -> Result<Vec<Option<TargetHealthStateEnum>>, BalancerError> {
        let answer = self
            .client()
            .await
            .describe_target_health()
            .target_group_arn(Self::arn(lb)?)
            .set_targets(Some(Self::targets(hosts)?))
            .send()
            .await
            .map_err(|e| backend(format_args!("target group: {}", DisplayErrorContext(e))))?;
        let by_id: std::collections::HashMap<&str, Option<TargetHealthStateEnum>> = answer
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?;
                Some((id, d.target_health().and_then(|h| h.state().cloned())))
            })
            .collect();
        Ok(hosts.iter().map(|m| by_id.get(m.instance_id.as_deref().unwrap_or(&m.host)).cloned().flatten()).collect())
    }
}

#[async_trait]
impl BalancerAdapter for TargetGroup {
    async fn drain(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        // Only targets still registered: deregistering one that is not is an error on AWS.
        let states = self.states(lb, hosts).await?;
        let registered: Vec<Member> = hosts
            .iter()
            .zip(states)
            .filter(|(_, s)| !matches!(s, Some(TargetHealthStateEnum::Unused | TargetHealthStateEnum::Draining)))
            .map(|(m, _)| m.clone())
            .collect();
        if registered.is_empty() {
            return Ok(());
        }
        self.client()
            .await
            .deregister_targets()
            .target_group_arn(Self::arn(lb)?)
            .set_targets(Some(Self::targets(&registered)?))
            .send()
            .await
            .map_err(|e| backend(format_args!("target group: {}", DisplayErrorContext(e))))?;
        Ok(())
    }

    async fn drained(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<bool, BalancerError> {
        let states = self.states(lb, hosts).await?;
        Ok(!states.iter().any(|s| matches!(s, Some(TargetHealthStateEnum::Draining))))
    }

    async fn take_out(&self, _lb: &LoadBalancer, _hosts: &[Member]) -> Result<(), BalancerError> {
        // Deregistered already: out once draining is over.
        Ok(())
    }

    async fn put_back(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        self.client()
            .await
            .register_targets()
            .target_group_arn(Self::arn(lb)?)
            .set_targets(Some(Self::targets(hosts)?))
            .send()
            .await
            .map_err(|e| backend(format_args!("target group: {}", DisplayErrorContext(e))))?;
        Ok(())
    }

    fn reaches(&self, _lb: &LoadBalancer) -> Result<(), BalancerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_read_from_show_stat_by_backend_and_server() {
        let stat = "# pxname,svname,qcur,qmax,scur,smax\nweb,FRONTEND,,,3,9\nweb,h1,0,0,2,5\nweb,h2,0,0,0,1\nother,h1,0,0,7,7\n";
        let servers = ["h1".to_owned(), "h2".to_owned(), "h3".to_owned()];
        assert_eq!(sessions(stat, "web", &servers), [Some(2), Some(0), None]);
        assert_eq!(sessions("garbage", "web", &servers[..1]), [None]);
    }

    #[tokio::test]
    async fn target_groups_are_refused_without_aws_and_an_unreachable_haproxy_is_an_error() {
        let haproxy = LoadBalancer {
            haproxy: Some(HaproxyBackend { runtime_api: "127.0.0.1:9".into(), backend: "web".into(), server: None }),
            target_group_arn: None,
            drain_seconds: 0,
        };
        let group = LoadBalancer { haproxy: None, target_group_arn: Some("arn:x".into()), drain_seconds: 0 };
        let off = PerKind::new(None);
        assert_eq!(off.reaches(&group), Err(BalancerError::NotConfigured));
        assert_eq!(off.reaches(&haproxy), Ok(()));
        let member = Member { host: "h1".into(), instance_id: None };
        assert!(
            matches!(off.drain(&haproxy, &[member]).await, Err(BalancerError::Backend(why)) if why.contains("127.0.0.1:9"))
        );
    }
}

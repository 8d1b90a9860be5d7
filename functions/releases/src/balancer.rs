//! The seam to a group's load balancer: a host is drained (no new connections), taken out
//! before its stop script runs, and put back once healthy. [`Haproxy`] speaks HAProxy's
//! runtime API (TCP or a unix socket); [`TargetGroup`] deregisters and registers targets of an
//! AWS target group. [`PerKind`] picks one per group. Every call is idempotent: the engine
//! repeats them after a crash or a failed call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_shared::platform::aws::{self, AwsClient, ELB_V2};
use berth_shared::platform::config::Config;
use berth_shared::release::{HaproxyBackend, LoadBalancer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// The API version of the awsQuery protocol's Elastic Load Balancing v2.
const API_VERSION: &str = "2015-12-01";

/// An AWS target group: `DeregisterTargets` drains (AWS's deregistration delay), draining is
/// over once `DescribeTargetHealth` shows none `draining`, `RegisterTargets` puts back.
/// Targets are the hosts' EC2 instance ids (their names when they registered none). Called
/// through the shared AWS request layer (credentials from the environment, endpoint
/// `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2` / `AWS_ENDPOINT_URL`).
pub struct TargetGroup {
    client: AwsClient,
}

impl TargetGroup {
    /// For `region` (`AWS_REGION`).
    pub fn new(region: &str) -> Self {
        Self { client: AwsClient::from_env(&ELB_V2, region, CALL_TIMEOUT) }
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: AwsClient) -> Self {
        Self { client }
    }

    fn arn(lb: &LoadBalancer) -> Result<&str, BalancerError> {
        lb.target_group_arn.as_deref().ok_or_else(|| backend("the group names no target group"))
    }

    fn target_id(member: &Member) -> &str {
        member.instance_id.as_deref().unwrap_or(&member.host)
    }

    /// One call on `hosts` of the target group: `TargetGroupArn` and `Targets.member.N.Id`.
    async fn call(&self, action: &'static str, lb: &LoadBalancer, hosts: &[Member]) -> Result<String, BalancerError> {
        let mut params = vec![("TargetGroupArn".to_owned(), Self::arn(lb)?.to_owned())];
        params.extend(
            hosts
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("Targets.member.{}.Id", i + 1), Self::target_id(m).to_owned())),
        );
        self.client.query(action, API_VERSION, &params).await.map_err(|e| backend(format_args!("target group: {e}")))
    }

    /// Each target's health state (`healthy`, `draining`, `unused`, ...), in order.
    async fn states(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<Vec<Option<String>>, BalancerError> {
        let xml = self.call("DescribeTargetHealth", lb, hosts).await?;
        let by_id = read_health(&xml).map_err(|e| backend(format_args!("target group: DescribeTargetHealth: {e}")))?;
        Ok(hosts.iter().map(|m| by_id.get(Self::target_id(m)).cloned().flatten()).collect())
    }
}

/// Each target's health state in a `DescribeTargetHealth` answer, by target id.
fn read_health(xml: &str) -> Result<std::collections::HashMap<String, Option<String>>, String> {
    const DESCRIPTION: [&str; 4] =
        ["DescribeTargetHealthResponse", "DescribeTargetHealthResult", "TargetHealthDescriptions", "member"];
    let (mut states, mut answered) = (std::collections::HashMap::new(), false);
    let (mut id, mut state) = (None, None);
    aws::xml::walk(xml, |path, text| {
        answered |= aws::xml::is(path, &["DescribeTargetHealthResponse"]);
        let Some(rest) = aws::xml::under(path, &DESCRIPTION) else { return };
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match (rest.as_slice(), text) {
            (["Target", "Id"], Some(text)) => id = Some(text),
            (["TargetHealth", "State"], Some(text)) => state = Some(text),
            ([], _) => {
                if let Some(id) = id.take() {
                    states.insert(id, state.take());
                }
                state = None;
            }
            _ => {}
        }
    })
    .map_err(|e| e.to_string())?;
    if answered { Ok(states) } else { Err("an answer that is not DescribeTargetHealthResponse".into()) }
}

#[async_trait]
impl BalancerAdapter for TargetGroup {
    async fn drain(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        // Only targets still registered: deregistering one that is not is an error on AWS.
        let states = self.states(lb, hosts).await?;
        let registered: Vec<Member> = hosts
            .iter()
            .zip(states)
            .filter(|(_, s)| !matches!(s.as_deref(), Some("unused" | "draining")))
            .map(|(m, _)| m.clone())
            .collect();
        if registered.is_empty() {
            return Ok(());
        }
        self.call("DeregisterTargets", lb, &registered).await?;
        Ok(())
    }

    async fn drained(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<bool, BalancerError> {
        let states = self.states(lb, hosts).await?;
        Ok(!states.iter().any(|s| s.as_deref() == Some("draining")))
    }

    async fn take_out(&self, _lb: &LoadBalancer, _hosts: &[Member]) -> Result<(), BalancerError> {
        // Deregistered already: out once draining is over.
        Ok(())
    }

    async fn put_back(&self, lb: &LoadBalancer, hosts: &[Member]) -> Result<(), BalancerError> {
        self.call("RegisterTargets", lb, hosts).await?;
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

    #[test]
    fn a_target_health_answer_gives_each_targets_state() {
        let xml = r#"<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
  <DescribeTargetHealthResult><TargetHealthDescriptions>
    <member><HealthCheckPort>80</HealthCheckPort><TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason></TargetHealth><Target><Id>i-1</Id><Port>80</Port></Target></member>
    <member><Target><Id>h2</Id></Target></member>
  </TargetHealthDescriptions></DescribeTargetHealthResult>
</DescribeTargetHealthResponse>"#;
        let states = read_health(xml).unwrap();
        assert_eq!(states.get("i-1"), Some(&Some("draining".to_owned())));
        assert_eq!(states.get("h2"), Some(&None));
        assert_eq!(states.len(), 2);
        assert!(read_health("<ErrorResponse><Error><Code>TargetGroupNotFound</Code></Error></ErrorResponse>").is_err());
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

//! The engine's gates: a release's alarms (read before each batch, through pauses and every
//! few seconds while a batch runs) and its group's load balancer (each batch's hosts drained
//! and taken out before their jobs are handed out, put back once healthy, and at the end).
//! What was done is recorded by compare-and-swap before the next step, so a crash repeats at
//! most an idempotent call.

use super::*;
use crate::alarms::AlarmError;
use crate::balancer::Member;
use berth_shared::release::{AlarmState, Balanced, BalancerState, LoadBalancer, ReleaseOptions};

/// How long, past `drain_seconds`, a batch's hosts may fail to be taken out (the load
/// balancer refusing or not answering) before the release fails instead of waiting on.
pub const BALANCER_PATIENCE_SECONDS: u64 = 300;

/// What the alarms say about a running release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AlarmGate {
    /// None fires (or the release names none).
    Clear,
    /// The source does not answer: no batch starts, the current one goes on.
    Hold,
    /// Fail the release with this reason.
    Fail(String),
}

impl Engine {
    /// Refuses, at creation, a release whose gates this process cannot carry out: alarms of a
    /// kind it has no source for, or too many hosts behind a load balancer.
    pub fn check_gates(
        &self,
        options: &ReleaseOptions,
        lb: Option<&LoadBalancer>,
        hosts: usize,
    ) -> Result<(), ApiError> {
        for (i, alarm) in options.alarms.iter().enumerate() {
            if let Err(why) = self.alarms.reaches(alarm) {
                return Err(ApiError::invalid(format!("alarms[{i}]"), "alarm_source_unavailable", why.to_string()));
            }
        }
        if let Some(lb) = lb {
            self.check_load_balancer(lb)?;
            if hosts > release::MAX_BALANCED_HOSTS {
                return Err(ApiError::Conflict {
                    code: "too_many_balanced_hosts",
                    message: format!(
                        "a release of a group behind a load balancer reaches at most {} hosts",
                        release::MAX_BALANCED_HOSTS
                    ),
                });
            }
        }
        Ok(())
    }

    /// Validates a group's load balancer and that this process can drive it.
    pub fn check_load_balancer(&self, lb: &LoadBalancer) -> Result<(), ApiError> {
        release::validate_load_balancer(lb)?;
        self.balancer.reaches(lb).map_err(|why| {
            ApiError::invalid("load_balancer.target_group_arn", "target_groups_unavailable", why.to_string())
        })
    }

    /// Reads the release's alarms, at most every [`release::ALARM_CHECK_SECONDS`] unless
    /// `fresh` (before a batch starts). An unreachable source is recorded on the release and
    /// holds it; past `alarm_unreachable_seconds` it fails the release.
    pub(super) async fn alarm_gate(&self, release: &Release, now: u64, fresh: bool) -> Result<AlarmGate, EventError> {
        if release.options.alarms.is_empty() || release.status.is_terminal() {
            return Ok(AlarmGate::Clear);
        }
        if !fresh
            && let Some((at, gate)) = self.alarm_checks.lock().get(&release.id)
            && now < at + release::ALARM_CHECK_SECONDS
        {
            return Ok(gate.clone());
        }
        let path = layout::alarms(&release.id);
        let gate = match self.alarms.firing(&release.options.alarms).await {
            Ok(Some(name)) => return Ok(AlarmGate::Fail(format!("alarm: {name}"))),
            Ok(None) => {
                if self.store().get::<AlarmState>(&path).await.map_err(retry)?.is_some() {
                    self.store().delete(&path).await.map_err(retry)?;
                }
                AlarmGate::Clear
            }
            Err(why) => {
                let why = match why {
                    AlarmError::NotConfigured(text) => text.to_owned(),
                    AlarmError::Unreachable(text) => text,
                };
                tracing::warn!(release = %release.id, %why, "alarm source unreachable; retrying");
                let recorded = self
                    .store()
                    .modify::<AlarmState, StoreError, _>(&path, |current| {
                        let since = current.and_then(|c| c.unreachable_since).unwrap_or(now);
                        Ok(AlarmState { unreachable_since: Some(since), error: Some(why.clone()) })
                    })
                    .await
                    .map_err(retry)?;
                let since = recorded.value.unreachable_since.unwrap_or(now);
                if now.saturating_sub(since) >= release.options.alarm_unreachable_seconds {
                    return Ok(AlarmGate::Fail(format!(
                        "alarm source unreachable for {} s (alarm_unreachable_seconds {}): {why}",
                        now - since,
                        release.options.alarm_unreachable_seconds
                    )));
                }
                AlarmGate::Hold
            }
        };
        self.alarm_checks.lock().insert(release.id.clone(), (now, gate.clone()));
        Ok(gate)
    }

    /// Before `confirm` starts the next batch, the alarms are read afresh: `Some(reason)` when
    /// one fires (the caller fails the release), 409 `alarms_unreachable` while the source
    /// does not answer.
    pub async fn confirm_gate(&self, release: &Release) -> Result<Option<String>, ApiError> {
        if !matches!(release.phase, release::Phase::AwaitingConfirm { .. }) {
            return Ok(None);
        }
        match self.alarm_gate(release, unix_now(), true).await {
            Ok(AlarmGate::Clear) => Ok(None),
            Ok(AlarmGate::Fail(reason)) => Ok(Some(reason)),
            Ok(AlarmGate::Hold) => Err(ApiError::Conflict {
                code: "alarms_unreachable",
                message:
                    "the release's alarm source does not answer; no batch starts until it does (see alarms_unreachable)"
                        .into(),
            }),
            Err(error) => {
                tracing::warn!(release = %release.id, %error, "alarm gate could not be read at confirm");
                Err(ApiError::Unavailable("object store"))
            }
        }
    }

    pub(super) fn forget_alarms(&self, id: &str) {
        self.alarm_checks.lock().remove(id);
    }

    /// The members of `hosts` as the load balancer knows them (a target group needs their
    /// instance ids).
    async fn members(&self, release: &Release, lb: &LoadBalancer, hosts: &[String]) -> Result<Vec<Member>, StoreError> {
        let group = Self::group_of(release);
        let mut members = Vec::with_capacity(hosts.len());
        for host in hosts {
            let instance_id = match lb.target_group_arn {
                Some(_) => self
                    .store()
                    .get::<layout::HostRecord>(&layout::host_record(&group, host))
                    .await?
                    .and_then(|i| i.value.instance_id),
                None => None,
            };
            members.push(Member { host: host.clone(), instance_id });
        }
        Ok(members)
    }

    /// Records `hosts` as `state` and clears a recorded error.
    async fn record_balanced(&self, release: &Release, hosts: &[String], state: Balanced) -> Result<(), StoreError> {
        self.store()
            .modify::<BalancerState, StoreError, _>(&layout::balancer(&release.id), |current| {
                let mut next = current.unwrap_or_default();
                for host in hosts {
                    next.hosts.insert(host.clone(), state);
                }
                next.error = None;
                Ok(next)
            })
            .await?;
        Ok(())
    }

    /// Shows why the load balancer failed on the release (best effort: the caller retries).
    async fn record_balancer_error(&self, release: &Release, why: &str) {
        let recorded = self
            .store()
            .modify::<BalancerState, StoreError, _>(&layout::balancer(&release.id), |current| {
                Ok(BalancerState { error: Some(why.to_owned()), ..current.unwrap_or_default() })
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record the load balancer error");
        }
    }

    async fn balancer_state(&self, release: &Release) -> Result<BalancerState, StoreError> {
        Ok(self
            .store()
            .get::<BalancerState>(&layout::balancer(&release.id))
            .await?
            .map(|d| d.value)
            .unwrap_or_default())
    }

    /// Drains batch `batch`'s hosts and takes them out once no connection is left or
    /// `drain_seconds` passed. `Ok(true)` once all are out; `Err` (retried) while the load
    /// balancer fails, and a failed release past [`BALANCER_PATIENCE_SECONDS`].
    pub(super) async fn drain_batch(&self, release: &Release, batch: usize, now: u64) -> Result<Drained, EventError> {
        let Some(lb) = release.load_balancer.as_ref() else { return Ok(Drained::Out) };
        let Some(hosts) = release.batches.get(batch) else { return Ok(Drained::Out) };
        let state = self.balancer_state(release).await.map_err(retry)?;
        let deadline = release.phase_started_at + lb.drain_seconds + BALANCER_PATIENCE_SECONDS;
        let failed = |why: String| {
            if now >= deadline {
                Ok(Drained::Failed(format!(
                    "the load balancer did not take batch {}'s hosts out within {} s: {why}",
                    batch + 1,
                    deadline - release.phase_started_at
                )))
            } else {
                Err(EventError::Retry(why))
            }
        };
        let fresh: Vec<String> = hosts.iter().filter(|h| !state.hosts.contains_key(*h)).cloned().collect();
        if !fresh.is_empty() {
            let members = self.members(release, lb, &fresh).await.map_err(retry)?;
            if let Err(why) = self.balancer.drain(lb, &members).await {
                let why = format!("draining could not start (retrying; no host is stopped meanwhile): {why}");
                self.record_balancer_error(release, &why).await;
                return failed(why);
            }
            self.record_balanced(release, &fresh, Balanced::Draining { since: now }).await.map_err(retry)?;
            tracing::info!(release = %release.id, batch = batch + 1, hosts = fresh.len(), "draining");
        }
        let draining: Vec<String> =
            hosts.iter().filter(|h| matches!(state.hosts.get(*h), Some(Balanced::Draining { .. }))).cloned().collect();
        let draining = if fresh.is_empty() { draining } else { [draining, fresh].concat() };
        if draining.is_empty() {
            return Ok(Drained::Out);
        }
        let since = draining
            .iter()
            .filter_map(|h| match state.hosts.get(h) {
                Some(Balanced::Draining { since }) => Some(*since),
                _ => None,
            })
            .min()
            .unwrap_or(now);
        let members = self.members(release, lb, &draining).await.map_err(retry)?;
        let over = now >= since + lb.drain_seconds;
        let out = match over {
            true => Ok(true),
            false => self.balancer.drained(lb, &members).await,
        };
        let out = match out {
            Ok(true) => self.balancer.take_out(lb, &members).await.map(|()| true),
            other => other,
        };
        match out {
            Ok(true) => {
                self.record_balanced(release, &draining, Balanced::Out { since: now }).await.map_err(retry)?;
                tracing::info!(release = %release.id, batch = batch + 1, hosts = draining.len(), "taken out of the load balancer");
                Ok(Drained::Out)
            }
            Ok(false) => Ok(Drained::Waiting),
            Err(why) => {
                let why = format!("hosts could not be taken out (retrying; no host is stopped meanwhile): {why}");
                self.record_balancer_error(release, &why).await;
                failed(why)
            }
        }
    }

    /// Puts back the hosts of `batch` that are out and succeeded (healthy).
    pub(super) async fn put_back_healthy(&self, release: &Release, batch: usize) -> Result<(), EventError> {
        let Some(hosts) = release.batches.get(batch) else { return Ok(()) };
        let state = self.balancer_state(release).await.map_err(retry)?;
        let mut healthy = Vec::new();
        for host in hosts.iter().filter(|h| matches!(state.hosts.get(*h), Some(Balanced::Out { .. }))) {
            let result = self.store().get::<HostResult>(&layout::result(&release.id, host)).await.map_err(retry)?;
            if result.is_some_and(|r| r.value.ok) {
                healthy.push(host.clone());
            }
        }
        self.put_back(release, &healthy, unix_now()).await.map_err(|e| EventError::Retry(e.to_string()))
    }

    async fn put_back(&self, release: &Release, hosts: &[String], now: u64) -> Result<(), StoreError> {
        let Some(lb) = release.load_balancer.as_ref().filter(|_| !hosts.is_empty()) else { return Ok(()) };
        let members = self.members(release, lb, hosts).await?;
        if let Err(why) = self.balancer.put_back(lb, &members).await {
            let why = format!("hosts could not be put back (retrying): {why}");
            self.record_balancer_error(release, &why).await;
            return Err(StoreError::Backend(why));
        }
        self.record_balanced(release, hosts, Balanced::Back { at: now }).await?;
        tracing::info!(release = %release.id, hosts = hosts.len(), "put back into the load balancer");
        Ok(())
    }

    /// At the end of a release: every host still draining or out goes back if it is on its
    /// previous revision or healthy on the new one; the others are left out (recorded).
    pub(super) async fn put_back_at_end(&self, release: &Release) -> Result<(), StoreError> {
        if !release.drains() {
            return Ok(());
        }
        let state = self.balancer_state(release).await?;
        let (mut back, mut left) = (Vec::new(), Vec::new());
        for (host, balanced) in &state.hosts {
            if !matches!(balanced, Balanced::Draining { .. } | Balanced::Out { .. }) {
                continue;
            }
            let result = self.store().get::<HostResult>(&layout::result(&release.id, host)).await?;
            if release::put_back_at_end(result.as_ref().map(|r| &r.value)) {
                back.push(host.clone());
            } else {
                left.push(host.clone());
            }
        }
        let now = unix_now();
        self.put_back(release, &back, now).await?;
        if !left.is_empty() {
            self.record_balanced(release, &left, Balanced::LeftOut { at: now }).await?;
        }
        Ok(())
    }
}

/// Where a batch's drain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Drained {
    /// Every host is out: the batch may run.
    Out,
    /// Still draining.
    Waiting,
    /// The load balancer failed for too long: fail the release with this reason.
    Failed(String),
}

//! Advancing a release: re-derive the next move from the documents, time silent hosts out,
//! and write the new state by compare-and-swap. Advances of one release coalesce in a process.

use super::*;

/// Most decisions one advance makes before yielding (a release has at most
/// `2 * MAX_BATCHES + 4` phases, so this is never the limit in practice).
const MAX_STEPS: usize = 512;

impl Engine {
    /// Handles an [`Advance`] event: first notes the report it tells of, if any (see
    /// [`Engine::note_news`]), then advances.
    pub async fn advance_on(&self, event: &Advance) -> Result<(), EventError> {
        if let Some(process) = &event.reported_in {
            if let Some(report) = event.report.as_ref().filter(|_| *process != self.process) {
                self.keep_told(&event.release, report).await;
            }
            self.note_news(&event.release, *process != self.process);
        }
        self.advance(&event.release).await
    }

    /// Handles [`Advance`]. Concurrent advances of one release in this process coalesce: the
    /// running one goes round again instead of two racing on the same document.
    pub async fn advance(&self, id: &str) -> Result<(), EventError> {
        {
            let mut advancing = self.advancing.lock();
            if let Some(again) = advancing.get_mut(id) {
                *again = true;
                return Ok(());
            }
            advancing.insert(id.to_owned(), false);
        }
        // Leaves the map however this ends (an error, a panic): a stale entry would swallow
        // every later advance of the release in this process. (After an error the event is
        // retried, which covers an advance asked for meanwhile.)
        struct Leave<'a> {
            advancing: &'a Mutex<HashMap<String, bool>>,
            id: &'a str,
            armed: bool,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                if self.armed {
                    self.advancing.lock().remove(self.id);
                }
            }
        }
        let mut leave = Leave { advancing: &self.advancing, id, armed: true };
        loop {
            self.advance_once(id).await?;
            let mut advancing = self.advancing.lock();
            match advancing.get_mut(id) {
                Some(again) if *again => *again = false,
                _ => {
                    // Under the same lock as the check: no request can slip in between.
                    advancing.remove(id);
                    leave.armed = false;
                    return Ok(());
                }
            }
        }
    }

    pub(super) async fn advance_once(&self, id: &str) -> Result<(), EventError> {
        let store = self.store();
        for _ in 0..MAX_STEPS {
            let Some(doc) = self.load(id).await.map_err(retry)? else {
                // Never created (a crash between claiming the group and writing it) or gone.
                store.delete(&layout::active(id)).await.map_err(retry)?;
                return Ok(());
            };
            let current = doc.value;
            self.saw(&current, current.status, current.phase);
            if current.status.is_terminal() {
                self.forget_tally(id);
                self.forget_alarms(id);
                self.clean_up(&current).await.map_err(retry)?;
                return Ok(());
            }
            let now = unix_now();
            if let Some(reason) = self.superseded(&current).await.map_err(retry)? {
                let ended =
                    release::apply(&current, &Decision::Finish(release::ReleaseStatus::Cancelled, Some(reason)), now);
                match self.save(&ended, &doc.version).await {
                    Ok(_) | Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(retry(e)),
                }
            }
            if current.pauses_scaling() {
                self.hold_lease(&current, now).await?;
            }
            let gate = self.alarm_gate(&current, now, false).await?;
            if let gates::AlarmGate::Fail(reason) = gate {
                self.finish_failed(&current, &doc.version, reason).await?;
                continue;
            }
            match current.phase {
                release::Phase::Draining { batch } => {
                    let next = match self.drain_batch(&current, batch, now).await? {
                        gates::Drained::Out => {
                            release::apply(&current, &Decision::Move(release::Phase::Batch { batch }), now)
                        }
                        gates::Drained::Waiting => return Ok(()),
                        gates::Drained::Failed(reason) => release::apply(
                            &current,
                            &Decision::Finish(release::ReleaseStatus::Failed, Some(reason)),
                            now,
                        ),
                    };
                    self.save_moved(&current, &next, &doc.version).await?;
                    continue;
                }
                // Healthy hosts go back as they come, not when the whole batch is in.
                release::Phase::Batch { batch } if current.drains() => self.put_back_healthy(&current, batch).await?,
                _ => {}
            }
            // A host that turned unhealthy while watched is decided on at once, whoever else
            // still has to report.
            let unhealthy = self.unhealthy(&current).await.map_err(retry)?;
            if unhealthy.is_empty() && !self.all_reported_or_late(&current, now).await.map_err(retry)? {
                return Ok(());
            }
            // Another process may have moved it while this one waited for the reports: its
            // state, read again, saves reading every report only to lose the write.
            if self.others_report() && self.state(id).await.map_err(retry)?.is_none_or(|s| s.version != doc.version) {
                continue;
            }
            let (pulls, mut results) = self.outcomes(&current).await.map_err(retry)?;
            if !unhealthy.is_empty() && !matches!(current.phase, release::Phase::Batch { .. }) {
                results = self.reports::<HostResult>(id).await.map_err(retry)?;
            }
            let mut decision = release::decide_watched(&current, &pulls, &results, &unhealthy, now);
            // A batch's hosts go back before the release leaves it: a result written after the
            // put-back above (a report racing this advance) is in `results` now.
            if let (release::Phase::Batch { batch }, Decision::Move(_)) = (current.phase, &decision)
                && current.drains()
            {
                self.put_back_healthy(&current, batch).await?;
            }
            // Before a batch starts, the alarms are read afresh; an unreachable source holds it.
            if let Decision::Move(release::Phase::Batch { .. } | release::Phase::Draining { .. }) = decision {
                match self.alarm_gate(&current, now, true).await? {
                    gates::AlarmGate::Clear => {}
                    gates::AlarmGate::Hold => return Ok(()),
                    gates::AlarmGate::Fail(reason) => {
                        decision = Decision::Finish(release::ReleaseStatus::Failed, Some(reason));
                    }
                }
            }
            match &decision {
                Decision::Wait => return Ok(()),
                Decision::TimeOut(hosts) => {
                    for host in hosts {
                        self.time_out(&current, host, now).await.map_err(retry)?;
                    }
                }
                Decision::Move(_) | Decision::Finish(..) => {
                    let next = release::apply(&current, &decision, now);
                    match self.save(&next, &doc.version).await {
                        Ok(_) => {
                            tracing::info!(release = id, status = ?next.status, phase = ?next.phase, "release moved");
                            self.moved_from(Some((current.status, current.phase)), &next).await;
                        }
                        // Someone else moved it (cancel, confirm, another process): decide again.
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(retry(e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Saves a release's move from `current`; a conflict (someone else moved it) is left for
    /// the next round.
    async fn save_moved(&self, current: &Release, next: &Release, version: &Version) -> Result<(), EventError> {
        match self.save(next, version).await {
            Ok(_) => {
                tracing::info!(release = %next.id, status = ?next.status, phase = ?next.phase, "release moved");
                self.moved_from(Some((current.status, current.phase)), next).await;
                Ok(())
            }
            Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(retry(e)),
        }
    }

    async fn finish_failed(&self, current: &Release, version: &Version, reason: String) -> Result<(), EventError> {
        tracing::warn!(release = %current.id, %reason, "release failed by its alarms");
        let next = release::apply(current, &Decision::Finish(release::ReleaseStatus::Failed, Some(reason)), unix_now());
        self.save_moved(current, &next, version).await
    }

    /// Whether deciding needs the reports read: every host of the phase reported (counted
    /// from a listing, without reading a document, and only when the tally says they may all
    /// be in) or the phase's deadline passed. Otherwise the decision is to wait, and an advance
    /// of a 100,000-host release costs no read at all.
    async fn all_reported_or_late(&self, release: &Release, now: u64) -> Result<bool, StoreError> {
        if now >= release.phase_deadline() {
            return Ok(true);
        }
        let store = self.store();
        match release.phase {
            release::Phase::Pulling => {
                let expected = release.hosts().count();
                let list = || async { Ok(store.list_paths(&layout::pulls(&release.id)).await?.len()) };
                Ok(self.counted(release, expected, list).await? >= expected)
            }
            release::Phase::Batch { batch } => {
                let Some(hosts) = release.batches.get(batch) else { return Ok(true) };
                let Some(plan) = self.plan(&release.id).await? else { return Ok(true) };
                let list = || async {
                    let paths = store.list_paths(&layout::results(&release.id)).await?;
                    Ok(paths.iter().filter(|p| plan.batch_of(layout::stem(p)) == Some(batch)).count())
                };
                Ok(self.counted(release, hosts.len(), list).await? >= hosts.len())
            }
            _ => Ok(true),
        }
    }

    /// What hosts reported, as far as the current phase needs it.
    pub async fn outcomes(&self, release: &Release) -> Result<Outcomes, StoreError> {
        let pulls = match release.phase {
            release::Phase::Pulling => self.reports::<PullResult>(&release.id).await?,
            _ => BTreeMap::new(),
        };
        let results = match release.phase {
            release::Phase::Batch { .. } => self.reports::<HostResult>(&release.id).await?,
            _ => BTreeMap::new(),
        };
        Ok((pulls, results))
    }

    /// The hosts of a health-checked release that turned unhealthy after their run succeeded
    /// (one listing, usually of nothing; none for a release without a health check).
    pub async fn unhealthy(&self, release: &Release) -> Result<BTreeMap<String, release::Unhealthy>, StoreError> {
        let watched = matches!(
            release.phase,
            release::Phase::Batch { .. } | release::Phase::Waiting { .. } | release::Phase::AwaitingConfirm { .. }
        );
        if release.deployment.health.is_none() || !watched {
            return Ok(BTreeMap::new());
        }
        read_all(self.store(), &layout::unhealthy(&release.id)).await
    }

    /// Fails a running release now, for a reason outside the budgets (an alarm, say): the same
    /// end as a budget's, so its clean-up (scaling resumed, `auto_rollback`) follows in the
    /// advance this asks for. False when it had ended already.
    pub async fn fail_running(&self, id: &str, reason: String) -> Result<bool, EventError> {
        let decision = Decision::Finish(release::ReleaseStatus::Failed, Some(reason));
        let mut failed = false;
        let ended = self
            .modify::<StoreError>(id, |current| {
                failed = !current.status.is_terminal();
                Ok(if failed { release::apply(current, &decision, unix_now()) } else { current.clone() })
            })
            .await
            .map_err(retry)?;
        if let Some(ended) = ended.filter(|_| failed) {
            self.moved(&ended).await;
            self.request_advance(id, &ended.account).await.map_err(|e| EventError::Retry(e.to_string()))?;
        }
        Ok(failed)
    }

    pub(super) async fn time_out(&self, release: &Release, host: &str, now: u64) -> Result<(), StoreError> {
        let (step, what) = match release.phase {
            release::Phase::Pulling => (Step::Pull, "the pull"),
            _ => (Step::Report, "stop and start"),
        };
        let reason = format!(
            "no report from the agent on {host} within {} s of its phase start ({what}); the host counts as failed",
            release.phase_deadline() - release.phase_started_at
        );
        if step == Step::Pull {
            let pull = PullResult {
                ok: false,
                exit_code: None,
                reason: Some(reason.clone()),
                output: StepOutput::default(),
                at: now,
            };
            create_once(self.store(), &layout::pull(&release.id, host), &pull).await?;
        }
        let result = HostResult { ok: false, step, exit_code: None, reason: Some(reason), at: now };
        if create_once(self.store(), &layout::result(&release.id, host), &result).await? {
            berth_shared::platform::metrics::release_host_finished(false);
        }
        // Written now or before: settled for good (a plan witnessed here knows it only so).
        if let Some(plan) = self.cached_plan(&release.id)
            && let Some(planned) = plan.host(host)
        {
            if step == Step::Pull {
                plan.note_settled(planned, release::JobKind::Pull);
            }
            plan.note_settled(planned, release::JobKind::Run);
        }
        Ok(())
    }
}

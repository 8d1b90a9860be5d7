//! The scaling lease: a running release pauses its group's scaling and renews the pause; a
//! finished one resumes it and frees the group.

use super::*;

impl Engine {
    pub(super) fn group_of(release: &Release) -> GroupRef {
        GroupRef {
            account: release.account.clone(),
            application: release.application.clone(),
            group: release.group.clone(),
        }
    }

    /// Pauses scaling for a running release (or renews its lease), through the group's adapter.
    pub(super) async fn hold_lease(&self, release: &Release, now: u64) -> Result<(), EventError> {
        let group = Self::group_of(release);
        let path = layout::scaling(&group);
        let state = self.store().get::<ScalingState>(&path).await.map_err(retry)?;
        if state
            .as_ref()
            .is_some_and(|s| s.value.suspended && !release::lease_needs_renewal(&s.value, &release.id, now))
        {
            return Ok(());
        }
        // A renewal keeps the Auto Scaling group its lease recorded; a new lease takes the one
        // the group names now.
        let auto_scaling_group = match state.as_ref().and_then(|s| s.value.lease.as_ref()) {
            Some(lease) if lease.release == release.id => lease.auto_scaling_group.clone(),
            _ => self
                .store()
                .get::<Group>(&layout::group_doc(&group))
                .await
                .map_err(retry)?
                .and_then(|g| g.value.auto_scaling_group),
        };
        // The index first: a crash after it leaves at worst an entry the reaper clears.
        self.store().put(&layout::lease(&release.id), &LeaseIndex { group: group.clone() }).await.map_err(retry)?;
        let id = release.id.clone();
        let taken = self
            .store()
            .modify::<ScalingState, PauseError, _>(&path, |current| {
                release::take_lease(&current.unwrap_or_default(), &id, auto_scaling_group.as_deref(), now)
                    .map_err(PauseError::Held)
            })
            .await;
        match taken {
            Ok(taken) if taken.value.suspended => Ok(()),
            // Recorded first, carried out second: a crash in between leaves a lease the
            // reaper resumes, never a pause nobody knows of. Until the adapter confirms, this
            // is a retry (the advance and the sweep come back), and no host is stopped.
            Ok(taken) => {
                let target =
                    ScalingTarget { group, auto_scaling_group: taken.value.lease.and_then(|l| l.auto_scaling_group) };
                if let Err(why) = self.scaling.suspend(&target).await {
                    tracing::warn!(release = %id, %why, "scaling could not be suspended; retrying before any host is stopped");
                    let reason =
                        format!("scaling could not be suspended (retrying; no host is stopped meanwhile): {why}");
                    self.record_scaling_error(&path, &reason).await;
                    return Err(EventError::Retry(reason));
                }
                self.store()
                    .modify::<ScalingState, StoreError, _>(&path, |current| {
                        Ok(release::confirm_suspended(&current.unwrap_or_default(), &id))
                    })
                    .await
                    .map_err(retry)?;
                tracing::info!(release = %id, "scaling suspended");
                Ok(())
            }
            Err(PauseError::Store(e)) => Err(retry(e)),
            // Another release's live lease: wait for it (the sweep comes back).
            Err(PauseError::Held(why)) => Err(EventError::Retry(why)),
        }
    }

    /// Shows why the adapter failed on the group (best effort: the caller retries anyway).
    async fn record_scaling_error(&self, path: &str, reason: &str) {
        let recorded = self
            .store()
            .modify::<ScalingState, StoreError, _>(path, |current| {
                Ok(release::scaling_failed(&current.unwrap_or_default(), reason))
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record the scaling error");
        }
    }

    /// Ends a finished release's claims: resumes scaling, frees the group, leaves the sweep.
    /// Each step is idempotent, so running it again (duplicates, restarts) changes nothing.
    pub async fn clean_up(&self, release: &Release) -> Result<(), StoreError> {
        let group = Self::group_of(release);
        let store = self.store();
        if release.pauses_scaling() {
            self.resume(&group, &release.id, true).await?;
        }
        // Before a rollback starts: it drains the hosts it runs on afresh.
        self.put_back_at_end(release).await?;
        // Read first: a duplicate clean-up finds the group already free and writes nothing.
        let path = layout::group_doc(&group);
        let claimed =
            store.get::<Group>(&path).await?.is_some_and(|g| g.value.active_release.as_ref() == Some(&release.id));
        let convergence = matches!(release.trigger, release::Trigger::Convergence { .. });
        if claimed || convergence {
            // Ledgers before the group is freed (or a rollback reads them).
            self.reconcile_ledgers(release).await?;
        }
        if claimed && release.status == release::ReleaseStatus::Failed && release.options.auto_rollback {
            // Hands the group straight to the rollback; nothing to roll back frees it below.
            match self.start_rollback(release, true).await {
                Ok(_) | Err(ApiError::Conflict { .. }) => {}
                Err(e) => return Err(StoreError::Backend(format!("starting the rollback: {e}"))),
            }
        }
        if claimed {
            let id = release.id.clone();
            let last = super::fleet::last_release_of(release);
            store
                .modify::<Group, StoreError, _>(&path, |current| {
                    let mut group = current.ok_or_else(|| StoreError::NotFound(path.clone()))?;
                    if group.active_release.as_deref() == Some(id.as_str()) {
                        group.active_release = None;
                        group.last_release = Some(last.clone());
                    }
                    Ok(group)
                })
                .await?;
        }
        store.delete(&layout::active(&release.id)).await?;
        self.moved(release).await;
        Ok(())
    }

    /// Resumes scaling held by `release` and drops its lease: the adapter first, so a failed
    /// resume keeps the lease for the reaper to retry. A release that `ended` never takes the
    /// pause again (see [`release::ScalingState::ended`]).
    pub(super) async fn resume(&self, group: &GroupRef, release: &str, ended: bool) -> Result<(), StoreError> {
        let store = self.store();
        let path = layout::scaling(group);
        if let Some(state) = store.get::<ScalingState>(&path).await?
            && state.value.lease.as_ref().is_some_and(|l| l.release == release)
        {
            let target = ScalingTarget {
                group: group.clone(),
                auto_scaling_group: state.value.lease.as_ref().and_then(|l| l.auto_scaling_group.clone()),
            };
            if let Err(why) = self.scaling.resume(&target).await {
                let reason = format!("scaling could not be resumed (retrying): {why}");
                self.record_scaling_error(&path, &reason).await;
                return Err(StoreError::Backend(reason));
            }
            let id = release.to_owned();
            store
                .modify::<ScalingState, StoreError, _>(&path, |current| {
                    Ok(release::release_lease(&current.unwrap_or_default(), &id, ended))
                })
                .await?;
            tracing::info!(release, group = %group.group, "scaling resumed");
        }
        store.delete(&layout::lease(release)).await
    }
}

#[derive(Debug)]
pub(super) enum PauseError {
    Store(StoreError),
    Held(String),
}

impl From<StoreError> for PauseError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancel ends a release and resumes scaling while an advance that read it running may
    /// be about to renew its lease: that advance must not pause scaling again.
    #[tokio::test]
    async fn an_advance_that_read_its_release_before_the_end_does_not_pause_scaling_again() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let running = super::super::reports::tests::plan(2).release;
        let now = unix_now();
        engine.hold_lease(&running, now).await.unwrap();
        let mut cancelled = running.clone();
        cancelled.status = release::ReleaseStatus::Cancelled;
        engine.clean_up(&cancelled).await.unwrap();
        assert!(engine.hold_lease(&running, now).await.is_err(), "the ended release is refused the pause");
        let path = layout::scaling(&Engine::group_of(&running));
        let state = engine.store().get::<ScalingState>(&path).await.unwrap().unwrap().value;
        assert_eq!((state.paused, state.pauses, state.resumes), (false, 1, 1), "{state:?}");
    }
}

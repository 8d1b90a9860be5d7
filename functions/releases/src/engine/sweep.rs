//! The sweep: drives every active release (timed pauses, silent hosts, restarts) and reaps
//! scaling leases whose release ended or whose renewal stopped.

use super::*;

/// How often `berth serve` and standalone functions sweep (timed pauses, silent agents,
/// leases). Under Lambda, a schedule sends [`Sweep`] instead.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

impl Engine {
    /// Handles [`Sweep`]: advances every active release (timed pauses, silent hosts, restarts)
    /// and resumes scaling held by leases that expired or whose release ended.
    pub async fn sweep(&self) -> Result<(), EventError> {
        let store = self.store();
        let active = store.list_paths(layout::ACTIVE).await.map_err(retry)?;
        berth_shared::platform::metrics::releases_running(active.len());
        for path in active {
            let id = layout::stem(&path).to_owned();
            if let Err(error) = self.advance(&id).await {
                tracing::warn!(release = %id, %error, "sweep could not advance the release");
            }
        }
        let now = unix_now();
        // Each lease on its own: one unreadable entry, or one group whose scaling cannot be
        // resumed now, must not keep every other group's scaling paused.
        let mut failed = 0;
        for path in store.list_paths(layout::LEASES).await.map_err(retry)? {
            let id = layout::stem(&path).to_owned();
            if let Err(error) = self.reap(&path, &id, now).await {
                failed += 1;
                tracing::warn!(release = %id, %error, "sweep could not check a scaling lease; going on with the others");
            }
        }
        if failed > 0 {
            return Err(EventError::Retry(format!("{failed} scaling lease(s) could not be checked")));
        }
        Ok(())
    }

    /// Resumes the scaling a lease holds if its release ended or the lease expired.
    async fn reap(&self, path: &str, id: &str, now: u64) -> Result<(), StoreError> {
        let store = self.store();
        let Some(entry) = store.get::<LeaseIndex>(path).await? else { return Ok(()) };
        let release = self.state(id).await?;
        let scaling = store.get::<ScalingState>(&layout::scaling(&entry.value.group)).await?;
        let ended = release.as_ref().is_none_or(|r| r.value.status.is_terminal());
        let expired = scaling
            .as_ref()
            .and_then(|s| s.value.lease.as_ref())
            .is_none_or(|lease| lease.release != id || lease.expires_at <= now);
        if ended || expired {
            tracing::info!(release = %id, ended, expired, "reaping scaling lease");
            self.resume(&entry.value.group, id, ended).await?;
        }
        Ok(())
    }

    /// Starts the periodic sweep in the background (not under Lambda, where a schedule sends
    /// [`Sweep`] events). The first sweep runs at once: it resumes releases a previous process
    /// left mid-way.
    pub fn spawn_sweeper(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if berth_shared::platform::runtime::under_lambda() {
            return;
        }
        let closing = self.clone();
        runtime.spawn(async move {
            let interrupt = tokio::signal::ctrl_c();
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                _ = terminate => {}
            }
            closing.close();
        });
        let engine = self.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = engine.closing.cancelled() => return,
                }
                if let Err(error) = engine.sweep().await {
                    tracing::warn!(%error, "release sweep failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_shared::release::ScalingLease;

    fn group(name: &str) -> GroupRef {
        GroupRef { account: AccountId::parse("acme").unwrap(), application: "app".into(), group: name.into() }
    }

    async fn leased(engine: &Engine, group: &GroupRef, release: &str, expires_at: u64) {
        let state = ScalingState {
            paused: true,
            suspended: true,
            lease: Some(ScalingLease { release: release.into(), expires_at, auto_scaling_group: None }),
            pauses: 1,
            resumes: 0,
            error: None,
            ended: Vec::new(),
        };
        engine.store().put(&layout::scaling(group), &state).await.unwrap();
        engine.store().put(&layout::lease(release), &LeaseIndex { group: group.clone() }).await.unwrap();
    }

    async fn scaling(engine: &Engine, group: &GroupRef) -> ScalingState {
        engine.store().get::<ScalingState>(&layout::scaling(group)).await.unwrap().unwrap().value
    }

    #[tokio::test]
    async fn the_reaper_resumes_leases_that_expired_or_whose_release_is_gone_and_no_others() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let now = unix_now();
        // A release that crashed before its state was written: nothing drives it any more.
        let (gone, expired, live) = (group("gone"), group("expired"), group("live"));
        leased(&engine, &gone, "r-gone", now + 600).await;
        // A running release whose lease nobody renewed (its driver is down) past the expiry.
        leased(&engine, &expired, "r-expired", now - 1).await;
        engine
            .store()
            .put(
                &layout::release("r-expired"),
                &ReleaseState {
                    status: release::ReleaseStatus::Running,
                    phase: release::Phase::AwaitingConfirm { next: 1 },
                    phase_started_at: now,
                    reason: None,
                    finished_at: None,
                },
            )
            .await
            .unwrap();
        // A running release with a live lease: left alone.
        leased(&engine, &live, "r-live", now + 600).await;
        engine
            .store()
            .put(
                &layout::release("r-live"),
                &ReleaseState {
                    status: release::ReleaseStatus::Running,
                    phase: release::Phase::Pulling,
                    phase_started_at: now,
                    reason: None,
                    finished_at: None,
                },
            )
            .await
            .unwrap();

        engine.sweep().await.unwrap();
        engine.sweep().await.unwrap();
        for resumed in [&gone, &expired] {
            let state = scaling(&engine, resumed).await;
            assert_eq!((state.paused, state.lease, state.resumes), (false, None, 1), "{}", resumed.group);
        }
        assert!(scaling(&engine, &live).await.paused, "a live lease stays");
        let left = engine.store().list_paths(layout::LEASES).await.unwrap();
        assert_eq!(left, [layout::lease("r-live")]);
        // A corrupt entry is reported (the sweep is retried) and the others are still reaped.
        engine
            .store()
            .put_object(&layout::lease("r-corrupt"), axum::body::Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        let after = group("z-after");
        leased(&engine, &after, "r-z-after", now - 1).await;
        assert!(engine.sweep().await.is_err(), "the bad entry is reported");
        let state = scaling(&engine, &after).await;
        assert_eq!((state.paused, state.resumes), (false, 1), "the lease after the bad one was reaped");
        let left = engine.store().list_paths(layout::LEASES).await.unwrap();
        assert_eq!(left, [layout::lease("r-corrupt"), layout::lease("r-live")]);
    }
}

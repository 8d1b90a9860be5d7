//! The plan cache: a release's plan never changes once written, so every process keeps the
//! plans it read, and one pull key per release, minted once and shared by its jobs.

use super::*;

/// Plans kept in memory per process; past this the cache starts over.
const MAX_CACHED_PLANS: usize = 64;

/// A minted pull key: username, password, expiry (seconds since the epoch).
pub(super) type CachedKey = (String, String, u64);

/// A release's immutable plan with its host index.
pub struct Plan {
    /// The release as created (its state fields are those at creation).
    pub release: Release,
    /// Each host's batch.
    pub batch_of: HashMap<String, usize>,
}

impl Engine {
    /// A pull key for the release's image only (its repository, pull only), shared by the
    /// release's jobs in this process: one signature per release instead of one per host,
    /// with the same grant. A key is reused only while it outlives a whole job.
    pub fn pull_key(&self, release: &Release) -> Result<(String, String), ApiError> {
        let deployment = &release.deployment;
        let now = unix_now();
        let job_life = deployment.step_timeout_seconds.saturating_mul(3).saturating_add(60);
        // The lock is held only to look up and to insert, never while minting: nothing that
        // can fail or panic runs under it.
        if let Some((username, password, expires_at)) = self.keys.lock().get(&release.id).cloned()
            && expires_at > now.saturating_add(job_life)
        {
            return Ok((username, password));
        }
        let repository = RepositoryName::parse(&deployment.image.repository)
            .map_err(|e| ApiError::Internal(format!("stored repository: {e}")))?;
        let ttl = (job_life * 2).clamp(MIN_TTL_SECONDS, MAX_TTL_SECONDS);
        let key = temporary_key::mint(
            &self.context.signing,
            &deployment.image.registry,
            &release.account,
            KeyPurpose::Pull,
            Some(vec![repository]),
            ttl,
            now,
        )
        .map_err(|e| ApiError::Internal(format!("minting a pull key: {e}")))?;
        let entry = (key.username, key.password.expose().clone(), now + ttl);
        let mut keys = self.keys.lock();
        if keys.len() >= MAX_CACHED_PLANS {
            keys.clear();
        }
        keys.insert(release.id.clone(), entry.clone());
        Ok((entry.0, entry.1))
    }

    /// A release's plan, from memory or the store.
    pub async fn plan(&self, id: &str) -> Result<Option<Arc<Plan>>, StoreError> {
        if let Some(plan) = self.plans.lock().get(id).cloned() {
            return Ok(Some(plan));
        }
        let Some(doc) = self.store().get::<Release>(&layout::plan(id)).await? else { return Ok(None) };
        let parts = match &doc.value.host_parts {
            None => Vec::new(),
            Some(parts) => {
                let reads = (0..parts.parts).map(|i| {
                    let path = layout::plan_part(id, i);
                    async move {
                        self.store().get::<Vec<String>>(&path).await?.map(|d| d.value).ok_or(StoreError::NotFound(path))
                    }
                });
                futures::future::try_join_all(reads).await?
            }
        };
        let release = release::join_plan(doc.value, parts)
            .map_err(|why| StoreError::Corrupt { path: layout::plan(id), reason: why })?;
        let batch_of = release
            .batches
            .iter()
            .enumerate()
            .flat_map(|(index, hosts)| hosts.iter().map(move |host| (host.clone(), index)))
            .collect();
        let plan = Arc::new(Plan { release, batch_of });
        let mut plans = self.plans.lock();
        if plans.len() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.insert(id.to_owned(), plan.clone());
        Ok(Some(plan))
    }
}

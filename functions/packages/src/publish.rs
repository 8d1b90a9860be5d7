//! The publish check: a submitted version's images are resolved in the registry, pinned to
//! their digests, and the version settles as `Available` or `Failed`. Idempotent: a version
//! that is no longer `Creating` is left alone, and the settling write is a compare-and-swap.

use std::time::Duration;

use berth_shared::names::AccountId;

use crate::registry::{RegistryClient, RegistryError, RepositoryReader, record_resolution};
use berth_shared::package::{
    self, ImageFailure, ImageRecord, Package, PackageType, PackageVersion, VersionStatus, VersionSubmitted,
};
use berth_shared::platform::clock::rfc3339;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::EventError;
use berth_shared::platform::queue::Envelope;
use berth_shared::platform::store::StoreError;
use berth_shared::signing::sigstore::{self, Expected, VerifyingKey};
use berth_shared::signing::{self, SignedDigest};

/// Tries per image within one delivery before the delivery gives up (the queue then
/// redelivers with its own growing delay).
const TRIES_PER_DELIVERY: u32 = 3;
/// First in-delivery backoff; doubles per try.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Timeout of each registry request.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

fn retry(reason: impl std::fmt::Display) -> EventError {
    EventError::Retry(reason.to_string())
}

/// The registry client of the publish check: built once per process, its connections reused.
pub fn registry_client(context: &FunctionContext) -> RegistryClient {
    RegistryClient::new(context.config.registry.clone(), context.signing.clone(), REGISTRY_TIMEOUT)
}

/// Handles [`VersionSubmitted`].
pub async fn handle_submitted(
    context: &FunctionContext,
    client: &RegistryClient,
    submitted: VersionSubmitted,
    event: &Envelope,
) -> Result<(), EventError> {
    let bad = |reason: String| EventError::BadPayload { kind: event.kind.clone(), reason };
    let account = event.account.clone().ok_or_else(|| bad("no account".into()))?;
    // The last delivery settles the version rather than leave it Creating forever.
    let last_attempt = event.attempt >= context.config.queue_max_attempts;
    let outcome = check_version(context, client, &account, &submitted, last_attempt).await?;
    if outcome != Some(VersionStatus::Creating) {
        let marker = package::pending_check_path(&account, &submitted.package, &submitted.version);
        context.store.delete(&marker).await.map_err(retry)?;
    }
    tracing::info!(
        account = %account, package = %submitted.package, version = %submitted.version,
        outcome = ?outcome, attempt = event.attempt, "publish check"
    );
    Ok(())
}

/// Resolves one image, retrying a registry that does not answer a few times with backoff.
async fn resolve_with_backoff(
    client: &RegistryClient,
    image: &ImageRecord,
) -> Result<crate::registry::ResolvedImage, RegistryError> {
    let mut delay = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        tries += 1;
        match client.resolve(&image.repository, &image.tag).await {
            Err(RegistryError::Unreachable(why)) if tries < TRIES_PER_DELIVERY => {
                tracing::warn!(repository = %image.repository, %why, tries, "registry did not answer; backing off");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// The keys a version of `package` must be signed with, when its package (or else the
/// account's policy) requires signatures.
async fn signature_policy(
    context: &FunctionContext,
    account: &AccountId,
    package: &str,
) -> Result<Option<Vec<VerifyingKey>>, EventError> {
    let ring = signing::load(&context.store, account).await.map_err(retry)?;
    let stored = context.store.get::<Package>(&package::package_path(account, package)).await.map_err(retry)?;
    let required = stored.and_then(|p| p.value.require_signature).unwrap_or(ring.require_signature);
    Ok(required.then(|| VerifyingKey::from_ring(&ring)))
}

/// Verifies the signature of a resolved image's digest: records the key that signed it (and,
/// for releases naming the digest alone, which key that was), or fails the image saying why.
async fn check_signature(
    context: &FunctionContext,
    client: &RegistryClient,
    account: &AccountId,
    image: &mut ImageRecord,
    keys: &[VerifyingKey],
    last_attempt: bool,
) -> Result<(), EventError> {
    let Some(digest) = image.digest.clone().filter(|_| image.failure.is_none()) else {
        return Ok(());
    };
    let repository = format!("{}/{}", context.config.registry.host, image.repository);
    let reader = RepositoryReader { client, repository: &image.repository };
    match sigstore::verify(&reader, Expected { digest: &digest, repository: &repository, any_registry: false }, keys)
        .await
    {
        Ok(key_id) => {
            if let Some(path) = signing::signed_digest_path(account, &digest) {
                let record = SignedDigest { key_id: key_id.clone(), repository: image.repository.to_string() };
                context.store.put(&path, &record).await.map_err(retry)?;
            }
            image.signed_by = Some(key_id);
        }
        Err(failure) if failure.retry && !last_attempt => {
            return Err(retry(format!("signature of {}: {}", image.repository, failure.message)));
        }
        Err(failure) => {
            image.failure = Some(ImageFailure { code: failure.code.into(), message: failure.message });
        }
    }
    Ok(())
}

/// Checks a `Creating` version and settles it; returns its status afterwards (`None` if
/// the version does not exist). A registry that does not answer is a retry, unless this is
/// the last attempt, which settles the version as `Failed` with `registry_unreachable`.
pub async fn check_version(
    context: &FunctionContext,
    client: &RegistryClient,
    account: &AccountId,
    submitted: &VersionSubmitted,
    last_attempt: bool,
) -> Result<Option<VersionStatus>, EventError> {
    let path = package::version_path(account, &submitted.package, &submitted.version);
    let Some(current) = context.store.get::<PackageVersion>(&path).await.map_err(retry)? else {
        return Ok(None);
    };
    if current.value.status != VersionStatus::Creating || current.value.package_type == PackageType::File {
        return Ok(Some(current.value.status));
    }
    let chart = current.value.package_type == PackageType::HelmChart;
    let signatures = signature_policy(context, account, &submitted.package).await?;
    let mut checked = Vec::with_capacity(current.value.images.len());
    for image in &current.value.images {
        let mut image = image.clone();
        if image.repository.is_namespace_root(account) {
            image.failure = Some(ImageFailure {
                code: "repository_is_namespace".into(),
                message: format!("{} is the namespace itself, not a repository below it", image.repository),
            });
        } else if !image.repository.is_in(account) {
            image.failure = Some(ImageFailure {
                code: "outside_namespace".into(),
                message: format!("{} is outside namespace {account}", image.repository),
            });
        } else {
            let outcome = resolve_with_backoff(client, &image).await;
            if let Err(RegistryError::Unreachable(why)) = &outcome
                && !last_attempt
            {
                return Err(retry(format!("registry unreachable for {}: {why}", image.repository)));
            }
            record_resolution(&mut image, outcome, chart);
            if let Some(keys) = &signatures {
                check_signature(context, client, account, &mut image, keys, last_attempt).await?;
            }
        }
        checked.push(image);
    }
    let mut settled = current.value.clone();
    package::settle(&mut settled, checked, &rfc3339(unix_now()));
    match context.store.update(&path, &settled, &current.version).await {
        Ok(_) => Ok(Some(settled.status)),
        // Another delivery of the same event settled it first, or it was deleted: both fine.
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
            Ok(context.store.get::<PackageVersion>(&path).await.map_err(retry)?.map(|v| v.value.status))
        }
        Err(e) => Err(retry(e)),
    }
}

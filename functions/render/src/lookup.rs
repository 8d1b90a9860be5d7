//! The impure step of a render: looking associations up in the store, minting the render's
//! pull key and signing file URLs, around the pure planner in `berth_shared::render`.

use std::collections::{BTreeMap, BTreeSet};

use berth_shared::credentials::download_token::download_url;
use berth_shared::credentials::instance_credential::{self, InstanceRef, IssuedCredential};
use berth_shared::names::AccountId;
use berth_shared::package::{PackageVersion, VersionStatus};
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::jws::SigningKeys;
use berth_shared::platform::runtime::compute;
use berth_shared::platform::store::{DocumentStore, StoreError};
use berth_shared::render::{Association, PullKeySummary, RenderOptions, RenderOutput, Template};
use berth_shared::service::instance::{Instance, InstanceState, instance_path, validate_instance_name};
use berth_shared::service::{ArtifactRef, VersionSelector};

/// Looks up the version an [`ArtifactRef`] names in `account`'s packages, as
/// [`berth_shared::service::resolve`] does (`Latest` is the newest `Available` version, else the
/// newest), telling a missing package from a missing version.
pub async fn resolve_version(
    store: &DocumentStore,
    account: &AccountId,
    target: &ArtifactRef,
) -> Result<Result<PackageVersion, Association>, StoreError> {
    let missing = |code: &'static str, message: String| Ok(Err(Association::Missing { code, message }));
    let package = berth_shared::package::package_path(account, &target.package);
    if berth_shared::package::validate_package_name("package", &target.package).is_err()
        || store.get::<serde_json::Value>(&package).await?.is_none()
    {
        return missing("package_not_found", format!("package {} does not exist", target.package));
    }
    let found = match &target.version {
        // A name that is not a version name cannot be a path in the store either.
        VersionSelector::Name(name) if berth_shared::package::validate_version_name("version", name).is_err() => None,
        _ => berth_shared::service::resolve(store, account, target).await?,
    };
    match found {
        Some(version) => Ok(Ok(version)),
        None => {
            let which = match &target.version {
                VersionSelector::Latest => "any version".to_owned(),
                VersionSelector::Number(n) => format!("version number {n}"),
                VersionSelector::Name(name) => format!("version {name}"),
            };
            missing("version_not_found", format!("package {} has no {which}", target.package))
        }
    }
}

/// Where a render runs: the caller's account and what it needs to look up and mint.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The document store (packages, versions, file objects).
    pub store: &'a DocumentStore,
    /// Signs the pull key and download URLs.
    pub signing: &'a SigningKeys,
    /// The registry as deployed hosts name it.
    pub registry_host: &'a str,
    /// Berth's URL as deployed hosts reach it, for file download URLs.
    pub base_url: &'a str,
    /// The caller, whose namespace every package and key lives in.
    pub account: &'a AccountId,
    /// Seconds since the epoch.
    pub now: u64,
    /// A render for this instance: the pull credential is a new instance credential.
    pub instance: Option<&'a InstanceRef>,
}

/// An instance of the service for a render; a suspended one renders nothing (409).
pub async fn load_instance(
    store: &DocumentStore,
    account: &AccountId,
    service: &str,
    name: &str,
) -> Result<Instance, ApiError> {
    validate_instance_name("instance", name)?;
    let instance = store
        .get::<Instance>(&instance_path(account, service, name))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance '{name}' of service '{service}'")))?
        .value;
    if instance.state != InstanceState::Active {
        return Err(ApiError::Conflict {
            code: "instance_suspended",
            message: format!("instance '{name}' is suspended; resume it to render for it"),
        });
    }
    Ok(instance)
}

/// Mints a credential for `of` and records its digest in the instance (a compare-and-swap;
/// past the instance's limit the oldest credential is revoked).
async fn mint_instance_credential(
    context: RenderContext<'_>,
    of: &InstanceRef,
) -> Result<(IssuedCredential, Vec<berth_shared::names::RepositoryName>), ApiError> {
    let path = instance_path(&of.account, &of.service, &of.instance);
    let mut issued = None;
    context
        .store
        .modify(&path, |current: Option<Instance>| {
            let mut instance = current.ok_or_else(|| ApiError::NotFound(format!("instance '{}'", of.instance)))?;
            if instance.state != InstanceState::Active {
                return Err(ApiError::Conflict {
                    code: "instance_suspended",
                    message: format!("instance '{}' is suspended; resume it to render for it", of.instance),
                });
            }
            let (credential, stored) =
                instance_credential::mint(context.registry_host, of, instance.credential_ttl_seconds, context.now);
            instance.add_credential(stored, false, context.now);
            issued = Some((credential, instance.repositories.clone()));
            Ok(instance)
        })
        .await?;
    issued.ok_or_else(|| ApiError::Internal("no credential minted".into()))
}

/// Renders a template's bytes with `relations` (keyed by `computenest::KIND::NAME`): looks each
/// association up, lists every problem at once (422), mints one pull key scoped to the
/// referenced repositories when the template asks for one, and writes the output.
pub async fn render_template<'t>(
    context: RenderContext<'_>,
    field: &str,
    bytes: &'t [u8],
    relations: &BTreeMap<String, ArtifactRef>,
    options: RenderOptions,
) -> Result<RenderOutput<'t>, ApiError> {
    let template = compute(|| Template::check(field, bytes))?;
    let associations = look_up(context, &template.association_keys(), relations, options).await?;
    refuse_revoked(context, &associations).await?;
    let plan = compute(|| template.plan(&associations, context.registry_host, options.pin_digests))
        .map_err(|problems| ApiError::Template { field: field.to_owned(), problems })?;
    let mut output = RenderOutput {
        format: plan.format,
        rendered: None,
        dry_run: options.dry_run,
        substitutions: Vec::new(),
        repositories: plan.repositories.clone(),
        pull_key: None,
    };
    if !options.dry_run {
        let dockerconfigjson = match (plan.needs_pull_key(), context.instance) {
            (false, _) => None,
            (true, Some(of)) => {
                // It reaches the instance's repositories, which include the template's.
                let (credential, repositories) = mint_instance_credential(context, of).await?;
                output.pull_key = Some(PullKeySummary {
                    registry: credential.registry.clone(),
                    username: credential.username.clone(),
                    repositories,
                    expires_at: credential.expires_at.clone(),
                    credential_id: Some(credential.id.clone()),
                });
                Some(credential.dockerconfigjson)
            }
            (true, None) => {
                let key = berth_shared::credentials::temporary_key::mint(
                    context.signing,
                    context.registry_host,
                    context.account,
                    berth_shared::credentials::temporary_key::KeyPurpose::Pull,
                    Some(plan.repositories.clone()),
                    options.credential_ttl_seconds,
                    context.now,
                )
                .map_err(|e| ApiError::Internal(format!("signing a pull key: {e}")))?;
                output.pull_key = Some(PullKeySummary {
                    registry: key.registry.clone(),
                    username: key.username.clone(),
                    repositories: plan.repositories.clone(),
                    expires_at: Some(key.expires_at.clone()),
                    credential_id: None,
                });
                Some(key.dockerconfigjson)
            }
        };
        let pull_key = dockerconfigjson.as_ref().map(|k| k.expose().as_str());
        output.rendered = Some(template.render(&plan, pull_key).map_err(|e| ApiError::Internal(e.to_string()))?);
    }
    output.substitutions = plan.substitutions;
    Ok(output)
}

/// Refuses (409) to render a digest whose signing key was revoked since its publish check.
/// Reads the key ring only when a version has a signed image.
async fn refuse_revoked(
    context: RenderContext<'_>,
    associations: &BTreeMap<String, Association>,
) -> Result<(), ApiError> {
    fn signed(association: &Association) -> Option<&PackageVersion> {
        match association {
            Association::Found { version, .. } if version.images.iter().any(|i| i.signed_by.is_some()) => Some(version),
            _ => None,
        }
    }
    if !associations.values().any(|a| signed(a).is_some()) {
        return Ok(());
    }
    let ring = berth_shared::signing::load(context.store, context.account).await?;
    associations.values().filter_map(signed).try_for_each(|v| berth_shared::signing::refuse_untrusted(&ring, v))
}

/// Looks up every association key: its relation, its package version and, for an uploaded
/// file, a download URL. A key without a relation is left out (the plan calls it not associated).
async fn look_up(
    context: RenderContext<'_>,
    keys: &BTreeSet<&str>,
    relations: &BTreeMap<String, ArtifactRef>,
    options: RenderOptions,
) -> Result<BTreeMap<String, Association>, ApiError> {
    let mut lookups = Vec::new();
    for &key in keys {
        if let Some(target) = relations.get(key) {
            lookups.push(look_up_one(context, key.to_owned(), target.clone(), options));
        }
    }
    // At most MAX_RELATIONS lookups, each a read or a listing: run them together.
    let found = futures::future::try_join_all(lookups).await?;
    Ok(found.into_iter().collect())
}

async fn look_up_one(
    context: RenderContext<'_>,
    key: String,
    target: ArtifactRef,
    options: RenderOptions,
) -> Result<(String, Association), StoreError> {
    let association = match resolve_version(context.store, context.account, &target).await? {
        Err(missing) => missing,
        Ok(version) => {
            let uploaded = version.file.as_ref().filter(|f| f.digest.is_some());
            let file_url = match uploaded {
                Some(_) if version.status != VersionStatus::Available => None,
                // A download URL is a credential too: a dry run shows its shape, signs nothing.
                Some(file) if options.dry_run => Some(format!(
                    "{}/v1/downloads/{{signed-at-render}}/{}",
                    context.base_url.trim_end_matches('/'),
                    file.file_name
                )),
                Some(_) => download_url(
                    context.signing,
                    context.base_url,
                    context.account,
                    &version,
                    options.credential_ttl_seconds,
                    context.now,
                ),
                None => None,
            };
            Association::Found { version: Box::new(version), file_url }
        }
    };
    Ok((key, association))
}

/// The digest a File version records, for download grants signed before grants named it.
pub async fn file_digest(
    context: &berth_shared::platform::context::FunctionContext,
    account: &AccountId,
    package: &str,
    version: &str,
) -> Result<Option<String>, StoreError> {
    let path = berth_shared::package::version_path(account, package, version);
    let stored = context.store.get::<PackageVersion>(&path).await?;
    Ok(stored.and_then(|v| v.value.file).and_then(|f| f.digest))
}

//! The artifact operations, over Berth's packages: an artifact is a package (`ArtifactId` =
//! `Name` = the package name), its versions are the package's versions, and its draft is the
//! version named `draft` (status `Draft`, Compute Nest's `Created`). CreateArtifact makes a
//! draft, UpdateArtifact changes it, ReleaseArtifact turns it into the next numbered version and
//! submits it to the publish check (`Scanning`, then `Available` or `ScanFailed`).

use axum::http::StatusCode;
use berth_shared::package::{
    self, DRAFT_VERSION, ImageSpec, MAX_LABEL, Package, PackageType, PackageVersion, Tag, VersionSpec, VersionStatus,
};
use berth_shared::platform::store::StoreError;
use serde::Serialize;

use super::Call;
use super::error::CnError;
use super::view::{self, ArtifactSummary, ArtifactView, Paging, PropertyIn, VersionView};
use crate::catalog;

fn artifact_missing(id: &str) -> CnError {
    CnError::not_found("Artifact", format!("The artifact {id} does not exist."))
}

fn version_missing(id: &str, version: &str) -> CnError {
    CnError::not_found("ArtifactVersion", format!("Version {version} of artifact {id} does not exist."))
}

/// A name Berth can take as a package name (a bad one is an artifact that does not exist).
fn checked_id<'a>(name: &str, id: &'a str) -> Result<&'a str, CnError> {
    package::validate_package_name(name, id).map_err(|_| artifact_missing(id))?;
    Ok(id)
}

async fn load_package(call: &Call<'_>, id: &str) -> Result<Package, CnError> {
    let path = package::package_path(&call.account, id);
    Ok(call.context.store.get::<Package>(&path).await?.ok_or_else(|| artifact_missing(id))?.value)
}

async fn load_draft(call: &Call<'_>, id: &str) -> Result<Option<PackageVersion>, CnError> {
    let path = package::version_path(&call.account, id, DRAFT_VERSION);
    Ok(call
        .context
        .store
        .get::<PackageVersion>(&path)
        .await?
        .map(|v| v.value)
        .filter(|v| v.status == VersionStatus::Draft))
}

/// The version content an `ArtifactProperty` names: `RepoName` (relative to the namespace, or
/// full) and `Tag` of an image or chart; the last path segment of a file's `Url`.
fn content(call: &Call<'_>, package_type: PackageType, property: &PropertyIn) -> Result<VersionSpec, CnError> {
    let mut spec = VersionSpec { name: DRAFT_VERSION.to_owned(), ..VersionSpec::default() };
    match package_type {
        PackageType::ContainerImage | PackageType::HelmChart => {
            let repo = property
                .repo_name
                .as_deref()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| CnError::missing("ArtifactProperty.RepoName"))?;
            let tag = property
                .tag
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| CnError::missing("ArtifactProperty.Tag"))?;
            let prefix = format!("{}/", call.account);
            let repository = if repo.starts_with(&prefix) { repo.to_owned() } else { format!("{prefix}{repo}") };
            let image = ImageSpec { repository, tag: tag.to_owned() };
            if package_type == PackageType::HelmChart {
                spec.chart = Some(image);
            } else {
                spec.images = Some(vec![image]);
            }
        }
        PackageType::File => {
            let url = property
                .url
                .as_deref()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| CnError::missing("ArtifactProperty.Url"))?;
            let path = url.split(['?', '#']).next().unwrap_or_default();
            spec.file_name = path.rsplit('/').next().map(str::to_owned);
        }
    }
    Ok(spec)
}

fn label(call: &Call<'_>) -> Result<Option<String>, CnError> {
    let Some(name) = call.params.optional("VersionName") else { return Ok(None) };
    if name.chars().count() > MAX_LABEL || name.chars().any(char::is_control) {
        return Err(CnError::invalid("VersionName", format!("at most {MAX_LABEL} characters, no control characters")));
    }
    Ok(Some(name.to_owned()))
}

/// A draft made from the call's `ArtifactProperty`, numbered `number`.
fn draft(call: &Call<'_>, package: &Package, number: u32, now: &str) -> Result<PackageVersion, CnError> {
    if call.params.optional("ArtifactBuildProperty").is_some() {
        return Err(CnError::invalid(
            "ArtifactBuildProperty",
            "Berth does not build artifacts; push them and name them in ArtifactProperty",
        ));
    }
    let property: PropertyIn =
        call.params.json("ArtifactProperty")?.ok_or_else(|| CnError::missing("ArtifactProperty"))?;
    let spec = content(call, package.package_type, &property)?;
    let mut version = package::validate_content(
        "ArtifactProperty.",
        &spec,
        &package.name,
        package.package_type,
        number,
        &call.account,
        now,
    )
    .map_err(|e| match e {
        berth_shared::platform::http::error::ApiError::Invalid { message, .. } => {
            CnError::invalid("ArtifactProperty", message)
        }
        other => other.into(),
    })?;
    version.version = DRAFT_VERSION.to_owned();
    version.status = VersionStatus::Draft;
    version.label = label(call)?;
    Ok(version)
}

fn description(call: &Call<'_>, name: &str) -> Result<String, CnError> {
    // Berth wants 10 characters at least; Compute Nest has no minimum, so a short or missing
    // description is completed rather than refused.
    let given = call.params.optional("Description").unwrap_or_default();
    let text = if given.chars().count() >= package::DESCRIPTION_LEN.0 {
        given.to_owned()
    } else {
        format!("{given} (artifact {name})").trim_start().to_owned()
    };
    package::validate_description(&text).map_err(|e| CnError::invalid("Description", e.to_string()))?;
    Ok(text)
}

fn tags(call: &Call<'_>) -> Result<Vec<Tag>, CnError> {
    let tags: Vec<Tag> =
        call.params.tags("Tag").into_iter().map(|(k, v)| Tag { key: k.to_owned(), value: v.to_owned() }).collect();
    package::validate_tags(&tags).map_err(|e| CnError::invalid("Tag", e.to_string()))?;
    Ok(tags)
}

async fn view_of(call: &Call<'_>, package: &Package, version: &PackageVersion) -> Result<ArtifactView, CnError> {
    let versions = catalog::versions_of(call.context, &call.account, &package.name).await?;
    Ok(view::artifact_view(package, version, view::max_version(&versions), &call.account, &call.base_url))
}

/// Writes a new draft; a draft already there is `EntityAlreadyExist.DraftArtifact`.
async fn create_draft(call: &Call<'_>, version: &PackageVersion) -> Result<(), CnError> {
    let path = package::version_path(&call.account, &version.package, DRAFT_VERSION);
    match call.context.store.create(&path, version).await {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists(_)) => Err(CnError::new(
            StatusCode::BAD_REQUEST,
            "EntityAlreadyExist.DraftArtifact",
            format!("Artifact {} already has a draft version; update or release it.", version.package),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Reserves the next version number of a package.
async fn next_number(call: &Call<'_>, id: &str, now: &str) -> Result<u32, CnError> {
    let path = package::package_path(&call.account, id);
    let numbered = call
        .context
        .store
        .modify(&path, |package: Option<Package>| {
            let mut package = package.ok_or_else(|| artifact_missing(id))?;
            package.next_version_number += 1;
            package.updated_at = now.to_owned();
            Ok::<_, CnError>(package)
        })
        .await?;
    Ok(numbered.value.next_version_number - 1)
}

/// CreateArtifact: a new artifact with its draft, or (with `ArtifactId`) a new draft of one.
pub async fn create(call: &Call<'_>) -> Result<ArtifactView, CnError> {
    let now = catalog::now();
    if let Some(id) = call.params.optional("ArtifactId") {
        let id = checked_id("ArtifactId", id)?;
        let package = load_package(call, id).await?;
        if let Some(given) = call.params.optional("ArtifactType")
            && view::package_type("ArtifactType", given)? != package.package_type
        {
            return Err(CnError::invalid(
                "ArtifactType",
                format!("artifact {id} is {}", view::artifact_type(package.package_type)),
            ));
        }
        if load_draft(call, id).await?.is_some() {
            return Err(CnError::new(
                StatusCode::BAD_REQUEST,
                "EntityAlreadyExist.DraftArtifact",
                format!("Artifact {id} already has a draft version; update or release it."),
            ));
        }
        // Checked before a number is spent on it.
        draft(call, &package, 0, &now)?;
        let number = next_number(call, id, &now).await?;
        let version = draft(call, &package, number, &now)?;
        create_draft(call, &version).await?;
        tracing::info!(account = %call.account, artifact = %id, number, "draft created");
        return view_of(call, &load_package(call, id).await?, &version).await;
    }
    let name = call.params.required("Name")?;
    package::validate_package_name("Name", name).map_err(|e| CnError::invalid("Name", e.to_string()))?;
    let package_type = view::package_type("ArtifactType", call.params.required("ArtifactType")?)?;
    let resource_group = call.params.optional("ResourceGroupId").unwrap_or(package::DEFAULT_RESOURCE_GROUP).to_owned();
    package::validate_resource_group(&resource_group)
        .map_err(|e| CnError::invalid("ResourceGroupId", e.to_string()))?;
    let package = Package {
        name: name.to_owned(),
        description: description(call, name)?,
        resource_group,
        tags: tags(call)?,
        package_type,
        created_at: now.clone(),
        updated_at: now.clone(),
        next_version_number: 2,
        deleting: false,
        require_signature: None,
    };
    let version = draft(call, &package, 1, &now)?;
    match call.context.store.create(&package::package_path(&call.account, name), &package).await {
        Ok(_) => {}
        Err(StoreError::AlreadyExists(_)) => {
            return Err(CnError::new(
                StatusCode::BAD_REQUEST,
                "EntityAlreadyExist.Artifact",
                format!("An artifact named {name} already exists."),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    create_draft(call, &version).await?;
    tracing::info!(account = %call.account, artifact = %name, "artifact created with its draft");
    Ok(view::artifact_view(&package, &version, 0, &call.account, &call.base_url))
}

/// UpdateArtifact: changes the draft (content, `VersionName`) and the artifact's description.
pub async fn update(call: &Call<'_>) -> Result<ArtifactView, CnError> {
    let id = checked_id("ArtifactId", call.params.required("ArtifactId")?)?;
    let mut package = load_package(call, id).await?;
    let now = catalog::now();
    let current = load_draft(call, id).await?.ok_or_else(|| {
        CnError::new(
            StatusCode::BAD_REQUEST,
            "OperationDenied",
            format!("Artifact {id} has no draft to update; CreateArtifact makes one."),
        )
    })?;
    let mut replacement = if call.params.optional("ArtifactProperty").is_some() {
        draft(call, &package, current.number, &now)?
    } else {
        let mut same = current.clone();
        if let Some(label) = label(call)? {
            same.label = Some(label);
        }
        same
    };
    replacement.created_at = current.created_at.clone();
    replacement.updated_at = now.clone();
    if replacement.label.is_none() {
        replacement.label = current.label.clone();
    }
    let path = package::version_path(&call.account, id, DRAFT_VERSION);
    let written = call
        .context
        .store
        .modify(&path, |stored: Option<PackageVersion>| match stored {
            Some(v) if v.status == VersionStatus::Draft => Ok(replacement.clone()),
            _ => Err(version_missing(id, DRAFT_VERSION)),
        })
        .await?
        .value;
    if call.params.optional("Description").is_some() {
        let text = description(call, id)?;
        package = call
            .context
            .store
            .modify(&package::package_path(&call.account, id), |p: Option<Package>| {
                let mut p = p.ok_or_else(|| artifact_missing(id))?;
                p.description = text.clone();
                p.updated_at = now.clone();
                Ok::<_, CnError>(p)
            })
            .await?
            .value;
    }
    tracing::info!(account = %call.account, artifact = %id, "draft updated");
    view_of(call, &package, &written).await
}

/// The version `ArtifactVersion` names: `draft`, a number, or (absent) the draft if there is one,
/// else the newest.
async fn pick(call: &Call<'_>, id: &str, wanted: Option<&str>) -> Result<PackageVersion, CnError> {
    let versions = catalog::versions_of(call.context, &call.account, id).await?;
    let found = match wanted {
        Some(DRAFT_VERSION) => versions.into_iter().find(|v| v.status == VersionStatus::Draft),
        Some(number) => {
            let number: u32 = number.parse().map_err(|_| version_missing(id, number))?;
            versions.into_iter().find(|v| v.number == number && v.status != VersionStatus::Draft)
        }
        None => {
            let mut versions = versions;
            match versions.iter().position(|v| v.status == VersionStatus::Draft) {
                Some(i) => Some(versions.swap_remove(i)),
                None => versions.pop(),
            }
        }
    };
    found.ok_or_else(|| version_missing(id, wanted.unwrap_or("latest")))
}

/// GetArtifact: by `ArtifactId`, or `ArtifactName` when the id is absent (computenest-cli sends
/// an empty id), and optional `ArtifactVersion`.
pub async fn get(call: &Call<'_>) -> Result<ArtifactView, CnError> {
    let id = match call.params.optional("ArtifactId").or_else(|| call.params.optional("ArtifactName")) {
        Some(id) => checked_id("ArtifactId", id)?,
        None => return Err(CnError::missing("ArtifactId")),
    };
    let package = load_package(call, id).await?;
    let version = pick(call, id, call.params.optional("ArtifactVersion")).await?;
    view_of(call, &package, &version).await
}

/// ListArtifacts answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArtifactPage {
    artifacts: Vec<ArtifactSummary>,
    #[serde(flatten)]
    paging: Paging,
}

/// ListArtifacts: by name, filtered (`Filter.N.Name` `Name`, `ArtifactId`, `ArtifactType`, the
/// values matched exactly; other filters ignored), `ResourceGroupId`, `Tag.N`, a page at a time.
pub async fn list(call: &Call<'_>) -> Result<ArtifactPage, CnError> {
    let filters = call.params.filters("Filter");
    let names: Vec<&str> = filters
        .iter()
        .filter(|(n, _)| *n == "Name" || *n == "ArtifactId")
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let types: Vec<&str> =
        filters.iter().filter(|(n, _)| *n == "ArtifactType").flat_map(|(_, v)| v.iter().copied()).collect();
    let group = call.params.optional("ResourceGroupId");
    let wanted_tags = call.params.tags("Tag");
    let paths = call.context.store.list_paths(&package::packages_prefix(&call.account)).await?;
    let mut ids: Vec<&str> =
        paths.iter().filter_map(|p| p.strip_suffix("/package.json")).filter_map(|p| p.rsplit('/').next()).collect();
    ids.sort_unstable();
    let mut matching = Vec::new();
    for id in ids {
        if !names.is_empty() && !names.contains(&id) {
            continue;
        }
        let Some(doc) = call.context.store.get::<Package>(&package::package_path(&call.account, id)).await? else {
            continue;
        };
        let p = doc.value;
        let keep = (types.is_empty() || types.contains(&view::artifact_type(p.package_type)))
            && group.is_none_or(|g| g == p.resource_group)
            && wanted_tags.iter().all(|(k, v)| p.tags.iter().any(|t| t.key == *k && (v.is_empty() || t.value == *v)));
        if keep {
            matching.push(p);
        }
    }
    let (packages, paging) = view::page(matching, &call.params)?;
    let mut artifacts = Vec::with_capacity(packages.len());
    for p in packages {
        let versions = catalog::versions_of(call.context, &call.account, &p.name).await?;
        let newest = versions.iter().max_by_key(|v| v.number);
        artifacts.push(ArtifactSummary {
            artifact_id: p.name.clone(),
            artifact_type: view::artifact_type(p.package_type),
            description: p.description.clone(),
            gmt_modified: p.updated_at.clone(),
            max_version: view::max_version(&versions).to_string(),
            name: p.name.clone(),
            permission_type: "Private",
            resource_group_id: p.resource_group.clone(),
            status: newest.map_or("Created", |v| view::status(v.status)),
            tags: view::tags(&p.tags),
        });
    }
    Ok(ArtifactPage { artifacts, paging })
}

/// ListArtifactVersions answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionPage {
    artifacts: Vec<VersionView>,
    #[serde(flatten)]
    paging: Paging,
}

/// A `Filters` entry (JSON) of ListArtifactVersions.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionFilter {
    name: String,
    #[serde(default)]
    values: Vec<String>,
}

/// ListArtifactVersions: the draft first, then released versions newest first; `Filters`
/// (`Status`, `ArtifactVersion`) narrow it.
pub async fn list_artifact_versions(call: &Call<'_>) -> Result<VersionPage, CnError> {
    let id = checked_id("ArtifactId", call.params.required("ArtifactId")?)?;
    load_package(call, id).await?;
    let filters: Vec<VersionFilter> = call.params.json("Filters")?.unwrap_or_default();
    let mut versions = catalog::versions_of(call.context, &call.account, id).await?;
    versions.sort_by_key(|v| (v.status != VersionStatus::Draft, std::cmp::Reverse(v.number)));
    let views: Vec<VersionView> = versions
        .iter()
        .map(|v| view::version_view(v, &call.account, &call.base_url))
        .filter(|v| {
            filters.iter().all(|f| match f.name.as_str() {
                "Status" => f.values.iter().any(|s| s == v.status),
                "ArtifactVersion" => f.values.contains(&v.artifact_version),
                _ => true,
            })
        })
        .collect();
    let (artifacts, paging) = view::page(views, &call.params)?;
    Ok(VersionPage { artifacts, paging })
}

/// The name a released version takes in Berth: `v_N`, its number.
fn released_name(number: u32) -> String {
    format!("v_{number}")
}

/// ReleaseArtifact: the draft becomes version N (`v_N` in Berth), `Scanning` while the publish
/// check runs; the draft is gone afterwards. A File version stays `Scanning` until its bytes are
/// uploaded (`PUT /v1/packages/{name}/versions/v_N/file`).
pub async fn release(call: &Call<'_>) -> Result<ArtifactView, CnError> {
    let id = checked_id("ArtifactId", call.params.required("ArtifactId")?)?;
    let package = load_package(call, id).await?;
    let draft = load_draft(call, id).await?.ok_or_else(|| version_missing(id, DRAFT_VERSION))?;
    let now = catalog::now();
    let mut version = draft.clone();
    version.version = released_name(draft.number);
    version.status = VersionStatus::Creating;
    version.updated_at = now;
    let path = package::version_path(&call.account, id, &version.version);
    // The sweep's marker first, as for any new version: its check cannot be lost.
    catalog::mark_pending(call.context, &call.account, &version).await?;
    match call.context.store.create(&path, &version).await {
        // A retry after the draft's removal failed finds its version already there.
        Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    catalog::submit(call.context, &call.account, &version).await?;
    call.context.store.delete(&package::version_path(&call.account, id, DRAFT_VERSION)).await?;
    tracing::info!(account = %call.account, artifact = %id, number = version.number, "draft released");
    view_of(call, &package, &version).await
}

/// DeleteArtifact answer: nothing but the request id.
#[derive(Serialize)]
pub struct Deleted {}

/// DeleteArtifact: one version (`ArtifactVersion`: `draft` or a number), or, without it, the
/// artifact with every version (refused while a service uses it).
pub async fn delete(call: &Call<'_>) -> Result<Deleted, CnError> {
    let id = checked_id("ArtifactId", call.params.required("ArtifactId")?)?;
    load_package(call, id).await?;
    if let Some(wanted) = call.params.optional("ArtifactVersion") {
        let version = pick(call, id, Some(wanted)).await?;
        catalog::remove_version(call.context, &call.account, &version).await?;
        tracing::info!(account = %call.account, artifact = %id, version = %version.version, "artifact version deleted");
        return Ok(Deleted {});
    }
    if let Err(users) = catalog::remove_package(call.context, &call.account, id).await? {
        return Err(CnError::denied(
            "ArtifactInUse",
            format!("Artifact {id} is used by service(s) {}.", users.join(", ")),
        ));
    }
    tracing::info!(account = %call.account, artifact = %id, "artifact deleted");
    Ok(Deleted {})
}

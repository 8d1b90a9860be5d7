//! How Berth's packages look in Compute Nest's terms: artifact types, statuses, the
//! `ArtifactProperty` JSON, and the answer structs of the artifact operations (field names and
//! types as the SDK's models declare them).

use berth_shared::names::AccountId;
use berth_shared::package::{DRAFT_VERSION, Package, PackageType, PackageVersion, Tag, VersionStatus};
use serde::{Deserialize, Serialize};

use super::error::CnError;

/// The region Berth reports (it has one).
pub const REGION: &str = "berth";

/// The artifact type of a package type.
pub fn artifact_type(package_type: PackageType) -> &'static str {
    match package_type {
        PackageType::ContainerImage => "AcrImage",
        PackageType::HelmChart => "HelmChart",
        PackageType::File => "File",
    }
}

/// The package type of an artifact type; the others (`EcsImage`, `ContainerImage` builds, ...)
/// are refused.
pub fn package_type(name: &str, artifact_type: &str) -> Result<PackageType, CnError> {
    match artifact_type {
        "AcrImage" => Ok(PackageType::ContainerImage),
        "HelmChart" => Ok(PackageType::HelmChart),
        "File" => Ok(PackageType::File),
        other => Err(CnError::invalid(
            name,
            format!(
                "Berth supports AcrImage, HelmChart and File artifacts, not {}",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// Compute Nest's status of a version.
pub fn status(status: VersionStatus) -> &'static str {
    match status {
        VersionStatus::Draft => "Created",
        VersionStatus::Creating => "Scanning",
        VersionStatus::Available => "Available",
        VersionStatus::Failed => "ScanFailed",
    }
}

/// `ArtifactVersion` of a version: `draft`, or its number.
pub fn artifact_version(version: &PackageVersion) -> String {
    if version.status == VersionStatus::Draft { DRAFT_VERSION.to_owned() } else { version.number.to_string() }
}

/// `ArtifactProperty` as a request gives it (JSON, PascalCase); what Berth does not use is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PropertyIn {
    #[serde(default)]
    pub repo_name: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `ArtifactProperty` as answered.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PropertyOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    region_id: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// The `ArtifactProperty` JSON of a version: the repository (relative to the namespace) and tag
/// of an image or chart, or where a file's bytes are uploaded.
pub fn property(version: &PackageVersion, account: &AccountId, base_url: &str) -> String {
    let image = version.images.first();
    let relative = image.map(|i| i.repository.relative_to(account).unwrap_or(i.repository.as_str()).to_owned());
    let out = match version.package_type {
        PackageType::File => PropertyOut {
            region_id: Some(REGION),
            repo_name: None,
            repo_id: None,
            repo_type: None,
            tag: None,
            url: Some(format!("{base_url}/v1/packages/{}/versions/{}/file", version.package, version.version)),
        },
        _ => PropertyOut {
            region_id: Some(REGION),
            repo_id: relative.clone(),
            repo_name: relative,
            repo_type: Some("Private"),
            tag: image.map(|i| i.tag.clone()),
            url: None,
        },
    };
    serde_json::to_string(&out).unwrap_or_default()
}

/// A tag in an answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagOut {
    pub key: String,
    pub value: String,
}

pub fn tags(tags: &[Tag]) -> Vec<TagOut> {
    tags.iter().map(|t| TagOut { key: t.key.clone(), value: t.value.clone() }).collect()
}

/// One version of an artifact, as CreateArtifact, UpdateArtifact, GetArtifact and
/// ReleaseArtifact answer it (each reads the fields it declares).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArtifactView {
    pub artifact_id: String,
    pub artifact_type: &'static str,
    pub artifact_version: String,
    pub artifact_property: String,
    pub description: String,
    pub gmt_modified: String,
    pub max_version: u32,
    pub name: String,
    pub permission_type: &'static str,
    pub progress: String,
    pub resource_group_id: String,
    pub status: &'static str,
    pub status_detail: String,
    /// A JSON list, as the SDK declares it.
    pub support_region_ids: String,
    pub tags: Vec<TagOut>,
    pub version_name: String,
}

/// The highest released version number (drafts do not count).
pub fn max_version(versions: &[PackageVersion]) -> u32 {
    versions.iter().filter(|v| v.status != VersionStatus::Draft).map(|v| v.number).max().unwrap_or(0)
}

pub fn artifact_view(
    package: &Package,
    version: &PackageVersion,
    max_version: u32,
    account: &AccountId,
    base_url: &str,
) -> ArtifactView {
    ArtifactView {
        artifact_id: package.name.clone(),
        artifact_type: artifact_type(package.package_type),
        artifact_version: artifact_version(version),
        artifact_property: property(version, account, base_url),
        description: package.description.clone(),
        gmt_modified: version.updated_at.clone(),
        max_version,
        name: package.name.clone(),
        permission_type: "Private",
        progress: if version.status == VersionStatus::Creating { "50".into() } else { "100".into() },
        resource_group_id: package.resource_group.clone(),
        status: status(version.status),
        status_detail: version.reason.clone().unwrap_or_default(),
        support_region_ids: format!("[\"{REGION}\"]"),
        tags: tags(&package.tags),
        version_name: version.label.clone().unwrap_or_else(|| version.version.clone()),
    }
}

/// One version in ListArtifactVersions.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionView {
    pub artifact_id: String,
    pub artifact_type: &'static str,
    pub artifact_version: String,
    pub artifact_property: String,
    pub gmt_create: String,
    pub gmt_modified: String,
    pub progress: String,
    pub status: &'static str,
    pub status_detail: String,
    pub support_region_ids: String,
    pub version_name: String,
}

pub fn version_view(version: &PackageVersion, account: &AccountId, base_url: &str) -> VersionView {
    VersionView {
        artifact_id: version.package.clone(),
        artifact_type: artifact_type(version.package_type),
        artifact_version: artifact_version(version),
        artifact_property: property(version, account, base_url),
        gmt_create: version.created_at.clone(),
        gmt_modified: version.updated_at.clone(),
        progress: if version.status == VersionStatus::Creating { "50".into() } else { "100".into() },
        status: status(version.status),
        status_detail: version.reason.clone().unwrap_or_default(),
        support_region_ids: format!("[\"{REGION}\"]"),
        version_name: version.label.clone().unwrap_or_else(|| version.version.clone()),
    }
}

/// One artifact in ListArtifacts (`MaxVersion` is a string there).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArtifactSummary {
    pub artifact_id: String,
    pub artifact_type: &'static str,
    pub description: String,
    pub gmt_modified: String,
    pub max_version: String,
    pub name: String,
    pub permission_type: &'static str,
    pub resource_group_id: String,
    pub status: &'static str,
    pub tags: Vec<TagOut>,
}

/// A page of a listing: `NextToken` (absent on the last page), `MaxResults`, `TotalCount`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Paging {
    pub max_results: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub total_count: usize,
}

/// Default page size of listings.
pub const DEFAULT_PAGE: u64 = 20;
/// Largest page size.
pub const MAX_PAGE: u64 = 100;

/// Cuts one page out of `items` from the offset in `NextToken`.
pub fn page<T>(items: Vec<T>, params: &super::params::Params) -> Result<(Vec<T>, Paging), CnError> {
    let size = params.integer("MaxResults", (1, MAX_PAGE))?.unwrap_or(DEFAULT_PAGE) as usize;
    let start = match params.optional("NextToken") {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| CnError::invalid("NextToken", "not a token Berth gave"))?,
    };
    let total = items.len();
    let items: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + items.len() < total).then(|| (start + items.len()).to_string());
    Ok((items, Paging { max_results: size, next_token: next, total_count: total }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::computenest::params::Params;

    #[test]
    fn statuses_map_one_to_one() {
        let all = [VersionStatus::Draft, VersionStatus::Creating, VersionStatus::Available, VersionStatus::Failed];
        let mapped: Vec<&str> = all.into_iter().map(status).collect();
        assert_eq!(mapped, ["Created", "Scanning", "Available", "ScanFailed"]);
        assert!(package_type("ArtifactType", "EcsImage").is_err());
        for t in [PackageType::ContainerImage, PackageType::HelmChart, PackageType::File] {
            assert_eq!(package_type("ArtifactType", artifact_type(t)).unwrap(), t);
        }
    }

    #[test]
    fn pages_follow_next_token_to_the_end() {
        let params = |pairs: &[(&str, &str)]| Params(pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
        let (first, paging) = page((0..5).collect(), &params(&[("MaxResults", "2")])).unwrap();
        assert_eq!((first, paging.next_token.as_deref(), paging.total_count), (vec![0, 1], Some("2"), 5));
        let (last, paging) = page((0..5).collect(), &params(&[("MaxResults", "2"), ("NextToken", "4")])).unwrap();
        assert_eq!((last, paging.next_token), (vec![4], None));
        assert_eq!(
            page((0..5).collect::<Vec<i32>>(), &params(&[("NextToken", "x")])).unwrap_err().code,
            "InvalidParameter"
        );
        assert_eq!(
            page((0..5).collect::<Vec<i32>>(), &params(&[("MaxResults", "0")])).unwrap_err().code,
            "InvalidParameter"
        );
    }
}

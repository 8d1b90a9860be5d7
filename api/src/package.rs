//! Deployment packages and their versions as requests give them and answers show them. What
//! the rules are is `berth_shared::package`'s; a version as stored (with its checked images)
//! is `berth_shared::package::PackageVersion`, read by clients as [`VersionView`].

use serde::{Deserialize, Serialize};

/// What a package holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PackageType {
    /// One or more images in the owner's namespace.
    ContainerImage,
    /// One OCI Helm chart in the owner's namespace.
    HelmChart,
    /// A file uploaded through Berth.
    File,
}

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionStatus {
    /// A Compute Nest draft (`ArtifactVersion: draft`): changeable, never rendered, not yet
    /// checked; releasing it submits it for the publish check as a numbered version.
    Draft,
    /// Submitted; the publish check has not settled it.
    Creating,
    /// Checked: every image exists, tags are pinned to digests. Immutable.
    Available,
    /// The check failed; see the reasons.
    Failed,
}

/// A tag on a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    /// Key, 1..=128 characters.
    pub key: String,
    /// Value, 0..=128 characters.
    #[serde(default)]
    pub value: String,
}

/// An image (or chart) as a request names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Full repository name in the caller's namespace: `acme/app`.
    pub repository: String,
    /// The tag to publish, e.g. `v1`.
    pub tag: String,
}

/// The content of a version, as a request gives it. Which field is required depends on
/// the package type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    /// Version name, 3..=50 letters, digits and `_`.
    pub name: String,
    /// ContainerImage: the images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageSpec>>,
    /// HelmChart: the chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ImageSpec>,
    /// File: the file's name (the bytes are uploaded afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

/// `POST /v1/packages`: a package with its first version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePackageRequest {
    /// Package name, 3..=128 letters, digits and `_`; cannot be changed.
    pub name: String,
    /// 10..=500 characters.
    pub description: String,
    /// Resource group; `default` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Up to 20 tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// What the package holds.
    #[serde(rename = "type")]
    pub package_type: PackageType,
    /// The first version.
    pub version: VersionSpec,
    /// Idempotency token: a retry with the same token returns the same result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Whether versions must be signed by a key of the account; the account's policy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signature: Option<bool>,
}

/// `POST /v1/packages/{name}/versions`: a new version of an existing package.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVersionRequest {
    #[serde(flatten)]
    pub version: VersionSpec,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `PATCH /v1/packages/{name}`: what may change after creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePackageRequest {
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New tags (replacing the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// Whether versions checked from now on must be signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signature: Option<bool>,
}

/// A package as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Name, unique in the account; also its id.
    pub name: String,
    pub description: String,
    pub resource_group: String,
    pub tags: Vec<Tag>,
    /// Type; every version has it.
    #[serde(rename = "type")]
    pub package_type: PackageType,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// Number the next version gets (Compute Nest's `ArtifactVersion`), from 1.
    pub next_version_number: u32,
    /// Set by a delete before it looks for services using the package, so a service being
    /// defined at the same time sees it and refuses (see the packages function's services).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// Whether its versions must be signed by a key of the account; the account's policy
    /// decides when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signature: Option<bool>,
}

/// Why one image failed its publish check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFailure {
    /// Stable code: `not_found`, `outside_namespace`, `not_a_chart`, `registry_unreachable`,
    /// `registry_error`, and the `signature_*` codes of the sigstore check (`signing::sigstore`).
    pub code: String,
    /// For humans.
    pub message: String,
}

/// A file version's stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's name, as downloads present it.
    pub file_name: String,
    /// Bytes, once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `sha256:...` of the bytes, once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// An image of a version as answered: the tag asked for, and the digest its publish check
/// found or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageView {
    pub repository: String,
    pub tag: String,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub failure: Option<ImageFailure>,
}

/// A version as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub package: String,
    pub version: String,
    /// Its number in the package, from 1.
    pub number: u32,
    pub status: VersionStatus,
    #[serde(default)]
    pub images: Vec<ImageView>,
    #[serde(default)]
    pub file: Option<FileRecord>,
    /// Why it failed, in one line.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/packages` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedPackage {
    pub package: Package,
    pub version: VersionView,
}

/// `GET /v1/packages/{name}` answer: the package with every version, by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageView {
    pub package: Package,
    pub versions: Vec<VersionView>,
}

/// `GET /v1/packages` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePage {
    pub packages: Vec<Package>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

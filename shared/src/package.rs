//! Deployment packages and their versions, as Compute Nest describes them: validation of
//! requests, the stored documents, their paths, and the outcome of publish checks.
//!
//! A package has a name (immutable), description, resource group, tags and a type; each
//! version names its content: container images or a Helm chart in the owner's namespace, or
//! a file uploaded through Berth. A version is `Creating` until the publish check settles it
//! as `Available` (digests pinned) or `Failed` (a reason per image); it never changes after.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::names::AccountId;
use crate::names::RepositoryName;
use crate::platform::http::error::ApiError;

/// Package name length bounds (characters).
pub const NAME_LEN: (usize, usize) = (3, crate::names::MAX_NAME_LEN);
/// Version name length bounds.
pub const VERSION_LEN: (usize, usize) = (3, 50);
/// Description length bounds.
pub const DESCRIPTION_LEN: (usize, usize) = (10, 500);
/// Most tags on a package.
pub const MAX_TAGS: usize = 20;
/// Longest tag key.
pub const MAX_TAG_KEY: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE: usize = 128;
/// Longest resource group name.
pub const MAX_RESOURCE_GROUP: usize = 64;
/// Most images in one container image version.
pub const MAX_IMAGES: usize = 20;
/// Longest image tag (the distribution grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
pub const MAX_IMAGE_TAG: usize = 128;
/// Longest uploaded file name.
pub const MAX_FILE_NAME: usize = 255;
/// Largest file accepted through Berth's upload route.
pub const MAX_FILE_BYTES: usize = 32 << 20;
/// Longest `client_token`.
pub const MAX_CLIENT_TOKEN: usize = 64;
/// Resource group of packages created without one.
pub const DEFAULT_RESOURCE_GROUP: &str = "default";

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    /// Version name, 3..=50 letters, digits and `_`.
    pub name: String,
    /// ContainerImage: the images.
    #[serde(default)]
    pub images: Option<Vec<ImageSpec>>,
    /// HelmChart: the chart.
    #[serde(default)]
    pub chart: Option<ImageSpec>,
    /// File: the file's name (the bytes are uploaded afterwards).
    #[serde(default)]
    pub file_name: Option<String>,
}

/// `POST /v1/packages`: a package with its first version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePackageRequest {
    /// Package name, 3..=128 letters, digits and `_`; cannot be changed.
    pub name: String,
    /// 10..=500 characters.
    pub description: String,
    /// Resource group; [`DEFAULT_RESOURCE_GROUP`] when omitted.
    #[serde(default)]
    pub resource_group: Option<String>,
    /// Up to [`MAX_TAGS`] tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// What the package holds.
    #[serde(rename = "type")]
    pub package_type: PackageType,
    /// The first version.
    pub version: VersionSpec,
    /// Idempotency token: a retry with the same token returns the same result.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Whether versions must be signed by a key of the account; the account's policy when absent.
    #[serde(default)]
    pub require_signature: Option<bool>,
}

/// `POST /v1/packages/{name}/versions`: a new version of an existing package.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVersionRequest {
    #[serde(flatten)]
    pub version: VersionSpec,
    /// Idempotency token.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// `PATCH /v1/packages/{name}`: what may change after creation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePackageRequest {
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New tags (replacing the old ones).
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
    /// Whether versions checked from now on must be signed.
    #[serde(default)]
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

/// What the registry said about one image of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Full repository name.
    pub repository: RepositoryName,
    /// The tag published.
    pub tag: String,
    /// The digest the tag pointed to when checked; what renders pin to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Manifest media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Bytes of the manifest's config and layers (for an index: of its manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `os/arch[/variant]` of each platform.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Why the image failed the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ImageFailure>,
    /// The signing key whose signature of the digest the check verified (packages that
    /// require signatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

impl ImageRecord {
    /// An image as requested, before the registry has been asked about it.
    pub fn unchecked(repository: RepositoryName, tag: &str) -> Self {
        Self {
            repository,
            tag: tag.to_owned(),
            digest: None,
            media_type: None,
            size: None,
            platforms: Vec::new(),
            failure: None,
            signed_by: None,
        }
    }
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

/// A version as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageVersion {
    /// The package's name.
    pub package: String,
    /// The version's name, unique in the package.
    pub version: String,
    /// Its number in the package, from 1 (Compute Nest's `ArtifactVersion`).
    pub number: u32,
    /// The package's type.
    #[serde(rename = "type")]
    pub package_type: PackageType,
    /// Where it is in its life.
    pub status: VersionStatus,
    /// ContainerImage and HelmChart: the images (one for a chart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRecord>,
    /// File: the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRecord>,
    /// Why it failed, in one line (details per image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A free-form label (Compute Nest's `VersionName`), shown, never used as a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// Set when read, never stored: why the version is no longer trusted (the key that signed
    /// an image was revoked since its check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<String>,
}

/// Name of a package's draft version (Compute Nest's `ArtifactVersion: draft`); reserved, so
/// no other version takes it.
pub const DRAFT_VERSION: &str = "draft";
/// Longest version label.
pub const MAX_LABEL: usize = 128;

impl PackageVersion {
    /// The image reference a deployment uses: `host/repo:tag`, or `host/repo@digest` pinned.
    pub fn image_reference(image: &ImageRecord, registry_host: &str, pin_digest: bool) -> String {
        match (&image.digest, pin_digest) {
            (Some(digest), true) => format!("{registry_host}/{}@{digest}", image.repository),
            _ => format!("{registry_host}/{}:{}", image.repository, image.tag),
        }
    }
}

/// A validated package request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPackage {
    /// The package document to create (with `next_version_number` already past the first).
    pub package: Package,
    /// Its first version.
    pub version: PackageVersion,
}

fn invalid(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, code, message)
}

/// Checks a length in characters against inclusive bounds.
fn check_length(field: &str, value: &str, (min, max): (usize, usize)) -> Result<(), ApiError> {
    let length = value.chars().count();
    if length < min || length > max {
        return Err(invalid(
            field,
            "invalid_length",
            format!("{field} must be {min} to {max} characters (got {length})"),
        ));
    }
    Ok(())
}

fn is_word(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validates a package name: 3..=128 letters, digits and `_`.
pub fn validate_package_name(field: &str, name: &str) -> Result<(), ApiError> {
    check_length(field, name, NAME_LEN)?;
    if !is_word(name) {
        return Err(invalid(field, "invalid_characters", format!("{field} may contain only letters, digits and '_'")));
    }
    Ok(())
}

/// Validates a version name: 3..=50 letters, digits and `_`.
pub fn validate_version_name(field: &str, name: &str) -> Result<(), ApiError> {
    check_length(field, name, VERSION_LEN)?;
    if !is_word(name) {
        return Err(invalid(field, "invalid_characters", format!("{field} may contain only letters, digits and '_'")));
    }
    Ok(())
}

/// Validates the name of a version being created through Berth's own API: a valid name, and
/// not [`DRAFT_VERSION`], which only the Compute Nest API makes.
pub fn validate_new_version_name(field: &str, name: &str) -> Result<(), ApiError> {
    validate_version_name(field, name)?;
    if name == DRAFT_VERSION {
        return Err(invalid(field, "reserved_name", format!("'{DRAFT_VERSION}' is the Compute Nest draft's name")));
    }
    Ok(())
}

/// Validates a description: 10..=500 characters, no control characters but newlines.
pub fn validate_description(description: &str) -> Result<(), ApiError> {
    check_length("description", description, DESCRIPTION_LEN)?;
    if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid("description", "invalid_characters", "description may not contain control characters"));
    }
    Ok(())
}

/// Validates tags: at most 20, keys 1..=128 and unique, values up to 128, no `acs:`/`aliyun`
/// prefixes (reserved, as in Alibaba Cloud tagging).
pub fn validate_tags(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid("tags", "too_many", format!("at most {MAX_TAGS} tags (got {})", tags.len())));
    }
    let mut seen = BTreeSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let key_len = tag.key.chars().count();
        if key_len == 0 || key_len > MAX_TAG_KEY {
            return Err(invalid(
                format!("tags[{i}].key"),
                "invalid_length",
                format!("tag keys are 1 to {MAX_TAG_KEY} characters"),
            ));
        }
        if tag.key.starts_with("acs:") || tag.key.starts_with("aliyun") {
            return Err(invalid(
                format!("tags[{i}].key"),
                "reserved",
                "tag keys may not start with 'acs:' or 'aliyun'",
            ));
        }
        if tag.value.chars().count() > MAX_TAG_VALUE {
            return Err(invalid(
                format!("tags[{i}].value"),
                "invalid_length",
                format!("tag values are at most {MAX_TAG_VALUE} characters"),
            ));
        }
        if tag.key.chars().chain(tag.value.chars()).any(char::is_control) {
            return Err(invalid(format!("tags[{i}]"), "invalid_characters", "tags may not contain control characters"));
        }
        if !seen.insert(tag.key.as_str()) {
            return Err(invalid(format!("tags[{i}].key"), "duplicate", format!("tag key '{}' appears twice", tag.key)));
        }
    }
    Ok(())
}

pub fn validate_resource_group(group: &str) -> Result<(), ApiError> {
    let ok = !group.is_empty()
        && group.len() <= MAX_RESOURCE_GROUP
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(invalid(
            "resource_group",
            "invalid_resource_group",
            format!("resource_group is 1 to {MAX_RESOURCE_GROUP} letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// Validates a `client_token`: 1..=64 visible ASCII characters.
pub fn validate_client_token(field: &str, token: &str) -> Result<(), ApiError> {
    if token.is_empty() || token.len() > MAX_CLIENT_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            field,
            "invalid_client_token",
            format!("client_token is 1 to {MAX_CLIENT_TOKEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

/// Whether `tag` follows the distribution tag grammar.
pub fn is_image_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_IMAGE_TAG
        && bytes.first().is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn validate_image(field: &str, spec: &ImageSpec, account: &AccountId) -> Result<ImageRecord, ApiError> {
    let repository = RepositoryName::parse(&spec.repository).map_err(|e| {
        invalid(
            format!("{field}.repository"),
            "invalid_repository",
            format!("{e} (give the full name, e.g. {account}/app)"),
        )
    })?;
    if repository.is_namespace_root(account) {
        return Err(invalid(
            format!("{field}.repository"),
            "repository_is_namespace",
            format!("'{repository}' is your namespace itself; images live below it, e.g. {account}/app"),
        ));
    }
    if !repository.is_in(account) {
        return Err(invalid(
            format!("{field}.repository"),
            "outside_namespace",
            format!("'{repository}' is outside your namespace '{account}': images must be pushed to {account}/..."),
        ));
    }
    if !is_image_tag(&spec.tag) {
        return Err(invalid(
            format!("{field}.tag"),
            "invalid_tag",
            format!("tags are 1 to {MAX_IMAGE_TAG} letters, digits, '_', '.' or '-', not starting with '.' or '-'"),
        ));
    }
    Ok(ImageRecord::unchecked(repository, &spec.tag))
}

fn validate_file_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(invalid(
            field,
            "invalid_file_name",
            format!("file names are 1 to {MAX_FILE_NAME} letters, digits, '_', '.' or '-'"),
        ));
    }
    Ok(())
}

/// Validates a version's content against the package type; `prefix` names the request field
/// holding the version (`version.` in a package create, empty in a version create).
pub fn validate_version(
    prefix: &str,
    spec: &VersionSpec,
    package: &str,
    package_type: PackageType,
    number: u32,
    account: &AccountId,
    now: &str,
) -> Result<PackageVersion, ApiError> {
    validate_new_version_name(&format!("{prefix}name"), &spec.name)?;
    validate_content(prefix, spec, package, package_type, number, account, now)
}

/// Validates a version's content against the package type, as [`validate_version`] does, but
/// not its name (which the caller chose: the Compute Nest draft's is [`DRAFT_VERSION`]).
pub fn validate_content(
    prefix: &str,
    spec: &VersionSpec,
    package: &str,
    package_type: PackageType,
    number: u32,
    account: &AccountId,
    now: &str,
) -> Result<PackageVersion, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let only = |name: &str, for_type: &str| {
        invalid(field(name), "not_for_type", format!("{} is only for {for_type} packages", field(name)))
    };
    let mut images = Vec::new();
    let mut file = None;
    match package_type {
        PackageType::ContainerImage => {
            if spec.chart.is_some() {
                return Err(only("chart", "HelmChart"));
            }
            if spec.file_name.is_some() {
                return Err(only("file_name", "File"));
            }
            let list = spec.images.as_deref().unwrap_or_default();
            if list.is_empty() {
                return Err(invalid(field("images"), "required", "a ContainerImage version needs at least one image"));
            }
            if list.len() > MAX_IMAGES {
                return Err(invalid(field("images"), "too_many", format!("at most {MAX_IMAGES} images per version")));
            }
            for (i, spec) in list.iter().enumerate() {
                let record = validate_image(&field(&format!("images[{i}]")), spec, account)?;
                if images.iter().any(|r: &ImageRecord| r.repository == record.repository && r.tag == record.tag) {
                    return Err(invalid(field(&format!("images[{i}]")), "duplicate", "the same image appears twice"));
                }
                images.push(record);
            }
        }
        PackageType::HelmChart => {
            if spec.images.is_some() {
                return Err(only("images", "ContainerImage"));
            }
            if spec.file_name.is_some() {
                return Err(only("file_name", "File"));
            }
            let chart = spec
                .chart
                .as_ref()
                .ok_or_else(|| invalid(field("chart"), "required", "a HelmChart version needs its chart"))?;
            images.push(validate_image(&field("chart"), chart, account)?);
        }
        PackageType::File => {
            if spec.images.is_some() {
                return Err(only("images", "ContainerImage"));
            }
            if spec.chart.is_some() {
                return Err(only("chart", "HelmChart"));
            }
            let name = spec
                .file_name
                .as_deref()
                .ok_or_else(|| invalid(field("file_name"), "required", "a File version needs its file_name"))?;
            validate_file_name(&field("file_name"), name)?;
            file = Some(FileRecord { file_name: name.to_owned(), size: None, digest: None });
        }
    }
    Ok(PackageVersion {
        package: package.to_owned(),
        version: spec.name.clone(),
        number,
        package_type,
        status: VersionStatus::Creating,
        images,
        file,
        reason: None,
        label: None,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        untrusted: None,
    })
}

impl CreatePackageRequest {
    /// Checks every rule, naming the field at fault. `now` is RFC 3339.
    pub fn validate(&self, account: &AccountId, now: &str) -> Result<ValidPackage, ApiError> {
        validate_package_name("name", &self.name)?;
        validate_description(&self.description)?;
        let resource_group = self.resource_group.clone().unwrap_or_else(|| DEFAULT_RESOURCE_GROUP.to_owned());
        validate_resource_group(&resource_group)?;
        validate_tags(&self.tags)?;
        if let Some(token) = &self.client_token {
            validate_client_token("client_token", token)?;
        }
        let version = validate_version("version.", &self.version, &self.name, self.package_type, 1, account, now)?;
        let package = Package {
            name: self.name.clone(),
            description: self.description.clone(),
            resource_group,
            tags: self.tags.clone(),
            package_type: self.package_type,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            next_version_number: 2,
            deleting: false,
            require_signature: self.require_signature,
        };
        Ok(ValidPackage { package, version })
    }
}

impl UpdatePackageRequest {
    /// Checks the fields given and applies them to `package`.
    pub fn apply(&self, package: &mut Package, now: &str) -> Result<(), ApiError> {
        if self.description.is_none() && self.tags.is_none() && self.require_signature.is_none() {
            return Err(invalid("body", "empty_update", "give description, tags and/or require_signature to change"));
        }
        if let Some(required) = self.require_signature {
            package.require_signature = Some(required);
        }
        if let Some(description) = &self.description {
            validate_description(description)?;
            package.description = description.clone();
        }
        if let Some(tags) = &self.tags {
            validate_tags(tags)?;
            package.tags = tags.clone();
        }
        package.updated_at = now.to_owned();
        Ok(())
    }
}

/// Settles a `Creating` version from its per-image checks: `Available` when every image
/// passed, else `Failed` with a one-line reason naming each failure.
pub fn settle(version: &mut PackageVersion, checked: Vec<ImageRecord>, now: &str) {
    let failures: Vec<String> = checked
        .iter()
        .filter_map(|image| image.failure.as_ref().map(|f| format!("{}:{}: {}", image.repository, image.tag, f.code)))
        .collect();
    version.images = checked;
    version.updated_at = now.to_owned();
    if failures.is_empty() {
        version.status = VersionStatus::Available;
        version.reason = None;
    } else {
        version.status = VersionStatus::Failed;
        version.reason = Some(failures.join("; "));
    }
}

// ---------------------------------------------------------------------------------------
// Store layout
// ---------------------------------------------------------------------------------------

/// Folder of an account's packages.
pub fn packages_prefix(account: &AccountId) -> String {
    format!("accounts/{account}/packages")
}

/// The package document.
pub fn package_path(account: &AccountId, package: &str) -> String {
    format!("accounts/{account}/packages/{package}/package.json")
}

/// Folder of a package's versions.
pub fn versions_prefix(account: &AccountId, package: &str) -> String {
    format!("accounts/{account}/packages/{package}/versions")
}

/// A version document.
pub fn version_path(account: &AccountId, package: &str, version: &str) -> String {
    format!("accounts/{account}/packages/{package}/versions/{version}.json")
}

/// Folder of markers of the services that use a package (one document per service).
pub fn users_prefix(account: &AccountId, package: &str) -> String {
    format!("accounts/{account}/packages/{package}/used-by")
}

/// The marker saying `service` uses `package`.
pub fn user_path(account: &AccountId, package: &str, service: &str) -> String {
    format!("accounts/{account}/packages/{package}/used-by/{service}.json")
}

/// Where a File package's bytes with this digest (`sha256:HEX`) are kept, outside the
/// documents. Content-addressed: concurrent uploads of different bytes never overwrite each
/// other, and the version's compare-and-swap decides which digest it records.
pub fn file_content_path(account: &AccountId, package: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("files/{account}/{package}/sha256/{hex}")
}

/// Where a Berth before content addressing kept a File version's bytes; still read and deleted.
pub fn legacy_file_path(account: &AccountId, package: &str, version: &str) -> String {
    format!("files/{account}/{package}/{version}/content")
}

/// Folder of the markers of publish checks not yet settled, of every account (few at a time).
pub const PENDING_CHECKS: &str = "pending-checks";

/// The marker of one version's publish check, there from submission until the version settles.
pub fn pending_check_path(account: &AccountId, package: &str, version: &str) -> String {
    format!("{PENDING_CHECKS}/{account}/{package}/{version}.json")
}

/// A publish check that was submitted and has not settled yet: if its event is lost (a queue
/// error, a crash between the version write and the send), the sweep submits it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCheck {
    pub account: AccountId,
    pub package: String,
    pub version: String,
    /// Seconds since the epoch of the last submission.
    pub submitted_at: u64,
    /// How often the sweep has submitted it again.
    #[serde(default)]
    pub resubmitted: u32,
}

/// The record of a `client_token` (hashed, so any visible ASCII is a safe path).
pub fn client_token_path(account: &AccountId, token: &str) -> String {
    format!("accounts/{account}/client-tokens/{}.json", crate::platform::digest::sha256_hex(token.as_bytes()))
}

/// What a `client_token` was first used for; a retry must ask for the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTokenRecord {
    /// `create_package` or `create_version`.
    pub operation: String,
    /// SHA-256 of the request body (without the token), to refuse a token reused for another request.
    pub request_digest: String,
    pub package: String,
    pub version: String,
}

/// Event: a version was submitted and waits for its publish check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSubmitted {
    pub package: String,
    pub version: String,
}

impl crate::platform::events::Event for VersionSubmitted {
    const TYPE: &'static str = "package.version.submitted";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("acme").unwrap()
    }

    fn request(json: serde_json::Value) -> Result<ValidPackage, ApiError> {
        let request: CreatePackageRequest =
            serde_json::from_value(json).map_err(|e| ApiError::invalid("body", "x", e.to_string()))?;
        request.validate(&account(), "2026-11-24T00:00:00Z")
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "name": "web_app", "description": "a web application", "type": "ContainerImage",
            "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] }
        })
    }

    fn field_of(result: Result<ValidPackage, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_validates() {
        let valid = request(base()).unwrap();
        assert_eq!(valid.version.status, VersionStatus::Creating);
        assert_eq!(valid.version.number, 1);
        assert_eq!(valid.package.resource_group, DEFAULT_RESOURCE_GROUP);
        assert_eq!(valid.version.images[0].repository.as_str(), "acme/web");
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("/name", serde_json::json!("ab"), "name"),
            ("/name", serde_json::json!("a".repeat(129)), "name"),
            ("/name", serde_json::json!("web-app"), "name"),
            ("/description", serde_json::json!("too short"), "description"),
            ("/version/name", serde_json::json!("v1"), "version.name"),
            ("/version/images/0/repository", serde_json::json!("other/web"), "version.images[0].repository"),
            ("/version/images/0/repository", serde_json::json!("acme12/web"), "version.images[0].repository"),
            ("/version/images/0/repository", serde_json::json!("acme/../x"), "version.images[0].repository"),
            ("/version/images/0/tag", serde_json::json!("-bad"), "version.images[0].tag"),
            ("/version/images", serde_json::json!([]), "version.images"),
            ("/resource_group", serde_json::json!("a b"), "resource_group"),
            ("/client_token", serde_json::json!(""), "client_token"),
        ];
        for (pointer, value, field) in cases {
            let mut body = base();
            match body.pointer_mut(pointer) {
                Some(slot) => *slot = value,
                None => body[&pointer[1..]] = value,
            }
            assert_eq!(field_of(request(body)), field, "{pointer}");
        }
    }

    #[test]
    fn the_draft_name_is_left_to_compute_nest() {
        let mut body = base();
        body["version"]["name"] = "draft".into();
        assert!(matches!(request(body), Err(ApiError::Invalid { code: "reserved_name", .. })));
        let spec: VersionSpec = serde_json::from_value(base()["version"].clone()).unwrap();
        let draft = VersionSpec { name: DRAFT_VERSION.into(), ..spec };
        let version = validate_content("", &draft, "web_app", PackageType::ContainerImage, 1, &account(), "t").unwrap();
        assert_eq!(version.images[0].repository.as_str(), "acme/web");
    }

    #[test]
    fn tags_are_bounded_and_unique() {
        let tags = |n: usize| (0..n).map(|i| Tag { key: format!("k{i}"), value: "v".into() }).collect::<Vec<_>>();
        assert!(validate_tags(&tags(20)).is_ok());
        assert!(validate_tags(&tags(21)).is_err());
        let twice = vec![Tag { key: "a".into(), value: String::new() }, Tag { key: "a".into(), value: "x".into() }];
        assert!(matches!(validate_tags(&twice), Err(ApiError::Invalid { field, .. }) if field == "tags[1].key"));
    }

    #[test]
    fn content_must_match_the_type() {
        let mut body = base();
        body["type"] = "HelmChart".into();
        assert_eq!(field_of(request(body)), "version.images");
        let mut body = base();
        body["type"] = "File".into();
        body["version"] = serde_json::json!({ "name": "v_1", "file_name": "../etc" });
        assert_eq!(field_of(request(body)), "version.file_name");
    }

    #[test]
    fn settle_is_available_only_when_every_image_passed() {
        let mut version = request(base()).unwrap().version;
        let mut image = version.images[0].clone();
        image.digest = Some("sha256:00".into());
        settle(&mut version, vec![image.clone()], "t");
        assert_eq!(version.status, VersionStatus::Available);
        image.failure = Some(ImageFailure { code: "not_found".into(), message: "no such tag".into() });
        settle(&mut version, vec![image], "t");
        assert_eq!(version.status, VersionStatus::Failed);
        assert_eq!(version.reason.as_deref(), Some("acme/web:v1: not_found"));
    }
}

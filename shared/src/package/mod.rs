//! Deployment packages and their versions, as Compute Nest describes them: validation of
//! requests, the stored documents, their paths, and the outcome of publish checks.
//!
//! A package has a name (immutable), description, resource group, tags and a type; each
//! version names its content: container images or a Helm chart in the owner's namespace, or
//! a file uploaded through Berth. A version is `Creating` until the publish check settles it
//! as `Available` (digests pinned) or `Failed` (a reason per image); it never changes after.

mod event;
mod layout;
mod rules;

pub use berth_api::package::{
    CreatePackageRequest, CreateVersionRequest, FileRecord, ImageFailure, ImageSpec, Package, PackageType, Tag,
    UpdatePackageRequest, VersionSpec, VersionStatus,
};
pub use event::VersionSubmitted;
pub use layout::{
    ClientTokenRecord, PENDING_CHECKS, PendingCheck, client_token_path, file_content_path, legacy_file_path,
    package_path, packages_prefix, pending_check_path, user_path, users_prefix, version_path, versions_prefix,
};
pub use rules::{
    CreatePackageRules, UpdatePackageRules, ValidPackage, is_image_tag, settle, validate_client_token,
    validate_content, validate_description, validate_new_version_name, validate_package_name, validate_resource_group,
    validate_tags, validate_version, validate_version_name,
};
use serde::{Deserialize, Serialize};

use crate::names::RepositoryName;

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

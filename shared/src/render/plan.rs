//! What a render decides: each identifier's association, the value it becomes, and the plan
//! of every value a render will write.

use std::sync::Arc;

use serde::Serialize;

use super::TemplateFormat;
use crate::names::RepositoryName;
use crate::package::{ImageRecord, PackageVersion, VersionStatus};
use crate::service::package_type_for;
use crate::template::{Identifier, IdentifierKind, Position};

/// What an identifier's association was found to be.
#[derive(Debug, Clone)]
pub enum Association {
    /// The package version the relation points at, with a download URL for an uploaded file.
    Found {
        /// The version document.
        version: Box<PackageVersion>,
        /// For File packages whose bytes are uploaded: where a deployed host downloads them.
        file_url: Option<String>,
    },
    /// Nothing usable: no relation, or its package or version does not exist.
    Missing {
        /// Stable code: `not_associated`, `package_not_found`, `version_not_found`.
        code: &'static str,
        /// For humans.
        message: String,
    },
}

/// The value an identifier is replaced with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// Text written as it is (an image or chart reference, a URL); shared by every identifier
    /// with the same key.
    Text(Arc<str>),
    /// The base64 dockerconfigjson of the pull key minted for this render.
    PullKey,
}

/// One replacement a render makes, borrowing the template's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Substitution<'t> {
    /// Where the identifier starts.
    pub position: Position,
    /// The identifier as written.
    pub identifier: &'t str,
    /// `computenest::KIND::NAME`.
    pub key: &'t str,
    /// What it becomes.
    #[serde(flatten)]
    pub value: Value,
}
/// Every value a render will write, decided; what a dry run shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan<'t> {
    /// The template's format.
    pub format: TemplateFormat,
    /// Each identifier's replacement, in template order.
    pub substitutions: Vec<Substitution<'t>>,
    /// Every repository the template references (images and charts), sorted: the pull key is
    /// scoped to exactly these.
    pub repositories: Vec<RepositoryName>,
}

impl Plan<'_> {
    /// Whether any identifier stands for the pull key.
    pub fn needs_pull_key(&self) -> bool {
        self.substitutions.iter().any(|s| s.value == Value::PullKey)
    }
}
/// The value of one associated identifier and the repository it references, or a problem.
pub(super) fn value_of(
    identifier: &Identifier,
    version: &PackageVersion,
    file_url: Option<&str>,
    registry_host: &str,
    pin_digests: bool,
) -> Result<(String, Option<RepositoryName>), (&'static str, String)> {
    let named = format!("package {} version {}", version.package, version.version);
    let expected = package_type_for(identifier.kind).expect("credentials are handled by the caller");
    if version.package_type != expected {
        return Err((
            "wrong_package_type",
            format!("{} needs a {expected:?} package; {named} is {:?}", identifier.kind.as_str(), version.package_type),
        ));
    }
    match version.status {
        VersionStatus::Available => {}
        VersionStatus::Creating => {
            return Err(("not_available", format!("{named} is Creating: its publish check has not finished")));
        }
        VersionStatus::Draft => {
            return Err(("not_available", format!("{named} is a Draft: release it first")));
        }
        VersionStatus::Failed => {
            let reason = version.reason.as_deref().unwrap_or("no reason recorded");
            return Err(("not_available", format!("{named} is Failed: {reason}")));
        }
    }
    if identifier.kind == IdentifierKind::File {
        let url = file_url.ok_or_else(|| ("not_available", format!("{named} has no uploaded file")))?;
        return Ok((url.to_owned(), None));
    }
    let image = pick_image(identifier, version).map_err(|message| ("ambiguous_image", message))?;
    if pin_digests && image.digest.is_none() {
        return Err(("no_digest", format!("{named}: {} has no recorded digest to pin", image.repository)));
    }
    Ok((PackageVersion::image_reference(image, registry_host, pin_digests), Some(image.repository.clone())))
}

/// The image an identifier means: the only one, or the one whose last path component is the
/// identifier's name (a version may carry several images).
fn pick_image<'v>(identifier: &Identifier, version: &'v PackageVersion) -> Result<&'v ImageRecord, String> {
    match version.images.as_slice() {
        [] => Err(format!("package {} version {} holds no image", version.package, version.version)),
        [one] => Ok(one),
        many => {
            let by_name = |image: &&ImageRecord| {
                image.repository.as_str().rsplit('/').next().is_some_and(|last| last == identifier.name())
            };
            let mut matching = many.iter().filter(by_name);
            match (matching.next(), matching.next()) {
                (Some(image), None) => Ok(image),
                _ => Err(format!(
                    "package {} version {} holds {} images and none (or several) is named '{}'",
                    version.package,
                    version.version,
                    many.len(),
                    identifier.name()
                )),
            }
        }
    }
}

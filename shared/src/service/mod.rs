//! Services: templates plus relations from identifiers (`computenest::acrimage::NAME`, ...)
//! to package versions, defined directly or imported from Compute Nest's own
//! `.computenest/config.yaml`.
//!
//! From `config.yaml` Berth reads `Service.DeployMetadata.SupplierDeployMetadata`'s
//! `AcrImageArtifactRelation`, `HelmChartArtifactRelation` and `FileArtifactRelation` (keyed by
//! the full placeholder, with `ArtifactId`/`ArtifactVersion`), `TemplateConfigs` (`Name`,
//! `Url`) and the `Artifact:` section (to resolve `${Artifact.KEY.ArtifactId}`). Everything
//! else is ignored and listed as such in the import's answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::AccountId;
use crate::package::{self, PackageType, PackageVersion, VersionStatus};
use crate::platform::http::error::ApiError;
use crate::platform::store::{DocumentStore, StoreError};
use crate::template::IdentifierKind;

mod config_yaml;
pub mod instance;

pub use berth_api::service::{ArtifactRef, VersionSelector};
pub use config_yaml::{parse_config, template_urls};

/// Service name length bounds.
pub const NAME_LEN: (usize, usize) = crate::package::NAME_LEN;
/// Most templates in a service.
pub const MAX_TEMPLATES: usize = 20;
/// Most relations in a service.
pub const MAX_RELATIONS: usize = 200;
/// Largest sum of a service's template bodies (they live in the service document).
pub const MAX_TEMPLATE_BYTES_TOTAL: usize = 3 << 20;

/// A template of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTemplate {
    /// Its name (Compute Nest's `TemplateConfigs[].Name`, or the file path).
    pub name: String,
    /// Where it came from (`TemplateConfigs[].Url`), if imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The template text.
    pub body: String,
}

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Name, unique in the account; also its id.
    pub name: String,
    pub templates: Vec<ServiceTemplate>,
    /// Relations keyed by `computenest::KIND::NAME` (no braces, no spaces).
    pub relations: BTreeMap<String, ArtifactRef>,
    /// `config.yaml` fields Berth did not use.
    #[serde(default)]
    pub ignored: Vec<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
}

/// `PUT /v1/services/{name}`: define (or redefine) a service, from a `config.yaml` and/or
/// explicit templates and relations.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutServiceRequest {
    /// The text of a Compute Nest `config.yaml`.
    #[serde(default)]
    pub config: Option<String>,
    /// Template bodies keyed by their `Url` in the config (or by name without a config).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Explicit relations keyed by the placeholder (`{{ computenest::acrimage::x }}` or
    /// `computenest::acrimage::x`); they override the config's.
    #[serde(default)]
    pub relations: BTreeMap<String, ArtifactRef>,
    /// Maps a config's `Artifact:` keys or literal `ArtifactId`s to Berth package names.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
}

/// A relation before its package is checked against the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRelation {
    /// The identifier kind.
    pub kind: IdentifierKind,
    pub target: ArtifactRef,
}

/// A service definition, parsed and validated, awaiting the existence checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub templates: Vec<ServiceTemplate>,
    /// Relations keyed by identifier key.
    pub relations: BTreeMap<String, PlannedRelation>,
    /// Ignored `config.yaml` fields.
    pub ignored: Vec<String>,
}

/// The package type an identifier kind must point at.
pub fn package_type_for(kind: IdentifierKind) -> Option<PackageType> {
    match kind {
        IdentifierKind::AcrImage => Some(PackageType::ContainerImage),
        IdentifierKind::HelmChart => Some(PackageType::HelmChart),
        IdentifierKind::File => Some(PackageType::File),
        IdentifierKind::Acr | IdentifierKind::Helm => None,
    }
}

/// Validates a service name: 3..=128 letters, digits, `_` and `-`.
pub fn validate_service_name(name: &str) -> Result<(), ApiError> {
    let length = name.chars().count();
    let ok = (NAME_LEN.0..=NAME_LEN.1).contains(&length)
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(ApiError::invalid(
            "name",
            "invalid_name",
            format!("service names are {} to {} letters, digits, '_' or '-'", NAME_LEN.0, NAME_LEN.1),
        ));
    }
    Ok(())
}

/// Parses a relation key written either as the placeholder (`{{ computenest::acrimage::x }}`)
/// or bare (`computenest::acrimage::x`), into its kind and canonical key.
pub fn relation_key(field: &str, written: &str) -> Result<(IdentifierKind, String), ApiError> {
    let trimmed = written.trim();
    let text = if trimmed.starts_with("{{") { trimmed.to_owned() } else { format!("{{{{{trimmed}}}}}") };
    let (found, problems) = crate::template::scan(&text);
    match (found.as_slice(), &problems[..]) {
        ([one], []) if one.span == (0..text.len()) => {
            if one.kind.is_credential() {
                return Err(ApiError::invalid(
                    field,
                    "not_relatable",
                    format!("{} is minted at render time and takes no relation", one.key),
                ));
            }
            Ok((one.kind, one.key.to_owned()))
        }
        _ => Err(ApiError::invalid(
            field,
            "invalid_identifier",
            format!("'{}' is not a computenest::KIND::NAME identifier", written.chars().take(100).collect::<String>()),
        )),
    }
}

impl PutServiceRequest {
    /// Parses and validates the definition (config, templates, relations), naming every
    /// missing piece of a `config.yaml` at once. Existence of packages is checked later.
    pub fn plan(&self) -> Result<ServicePlan, ApiError> {
        let mut templates = Vec::new();
        let mut relations = BTreeMap::new();
        let mut ignored = Vec::new();
        if let Some(config) = &self.config {
            self.plan_config(config, &mut templates, &mut relations, &mut ignored)?;
        } else {
            for (name, body) in &self.templates {
                templates.push(ServiceTemplate { name: name.clone(), url: None, body: body.clone() });
            }
        }
        for (written, target) in &self.relations {
            let field = format!("relations.{written}");
            let (kind, key) = relation_key(&field, written)?;
            crate::package::validate_package_name(&format!("{field}.package"), &target.package)?;
            relations.insert(key, PlannedRelation { kind, target: target.clone() });
        }
        // Names become store paths: every version name, from the body or the config, is
        // checked here, never trusted as a path.
        for (key, planned) in &relations {
            if let VersionSelector::Name(name) = &planned.target.version {
                crate::package::validate_version_name(&format!("relations.{key}.version"), name)?;
            }
        }
        if templates.is_empty() {
            return Err(ApiError::invalid("templates", "required", "a service needs at least one template"));
        }
        if templates.len() > MAX_TEMPLATES {
            return Err(ApiError::invalid("templates", "too_many", format!("at most {MAX_TEMPLATES} templates")));
        }
        if relations.len() > MAX_RELATIONS {
            return Err(ApiError::invalid("relations", "too_many", format!("at most {MAX_RELATIONS} relations")));
        }
        let total: usize = templates.iter().map(|t| t.body.len()).sum();
        if total > MAX_TEMPLATE_BYTES_TOTAL {
            return Err(ApiError::TooLarge { field: "templates".into(), limit: MAX_TEMPLATE_BYTES_TOTAL });
        }
        Ok(ServicePlan { templates, relations, ignored })
    }
}

/// The version a relation points at now: for [`VersionSelector::Latest`], the newest
/// `Available` version, else the newest of any status. `None` if there is none.
pub async fn resolve(
    store: &DocumentStore,
    account: &AccountId,
    target: &ArtifactRef,
) -> Result<Option<PackageVersion>, StoreError> {
    let valid = |check: fn(&str, &str) -> Result<(), ApiError>, name: &str| check("", name).is_ok();
    if !valid(package::validate_package_name, &target.package) {
        return Ok(None);
    }
    if let VersionSelector::Name(name) = &target.version {
        // A name that cannot be a version is a version that does not exist.
        if !valid(package::validate_version_name, name) {
            return Ok(None);
        }
        return Ok(store
            .get::<PackageVersion>(&package::version_path(account, &target.package, name))
            .await?
            .map(|v| v.value));
    }
    let versions = store.list::<PackageVersion>(&package::versions_prefix(account, &target.package)).await?;
    let mut versions: Vec<PackageVersion> = versions.into_iter().map(|(_, doc)| doc.value).collect();
    versions.sort_by_key(|v| v.number);
    Ok(match &target.version {
        VersionSelector::Number(number) => versions.into_iter().find(|v| v.number == *number),
        _ => {
            let newest_available = versions.iter().rposition(|v| v.status == VersionStatus::Available);
            match newest_available {
                Some(index) => Some(versions.swap_remove(index)),
                None => versions.pop(),
            }
        }
    })
}

/// The service document.
pub fn service_path(account: &AccountId, name: &str) -> String {
    format!("accounts/{account}/services/{name}.json")
}

/// Folder of an account's services.
pub fn services_prefix(account: &AccountId) -> String {
    format!("accounts/{account}/services")
}

/// The marker a service leaves on each package it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageUser {
    pub service: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
Service:
  RegionId: cn-hongkong
  DeployMetadata:
    SupplierDeployMetadata:
      DeployTimeout: 10800
      AcrImageArtifactRelation:
        '{{ computenest::acrimage::controller }}':
          ArtifactId: ${Artifact.ControllerImage.ArtifactId}
          ArtifactVersion: ${Artifact.ControllerImage.ArtifactVersion}
        '{{computenest::acrimage::nginx}}':
          ArtifactId: web_pkg
          ArtifactVersion: 2
    TemplateConfigs:
    - Name: ACK
      Url: ros_templates/ack.yaml
Artifact:
  ControllerImage:
    ArtifactType: AcrImage
    ArtifactName: controller_pkg
AcrImageBuilder: {}
"#;

    fn request() -> PutServiceRequest {
        PutServiceRequest {
            config: Some(CONFIG.into()),
            templates: [("ros_templates/ack.yaml".to_owned(), "x: 1".to_owned())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn config_relations_resolve_through_the_artifact_section() {
        let plan = request().plan().unwrap();
        assert_eq!(plan.templates[0].name, "ACK");
        let controller = &plan.relations["computenest::acrimage::controller"].target;
        assert_eq!(controller, &ArtifactRef { package: "controller_pkg".into(), version: VersionSelector::Latest });
        let nginx = &plan.relations["computenest::acrimage::nginx"].target;
        assert_eq!(nginx, &ArtifactRef { package: "web_pkg".into(), version: VersionSelector::Number(2) });
        assert_eq!(
            plan.ignored,
            ["AcrImageBuilder", "Service.RegionId", "Service.DeployMetadata.SupplierDeployMetadata.DeployTimeout"]
        );
    }

    #[test]
    fn every_missing_piece_is_named() {
        let mut request = request();
        request.templates.clear();
        request.config = Some(CONFIG.replace("controller_pkg", "controller-pkg"));
        let error = request.plan().unwrap_err().to_string();
        assert!(error.contains("template 'ros_templates/ack.yaml'"), "{error}");
        assert!(error.contains("'controller-pkg' is not a Berth package name"), "{error}");
    }

    #[test]
    fn artifacts_map_ids_to_packages() {
        let mut request = request();
        request.config = Some(CONFIG.replace("controller_pkg", "controller-pkg"));
        request.artifacts.insert("ControllerImage".into(), "ctl".into());
        let plan = request.plan().unwrap();
        assert_eq!(plan.relations["computenest::acrimage::controller"].target.package, "ctl");
    }

    #[test]
    fn relation_keys_accept_both_spellings_and_refuse_credentials() {
        assert_eq!(relation_key("f", "{{ computenest::file::a }}").unwrap().1, "computenest::file::a");
        assert_eq!(relation_key("f", "computenest::file::a").unwrap().1, "computenest::file::a");
        assert!(relation_key("f", "computenest::acr::dockerconfigjson").is_err());
        assert!(relation_key("f", "{{ computenest::file::a }} x").is_err());
    }
}

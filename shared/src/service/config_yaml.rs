//! Compute Nest's `config.yaml`, as a service definition reads it: the templates it names, the
//! artifact relations of `SupplierDeployMetadata`, and the `Artifact:` section that maps
//! artifact ids to packages. Every field Berth does not use is listed as ignored.

use super::*;
use crate::platform::http::problem::shown;

/// Missing or unusable parts of a `config.yaml`, all of them at once.
#[derive(Debug, Default)]
struct Findings {
    missing: Vec<String>,
}

impl Findings {
    fn into_result(self) -> Result<(), ApiError> {
        if self.missing.is_empty() {
            return Ok(());
        }
        Err(ApiError::invalid("config", "config_incomplete", format!("config.yaml: {}", self.missing.join("; "))))
    }
}

fn yaml_str(value: &yaml_serde::Value) -> Option<String> {
    match value {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(value: &'a yaml_serde::Value, key: &str) -> Option<&'a yaml_serde::Value> {
    value.as_mapping().and_then(|m| m.get(yaml_serde::Value::String(key.to_owned())))
}

fn keys_except(value: Option<&yaml_serde::Value>, prefix: &str, used: &[&str], out: &mut Vec<String>) {
    let Some(mapping) = value.and_then(|v| v.as_mapping()) else { return };
    for key in mapping.keys() {
        let key = yaml_str(key).unwrap_or_else(|| "?".into());
        if !used.contains(&key.as_str()) {
            out.push(format!("{prefix}{key}"));
        }
    }
}

/// A `config.yaml` as a YAML value, its nesting and size bounded while it is read (see
/// [`crate::platform::yaml`]): a 400 `invalid_yaml` if it does not parse, `yaml_too_complex` if
/// it is nested too deep or its aliases expand too far.
pub fn parse_config(config: &str) -> Result<yaml_serde::Value, ApiError> {
    use crate::platform::yaml::YamlError;
    crate::platform::yaml::parse(config).map_err(|error| match error {
        YamlError::Syntax(e) => ApiError::invalid("config", "invalid_yaml", format!("config.yaml does not parse: {e}")),
        bounded => ApiError::invalid("config", "yaml_too_complex", format!("config.yaml is refused: {bounded}")),
    })
}

/// `${Artifact.KEY.FIELD}` → (KEY, FIELD).
fn artifact_reference(value: &str) -> Option<(&str, &str)> {
    let inner = value.strip_prefix("${Artifact.")?.strip_suffix('}')?;
    inner.rsplit_once('.')
}

/// The template URLs a `config.yaml` names (`TemplateConfigs[].Url`, or for managed services
/// `SupplierTemplateConfigs[].Url`), for a client to send their bodies along.
pub fn template_urls(config: &str) -> Vec<String> {
    let Ok(root) = parse_config(config) else { return Vec::new() };
    let deploy = get(&root, "Service").and_then(|s| get(s, "DeployMetadata"));
    let lists = [
        deploy.and_then(|d| get(d, "TemplateConfigs")),
        deploy.and_then(|d| get(d, "SupplierDeployMetadata")).and_then(|s| get(s, "SupplierTemplateConfigs")),
    ];
    let mut urls: Vec<String> = lists
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_sequence())
        .flatten()
        .filter_map(|entry| get(entry, "Url").and_then(yaml_str))
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

impl PutServiceRequest {
    pub(super) fn plan_config(
        &self,
        config: &str,
        templates: &mut Vec<ServiceTemplate>,
        relations: &mut BTreeMap<String, PlannedRelation>,
        ignored: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let root = parse_config(config)?;
        let mut findings = Findings::default();
        let service = get(&root, "Service");
        let deploy = service.and_then(|s| get(s, "DeployMetadata"));
        let supplier = deploy.and_then(|d| get(d, "SupplierDeployMetadata"));
        let artifacts = get(&root, "Artifact");
        keys_except(Some(&root), "", &["Service", "Artifact"], ignored);
        keys_except(service, "Service.", &["DeployMetadata"], ignored);
        keys_except(deploy, "Service.DeployMetadata.", &["SupplierDeployMetadata", "TemplateConfigs"], ignored);
        let relation_sections = [
            ("AcrImageArtifactRelation", IdentifierKind::AcrImage),
            ("HelmChartArtifactRelation", IdentifierKind::HelmChart),
            ("FileArtifactRelation", IdentifierKind::File),
        ];
        let section_names: Vec<&str> = relation_sections.iter().map(|(name, _)| *name).collect();
        let mut used = section_names.clone();
        used.push("SupplierTemplateConfigs");
        keys_except(supplier, "Service.DeployMetadata.SupplierDeployMetadata.", &used, ignored);

        // Managed services keep the template URLs in SupplierTemplateConfigs.
        let supplier_templates = supplier.and_then(|s| get(s, "SupplierTemplateConfigs")).and_then(|t| t.as_sequence());
        match deploy.and_then(|d| get(d, "TemplateConfigs")).and_then(|t| t.as_sequence()) {
            None => findings.missing.push("Service.DeployMetadata.TemplateConfigs is missing".into()),
            Some(list) => {
                for (i, entry) in list.iter().enumerate() {
                    let url = get(entry, "Url").and_then(yaml_str).or_else(|| {
                        supplier_templates.and_then(|t| t.get(i)).and_then(|e| get(e, "Url")).and_then(yaml_str)
                    });
                    let name = get(entry, "Name").and_then(yaml_str);
                    let Some(url) = url else {
                        findings.missing.push(format!("TemplateConfigs[{i}].Url is missing"));
                        continue;
                    };
                    match self.templates.get(&url) {
                        Some(body) => templates.push(ServiceTemplate {
                            name: name.unwrap_or_else(|| url.clone()),
                            url: Some(url),
                            body: body.clone(),
                        }),
                        None => findings.missing.push(format!(
                            "template '{}' (TemplateConfigs[{i}]) was not sent",
                            crate::platform::http::problem::shown(&url)
                        )),
                    }
                }
            }
        }

        for (section, kind) in relation_sections {
            let Some(mapping) = supplier.and_then(|s| get(s, section)).and_then(|v| v.as_mapping()) else { continue };
            for (placeholder, target) in mapping {
                let placeholder = yaml_str(placeholder).unwrap_or_default();
                let at = format!("{section}['{placeholder}']");
                let (found_kind, key) = match relation_key(&format!("config.{at}"), &placeholder) {
                    Ok(parsed) => parsed,
                    Err(error) => {
                        findings.missing.push(format!("{at}: {error}"));
                        continue;
                    }
                };
                if found_kind != kind {
                    findings.missing.push(format!("{at}: a {} identifier under {section}", found_kind.as_str()));
                    continue;
                }
                let id = get(target, "ArtifactId").and_then(yaml_str);
                let version = get(target, "ArtifactVersion").and_then(yaml_str);
                let Some(id) = id else {
                    findings.missing.push(format!("{at}.ArtifactId is missing"));
                    continue;
                };
                let package = match self.package_for(&id, artifacts) {
                    Ok(package) => package,
                    Err(unmapped) => {
                        findings.missing.push(format!("{at}.ArtifactId: {unmapped}"));
                        continue;
                    }
                };
                let version = match version.as_deref() {
                    None | Some("draft") | Some("latest") => VersionSelector::Latest,
                    Some(v) if artifact_reference(v).is_some() => VersionSelector::Latest,
                    Some(v) => match v.parse::<u32>() {
                        Ok(number) => VersionSelector::Number(number),
                        Err(_) => VersionSelector::Name(v.to_owned()),
                    },
                };
                relations.insert(key, PlannedRelation { kind, target: ArtifactRef { package, version } });
            }
        }
        findings.into_result()
    }

    /// The Berth package an `ArtifactId` names: through `artifacts`, through the `Artifact:`
    /// section's `ArtifactName`, or the id itself when it is a valid package name.
    fn package_for(&self, id: &str, artifacts: Option<&yaml_serde::Value>) -> Result<String, UnmappedArtifact> {
        if let Some(mapped) = self.artifacts.get(id) {
            return Ok(mapped.clone());
        }
        let candidate = match artifact_reference(id) {
            Some((key, _field)) => {
                if let Some(mapped) = self.artifacts.get(key) {
                    return Ok(mapped.clone());
                }
                let entry = artifacts
                    .and_then(|a| get(a, key))
                    .ok_or_else(|| UnmappedArtifact::Undefined { id: id.to_owned(), key: key.to_owned() })?;
                get(entry, "ArtifactName")
                    .and_then(yaml_str)
                    .ok_or_else(|| UnmappedArtifact::NoArtifactName { key: key.to_owned() })?
            }
            None => id.to_owned(),
        };
        match crate::package::validate_package_name("package", &candidate) {
            Ok(()) => Ok(candidate),
            Err(_) => Err(UnmappedArtifact::NotAPackageName { name: candidate, id: id.to_owned() }),
        }
    }
}

/// Why an `ArtifactId` names no Berth package (one of the config's findings). Names from the
/// config are shown as [`shown`] bounds them.
#[derive(Debug, thiserror::Error)]
enum UnmappedArtifact {
    #[error("'{}' refers to Artifact.{}, which the config does not define", shown(id), shown(key))]
    Undefined { id: String, key: String },
    #[error("Artifact.{key}.ArtifactName is missing")]
    NoArtifactName { key: String },
    #[error(
        "'{}' is not a Berth package name; map it with \"artifacts\": {{\"{}\": \"PACKAGE\"}}",
        shown(name),
        shown(id)
    )]
    NotAPackageName { name: String, id: String },
}

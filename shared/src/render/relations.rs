//! The relations a render looks up: from a request's map or a Compute Nest `config.yaml`.

use std::collections::BTreeMap;

use crate::platform::http::error::ApiError;
use crate::service::ArtifactRef;

/// Relations keyed by the placeholder as written (`{{ computenest::acrimage::x }}` or bare),
/// keyed again by `computenest::KIND::NAME`. `field` prefixes the error's field.
pub fn normalise_relations(
    field: &str,
    relations: &BTreeMap<String, ArtifactRef>,
) -> Result<BTreeMap<String, ArtifactRef>, ApiError> {
    let mut out = BTreeMap::new();
    for (written, target) in relations {
        let (_, key) = crate::service::relation_key(&format!("{field}.{written}"), written)?;
        out.insert(key, target.clone());
    }
    Ok(out)
}

/// The relations a Compute Nest `config.yaml` declares, keyed by `computenest::KIND::NAME`,
/// read by the services parser. `artifacts` maps `ArtifactId`s or `Artifact:` keys to Berth
/// package names, as for a service import.
pub fn relations_from_config(
    config: &str,
    artifacts: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, ArtifactRef>, ApiError> {
    // The services parser reads relations together with TemplateConfigs and wants every listed
    // template sent; a one-off render has one template, so point TemplateConfigs at it.
    let mut root = crate::service::parse_config(config)?;
    let single = yaml_serde::from_str::<yaml_serde::Value>("[{Name: template, Url: template}]").expect("literal");
    if let Some(deploy) =
        root.get_mut("Service").and_then(|s| s.get_mut("DeployMetadata")).and_then(|d| d.as_mapping_mut())
    {
        deploy.insert(yaml_serde::Value::String("TemplateConfigs".into()), single);
    } else {
        return Ok(BTreeMap::new());
    }
    let request = crate::service::PutServiceRequest {
        config: Some(yaml_serde::to_string(&root).map_err(|e| ApiError::Internal(e.to_string()))?),
        templates: BTreeMap::from([("template".to_owned(), String::new())]),
        relations: BTreeMap::new(),
        artifacts: artifacts.clone(),
    };
    let plan = request.plan()?;
    Ok(plan.relations.into_iter().map(|(key, planned)| (key, planned.target)).collect())
}

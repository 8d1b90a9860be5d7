//! What the render routes take: the bodies of `POST /v1/services/{id}/render` and
//! `POST /v1/render`, validated into one request.

use std::collections::BTreeMap;

use serde::Deserialize;

use berth_shared::platform::http::error::ApiError;
use berth_shared::render::{RenderOptions, normalise_relations, relations_from_config};
use berth_shared::service::ArtifactRef;
use berth_shared::template::MAX_TEMPLATE_BYTES;

/// Largest `POST /v1/render` body: a template at its limit as base64, plus room for the rest.
pub const MAX_RENDER_BODY: usize = MAX_TEMPLATE_BYTES / 3 * 4 + (1 << 20);

/// `POST /v1/services/{name}/render` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRenderRequest {
    /// The template's name (or `Url`); may be omitted when the service has exactly one.
    #[serde(default)]
    pub template: Option<String>,
    /// Pin images and charts to their digests.
    #[serde(default)]
    pub pin_digests: bool,
    /// Lifetime of the pull key and download URLs (60..=43200, default 3600).
    #[serde(default)]
    pub credential_ttl_seconds: Option<u64>,
    /// List the substitutions only; mint nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Render for this instance of the service: its pinned versions, and its own pull
    /// credential (which outlives the render) in place of a temporary key.
    #[serde(default)]
    pub instance: Option<String>,
}

impl ServiceRenderRequest {
    /// The index of the service template this request names: by name or `Url`, or the only one.
    pub fn pick(&self, service: &berth_shared::service::Service) -> Result<usize, ApiError> {
        let names = || service.templates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
        match (&self.template, service.templates.as_slice()) {
            (None, [_]) => Ok(0),
            (None, _) => Err(ApiError::invalid(
                "template",
                "required",
                format!("service {} has several templates; name one of: {}", service.name, names()),
            )),
            (Some(wanted), templates) => {
                templates.iter().position(|t| &t.name == wanted || t.url.as_ref() == Some(wanted)).ok_or_else(|| {
                    ApiError::invalid(
                        "template",
                        "unknown_template",
                        format!(
                            "service {} has no template '{}'; it has: {}",
                            service.name,
                            berth_shared::platform::http::problem::shown(wanted),
                            names()
                        ),
                    )
                })
            }
        }
    }
}

/// `POST /v1/render` body: a template with its relations, given directly or as a `config.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The template text.
    #[serde(default)]
    pub template: Option<String>,
    /// The template's bytes in base64 (any bytes: non-UTF-8 is refused with its position).
    #[serde(default)]
    pub template_base64: Option<String>,
    /// Relations keyed by placeholder (`{{ computenest::acrimage::x }}` or bare).
    #[serde(default)]
    pub relations: BTreeMap<String, ArtifactRef>,
    /// A Compute Nest `config.yaml` whose relations to use (explicit `relations` win).
    #[serde(default)]
    pub config: Option<String>,
    /// Maps the config's `ArtifactId`s or `Artifact:` keys to Berth package names.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
    /// Pin images and charts to their digests.
    #[serde(default)]
    pub pin_digests: bool,
    /// Lifetime of the pull key and download URLs (60..=43200, default 3600).
    #[serde(default)]
    pub credential_ttl_seconds: Option<u64>,
    /// List the substitutions only; mint nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl RenderRequest {
    /// The template bytes (moved, not copied), the relations by key, and the options; every
    /// field checked.
    pub fn validate(self) -> Result<ValidRenderRequest, ApiError> {
        use base64::Engine;
        let (field, bytes) = match (self.template, &self.template_base64) {
            (Some(text), None) => ("template", text.into_bytes()),
            (None, Some(encoded)) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|e| {
                    ApiError::invalid(
                        "template_base64",
                        "invalid_base64",
                        format!("template_base64 is not base64: {e}"),
                    )
                })?;
                ("template_base64", bytes)
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("template", "conflict", "give template or template_base64, not both"));
            }
            (None, None) => return Err(ApiError::invalid("template", "required", "give template or template_base64")),
        };
        let mut relations = match &self.config {
            Some(config) => relations_from_config(config, &self.artifacts)?,
            None => BTreeMap::new(),
        };
        relations.extend(normalise_relations("relations", &self.relations)?);
        let options = RenderOptions::new(self.pin_digests, self.credential_ttl_seconds, self.dry_run)?;
        Ok(ValidRenderRequest { field, bytes, relations, options })
    }
}

/// A checked `POST /v1/render` request.
#[derive(Debug, Clone)]
pub struct ValidRenderRequest {
    /// The field the template came in (errors name it).
    pub field: &'static str,
    /// The template's bytes, not yet checked for size or UTF-8.
    pub bytes: Vec<u8>,
    /// Relations keyed by `computenest::KIND::NAME`.
    pub relations: BTreeMap<String, ArtifactRef>,
    pub options: RenderOptions,
}

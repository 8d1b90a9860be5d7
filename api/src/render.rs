//! Renders as a client asks for and reads them: a service's template, or a template file with
//! its `config.yaml`, with every Compute Nest identifier replaced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/services/{id}/render` and `POST /v1/render` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderRequest {
    /// List the substitutions; mint nothing.
    pub dry_run: bool,
    /// Replace image tags with the digests the publish check found.
    pub pin_digests: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ttl_seconds: Option<u64>,
    /// A service's template by name (a service render).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Render for this instance of the service (a service render).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The template's bytes (a file render).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_base64: Option<String>,
    /// The text of its `config.yaml` (a file render).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// `Artifact:` keys or ArtifactIds to Berth package names (a file render).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<BTreeMap<String, String>>,
}

/// Where an identifier starts in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One replacement a render makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substitution {
    pub position: Position,
    /// The identifier as written.
    pub identifier: String,
    /// `text` (then `value` is it) or `pull_key` (the minted key, not shown here).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// The pull key a render minted (its secret is in the rendered text only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullKeySummary {
    pub registry: String,
    pub repositories: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A render's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderAnswer {
    /// The rendered template (absent in a dry run).
    #[serde(default)]
    pub rendered: Option<String>,
    pub substitutions: Vec<Substitution>,
    /// The repositories the pull key reaches (or would).
    pub repositories: Vec<String>,
    #[serde(default)]
    pub pull_key: Option<PullKeySummary>,
}

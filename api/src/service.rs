//! Services as a client defines and reads them: templates plus the packages their
//! identifiers stand for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `PUT /v1/services/{name}` body: a Compute Nest `config.yaml`, the templates it names, and
/// which Berth package each of its artifacts is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Template bodies keyed by their `Url` in the config.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// A config's `Artifact:` keys or literal `ArtifactId`s, to Berth package names.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
}

/// Which version of a package a relation means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionSelector {
    /// The newest version (Compute Nest's `draft`, or an `${Artifact...}` reference).
    Latest,
    /// The version with this number (`ArtifactVersion: 3`).
    Number(u32),
    /// The version with this name.
    Name(String),
}

impl std::fmt::Display for VersionSelector {
    /// As it is written in JSON.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => write!(f, "\"latest\""),
            Self::Number(n) => write!(f, "{{\"number\":{n}}}"),
            Self::Name(name) => write!(f, "{{\"name\":{name:?}}}"),
        }
    }
}

/// A relation's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    /// Package name.
    pub package: String,
    /// Which version.
    pub version: VersionSelector,
}

/// A template of a service, as answered (its name; the body is left out here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateName {
    pub name: String,
}

/// A service as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub templates: Vec<TemplateName>,
    /// Relations keyed by `computenest::KIND::NAME`.
    #[serde(default)]
    pub relations: BTreeMap<String, ArtifactRef>,
    /// Config entries Berth does not act on.
    #[serde(default)]
    pub ignored: Vec<String>,
}

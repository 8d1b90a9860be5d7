//! Rendering a service template: every `{{ computenest::KIND::NAME }}` replaced by its value,
//! every other byte copied as it was, and every problem reported at once with its line:column.
//!
//! Rendering is three steps so that the one impure step, looking associations up in the store,
//! stays outside: [`Template::check`] (size, UTF-8, scan), then the caller resolves
//! [`Template::association_keys`] to [`Association`]s, then [`Template::plan`] decides every
//! value (or lists every problem) and [`Template::render`] cuts the template around the values
//! into a [`Rendered`], which is never copied whole: answers send its pieces. The pull key that
//! `acr::dockerconfigjson` / `helm::dockerconfigjson` stand for is minted by the caller between
//! `plan` and `render`, scoped to [`Plan::repositories`]: exactly the repositories the template
//! references. The render function runs the three steps around its store look-ups; `file::`
//! values are signed download URLs ([`crate::credentials::download_token::download_url`]).

mod output;
mod plan;
mod relations;
mod rendered;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::platform::http::error::ApiError;
use crate::template::{self, Identifier, MAX_TEMPLATE_BYTES, TemplateProblem, TemplateProblems};

pub use output::{PullKeySummary, RenderOptions, RenderOutput};
pub use plan::{Association, Plan, Substitution, Value};
pub use relations::{normalise_relations, relations_from_config};
pub use rendered::Rendered;

use plan::value_of;

/// The text format of a template; decides how values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateFormat {
    /// YAML (ROS templates, Kubernetes manifests): values are written as they are.
    Yaml,
    /// JSON: values are escaped for the inside of a JSON string.
    Json,
}

impl TemplateFormat {
    /// JSON when the first significant character opens an object or array, else YAML. A YAML
    /// flow mapping is detected as JSON too, which is harmless: JSON escapes are valid inside
    /// YAML double-quoted strings, and Berth's values hold nothing that needs escaping.
    pub fn detect(text: &str) -> Self {
        match text.trim_start_matches('\u{feff}').trim_start().as_bytes().first() {
            Some(b'{') | Some(b'[') => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// Checks a template's bytes: at most [`MAX_TEMPLATE_BYTES`] (else 413) and UTF-8 (else 400,
/// with the line:column of the first bad byte). `field` names the template in errors.
pub fn template_text<'a>(field: &str, bytes: &'a [u8]) -> Result<&'a str, ApiError> {
    if bytes.len() > MAX_TEMPLATE_BYTES {
        return Err(ApiError::TooLarge { field: field.to_owned(), limit: MAX_TEMPLATE_BYTES });
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // `valid` is UTF-8 up to here, so counting non-continuation bytes counts characters.
        let column = valid.get(line_start..).unwrap_or_default().iter().filter(|&&b| (b & 0xC0) != 0x80).count() + 1;
        ApiError::invalid(field, "invalid_utf8", format!("{field} is not UTF-8: invalid byte at {line}:{column}"))
    })
}
/// A template whose bytes passed the checks, with its identifiers and scan problems.
#[derive(Debug, Clone)]
pub struct Template<'a> {
    text: &'a str,
    format: TemplateFormat,
    identifiers: Vec<Identifier<'a>>,
    problems: TemplateProblems,
}

impl<'a> Template<'a> {
    /// Checks size and UTF-8 (see [`template_text`]) and scans for identifiers.
    pub fn check(field: &str, bytes: &'a [u8]) -> Result<Self, ApiError> {
        Ok(Self::scan(template_text(field, bytes)?))
    }

    /// Scans text already known to be within limits.
    pub fn scan(text: &'a str) -> Self {
        let (identifiers, problems) = template::scan(text);
        Self { text, format: TemplateFormat::detect(text), identifiers, problems }
    }

    pub fn format(&self) -> TemplateFormat {
        self.format
    }

    /// Every well-formed identifier, in order.
    pub fn identifiers(&self) -> &[Identifier<'a>] {
        &self.identifiers
    }

    /// The keys (`computenest::KIND::NAME`) whose associations must be looked up: every
    /// identifier but the minted credentials.
    pub fn association_keys(&self) -> BTreeSet<&'a str> {
        self.identifiers.iter().filter(|i| !i.kind.is_credential()).map(|i| i.key).collect()
    }

    /// Decides every identifier's value from `associations` (keyed like
    /// [`Template::association_keys`]), or lists every problem, scan problems included,
    /// in template order. Each distinct key is decided once, however often it appears.
    pub fn plan(
        &self,
        associations: &BTreeMap<String, Association>,
        registry_host: &str,
        pin_digests: bool,
    ) -> Result<Plan<'a>, TemplateProblems> {
        let mut problems = TemplateProblems::default();
        let mut substitutions = Vec::with_capacity(self.identifiers.len());
        let mut repositories = BTreeSet::new();
        // SipHash was 40% of the instructions of plan and render on the corpus; foldhash is seeded too.
        let mut decided: HashMap<&str, Decision, foldhash::fast::RandomState> = HashMap::default();
        for identifier in &self.identifiers {
            let value = if identifier.kind.is_credential() {
                Ok(Value::PullKey)
            } else {
                let decision = decided.entry(identifier.key).or_insert_with(|| {
                    let key = identifier.key;
                    match associations.get(key) {
                        None => Err(("not_associated", format!("{key} is not associated with a package"))),
                        Some(Association::Missing { code, message }) => Err((*code, message.clone())),
                        Some(Association::Found { version, file_url }) => {
                            value_of(identifier, version, file_url.as_deref(), registry_host, pin_digests).map(
                                |(value, repository)| {
                                    repositories.extend(repository);
                                    Arc::from(value)
                                },
                            )
                        }
                    }
                });
                decision.clone().map(Value::Text)
            };
            match value {
                Ok(value) => substitutions.push(Substitution {
                    position: identifier.position,
                    identifier: identifier.text,
                    key: identifier.key,
                    value,
                }),
                Err((code, message)) => problems.push(TemplateProblem {
                    position: identifier.position,
                    code,
                    identifier: identifier.text.chars().take(200).collect(),
                    message,
                }),
            }
        }
        if problems.total() > 0 || self.problems.total() > 0 {
            // Scan problems and association problems were collected apart; report in text order.
            return Err(self.problems.clone().merge(problems));
        }
        Ok(Plan { format: self.format, substitutions, repositories: repositories.into_iter().collect() })
    }

    /// Renders with the values of `plan` (made by [`Template::plan`] of this template). The
    /// template's text is not copied: the result is that text cut around the values (shared
    /// per key; only the pull key and values a JSON template must escape are allocated).
    pub fn render(&self, plan: &Plan<'a>, pull_key: Option<&str>) -> Result<Rendered<'a>, RenderError> {
        assert_eq!(plan.substitutions.len(), self.identifiers.len(), "a plan of another template");
        let pull_key: Option<Arc<str>> = match (plan.needs_pull_key(), pull_key) {
            (true, None) => return Err(RenderError::NoPullKey),
            (true, Some(key)) => Some(self.written(key).unwrap_or_else(|| Arc::from(key))),
            (false, _) => None,
        };
        let mut len = self.text.len();
        let cuts = self
            .identifiers
            .iter()
            .zip(&plan.substitutions)
            .map(|(identifier, substitution)| {
                let value = match &substitution.value {
                    Value::Text(text) => self.written(text).unwrap_or_else(|| text.clone()),
                    Value::PullKey => pull_key.clone().expect("a pull key when the plan needs one"),
                };
                len = len - identifier.span.len() + value.len();
                (identifier.span.clone(), value)
            })
            .collect();
        Ok(Rendered { text: self.text, cuts, len })
    }

    /// `value` escaped for this template's format, when it needs escaping at all.
    fn written(&self, value: &str) -> Option<Arc<str>> {
        match self.format {
            TemplateFormat::Json => template::json_string_content(value).map(Arc::from),
            TemplateFormat::Yaml => None,
        }
    }
}

/// A key's value, or the problem code and message of every identifier with that key.
type Decision = Result<Arc<str>, (&'static str, String)>;

/// Why a planned render could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template needs a pull key and none was given.
    #[error("the template needs a pull key and none was minted")]
    NoPullKey,
}

#[cfg(test)]
mod tests;

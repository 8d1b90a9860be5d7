//! How a render should go and what it answers.

use serde::Serialize;

use super::rendered::ESCAPE_SLICE;
use super::{Rendered, Substitution, TemplateFormat};
use crate::names::RepositoryName;
use crate::platform::http::error::ApiError;

/// How a render should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Write `@sha256:...` instead of `:tag` for images and charts.
    pub pin_digests: bool,
    /// Lifetime of the pull key and of file download URLs.
    pub credential_ttl_seconds: u64,
    /// Decide every value, list the substitutions, mint nothing, write nothing.
    pub dry_run: bool,
}

impl RenderOptions {
    /// Options from a request's optional fields, the TTL checked against the key limits.
    pub fn new(pin_digests: bool, credential_ttl_seconds: Option<u64>, dry_run: bool) -> Result<Self, ApiError> {
        use crate::credentials::temporary_key::{DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS};
        let ttl = credential_ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(ApiError::invalid(
                "credential_ttl_seconds",
                "out_of_range",
                format!("credential_ttl_seconds must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}"),
            ));
        }
        Ok(Self { pin_digests, credential_ttl_seconds: ttl, dry_run })
    }
}

/// The pull key a render minted, without its secret parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullKeySummary {
    /// The registry it logs in to.
    pub registry: String,
    pub username: String,
    /// The repositories it reaches, and nothing else.
    pub repositories: Vec<RepositoryName>,
    /// RFC 3339 expiry; none for an instance credential that expires only when revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// For a render for an instance: the id of the instance credential handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

/// What a render answers, borrowing the template's text.
#[derive(Debug, Clone, Serialize)]
pub struct RenderOutput<'t> {
    /// The template's format.
    pub format: TemplateFormat,
    /// The rendered template; absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Rendered<'t>>,
    /// Whether this was a dry run (nothing minted).
    pub dry_run: bool,
    /// Every replacement, in template order; the pull key is named, never shown.
    pub substitutions: Vec<Substitution<'t>>,
    /// The repositories the template references.
    pub repositories: Vec<RepositoryName>,
    /// The pull key minted for this render, if the template asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_key: Option<PullKeySummary>,
}

impl RenderOutput<'_> {
    /// The JSON answer: what `serde_json` writes for it, but the rendered template escaped
    /// piece by piece with SIMD (`serde_json`'s escaping runs at under 1 GB/s on templates,
    /// whose every line ends in a character to escape).
    pub fn into_json(mut self) -> Vec<u8> {
        let rendered = self.rendered.take();
        // The text, room for its escapes, the escaper's scratch, and the summary.
        let room = rendered.as_ref().map_or(0, |r| r.len() + r.len() / 8 + ESCAPE_SLICE * 6)
            + 256 * (self.substitutions.len() + 1);
        let mut out = Vec::with_capacity(room);
        serde_json::to_writer(&mut out, &self).expect("a render answer serialises");
        if let Some(rendered) = rendered {
            out.pop(); // the closing brace
            out.extend_from_slice(b",\"rendered\":");
            rendered.write_json_string(&mut out);
            out.push(b'}');
        }
        out
    }
}

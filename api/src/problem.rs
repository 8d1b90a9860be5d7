//! The body of every API error (`application/problem+json`, RFC 9457), as a client reads it.
//! Every field is optional here: a client shows what it got rather than fail on a proxy's
//! answer.

use serde::{Deserialize, Serialize};

/// An error answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable code for programs to match on, e.g. `invalid_field`.
    #[serde(default)]
    pub code: Option<String>,
    /// Explanation of this occurrence.
    #[serde(default)]
    pub detail: Option<String>,
    /// The request field at fault, if any.
    #[serde(default)]
    pub field: Option<String>,
    /// Every occurrence when a request has several faults at once (a template's identifiers).
    #[serde(default)]
    pub problems: Vec<ListedProblem>,
}

/// One of several faults of a request: a template's identifier, at its line and column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedProblem {
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub column: Option<u64>,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub message: String,
}

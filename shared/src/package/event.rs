//! The event of a package version waiting for its publish check.

use serde::{Deserialize, Serialize};

/// Event: a version was submitted and waits for its publish check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSubmitted {
    pub package: String,
    pub version: String,
}

impl crate::platform::events::Event for VersionSubmitted {
    const TYPE: &'static str = "package.version.submitted";
}

//! Where packages, versions, files and their markers are kept in the store.

use serde::{Deserialize, Serialize};

use crate::names::AccountId;

/// Folder of an account's packages.
pub fn packages_prefix(account: &AccountId) -> String {
    format!("accounts/{account}/packages")
}

/// The package document.
pub fn package_path(account: &AccountId, package: &str) -> String {
    format!("accounts/{account}/packages/{package}/package.json")
}

/// Folder of a package's versions.
pub fn versions_prefix(account: &AccountId, package: &str) -> String {
    format!("accounts/{account}/packages/{package}/versions")
}

/// A version document.
pub fn version_path(account: &AccountId, package: &str, version: &str) -> String {
    format!("accounts/{account}/packages/{package}/versions/{version}.json")
}

/// Folder of markers of the services that use a package (one document per service).
pub fn users_prefix(account: &AccountId, package: &str) -> String {
    format!("accounts/{account}/packages/{package}/used-by")
}

/// The marker saying `service` uses `package`.
pub fn user_path(account: &AccountId, package: &str, service: &str) -> String {
    format!("accounts/{account}/packages/{package}/used-by/{service}.json")
}

/// Where a File package's bytes with this digest (`sha256:HEX`) are kept, outside the
/// documents. Content-addressed: concurrent uploads of different bytes never overwrite each
/// other, and the version's compare-and-swap decides which digest it records.
pub fn file_content_path(account: &AccountId, package: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("files/{account}/{package}/sha256/{hex}")
}

/// Where a Berth before content addressing kept a File version's bytes; still read and deleted.
pub fn legacy_file_path(account: &AccountId, package: &str, version: &str) -> String {
    format!("files/{account}/{package}/{version}/content")
}

/// Folder of the markers of publish checks not yet settled, of every account (few at a time).
pub const PENDING_CHECKS: &str = "pending-checks";

/// The marker of one version's publish check, there from submission until the version settles.
pub fn pending_check_path(account: &AccountId, package: &str, version: &str) -> String {
    format!("{PENDING_CHECKS}/{account}/{package}/{version}.json")
}

/// A publish check that was submitted and has not settled yet: if its event is lost (a queue
/// error, a crash between the version write and the send), the sweep submits it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCheck {
    pub account: AccountId,
    pub package: String,
    pub version: String,
    /// Seconds since the epoch of the last submission.
    pub submitted_at: u64,
    /// How often the sweep has submitted it again.
    #[serde(default)]
    pub resubmitted: u32,
}

/// The record of a `client_token` (hashed, so any visible ASCII is a safe path).
pub fn client_token_path(account: &AccountId, token: &str) -> String {
    format!("accounts/{account}/client-tokens/{}.json", crate::platform::digest::sha256_hex(token.as_bytes()))
}

/// What a `client_token` was first used for; a retry must ask for the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTokenRecord {
    /// `create_package` or `create_version`.
    pub operation: String,
    /// SHA-256 of the request body (without the token), to refuse a token reused for another request.
    pub request_digest: String,
    pub package: String,
    pub version: String,
}

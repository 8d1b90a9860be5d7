//! Download tokens: the signed part of a rendered `file::` URL, a capability to fetch one
//! file of one package version until it expires.

use serde::{Deserialize, Serialize};

use crate::names::AccountId;
use crate::package::PackageVersion;
use crate::platform::jws::SigningKeys;

/// `typ` of download tokens (file URLs handed to deployed hosts).
pub const DOWNLOAD_TYPE: &str = "berth-download+jwt";
/// Audience of download tokens: nothing else accepts them.
pub const DOWNLOAD_AUDIENCE: &str = "berth:download";

/// The claims of a download token: which file, for whom, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadGrant {
    /// The account owning the file.
    pub sub: AccountId,
    /// Always [`DOWNLOAD_AUDIENCE`].
    pub aud: String,
    pub package: String,
    pub version: String,
    /// The file's name.
    pub file_name: String,
    /// The digest of the bytes the URL hands out (`sha256:HEX`); the download checks them.
    /// Absent in grants signed before it existed (the version's recorded digest is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
}

/// A URL a deployed host can download a File version's bytes from, without an account token:
/// `{base_url}/v1/downloads/{signed grant}/{file name}`, valid for `ttl_seconds`.
pub fn download_url(
    keys: &SigningKeys,
    base_url: &str,
    account: &AccountId,
    version: &PackageVersion,
    ttl_seconds: u64,
    now: u64,
) -> Option<String> {
    let file = version.file.as_ref().filter(|f| f.digest.is_some())?;
    let grant = DownloadGrant {
        sub: account.clone(),
        aud: DOWNLOAD_AUDIENCE.to_owned(),
        package: version.package.clone(),
        version: version.version.clone(),
        file_name: file.file_name.clone(),
        digest: file.digest.clone(),
        iat: now,
        exp: now + ttl_seconds,
    };
    let token = keys.sign(DOWNLOAD_TYPE, &grant).ok()?;
    Some(format!("{}/v1/downloads/{token}/{}", base_url.trim_end_matches('/'), file.file_name))
}

/// Verifies a download token; `None` when it is forged, expired or for something else.
pub fn verify_download(keys: &SigningKeys, token: &str) -> Option<DownloadGrant> {
    keys.verify::<DownloadGrant>(token, DOWNLOAD_TYPE, DOWNLOAD_AUDIENCE).ok()
}

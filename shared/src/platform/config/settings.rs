//! The typed settings a [`Config`] is made of: where the store and the queue are, the registry,
//! the Auto Scaling adapter, the log format.

use super::*;

/// Who signs registry tokens and for which registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Host clients use (`BERTH_REGISTRY_HOST`), e.g. `127.0.0.1:5000`.
    pub host: String,
    /// The registry's `service` (`BERTH_REGISTRY_SERVICE`): the tokens' `aud`.
    pub service: String,
    /// The tokens' `iss` (`BERTH_TOKEN_ISSUER`), as in the registry's `auth.token.issuer`.
    pub issuer: String,
    /// Base URL Berth itself reaches the registry at (`BERTH_REGISTRY_URL`; default
    /// `http://HOST` for loopback hosts, else `https://HOST`).
    pub url: String,
}

/// Where documents live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `memory://`: lost at exit; tests only.
    Memory,
    /// `file://PATH`: a local directory, the embedded default.
    File(PathBuf),
    /// `s3://BUCKET`: S3 or an S3-compatible store (see [`S3Settings::endpoint`]).
    S3 {
        /// Bucket name.
        bucket: String,
    },
}

/// Why a store URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreLocationError {
    #[error("'{0}' is not a URL (expected memory://, file://PATH or s3://BUCKET)")]
    NotAUrl(String),
    #[error("memory:// takes no path")]
    MemoryWithPath,
    #[error("file:// needs a directory, e.g. file:///var/lib/berth")]
    NoDirectory,
    #[error("'{0}' is not an S3 bucket name (3-63 of a-z 0-9 . -)")]
    BadBucket(String),
    #[error("unknown store scheme '{0}' (expected memory://, file://PATH or s3://BUCKET)")]
    UnknownScheme(String),
}

impl StoreLocation {
    /// Parses `memory://`, `file://PATH` or `s3://BUCKET`.
    pub fn parse(url: &str) -> Result<Self, StoreLocationError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| StoreLocationError::NotAUrl(url.to_owned()))?;
        match scheme {
            "memory" if rest.is_empty() => Ok(Self::Memory),
            "memory" => Err(StoreLocationError::MemoryWithPath),
            "file" if rest.is_empty() => Err(StoreLocationError::NoDirectory),
            "file" => Ok(Self::File(PathBuf::from(rest))),
            "s3" => {
                let bucket = rest.trim_end_matches('/');
                let valid = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
                if valid {
                    Ok(Self::S3 { bucket: bucket.to_owned() })
                } else {
                    Err(StoreLocationError::BadBucket(bucket.to_owned()))
                }
            }
            other => Err(StoreLocationError::UnknownScheme(other.to_owned())),
        }
    }
}

/// Settings for S3 and S3-compatible stores; credentials come from the usual `AWS_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint override (`BERTH_S3_ENDPOINT`), e.g. `http://127.0.0.1:5000` for moto or MinIO.
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION`, default `us-east-1`).
    pub region: String,
}

/// Which event queue a function consumes and produces to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueLocation {
    /// `memory://`: the in-process queue of `berth serve`.
    InProcess,
    /// An SQS queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or any SQS-compatible endpoint).
    Sqs {
        /// The queue URL.
        url: String,
        /// The dead-letter queue URL, for inspecting dead letters (`BERTH_DEAD_LETTER_QUEUE_URL`).
        dead_letter_url: Option<String>,
    },
}

/// What carries out a scaling group's pause (`BERTH_AUTO_SCALING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoScaling {
    /// `off` (the default): only Berth's own record of the pause; a group that names an AWS
    /// Auto Scaling group is refused.
    #[default]
    Off,
    /// `aws`: groups that name an Auto Scaling group are paused through AWS Auto Scaling
    /// (region `AWS_REGION`, endpoint `AWS_ENDPOINT_URL_AUTO_SCALING` or `AWS_ENDPOINT_URL`,
    /// the SDK's usual credentials); the others keep the built-in record.
    Aws,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, else text.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

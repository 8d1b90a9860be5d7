//! Configuration from the environment (12-factor): typed, validated once at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default attempts before an event is dead-lettered by the in-process queue.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default `iss` of account tokens: never the registry tokens' (`BERTH_TOKEN_ISSUER`, `berth`).
pub const DEFAULT_ACCOUNT_ISSUER: &str = "berth-accounts";
/// Default `iss` of registry tokens.
pub const DEFAULT_TOKEN_ISSUER: &str = "berth";
/// Default longest lifetime (`exp - iat`) of an account token: 24 hours.
pub const DEFAULT_ACCOUNT_TOKEN_MAX_SECONDS: u32 = 86_400;
/// Range `BERTH_ACCOUNT_TOKEN_MAX_SECONDS` may take: a minute to 30 days.
pub const ACCOUNT_TOKEN_MAX_SECONDS_RANGE: std::ops::RangeInclusive<u32> = 60..=2_592_000;

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

/// A configuration value that is missing or wrong. Displays as one line naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong and what would be right.
    pub message: String,
}

impl ConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self { variable, message: message.into() }
    }
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

impl StoreLocation {
    /// Parses `memory://`, `file://PATH` or `s3://BUCKET`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("'{url}' is not a URL (expected memory://, file://PATH or s3://BUCKET)"))?;
        match scheme {
            "memory" if rest.is_empty() => Ok(Self::Memory),
            "memory" => Err("memory:// takes no path".into()),
            "file" if rest.is_empty() => Err("file:// needs a directory, e.g. file:///var/lib/berth".into()),
            "file" => Ok(Self::File(PathBuf::from(rest))),
            "s3" => {
                let bucket = rest.trim_end_matches('/');
                let valid = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
                if valid {
                    Ok(Self::S3 { bucket: bucket.to_owned() })
                } else {
                    Err(format!("'{bucket}' is not an S3 bucket name (3-63 of a-z 0-9 . -)"))
                }
            }
            other => Err(format!("unknown store scheme '{other}' (expected memory://, file://PATH or s3://BUCKET)")),
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

/// Berth's configuration. Every field comes from one environment variable (see docs/configuration.md).
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `BERTH_LISTEN`: HTTP listen address when not under Lambda.
    pub listen: SocketAddr,
    /// `BERTH_DATA_DIR`: local state for the embedded default (store, keys).
    pub data_dir: PathBuf,
    /// `BERTH_STORE_URL`: document store (default `file://$BERTH_DATA_DIR/store`).
    pub store: StoreLocation,
    /// S3 settings, used when the store is `s3://`.
    pub s3: S3Settings,
    /// `BERTH_QUEUE_URL`: event queue (default `memory://`).
    pub queue: QueueLocation,
    /// `BERTH_QUEUE_MAX_ATTEMPTS`: deliveries before the in-process queue dead-letters an event.
    pub queue_max_attempts: u32,
    /// `BERTH_QUEUE_VISIBILITY_SECONDS`: how long a received event stays hidden before redelivery.
    pub queue_visibility: Duration,
    /// What one client may hold of the HTTP server (not under Lambda, where API Gateway does).
    pub http_limits: HttpLimits,
    /// `BERTH_ACCOUNT_KEY_FILE`: PEM key verifying account tokens (a private key also issues them).
    pub account_key_file: Option<PathBuf>,
    /// `BERTH_ACCOUNT_ISSUER`: expected `iss` of account tokens (default `berth-accounts`,
    /// and never the registry tokens' issuer).
    pub account_issuer: String,
    /// `BERTH_ACCOUNT_TOKEN_MAX_SECONDS`: longest lifetime (`exp - iat`) of an account token
    /// that verifies, and that `berth dev-token` issues (default 86400).
    pub account_token_max_seconds: u64,
    /// `BERTH_PUBLIC_URL`: Berth's URL as callers and deployed hosts reach it (an absolute
    /// http(s) URL, without a trailing `/`); when set, file download URLs always start with it.
    pub public_url: Option<String>,
    /// `BERTH_TRUST_FORWARDED`: take the URL callers reached from `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` (only behind a proxy that sets them); default false: the `Host` header.
    pub trust_forwarded: bool,
    /// `BERTH_LOG_FORMAT`: `auto`, `json` or `text`.
    pub log_format: LogFormat,
    /// `BERTH_AUTO_SCALING`: `off` or `aws` (see [`AutoScaling`]).
    pub auto_scaling: AutoScaling,
    /// `BERTH_ALARMS`: `aws` lets releases name CloudWatch alarms (`DescribeAlarms`, region
    /// `AWS_REGION`, endpoint `AWS_ENDPOINT_URL_CLOUDWATCH` or `AWS_ENDPOINT_URL`); default `off`.
    pub cloudwatch_alarms: bool,
    /// `BERTH_PROMETHEUS_URL`: the Prometheus that releases' `{prometheus: EXPR}` alarms query.
    pub prometheus_url: Option<String>,
    /// `BERTH_TARGET_GROUPS`: `aws` lets groups name an AWS target group to drain hosts from
    /// (endpoint `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2` or `AWS_ENDPOINT_URL`); default `off`.
    pub target_groups: bool,
    /// `BERTH_SIGNING_KEY_FILE`: PKCS#8 P-256 key that signs temporary keys and registry tokens.
    pub signing_key_file: Option<PathBuf>,
    /// `BERTH_SIGNING_CERT_FILE`: the signing key's certificate (the registry's `rootcertbundle`).
    pub signing_cert_file: Option<PathBuf>,
    /// `BERTH_PREVIOUS_SIGNING_KEY_FILES`: comma-separated older keys, still verifying after a rotation.
    pub previous_signing_key_files: Vec<PathBuf>,
    /// The registry Berth is the token server of.
    pub registry: RegistrySettings,
    /// `BERTH_REGISTRY_PRIVATE_HOST`: the same registry's private (VPC) address, for
    /// deployments that pull over the private endpoint.
    pub registry_private_host: Option<String>,
    /// `BERTH_MAX_INSTANCES_PER_SERVICE`: most instances one service may have (default 1000).
    pub max_instances_per_service: u32,
    /// `BERTH_PULL_FLUSH_SECONDS`: how often the token endpoint writes the pull counts it
    /// aggregated, at most once per instance in that time (default 60).
    pub pull_flush_interval: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key paths are not secrets, but nothing here prints key material either.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("store", &self.store)
            .field("queue", &self.queue)
            .field("account_key_file", &self.account_key_file)
            .field("account_issuer", &self.account_issuer)
            .field("account_token_max_seconds", &self.account_token_max_seconds)
            .field("public_url", &self.public_url)
            .field("trust_forwarded", &self.trust_forwarded)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let listen = get("BERTH_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen.parse().map_err(|_| {
            ConfigError::new("BERTH_LISTEN", format!("'{listen}' is not HOST:PORT, e.g. {DEFAULT_LISTEN}"))
        })?;

        let data_dir = PathBuf::from(get("BERTH_DATA_DIR").unwrap_or_else(|| "berth-data".to_owned()));

        let store = match get("BERTH_STORE_URL") {
            Some(url) => StoreLocation::parse(&url).map_err(|m| ConfigError::new("BERTH_STORE_URL", m))?,
            None => StoreLocation::File(data_dir.join("store")),
        };
        let endpoint = get("BERTH_S3_ENDPOINT").or_else(|| get("AWS_ENDPOINT_URL_S3"));
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "BERTH_S3_ENDPOINT",
                format!("'{endpoint}' must start with http:// or https://"),
            ));
        }
        let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".to_owned());

        let queue = match get("BERTH_QUEUE_URL") {
            None => QueueLocation::InProcess,
            Some(url) if url == "memory://" => QueueLocation::InProcess,
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                QueueLocation::Sqs { url, dead_letter_url: get("BERTH_DEAD_LETTER_QUEUE_URL") }
            }
            Some(url) => {
                return Err(ConfigError::new(
                    "BERTH_QUEUE_URL",
                    format!(
                        "'{url}' is neither memory:// nor an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
                    ),
                ));
            }
        };
        let queue_max_attempts = parse_number(&get, "BERTH_QUEUE_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, 1..=100)?;
        let visibility = parse_number(&get, "BERTH_QUEUE_VISIBILITY_SECONDS", 30, 1..=43_200)?;
        let http_limits = HttpLimits::from_lookup(&get)?;

        let account_key_file = get("BERTH_ACCOUNT_KEY_FILE").map(PathBuf::from);
        if let Some(path) = &account_key_file
            && !path.is_file()
        {
            return Err(ConfigError::new(
                "BERTH_ACCOUNT_KEY_FILE",
                format!("{} does not exist or is not a file", path.display()),
            ));
        }
        let account_issuer = get("BERTH_ACCOUNT_ISSUER").unwrap_or_else(|| DEFAULT_ACCOUNT_ISSUER.to_owned());
        let account_token_max_seconds = u64::from(parse_number(
            &get,
            "BERTH_ACCOUNT_TOKEN_MAX_SECONDS",
            DEFAULT_ACCOUNT_TOKEN_MAX_SECONDS,
            ACCOUNT_TOKEN_MAX_SECONDS_RANGE,
        )?);
        let max_instances_per_service = parse_number(&get, "BERTH_MAX_INSTANCES_PER_SERVICE", 1000, 1..=100_000)?;
        let pull_flush_seconds = parse_number(&get, "BERTH_PULL_FLUSH_SECONDS", 60, 1..=3600)?;
        let public_url = get("BERTH_PUBLIC_URL")
            .map(|url| parse_public_url(&url).map_err(|m| ConfigError::new("BERTH_PUBLIC_URL", m)))
            .transpose()?;
        let trust_forwarded = match get("BERTH_TRUST_FORWARDED").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ConfigError::new(
                    "BERTH_TRUST_FORWARDED",
                    format!("'{}' is not true or false", get("BERTH_TRUST_FORWARDED").unwrap_or_default()),
                ));
            }
        };

        let log_format = match get("BERTH_LOG_FORMAT").as_deref() {
            None | Some("auto") => LogFormat::Auto,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::new("BERTH_LOG_FORMAT", format!("'{other}' is not auto, json or text")));
            }
        };

        let auto_scaling = match get("BERTH_AUTO_SCALING").as_deref() {
            None | Some("off") => AutoScaling::Off,
            Some("aws") => AutoScaling::Aws,
            Some(other) => {
                return Err(ConfigError::new("BERTH_AUTO_SCALING", format!("'{other}' is not off or aws")));
            }
        };

        let aws_switch = |variable: &'static str| match get(variable).as_deref() {
            None | Some("off") => Ok(false),
            Some("aws") => Ok(true),
            Some(other) => Err(ConfigError::new(variable, format!("'{other}' is not off or aws"))),
        };
        let cloudwatch_alarms = aws_switch("BERTH_ALARMS")?;
        let target_groups = aws_switch("BERTH_TARGET_GROUPS")?;
        let prometheus_url = match get("BERTH_PROMETHEUS_URL") {
            None => None,
            Some(raw) => Some(parse_public_url(&raw).map_err(|why| ConfigError::new("BERTH_PROMETHEUS_URL", why))?),
        };

        let file = |variable: &'static str| -> Result<Option<PathBuf>, ConfigError> {
            match get(variable).map(PathBuf::from) {
                Some(path) if !path.is_file() => {
                    Err(ConfigError::new(variable, format!("{} does not exist or is not a file", path.display())))
                }
                other => Ok(other),
            }
        };
        let signing_key_file = file("BERTH_SIGNING_KEY_FILE")?;
        let signing_cert_file = file("BERTH_SIGNING_CERT_FILE")?;
        let mut previous_signing_key_files = Vec::new();
        for path in get("BERTH_PREVIOUS_SIGNING_KEY_FILES").unwrap_or_default().split(',').map(str::trim) {
            if path.is_empty() {
                continue;
            }
            if !std::path::Path::new(path).is_file() {
                return Err(ConfigError::new(
                    "BERTH_PREVIOUS_SIGNING_KEY_FILES",
                    format!("{path} does not exist or is not a file"),
                ));
            }
            previous_signing_key_files.push(PathBuf::from(path));
        }
        let host = get("BERTH_REGISTRY_HOST").unwrap_or_else(|| "127.0.0.1:5000".to_owned());
        let loopback = host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
        let url = get("BERTH_REGISTRY_URL")
            .unwrap_or_else(|| format!("{}://{host}", if loopback { "http" } else { "https" }))
            .trim_end_matches('/')
            .to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new("BERTH_REGISTRY_URL", format!("'{url}' must start with http:// or https://")));
        }
        let registry = RegistrySettings {
            host,
            service: get("BERTH_REGISTRY_SERVICE").unwrap_or_else(|| "berth-registry".to_owned()),
            issuer: get("BERTH_TOKEN_ISSUER").unwrap_or_else(|| DEFAULT_TOKEN_ISSUER.to_owned()),
            url,
        };
        // One issuer for both would let a token of one kind pass the other's issuer check.
        if registry.issuer == account_issuer {
            return Err(ConfigError::new(
                "BERTH_ACCOUNT_ISSUER",
                format!(
                    "'{account_issuer}' is also BERTH_TOKEN_ISSUER; account tokens and registry tokens need different issuers"
                ),
            ));
        }
        if registry.host.contains("://") || registry.host.contains('/') || registry.host.is_empty() {
            return Err(ConfigError::new(
                "BERTH_REGISTRY_HOST",
                format!("'{}' must be HOST[:PORT], without scheme or path", registry.host),
            ));
        }

        let registry_private_host = get("BERTH_REGISTRY_PRIVATE_HOST");
        if let Some(private) = &registry_private_host
            && (private.contains("://") || private.contains('/'))
        {
            return Err(ConfigError::new(
                "BERTH_REGISTRY_PRIVATE_HOST",
                format!("'{private}' must be HOST[:PORT], without scheme or path"),
            ));
        }

        Ok(Self {
            registry_private_host,
            signing_key_file,
            signing_cert_file,
            previous_signing_key_files,
            registry,
            listen,
            data_dir,
            store,
            s3: S3Settings { endpoint, region },
            queue,
            queue_max_attempts,
            queue_visibility: Duration::from_secs(u64::from(visibility)),
            http_limits,
            account_key_file,
            account_issuer,
            account_token_max_seconds,
            public_url,
            trust_forwarded,
            log_format,
            auto_scaling,
            cloudwatch_alarms,
            prometheus_url,
            target_groups,
            max_instances_per_service,
            pull_flush_interval: Duration::from_secs(u64::from(pull_flush_seconds)),
        })
    }
}

/// Checks `BERTH_PUBLIC_URL`: an absolute `http://` or `https://` URL with a host, perhaps a
/// path (an API stage), no user, query or fragment. Returns it without a trailing `/`.
fn parse_public_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    let bad = |why: &str| format!("'{raw}' {why} (expected e.g. https://berth.example.com)");
    let uri: axum::http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must start with http:// or https://"));
    }
    let Some(authority) = uri.authority() else { return Err(bad("has no host")) };
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(bad("must name a host, without a user"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("must have no query or fragment"));
    }
    Ok(url.to_owned())
}

/// Bounds on what HTTP clients may hold (see `platform::serve`): a client that sends its
/// headers or its body slowly, or does not read its answer, is cut off; one address holds a share
/// of the connections only; past the limit, idle and unauthenticated connections make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `BERTH_HTTP_HEADER_TIMEOUT_SECONDS` (10): a request's headers must arrive within it; also
    /// how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// `BERTH_HTTP_BODY_TIMEOUT_SECONDS` (30): longest wait for the next part of a request body.
    pub body_idle_timeout: Duration,
    /// `BERTH_HTTP_REQUEST_TIMEOUT_SECONDS` (120): an authenticated request's whole body must
    /// arrive within it of its headers (a 408 otherwise).
    pub request_timeout: Duration,
    /// `BERTH_HTTP_ANONYMOUS_REQUEST_TIMEOUT_SECONDS` (10): the same for a request whose
    /// credential is not (yet) verified, whose bodies are small.
    pub anonymous_request_timeout: Duration,
    /// `BERTH_HTTP_WRITE_TIMEOUT_SECONDS` (30): an answer the client takes nothing of for this
    /// long is dropped with its connection.
    pub write_timeout: Duration,
    /// `BERTH_HTTP_MAX_CONNECTIONS` (1024): open connections served at once.
    pub max_connections: usize,
    /// `BERTH_HTTP_MAX_CONNECTIONS_PER_ADDRESS` (256): open connections of one client address.
    pub max_connections_per_address: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            anonymous_request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_address: 256,
        }
    }
}

impl HttpLimits {
    /// The limits from `BERTH_HTTP_*` (defaults above).
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let seconds = |variable: &'static str, default: u32, range: std::ops::RangeInclusive<u32>| {
            parse_number(get, variable, default, range).map(|n| Duration::from_secs(u64::from(n)))
        };
        Ok(Self {
            header_read_timeout: seconds("BERTH_HTTP_HEADER_TIMEOUT_SECONDS", 10, 1..=300)?,
            body_idle_timeout: seconds("BERTH_HTTP_BODY_TIMEOUT_SECONDS", 30, 1..=3600)?,
            request_timeout: seconds("BERTH_HTTP_REQUEST_TIMEOUT_SECONDS", 120, 1..=3600)?,
            anonymous_request_timeout: seconds("BERTH_HTTP_ANONYMOUS_REQUEST_TIMEOUT_SECONDS", 10, 1..=300)?,
            write_timeout: seconds("BERTH_HTTP_WRITE_TIMEOUT_SECONDS", 30, 1..=3600)?,
            max_connections: parse_number(get, "BERTH_HTTP_MAX_CONNECTIONS", 1024, 1..=65_536)? as usize,
            max_connections_per_address: parse_number(get, "BERTH_HTTP_MAX_CONNECTIONS_PER_ADDRESS", 256, 1..=65_536)?
                as usize,
        })
    }
}

fn parse_number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let Some(raw) = get(variable) else { return Ok(default) };
    raw.trim().parse::<u32>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
        ConfigError::new(variable, format!("'{raw}' is not a whole number in {}..={}", range.start(), range.end()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn auto_scaling_is_off_unless_aws_is_asked_for() {
        assert_eq!(config(&[]).unwrap().auto_scaling, AutoScaling::Off);
        assert_eq!(config(&[("BERTH_AUTO_SCALING", "aws")]).unwrap().auto_scaling, AutoScaling::Aws);
        assert_eq!(config(&[("BERTH_AUTO_SCALING", "off")]).unwrap().auto_scaling, AutoScaling::Off);
        let gates = config(&[
            ("BERTH_ALARMS", "aws"),
            ("BERTH_TARGET_GROUPS", "aws"),
            ("BERTH_PROMETHEUS_URL", "http://127.0.0.1:9090/"),
        ])
        .unwrap();
        assert!(gates.cloudwatch_alarms && gates.target_groups);
        assert_eq!(gates.prometheus_url.as_deref(), Some("http://127.0.0.1:9090"));
        assert!(!config(&[]).unwrap().cloudwatch_alarms);
        assert!(config(&[("BERTH_ALARMS", "yes")]).is_err());
        assert!(config(&[("BERTH_PROMETHEUS_URL", "prometheus")]).is_err());
        assert_eq!(config(&[("BERTH_AUTO_SCALING", "AWS")]).unwrap_err().variable, "BERTH_AUTO_SCALING");
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.store, StoreLocation::File(PathBuf::from("berth-data/store")));
        assert_eq!(c.queue, QueueLocation::InProcess);
        assert_eq!(c.queue_max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(c.account_issuer, "berth-accounts");
        assert_eq!(c.registry.issuer, "berth");
        assert_eq!(c.account_token_max_seconds, 86_400);
        assert_eq!(c.public_url, None);
        assert!(!c.trust_forwarded);
    }

    #[test]
    fn account_token_settings() {
        let c = config(&[("BERTH_ACCOUNT_TOKEN_MAX_SECONDS", "3600"), ("BERTH_ACCOUNT_ISSUER", "idp")]).unwrap();
        assert_eq!((c.account_token_max_seconds, c.account_issuer.as_str()), (3600, "idp"));
        for bad in ["0", "59", "2592001", "-1", "1h", "1e3"] {
            let e = config(&[("BERTH_ACCOUNT_TOKEN_MAX_SECONDS", bad)]).unwrap_err();
            assert_eq!(e.variable, "BERTH_ACCOUNT_TOKEN_MAX_SECONDS", "{bad}");
        }
        let e = config(&[("BERTH_ACCOUNT_ISSUER", "berth")]).unwrap_err();
        assert_eq!(e.variable, "BERTH_ACCOUNT_ISSUER");
        let e = config(&[("BERTH_ACCOUNT_ISSUER", "x"), ("BERTH_TOKEN_ISSUER", "x")]).unwrap_err();
        assert_eq!(e.variable, "BERTH_ACCOUNT_ISSUER");
    }

    #[test]
    fn public_url_and_forwarded_headers() {
        for (raw, expected) in [
            ("https://berth.example.com", "https://berth.example.com"),
            ("https://berth.example.com/", "https://berth.example.com"),
            ("http://127.0.0.1:9080", "http://127.0.0.1:9080"),
            (
                "https://abc.execute-api.us-east-1.amazonaws.com/prod/",
                "https://abc.execute-api.us-east-1.amazonaws.com/prod",
            ),
        ] {
            assert_eq!(config(&[("BERTH_PUBLIC_URL", raw)]).unwrap().public_url.as_deref(), Some(expected), "{raw}");
        }
        for bad in [
            "berth.example.com",
            "ftp://berth.example.com",
            "https://",
            "https://user:pw@berth.example.com",
            "https://berth.example.com/?x=1",
            "https://berth.example.com/#top",
            "https://berth example.com",
            "/v1",
        ] {
            assert_eq!(config(&[("BERTH_PUBLIC_URL", bad)]).unwrap_err().variable, "BERTH_PUBLIC_URL", "{bad}");
        }
        assert!(config(&[("BERTH_TRUST_FORWARDED", "true")]).unwrap().trust_forwarded);
        assert!(!config(&[("BERTH_TRUST_FORWARDED", "false")]).unwrap().trust_forwarded);
        let e = config(&[("BERTH_TRUST_FORWARDED", "yes")]).unwrap_err();
        assert_eq!(e.to_string(), "BERTH_TRUST_FORWARDED: 'yes' is not true or false");
    }

    #[test]
    fn store_urls() {
        assert_eq!(StoreLocation::parse("memory://"), Ok(StoreLocation::Memory));
        assert_eq!(StoreLocation::parse("file:///var/lib/berth"), Ok(StoreLocation::File("/var/lib/berth".into())));
        assert_eq!(StoreLocation::parse("s3://my-bucket"), Ok(StoreLocation::S3 { bucket: "my-bucket".into() }));
        assert!(StoreLocation::parse("s3://My_Bucket").is_err());
        assert!(StoreLocation::parse("file://").is_err());
        assert!(StoreLocation::parse("/tmp/x").is_err());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = config(&[("BERTH_STORE_URL", "ftp://x")]).unwrap_err();
        assert_eq!(e.variable, "BERTH_STORE_URL");
        assert!(e.to_string().contains("unknown store scheme 'ftp'"), "{e}");
        assert_eq!(config(&[("BERTH_LISTEN", "nowhere")]).unwrap_err().variable, "BERTH_LISTEN");
        assert_eq!(config(&[("BERTH_QUEUE_URL", "kafka://x")]).unwrap_err().variable, "BERTH_QUEUE_URL");
        assert_eq!(config(&[("BERTH_QUEUE_MAX_ATTEMPTS", "0")]).unwrap_err().variable, "BERTH_QUEUE_MAX_ATTEMPTS");
        assert_eq!(config(&[("BERTH_LOG_FORMAT", "xml")]).unwrap_err().variable, "BERTH_LOG_FORMAT");
        assert_eq!(config(&[("BERTH_S3_ENDPOINT", "localhost:9000")]).unwrap_err().variable, "BERTH_S3_ENDPOINT");
        let e = config(&[("BERTH_ACCOUNT_KEY_FILE", "/nonexistent/key.pem")]).unwrap_err();
        assert_eq!(e.to_string(), "BERTH_ACCOUNT_KEY_FILE: /nonexistent/key.pem does not exist or is not a file");
    }

    #[test]
    fn sqs_queue_url() {
        let c = config(&[("BERTH_QUEUE_URL", "http://127.0.0.1:5000/123456789012/packages")]).unwrap();
        assert!(matches!(c.queue, QueueLocation::Sqs { ref url, dead_letter_url: None } if url.ends_with("/packages")));
    }
}

//! Configuration from the environment (12-factor): typed, validated once at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod http_limits;
mod settings;

pub use http_limits::HttpLimits;
pub use settings::{
    AutoScaling, LogFormat, QueueLocation, RegistrySettings, S3Settings, StoreLocation, StoreLocationError,
};

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

/// Berth's configuration. Every field comes from one environment variable (see docs/configuration.md).
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `BERTH_LISTEN`: HTTP listen address when not under Lambda.
    pub listen: SocketAddr,
    /// `BERTH_METRICS_LISTEN`: the address `GET /metrics` is served on, apart from `listen`
    /// (not served when unset).
    pub metrics_listen: Option<SocketAddr>,
    /// `BERTH_METRICS_EMF`: under Lambda, write the metrics as CloudWatch embedded metrics
    /// (`on`, the default, or `off`).
    pub metrics_emf: bool,
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
    /// `BERTH_MAX_POLL_HOLD_SECONDS`: longest an agent's job poll is held (0 to 30; default 0
    /// under Lambda, where a held poll is a Lambda invocation held open, else 30).
    pub max_poll_hold: Duration,
    /// `BERTH_WAKE_ENDPOINT`: the API Gateway Management API endpoint of the agents' WebSocket
    /// API (`https://API.execute-api.REGION.amazonaws.com/STAGE`), through which a release
    /// wakes hosts under Lambda; unset, only this process's own sockets are woken.
    pub wake_endpoint: Option<String>,
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

        let metrics_listen = match get("BERTH_METRICS_LISTEN") {
            None => None,
            Some(address) => Some(address.parse().map_err(|_| {
                ConfigError::new("BERTH_METRICS_LISTEN", format!("'{address}' is not HOST:PORT, e.g. 127.0.0.1:9464"))
            })?),
        };
        let metrics_emf = match get("BERTH_METRICS_EMF").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(ConfigError::new("BERTH_METRICS_EMF", format!("'{other}' is not on or off"))),
        };

        let data_dir = PathBuf::from(get("BERTH_DATA_DIR").unwrap_or_else(|| "berth-data".to_owned()));

        let store = match get("BERTH_STORE_URL") {
            Some(url) => StoreLocation::parse(&url).map_err(|e| ConfigError::new("BERTH_STORE_URL", e.to_string()))?,
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
            .map(|url| parse_public_url(&url).map_err(|e| ConfigError::new("BERTH_PUBLIC_URL", e.to_string())))
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
            Some(raw) => {
                Some(parse_public_url(&raw).map_err(|e| ConfigError::new("BERTH_PROMETHEUS_URL", e.to_string()))?)
            }
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

        let hold_default = if get("AWS_LAMBDA_RUNTIME_API").is_some() { 0 } else { 30 };
        let max_poll_hold = parse_number(&get, "BERTH_MAX_POLL_HOLD_SECONDS", hold_default, 0..=30)?;
        let wake_endpoint = get("BERTH_WAKE_ENDPOINT").map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &wake_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "BERTH_WAKE_ENDPOINT",
                format!("'{url}' must start with http:// or https://"),
            ));
        }

        Ok(Self {
            max_poll_hold: Duration::from_secs(u64::from(max_poll_hold)),
            wake_endpoint,
            registry_private_host,
            signing_key_file,
            signing_cert_file,
            previous_signing_key_files,
            registry,
            listen,
            metrics_listen,
            metrics_emf,
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

/// Why a URL setting was refused.
#[derive(Debug, thiserror::Error)]
#[error("'{raw}' {why} (expected e.g. https://berth.example.com)")]
struct UrlError {
    raw: String,
    why: &'static str,
    #[source]
    source: Option<axum::http::uri::InvalidUri>,
}

/// Checks `BERTH_PUBLIC_URL`: an absolute `http://` or `https://` URL with a host, perhaps a
/// path (an API stage), no user, query or fragment. Returns it without a trailing `/`.
fn parse_public_url(raw: &str) -> Result<String, UrlError> {
    let url = raw.trim().trim_end_matches('/');
    let bad = |why: &'static str| UrlError { raw: raw.to_owned(), why, source: None };
    let uri: axum::http::Uri =
        url.parse().map_err(|e| UrlError { raw: raw.to_owned(), why: "is not a URL", source: Some(e) })?;
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
mod tests;

//! Releases of a Docker-image deployment to an application group, in batches: typed values
//! and plain functions (validation, planning, the state machines of a release and of a host,
//! failure budgets, what a host should do next). No I/O here; `functions/releases` stores and
//! moves these values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::names::RepositoryName;
use crate::names::{AccountId, is_path_component};
use crate::platform::http::error::ApiError;

/// Longest start or stop script.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// Longest working directory path.
pub const MAX_WORKING_DIRECTORY_BYTES: usize = 4096;
/// Shortest per-step timeout.
pub const MIN_STEP_TIMEOUT_SECONDS: u64 = 1;
/// Longest per-step timeout (one hour).
pub const MAX_STEP_TIMEOUT_SECONDS: u64 = 3600;
/// Per-step timeout when none is given.
pub const DEFAULT_STEP_TIMEOUT_SECONDS: u64 = 600;
/// Most batches a release may have.
pub const MAX_BATCHES: usize = 100;
/// Most hosts one release may reach.
pub const MAX_RELEASE_HOSTS: usize = 100_000;
/// Longest timed pause between batches (one day).
pub const MAX_PAUSE_SECONDS: u64 = 86_400;
/// Longest name of an application, group, deployment or host.
pub const MAX_NAME_BYTES: usize = 128;
/// How long after its step timeouts an agent may still report before the host is failed
/// as unresponsive (network, agent restart).
pub const REPORT_GRACE_SECONDS: u64 = 30;
/// How long a scaling lease lasts without renewal: a crashed release resumes scaling after
/// this at the latest.
pub const LEASE_SECONDS: u64 = 900;

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

/// Validates an application, group, deployment or host name: a path component of
/// `[a-z0-9._-]`-ish characters (see [`is_path_component`]), at most [`MAX_NAME_BYTES`].
pub fn validate_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES || !is_path_component(value) {
        return Err(ApiError::invalid(
            field,
            "invalid_name",
            format!(
                "'{}' must be 1 to {MAX_NAME_BYTES} lowercase letters and digits, separated by single '.', '_' or '-'",
                crate::platform::http::problem::shown(value)
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------

/// Whether a group's hosts come and go by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A fixed set of hosts.
    #[default]
    Static,
    /// A scaling group: scaling is paused during a release and resumed afterwards.
    Scaling,
}

/// Scaling state of a group as the built-in adapter records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScalingState {
    /// Whether scaling activities are paused now.
    pub paused: bool,
    /// The lease that holds the pause, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<ScalingLease>,
    /// How many times scaling was paused (for audits and tests).
    #[serde(default)]
    pub pauses: u32,
    /// How many times scaling was resumed.
    #[serde(default)]
    pub resumes: u32,
}

/// A durable claim on a group's scaling pause by one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingLease {
    /// The release holding it.
    pub release: String,
    /// Seconds since the epoch after which a reaper may resume scaling.
    pub expires_at: u64,
}

/// Takes (or renews) the pause for `release`. A lease of another release that has expired
/// is taken over; a live one of another release is a conflict.
pub fn take_lease(state: &ScalingState, release: &str, now: u64) -> Result<ScalingState, String> {
    let mut next = state.clone();
    match &state.lease {
        Some(lease) if lease.release != release && lease.expires_at > now => {
            return Err(format!("scaling is paused by release {}", lease.release));
        }
        _ => {}
    }
    if !state.paused {
        next.pauses += 1;
    }
    next.paused = true;
    next.lease = Some(ScalingLease { release: release.to_owned(), expires_at: now + LEASE_SECONDS });
    Ok(next)
}

/// Releases `release`'s pause; anything else (no lease, another release's lease) is left alone.
pub fn release_lease(state: &ScalingState, release: &str) -> ScalingState {
    let mut next = state.clone();
    if state.lease.as_ref().is_some_and(|l| l.release == release) {
        next.lease = None;
        if state.paused {
            next.paused = false;
            next.resumes += 1;
        }
    }
    next
}

/// Whether a lease needs renewing: less than half its life is left.
pub fn lease_needs_renewal(state: &ScalingState, release: &str, now: u64) -> bool {
    match &state.lease {
        Some(lease) if lease.release == release => lease.expires_at < now + LEASE_SECONDS / 2,
        _ => true,
    }
}

// ---------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------

/// Where a deployment's image is, as given by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSpec {
    /// A full address, `REGISTRY/NAMESPACE/REPOSITORY:TAG` or `...@sha256:...`.
    Address {
        /// The address.
        address: String,
    },
    /// An image of a published (`Available`) ContainerImage package version, pinned to the
    /// digest its publish check found. Resolved with [`image_from_package`] before validation.
    Package {
        /// The package.
        package: String,
        /// The version's name.
        version: String,
        /// The image's repository (full, `namespace/name`), when the version has several.
        #[serde(default)]
        image: Option<String>,
    },
    /// The parts of an address; `registry` defaults to Berth's registry.
    Parts {
        /// Registry host; Berth's own when absent.
        #[serde(default)]
        registry: Option<String>,
        /// The namespace (your account ID).
        namespace: String,
        /// Repository within the namespace.
        repository: String,
        /// Tag or `sha256:` digest.
        version: String,
    },
}

/// A parsed image reference in Berth's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host.
    pub registry: String,
    /// Full repository name (`namespace/...`).
    pub repository: String,
    /// `:tag` or `@sha256:...` as written after the repository.
    pub reference: String,
}

impl ImageRef {
    /// The address hosts pull: `registry/repository:tag` or `registry/repository@digest`.
    pub fn address(&self) -> String {
        format!("{}/{}{}", self.registry, self.repository, self.reference)
    }
}

/// Resolves an image spec to a reference in `registry` inside `account`'s namespace (the
/// only place a job-scoped pull key can reach).
pub fn resolve_image(spec: &ImageSpec, registry: &str, account: &AccountId) -> Result<ImageRef, ApiError> {
    let (host, path, reference) = match spec {
        ImageSpec::Address { address } => {
            let (host, rest) = address.split_once('/').ok_or_else(|| {
                ApiError::invalid("image.address", "invalid_image", "expected REGISTRY/NAMESPACE/REPOSITORY:TAG")
            })?;
            let (path, reference) = if let Some((path, digest)) = rest.split_once('@') {
                (path.to_owned(), format!("@{digest}"))
            } else {
                match rest.rsplit_once(':') {
                    Some((path, tag)) if !tag.contains('/') => (path.to_owned(), format!(":{tag}")),
                    _ => {
                        return Err(ApiError::invalid(
                            "image.address",
                            "invalid_image",
                            "the address needs a tag or a digest (REGISTRY/NAMESPACE/REPOSITORY:TAG)",
                        ));
                    }
                }
            };
            (host.to_owned(), path, reference)
        }
        ImageSpec::Package { .. } => {
            return Err(ApiError::Internal("a package image must be resolved before validation".into()));
        }
        ImageSpec::Parts { registry: r, namespace, repository, version } => {
            let reference = if version.starts_with("sha256:") { format!("@{version}") } else { format!(":{version}") };
            (r.clone().unwrap_or_else(|| registry.to_owned()), format!("{namespace}/{repository}"), reference)
        }
    };
    if host != registry {
        return Err(ApiError::invalid(
            "image",
            "image_outside_registry",
            format!("the image must be in Berth's registry {registry}, not {host}"),
        ));
    }
    let repository =
        RepositoryName::parse(&path).map_err(|e| ApiError::invalid("image", "invalid_repository", e.to_string()))?;
    if repository.is_namespace_root(account) {
        return Err(ApiError::invalid(
            "image",
            "repository_is_namespace",
            format!("'{repository}' is your namespace itself; images live below it, e.g. {account}/app"),
        ));
    }
    if !repository.is_in(account) {
        return Err(ApiError::invalid(
            "image",
            "image_outside_namespace",
            format!("the image must be in your namespace '{account}'"),
        ));
    }
    let tag = &reference[1..];
    let tag_ok = if reference.starts_with('@') {
        tag.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    } else {
        !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !tag.starts_with(['.', '-'])
    };
    if !tag_ok {
        return Err(ApiError::invalid(
            "image",
            "invalid_image",
            format!("'{}' is not a valid tag or sha256 digest", crate::platform::http::problem::shown(tag)),
        ));
    }
    Ok(ImageRef { registry: host, repository: repository.as_str().to_owned(), reference })
}

/// The address of an image of a package version: the version must be an `Available`
/// ContainerImage version; with several images, `image` names the repository. Pinned to the
/// digest the publish check found, so a later push to the tag does not change the release.
pub fn image_from_package(
    version: &crate::package::PackageVersion,
    image: Option<&str>,
    registry: &str,
) -> Result<ImageSpec, ApiError> {
    use crate::package::{PackageType, VersionStatus};
    let field = "image.version";
    if version.package_type != PackageType::ContainerImage {
        return Err(ApiError::invalid(field, "not_container_image", "the package is not a ContainerImage package"));
    }
    if version.status != VersionStatus::Available {
        return Err(ApiError::invalid(
            field,
            "version_not_available",
            format!("version '{}' is {:?}; only Available versions can be deployed", version.version, version.status),
        ));
    }
    let chosen = match image {
        Some(name) => version.images.iter().find(|i| i.repository.as_str() == name).ok_or_else(|| {
            ApiError::invalid("image.image", "not_in_version", format!("the version has no image '{name}'"))
        })?,
        None if version.images.len() == 1 => &version.images[0],
        None => {
            return Err(ApiError::invalid(
                "image.image",
                "required",
                "the version has several images: name one by its repository",
            ));
        }
    };
    let address = crate::package::PackageVersion::image_reference(chosen, registry, true);
    Ok(ImageSpec::Address { address })
}

/// Which address of the registry hosts pull from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistryEndpoint {
    /// The address clients use (`BERTH_REGISTRY_HOST`).
    #[default]
    Public,
    /// The private (VPC) address (`BERTH_REGISTRY_PRIVATE_HOST`).
    Private,
}

/// A deployment as requested.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRequest {
    /// Its name, unique in the application.
    pub name: String,
    /// The image.
    pub image: ImageSpec,
    /// Absolute directory the scripts run in; created if missing.
    pub working_directory: String,
    /// Shell script that starts the new version.
    pub start_script: String,
    /// Shell script that stops the current (and any previous) version, and succeeds when
    /// nothing runs.
    pub stop_script: String,
    /// Timeout of each step (pull, stop, start).
    #[serde(default)]
    pub step_timeout_seconds: Option<u64>,
    /// Pull over the registry's public (default) or private address.
    #[serde(default)]
    pub registry_endpoint: RegistryEndpoint,
    /// Only `linux`.
    #[serde(default)]
    pub platform: Option<String>,
    /// Only `shell`.
    #[serde(default)]
    pub script_language: Option<String>,
}

/// A validated deployment revision, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Its name.
    pub name: String,
    /// The image, resolved.
    pub image: ImageRef,
    /// Absolute working directory.
    pub working_directory: String,
    /// Start script (bash).
    pub start_script: String,
    /// Stop script (bash).
    pub stop_script: String,
    /// Timeout of each step.
    pub step_timeout_seconds: u64,
    /// The address hosts pull from.
    #[serde(default)]
    pub registry_endpoint: RegistryEndpoint,
    /// Seconds since the epoch.
    pub created_at: u64,
}

impl Deployment {
    /// The registry host and image address hosts pull: the private address when chosen and
    /// configured, else the public one.
    pub fn pull_address(&self, private_host: Option<&str>) -> (String, String) {
        match (self.registry_endpoint, private_host) {
            (RegistryEndpoint::Private, Some(host)) => {
                (host.to_owned(), format!("{host}/{}{}", self.image.repository, self.image.reference))
            }
            _ => (self.image.registry.clone(), self.image.address()),
        }
    }
}

/// Validates a deployment request.
pub fn validate_deployment(
    request: DeploymentRequest,
    registry: &str,
    private_registry: Option<&str>,
    account: &AccountId,
    now: u64,
) -> Result<Deployment, ApiError> {
    validate_name("name", &request.name)?;
    if request.registry_endpoint == RegistryEndpoint::Private && private_registry.is_none() {
        return Err(ApiError::invalid(
            "registry_endpoint",
            "private_endpoint_unavailable",
            "this Berth has no private registry address (BERTH_REGISTRY_PRIVATE_HOST); use public",
        ));
    }
    if let Some(platform) = &request.platform
        && platform != "linux"
    {
        return Err(ApiError::invalid(
            "platform",
            "unsupported_platform",
            format!("only Linux hosts are supported, not '{platform}'"),
        ));
    }
    if let Some(language) = &request.script_language
        && language != "shell"
    {
        return Err(ApiError::invalid(
            "script_language",
            "unsupported_script_language",
            format!("start and stop scripts must be shell scripts (run with bash), not '{language}'"),
        ));
    }
    validate_working_directory(&request.working_directory)?;
    validate_script("start_script", &request.start_script)?;
    validate_script("stop_script", &request.stop_script)?;
    let timeout = request.step_timeout_seconds.unwrap_or(DEFAULT_STEP_TIMEOUT_SECONDS);
    if !(MIN_STEP_TIMEOUT_SECONDS..=MAX_STEP_TIMEOUT_SECONDS).contains(&timeout) {
        return Err(ApiError::invalid(
            "step_timeout_seconds",
            "out_of_range",
            format!("must be between {MIN_STEP_TIMEOUT_SECONDS} and {MAX_STEP_TIMEOUT_SECONDS}"),
        ));
    }
    Ok(Deployment {
        image: resolve_image(&request.image, registry, account)?,
        name: request.name,
        working_directory: request.working_directory,
        start_script: request.start_script,
        stop_script: request.stop_script,
        step_timeout_seconds: timeout,
        registry_endpoint: request.registry_endpoint,
        created_at: now,
    })
}

/// A working directory must be absolute, normal (no `.`/`..`/empty segments) and printable.
pub fn validate_working_directory(dir: &str) -> Result<(), ApiError> {
    let field = "working_directory";
    if !dir.starts_with('/') {
        return Err(ApiError::invalid(
            field,
            "not_absolute",
            format!("'{}' must be an absolute path, e.g. /root/deploy", crate::platform::http::problem::shown(dir)),
        ));
    }
    if dir.len() > MAX_WORKING_DIRECTORY_BYTES {
        return Err(ApiError::invalid(field, "too_long", format!("longer than {MAX_WORKING_DIRECTORY_BYTES} bytes")));
    }
    if dir.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "invalid_path", "contains control characters"));
    }
    if dir != "/" && dir[1..].split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(ApiError::invalid(
            field,
            "invalid_path",
            format!("'{}' has empty, '.' or '..' segments", crate::platform::http::problem::shown(dir)),
        ));
    }
    Ok(())
}

fn validate_script(field: &str, script: &str) -> Result<(), ApiError> {
    if script.trim().is_empty() {
        return Err(ApiError::invalid(field, "required", "must be a non-empty shell script"));
    }
    if script.len() > MAX_SCRIPT_BYTES {
        return Err(ApiError::TooLarge { field: field.to_owned(), limit: MAX_SCRIPT_BYTES });
    }
    if script.contains('\0') {
        return Err(ApiError::invalid(field, "invalid_script", "contains a NUL byte"));
    }
    // A shebang naming another interpreter means the script is not shell: we run it with bash.
    if let Some(first) = script.lines().next()
        && let Some(interpreter) = first.strip_prefix("#!")
        && !["sh", "bash", "dash", "ash", "zsh", "ksh"]
            .iter()
            .any(|shell| interpreter.split_whitespace().any(|w| w.rsplit('/').next() == Some(shell)))
    {
        return Err(ApiError::invalid(
            field,
            "unsupported_script_language",
            format!("scripts run with bash on Linux hosts; '{}' is not a shell", interpreter.trim()),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Release requests and plans
// ---------------------------------------------------------------------------------------

/// What happens between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PauseMode {
    /// The next batch starts as soon as one finishes.
    #[default]
    None,
    /// Wait `pause_seconds`.
    Seconds,
    /// Wait for `confirm`.
    Manual,
}

/// `POST /v1/releases`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The application.
    pub application: String,
    /// The deployment (of the application) to release.
    pub deployment: String,
    /// The group (of the application) to release to.
    pub group: String,
    /// Split into this many batches of near-equal size.
    #[serde(default)]
    pub batches: Option<usize>,
    /// Or batches of this many hosts.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Or batches of these percentages of the hosts (summing to 100).
    #[serde(default)]
    pub percents: Option<Vec<u32>>,
    /// What happens between batches.
    #[serde(default)]
    pub pause: PauseMode,
    /// With `pause: seconds`.
    #[serde(default)]
    pub pause_seconds: Option<u64>,
    /// Failed hosts tolerated in the whole release.
    #[serde(default)]
    pub max_failures: Option<usize>,
    /// Failed hosts tolerated in any one batch.
    #[serde(default)]
    pub max_failures_per_batch: Option<usize>,
    /// Pull on every host before stopping any (default true).
    #[serde(default)]
    pub pull_first: Option<bool>,
}

/// How to split hosts into batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batching {
    /// This many near-equal batches (fewer when there are fewer hosts).
    Count(usize),
    /// Batches of this size; the last may be smaller.
    Size(usize),
    /// Percentages of the hosts, summing to 100; empty batches are dropped.
    Percents(Vec<u32>),
}

/// The validated options of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseOptions {
    /// How hosts are split.
    pub batching: Batching,
    /// Between batches.
    pub pause: PauseMode,
    /// With [`PauseMode::Seconds`].
    pub pause_seconds: u64,
    /// Failed hosts tolerated in the whole release.
    pub max_failures: usize,
    /// Failed hosts tolerated per batch.
    pub max_failures_per_batch: usize,
    /// Pull everywhere before stopping anywhere.
    pub pull_first: bool,
}

/// Validates the options of a release request.
pub fn validate_options(request: &ReleaseRequest) -> Result<ReleaseOptions, ApiError> {
    validate_name("application", &request.application)?;
    validate_name("deployment", &request.deployment)?;
    validate_name("group", &request.group)?;
    let given = [request.batches.is_some(), request.batch_size.is_some(), request.percents.is_some()];
    let batching = match (&request.batches, &request.batch_size, &request.percents) {
        _ if given.iter().filter(|g| **g).count() > 1 => {
            return Err(ApiError::invalid(
                "batches",
                "conflicting_fields",
                "give only one of batches, batch_size and percents",
            ));
        }
        (Some(n), _, _) => {
            if !(1..=MAX_BATCHES).contains(n) {
                return Err(ApiError::invalid("batches", "out_of_range", format!("must be 1 to {MAX_BATCHES}")));
            }
            Batching::Count(*n)
        }
        (_, Some(k), _) => {
            if *k == 0 || *k > MAX_RELEASE_HOSTS {
                return Err(ApiError::invalid(
                    "batch_size",
                    "out_of_range",
                    format!("must be 1 to {MAX_RELEASE_HOSTS}"),
                ));
            }
            Batching::Size(*k)
        }
        (_, _, Some(p)) => {
            if p.is_empty() || p.len() > MAX_BATCHES {
                return Err(ApiError::invalid("percents", "out_of_range", format!("give 1 to {MAX_BATCHES} batches")));
            }
            if let Some(i) = p.iter().position(|v| *v == 0 || *v > 100) {
                return Err(ApiError::invalid(format!("percents[{i}]"), "out_of_range", "each must be 1 to 100"));
            }
            if p.iter().sum::<u32>() != 100 {
                return Err(ApiError::invalid("percents", "invalid_sum", "the percentages must add up to 100"));
            }
            Batching::Percents(p.clone())
        }
        (None, None, None) => Batching::Count(1),
    };
    let pause_seconds = match (request.pause, request.pause_seconds) {
        (PauseMode::Seconds, Some(s)) if (1..=MAX_PAUSE_SECONDS).contains(&s) => s,
        (PauseMode::Seconds, _) => {
            return Err(ApiError::invalid(
                "pause_seconds",
                "out_of_range",
                format!("pause: seconds needs pause_seconds from 1 to {MAX_PAUSE_SECONDS}"),
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid("pause_seconds", "conflicting_fields", "only with pause: seconds"));
        }
        (_, None) => 0,
    };
    let max_failures = request.max_failures.unwrap_or(0);
    Ok(ReleaseOptions {
        batching,
        pause: request.pause,
        pause_seconds,
        max_failures,
        max_failures_per_batch: request.max_failures_per_batch.unwrap_or(max_failures),
        pull_first: request.pull_first.unwrap_or(true),
    })
}

/// Splits `hosts` (in the given order) into batches. Errors name the field at fault.
pub fn plan_batches(hosts: &[String], batching: &Batching) -> Result<Vec<Vec<String>>, ApiError> {
    let n = hosts.len();
    if n == 0 {
        return Err(ApiError::Conflict {
            code: "group_empty",
            message: "the group has no hosts: start berth-agent with the group's join token first".into(),
        });
    }
    if n > MAX_RELEASE_HOSTS {
        return Err(ApiError::Conflict {
            code: "group_too_large",
            message: format!("a release reaches at most {MAX_RELEASE_HOSTS} hosts"),
        });
    }
    let sizes: Vec<usize> = match batching {
        Batching::Count(count) => {
            let count = (*count).min(n);
            (0..count).map(|i| n / count + usize::from(i < n % count)).collect()
        }
        Batching::Size(size) => {
            let size = (*size).min(n);
            (0..n.div_ceil(size)).map(|i| size.min(n - i * size)).collect()
        }
        Batching::Percents(percents) => {
            // Cumulative rounding up, so every host lands in exactly one batch.
            let mut cumulative = 0u64;
            let mut done = 0usize;
            percents
                .iter()
                .map(|p| {
                    cumulative += u64::from(*p);
                    let end = ((n as u64 * cumulative).div_ceil(100) as usize).min(n);
                    let size = end - done;
                    done = end;
                    size
                })
                .filter(|s| *s > 0)
                .collect()
        }
    };
    let mut rest = hosts;
    Ok(sizes
        .into_iter()
        .map(|size| {
            let (batch, tail) = rest.split_at(size);
            rest = tail;
            batch.to_vec()
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// Release state
// ---------------------------------------------------------------------------------------

/// Where a release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Pausing scaling, pulling, or working through batches.
    Running,
    /// Every batch finished within the failure budgets.
    Succeeded,
    /// A failure budget was exceeded; later batches did not start.
    Failed,
    /// Cancelled by the caller; batches not yet started did not start.
    Cancelled,
}

impl ReleaseStatus {
    /// Whether nothing more will happen.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// The step a running release is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Phase {
    /// Taking the scaling lease.
    Starting,
    /// Pulling on every host.
    Pulling,
    /// Running batch `batch` (from 0).
    Batch {
        /// The batch.
        batch: usize,
    },
    /// Waiting before batch `next` until `until` (seconds since the epoch).
    Waiting {
        /// The next batch.
        next: usize,
        /// When it starts.
        until: u64,
    },
    /// Waiting for `confirm` before batch `next`.
    AwaitingConfirm {
        /// The next batch.
        next: usize,
    },
    /// Finished.
    Done,
}

/// A release as stored in `releases/{id}/release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Its id.
    pub id: String,
    /// The owning account.
    pub account: AccountId,
    /// The application.
    pub application: String,
    /// The group released to.
    pub group: String,
    /// Whether that group is a scaling group.
    pub group_kind: GroupKind,
    /// The deployment, as it was when the release was created.
    pub deployment: Deployment,
    /// The options.
    pub options: ReleaseOptions,
    /// Hosts, by batch.
    pub batches: Vec<Vec<String>>,
    /// Where it is.
    pub status: ReleaseStatus,
    /// The step.
    pub phase: Phase,
    /// When the current phase began (seconds since the epoch): its deadline counts from here.
    pub phase_started_at: u64,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Created at.
    pub created_at: u64,
    /// Finished at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

impl Release {
    /// Every host of the plan.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        self.batches.iter().flatten()
    }

    /// The batch a host is in.
    pub fn batch_of(&self, host: &str) -> Option<usize> {
        self.batches.iter().position(|b| b.iter().any(|h| h == host))
    }

    /// When the current phase's hosts count as unresponsive.
    pub fn phase_deadline(&self) -> u64 {
        let step = self.deployment.step_timeout_seconds;
        let steps = match self.phase {
            Phase::Pulling => 1,
            Phase::Batch { .. } if self.options.pull_first => 2,
            Phase::Batch { .. } => 3,
            _ => return u64::MAX,
        };
        self.phase_started_at + steps * step + REPORT_GRACE_SECONDS
    }
}

/// Where a host is in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Its batch has not started.
    Pending,
    /// Pulling the image (pull-first phase).
    Pulling,
    /// Pulled; waiting for its batch.
    Pulled,
    /// Its batch runs: pulling (without pull-first), stopping, starting.
    Running,
    /// Stopped and started.
    Succeeded,
    /// A step failed, timed out, or the agent did not report.
    Failed,
    /// Never ran: the release ended before its batch.
    Skipped,
}

/// A step on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `docker pull`.
    Pull,
    /// The stop script.
    Stop,
    /// The start script.
    Start,
    /// No report arrived in time.
    Report,
}

/// The outcome of a pull on one host: `releases/{id}/pulls/{host}.json`, written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResult {
    /// Whether the image is there.
    pub ok: bool,
    /// Exit code of `docker pull`.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its output.
    #[serde(default)]
    pub output: StepOutput,
    /// When.
    pub at: u64,
}

/// The final outcome on one host: `releases/{id}/hosts/{host}.json`, written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResult {
    /// Whether stop and start both succeeded.
    pub ok: bool,
    /// The step that failed (or the last step, on success).
    pub step: Step,
    /// Its exit code, if it ran to an exit.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    pub at: u64,
}

/// Full stdout and stderr of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StepOutput {
    /// Standard output, lossily UTF-8.
    #[serde(default)]
    pub stdout: String,
    /// Standard error, lossily UTF-8.
    #[serde(default)]
    pub stderr: String,
}

/// The logs of one host's run: `releases/{id}/logs/{host}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostLogs {
    /// `docker pull` (when pulled in the run, without pull-first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<StepOutput>,
    /// The stop script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StepOutput>,
    /// The start script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StepOutput>,
}

/// Logs larger than this (as JSON) are stored in parts, so no document outgrows the store.
pub const INLINE_LOG_BYTES: usize = 3 << 20;
/// Text per stored log part; JSON escaping may grow it up to six times, still under the
/// store's document limit.
pub const LOG_PART_BYTES: usize = 512 << 10;
/// Largest report an agent may send (its steps' full output).
pub const MAX_REPORT_BYTES: usize = 256 << 20;

/// One piece of a step's output stored on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPart {
    /// `pull`, `stop` or `start`.
    pub step: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, in order after the previous part of the same step and stream.
    pub text: String,
}

fn output_mut<'a>(logs: &'a mut HostLogs, step: &str) -> Option<&'a mut StepOutput> {
    match step {
        "pull" => logs.pull.as_mut(),
        "stop" => logs.stop.as_mut(),
        "start" => logs.start.as_mut(),
        _ => None,
    }
}

/// Splits logs into a head without text and parts of at most `part_bytes` of text each
/// (cut at character boundaries), in order. [`join_logs`] undoes it.
pub fn split_logs(logs: &HostLogs, part_bytes: usize) -> (HostLogs, Vec<LogPart>) {
    let mut head = logs.clone();
    let mut parts = Vec::new();
    for step in ["pull", "stop", "start"] {
        let Some(output) = output_mut(&mut head, step) else { continue };
        for (stream, text) in
            [("stdout", std::mem::take(&mut output.stdout)), ("stderr", std::mem::take(&mut output.stderr))]
        {
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut cut = rest.len().min(part_bytes.max(4));
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                parts.push(LogPart { step: step.into(), stream: stream.into(), text: rest[..cut].to_owned() });
                rest = &rest[cut..];
            }
        }
    }
    (head, parts)
}

/// Puts split logs back together.
pub fn join_logs(mut head: HostLogs, parts: Vec<LogPart>) -> HostLogs {
    for part in parts {
        if let Some(output) = output_mut(&mut head, &part.step) {
            match part.stream.as_str() {
                "stdout" => output.stdout.push_str(&part.text),
                _ => output.stderr.push_str(&part.text),
            }
        }
    }
    head
}

/// What an agent reports after a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The job this reports on, as it was handed out.
    pub job_id: String,
    /// The release.
    pub release: String,
    /// The job's kind.
    pub kind: JobKind,
    /// Whether every step succeeded.
    pub ok: bool,
    /// The step that failed, or the last one run.
    pub step: Step,
    /// Its exit code.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed (timeout, could not start bash, ...).
    #[serde(default)]
    pub reason: Option<String>,
    /// Output of each step run.
    #[serde(default)]
    pub logs: HostLogs,
}

/// What an agent is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Pull only (the pull-first phase).
    Pull,
    /// Stop then start (pulling first unless the release pulled already).
    Run,
}

/// A job handed to an agent. Its `Debug` leaves the pull key's password out.
#[derive(Clone, Serialize, Deserialize)]
pub struct Job {
    /// Names this job: the report must carry it back ([`job_id`]).
    pub job_id: String,
    /// The release.
    pub release: String,
    /// Pull, or run.
    pub kind: JobKind,
    /// Whether a run job pulls first.
    pub pull: bool,
    /// The image address.
    pub image: String,
    /// Registry host the pull key is for.
    pub registry: String,
    /// Pull key username.
    pub username: String,
    /// Pull key password (a short-lived grant for this image only). Never logged.
    pub password: String,
    /// Working directory.
    pub working_directory: String,
    /// Stop script.
    pub stop_script: String,
    /// Start script.
    pub start_script: String,
    /// Per-step timeout.
    pub step_timeout_seconds: u64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("job_id", &self.job_id)
            .field("release", &self.release)
            .field("kind", &self.kind)
            .field("image", &self.image)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} of {} for release {}", self.kind, self.image, self.release)
    }
}

/// The id of the job of `kind` for `host` in `release`. Each host has at most one job of each
/// kind per release, so the id is derived rather than stored: no write per job handed out,
/// and a report is matched by recomputing it for the reporting host.
pub fn job_id(release: &str, host: &str, kind: JobKind) -> String {
    let kind = match kind {
        JobKind::Pull => "pull",
        JobKind::Run => "run",
    };
    let digest = crate::platform::digest::sha256_hex(format!("berth-job\0{release}\0{host}\0{kind}").as_bytes());
    format!("{kind}-{}", &digest[..32])
}

/// Why a report is refused: it does not answer the job the host holds now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefusal {
    /// The job id is not this host's job of this kind in this release.
    #[error("job '{0}' was not handed to this host for this release and kind")]
    NotThisJob(String),
    /// The release ended before the report came.
    #[error("the release has ended; the report changes nothing")]
    Ended,
    /// The host's job of this kind is not due in the release's current phase.
    #[error("this job is not due now (the release is in another phase)")]
    NotDue,
}

/// Checks that a report answers the job `host` holds in `release`: its id must be the
/// host's job of the report's kind.
pub fn check_job(release: &str, host: &str, report: &Report) -> Result<(), ReportRefusal> {
    if report.job_id == job_id(release, host, report.kind) {
        Ok(())
    } else {
        Err(ReportRefusal::NotThisJob(report.job_id.chars().take(80).collect()))
    }
}

/// Checks that a not-yet-settled job of `kind` for a host of `batch` is due: the release is
/// running and in the job's phase.
pub fn check_due(status: ReleaseStatus, phase: Phase, batch: usize, kind: JobKind) -> Result<(), ReportRefusal> {
    if status.is_terminal() {
        return Err(ReportRefusal::Ended);
    }
    let due = match (kind, phase) {
        (JobKind::Pull, Phase::Pulling) => true,
        (JobKind::Run, Phase::Batch { batch: current }) => current == batch,
        _ => false,
    };
    if due { Ok(()) } else { Err(ReportRefusal::NotDue) }
}

/// What a host should do now, given the release and what it has reported.
pub fn next_job(release: &Release, host: &str, pulled: bool, finished: bool) -> Option<JobKind> {
    next_job_at(release.status, release.phase, release.batch_of(host), pulled, finished)
}

/// [`next_job`] from the parts that change (status, phase) and the host's batch, so a poll
/// need not rebuild the whole release.
pub fn next_job_at(
    status: ReleaseStatus,
    phase: Phase,
    batch: Option<usize>,
    pulled: bool,
    finished: bool,
) -> Option<JobKind> {
    if status != ReleaseStatus::Running || finished {
        return None;
    }
    match phase {
        Phase::Pulling if !pulled && batch.is_some() => Some(JobKind::Pull),
        Phase::Batch { batch: current } if batch == Some(current) => Some(JobKind::Run),
        _ => None,
    }
}

/// A host's state derived from the release and the host's written results.
pub fn host_state(release: &Release, host: &str, pull: Option<&PullResult>, result: Option<&HostResult>) -> HostState {
    host_state_at(release, release.batch_of(host), pull, result)
}

/// [`host_state`] for a host whose batch is known (listing every host stays linear).
pub fn host_state_at(
    release: &Release,
    batch: Option<usize>,
    pull: Option<&PullResult>,
    result: Option<&HostResult>,
) -> HostState {
    if let Some(result) = result {
        return if result.ok { HostState::Succeeded } else { HostState::Failed };
    }
    let running = match release.phase {
        Phase::Batch { batch: current } => batch == Some(current),
        _ => false,
    };
    let started = match release.phase {
        Phase::Batch { batch: b } | Phase::Waiting { next: b, .. } | Phase::AwaitingConfirm { next: b } => {
            batch.is_some_and(|x| x < b)
        }
        Phase::Done => true,
        _ => false,
    };
    if release.status == ReleaseStatus::Running && running {
        HostState::Running
    } else if release.status.is_terminal() || started {
        HostState::Skipped
    } else if release.phase == Phase::Pulling && pull.is_none() {
        HostState::Pulling
    } else if pull.is_some_and(|p| p.ok) {
        HostState::Pulled
    } else {
        HostState::Pending
    }
}

/// What the release should do next, from its state and the hosts' results. Plain, so the
/// fan-out can call it any number of times (duplicates, restarts) with the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do yet.
    Wait,
    /// Mark these hosts failed as unresponsive (their phase deadline passed), then decide again.
    TimeOut(Vec<String>),
    /// Move to this phase.
    Move(Phase),
    /// End with this status and reason.
    Finish(ReleaseStatus, Option<String>),
}

/// Decides the next move of a running release. `pulls` and `results` hold what hosts reported.
pub fn decide(
    release: &Release,
    pulls: &BTreeMap<String, PullResult>,
    results: &BTreeMap<String, HostResult>,
    now: u64,
) -> Decision {
    if release.status.is_terminal() {
        return Decision::Wait;
    }
    let options = &release.options;
    match release.phase {
        Phase::Starting => Decision::Move(if options.pull_first { Phase::Pulling } else { Phase::Batch { batch: 0 } }),
        Phase::Pulling => {
            let missing: Vec<String> = release.hosts().filter(|h| !pulls.contains_key(*h)).cloned().collect();
            if !missing.is_empty() {
                return if now >= release.phase_deadline() { Decision::TimeOut(missing) } else { Decision::Wait };
            }
            let failed = pulls.values().filter(|p| !p.ok).count();
            if failed > options.max_failures {
                return Decision::Finish(
                    ReleaseStatus::Failed,
                    Some(format!(
                        "the image could not be pulled on {failed} hosts (max_failures {}); no host was stopped",
                        options.max_failures
                    )),
                );
            }
            Decision::Move(Phase::Batch { batch: 0 })
        }
        Phase::Batch { batch } => {
            let hosts = &release.batches[batch];
            let missing: Vec<String> = hosts.iter().filter(|h| !results.contains_key(*h)).cloned().collect();
            if !missing.is_empty() {
                return if now >= release.phase_deadline() { Decision::TimeOut(missing) } else { Decision::Wait };
            }
            let in_batch = hosts.iter().filter(|h| results.get(*h).is_some_and(|r| !r.ok)).count();
            // Reports are only taken from hosts of the plan, so every result counts.
            let total = results.values().filter(|r| !r.ok).count();
            if in_batch > options.max_failures_per_batch {
                return Decision::Finish(
                    ReleaseStatus::Failed,
                    Some(format!(
                        "{in_batch} hosts failed in batch {} (max_failures_per_batch {}); later batches were not started",
                        batch + 1,
                        options.max_failures_per_batch
                    )),
                );
            }
            if total > options.max_failures {
                return Decision::Finish(
                    ReleaseStatus::Failed,
                    Some(format!(
                        "{total} hosts failed (max_failures {}); later batches were not started",
                        options.max_failures
                    )),
                );
            }
            let next = batch + 1;
            if next == release.batches.len() {
                return Decision::Finish(ReleaseStatus::Succeeded, None);
            }
            Decision::Move(match options.pause {
                PauseMode::None => Phase::Batch { batch: next },
                PauseMode::Seconds => Phase::Waiting { next, until: now + options.pause_seconds },
                PauseMode::Manual => Phase::AwaitingConfirm { next },
            })
        }
        Phase::Waiting { next, until } if now >= until => Decision::Move(Phase::Batch { batch: next }),
        Phase::Waiting { .. } | Phase::AwaitingConfirm { .. } | Phase::Done => Decision::Wait,
    }
}

/// Applies a decision's move or finish to a release (a pure state transition).
pub fn apply(release: &Release, decision: &Decision, now: u64) -> Release {
    let mut next = release.clone();
    match decision {
        Decision::Move(phase) => {
            next.phase = *phase;
            next.phase_started_at = now;
        }
        Decision::Finish(status, reason) => {
            next.status = *status;
            next.reason = reason.clone();
            next.phase = Phase::Done;
            next.finished_at = Some(now);
        }
        Decision::Wait | Decision::TimeOut(_) => {}
    }
    next
}

/// Cancels a running release; a finished one is a conflict.
pub fn cancel(release: &Release, now: u64) -> Result<Release, ApiError> {
    if release.status.is_terminal() {
        return Err(ApiError::Conflict {
            code: "release_finished",
            message: format!("release {} already ended ({:?})", release.id, release.status),
        });
    }
    Ok(apply(release, &Decision::Finish(ReleaseStatus::Cancelled, Some("cancelled by the caller".into())), now))
}

/// Confirms the next batch of a release waiting for confirmation.
pub fn confirm(release: &Release, now: u64) -> Result<Release, ApiError> {
    match release.phase {
        Phase::AwaitingConfirm { next } if release.status == ReleaseStatus::Running => {
            Ok(apply(release, &Decision::Move(Phase::Batch { batch: next }), now))
        }
        _ => Err(ApiError::Conflict {
            code: "not_awaiting_confirmation",
            message: format!("release {} is not waiting for confirmation", release.id),
        }),
    }
}

/// Counts of hosts per state, for summaries.
pub fn summarize(states: impl IntoIterator<Item = HostState>) -> BTreeMap<HostState, usize> {
    let mut counts = BTreeMap::new();
    for state in states {
        *counts.entry(state).or_insert(0) += 1;
    }
    counts
}

impl PartialOrd for HostState {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HostState {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// The hosts of a plan, deduplicated (a host registered twice counts once).
pub fn unique_hosts(hosts: impl IntoIterator<Item = String>) -> Vec<String> {
    hosts.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("acme").unwrap()
    }

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("h{i}")).collect()
    }

    fn request(extra: serde_json::Value) -> ReleaseRequest {
        let mut body = serde_json::json!({ "application": "app", "deployment": "web", "group": "prod" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    fn deployment() -> Deployment {
        Deployment {
            name: "web".into(),
            image: ImageRef { registry: "r:5000".into(), repository: "acme/web".into(), reference: ":v1".into() },
            working_directory: "/root/deploy".into(),
            start_script: "true".into(),
            stop_script: "true".into(),
            step_timeout_seconds: 10,
            registry_endpoint: RegistryEndpoint::Public,
            created_at: 0,
        }
    }

    fn release(n: usize, extra: serde_json::Value) -> Release {
        let options = validate_options(&request(extra)).unwrap();
        let batches = plan_batches(&hosts(n), &options.batching).unwrap();
        Release {
            id: "r1".into(),
            account: account(),
            application: "app".into(),
            group: "prod".into(),
            group_kind: GroupKind::Scaling,
            deployment: deployment(),
            options,
            batches,
            status: ReleaseStatus::Running,
            phase: Phase::Starting,
            phase_started_at: 100,
            reason: None,
            created_at: 100,
            finished_at: None,
        }
    }

    fn ok(at: u64) -> HostResult {
        HostResult { ok: true, step: Step::Start, exit_code: Some(0), reason: None, at }
    }

    fn failed() -> HostResult {
        HostResult { ok: false, step: Step::Start, exit_code: Some(1), reason: None, at: 0 }
    }

    fn pulled(ok: bool) -> PullResult {
        PullResult { ok, exit_code: Some(if ok { 0 } else { 1 }), reason: None, output: StepOutput::default(), at: 0 }
    }

    fn sizes(n: usize, batching: Batching) -> Vec<usize> {
        plan_batches(&hosts(n), &batching).unwrap().iter().map(Vec::len).collect()
    }

    #[test]
    fn batches_split_evenly_and_keep_every_host_once() {
        assert_eq!(sizes(5, Batching::Count(3)), [2, 2, 1]);
        assert_eq!(sizes(2, Batching::Count(3)), [1, 1]);
        assert_eq!(sizes(10, Batching::Size(4)), [4, 4, 2]);
        assert_eq!(sizes(3, Batching::Size(10)), [3]);
        assert_eq!(sizes(10, Batching::Percents(vec![10, 40, 50])), [1, 4, 5]);
        assert_eq!(sizes(3, Batching::Percents(vec![10, 10, 80])), [1, 2], "empty batches dropped");
        for n in 1..60 {
            for batching in [Batching::Count(7), Batching::Size(3), Batching::Percents(vec![33, 33, 34])] {
                let plan = plan_batches(&hosts(n), &batching).unwrap();
                let flat: Vec<String> = plan.concat();
                assert_eq!(flat, hosts(n), "{n} hosts, {batching:?}");
                assert!(plan.iter().all(|b| !b.is_empty()));
            }
        }
        assert!(matches!(plan_batches(&[], &Batching::Count(1)), Err(ApiError::Conflict { code: "group_empty", .. })));
    }

    #[test]
    fn options_take_one_batching_and_valid_pauses() {
        let field = |extra| match validate_options(&request(extra)) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(serde_json::json!({ "batches": 2, "batch_size": 1 })), "batches");
        assert_eq!(field(serde_json::json!({ "batches": 0 })), "batches");
        assert_eq!(field(serde_json::json!({ "batches": MAX_BATCHES + 1 })), "batches");
        assert_eq!(field(serde_json::json!({ "batch_size": 0 })), "batch_size");
        assert_eq!(field(serde_json::json!({ "percents": [50, 40] })), "percents");
        assert_eq!(field(serde_json::json!({ "percents": [0, 100] })), "percents[0]");
        assert_eq!(field(serde_json::json!({ "pause": "seconds" })), "pause_seconds");
        assert_eq!(field(serde_json::json!({ "pause_seconds": 3 })), "pause_seconds");
        let options = validate_options(&request(serde_json::json!({ "max_failures": 2 }))).unwrap();
        assert_eq!(options.batching, Batching::Count(1));
        assert_eq!(options.max_failures_per_batch, 2, "per batch defaults to the whole budget");
        assert!(options.pull_first);
    }

    #[test]
    fn deployments_are_linux_shell_absolute_and_in_the_namespace() {
        let base = serde_json::json!({
            "name": "web", "image": { "address": "r:5000/acme/web:v1" }, "working_directory": "/root/deploy",
            "start_script": "docker run x", "stop_script": "true"
        });
        let check = |patch: serde_json::Value| {
            let mut body = base.clone();
            body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
            let request: DeploymentRequest = serde_json::from_value(body).unwrap();
            validate_deployment(request, "r:5000", None, &account(), 0)
        };
        let code = |patch| match check(patch) {
            Err(ApiError::Invalid { code, .. }) => code,
            Err(ApiError::TooLarge { .. }) => "too_large",
            other => panic!("expected invalid, got {other:?}"),
        };
        let d = check(serde_json::json!({})).unwrap();
        assert_eq!(d.image.address(), "r:5000/acme/web:v1");
        assert_eq!(d.step_timeout_seconds, DEFAULT_STEP_TIMEOUT_SECONDS);
        let parts =
            check(serde_json::json!({ "image": { "namespace": "acme", "repository": "web", "version": "v2" } }));
        assert_eq!(parts.unwrap().image.address(), "r:5000/acme/web:v2");
        assert_eq!(code(serde_json::json!({ "registry_endpoint": "private" })), "private_endpoint_unavailable");
        let mut private = d.clone();
        private.registry_endpoint = RegistryEndpoint::Private;
        assert_eq!(private.pull_address(Some("vpc:5000")), ("vpc:5000".into(), "vpc:5000/acme/web:v1".into()));
        assert_eq!(d.pull_address(Some("vpc:5000")).1, "r:5000/acme/web:v1", "public unless chosen");
        assert_eq!(code(serde_json::json!({ "working_directory": "root/deploy" })), "not_absolute");
        assert_eq!(code(serde_json::json!({ "working_directory": "/root/../etc" })), "invalid_path");
        assert_eq!(code(serde_json::json!({ "platform": "windows" })), "unsupported_platform");
        assert_eq!(code(serde_json::json!({ "script_language": "powershell" })), "unsupported_script_language");
        assert_eq!(
            code(serde_json::json!({ "start_script": "#!/usr/bin/python3\nprint(1)" })),
            "unsupported_script_language"
        );
        assert!(check(serde_json::json!({ "start_script": "#!/usr/bin/env bash\necho hi" })).is_ok());
        assert_eq!(code(serde_json::json!({ "stop_script": "  " })), "required");
        assert_eq!(code(serde_json::json!({ "stop_script": "x".repeat(MAX_SCRIPT_BYTES + 1) })), "too_large");
        assert_eq!(code(serde_json::json!({ "step_timeout_seconds": 0 })), "out_of_range");
        assert_eq!(
            code(serde_json::json!({ "image": { "address": "r:5000/other/web:v1" } })),
            "image_outside_namespace"
        );
        assert_eq!(
            code(serde_json::json!({ "image": { "address": "docker.io/acme/web:v1" } })),
            "image_outside_registry"
        );
        assert_eq!(code(serde_json::json!({ "image": { "address": "r:5000/acme/web" } })), "invalid_image");
        assert_eq!(code(serde_json::json!({ "image": { "address": "r:5000/acme/web@sha256:12" } })), "invalid_image");
    }

    #[test]
    fn package_images_must_be_available_container_images_and_are_pinned() {
        let version = |status: &str, kind: &str, images: serde_json::Value| -> crate::package::PackageVersion {
            serde_json::from_value(serde_json::json!({
                "package": "web", "version": "v1", "number": 1, "type": kind, "status": status,
                "images": images, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            }))
            .unwrap()
        };
        let one = serde_json::json!([{ "repository": "acme/web", "tag": "v1", "digest": format!("sha256:{}", "a".repeat(64)) }]);
        let two =
            serde_json::json!([{ "repository": "acme/web", "tag": "v1" }, { "repository": "acme/api", "tag": "v1" }]);
        let code = |result: Result<ImageSpec, ApiError>| match result {
            Err(ApiError::Invalid { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        let pinned = image_from_package(&version("Available", "ContainerImage", one.clone()), None, "r:5000").unwrap();
        assert_eq!(pinned, ImageSpec::Address { address: format!("r:5000/acme/web@sha256:{}", "a".repeat(64)) });
        assert_eq!(
            code(image_from_package(&version("Creating", "ContainerImage", one.clone()), None, "r")),
            "version_not_available"
        );
        assert_eq!(code(image_from_package(&version("Available", "HelmChart", one), None, "r")), "not_container_image");
        let several = version("Available", "ContainerImage", two);
        assert_eq!(code(image_from_package(&several, None, "r")), "required");
        assert_eq!(code(image_from_package(&several, Some("acme/db"), "r")), "not_in_version");
        assert_eq!(
            image_from_package(&several, Some("acme/api"), "r").unwrap(),
            ImageSpec::Address { address: "r/acme/api:v1".into() },
            "no digest recorded: the tag"
        );
    }

    #[test]
    fn big_logs_split_at_character_boundaries_and_join_back() {
        let logs = HostLogs {
            pull: None,
            stop: Some(StepOutput { stdout: "é".repeat(10), stderr: String::new() }),
            start: Some(StepOutput { stdout: "abc".repeat(7), stderr: "x".into() }),
        };
        let (head, parts) = split_logs(&logs, 5);
        assert!(head.stop.as_ref().unwrap().stdout.is_empty() && head.pull.is_none());
        assert!(parts.iter().all(|p| p.text.len() <= 5 && !p.text.is_empty()));
        assert_eq!(parts.iter().filter(|p| p.step == "stop").count(), 5, "two-byte characters, four bytes a part");
        assert_eq!(join_logs(head, parts), logs);
    }

    #[test]
    fn a_release_moves_through_pull_batches_and_pauses() {
        let mut r = release(5, serde_json::json!({ "batches": 3, "pause": "seconds", "pause_seconds": 5 }));
        let none: BTreeMap<String, HostResult> = BTreeMap::new();
        let d = decide(&r, &BTreeMap::new(), &none, 100);
        assert_eq!(d, Decision::Move(Phase::Pulling));
        r = apply(&r, &d, 100);
        assert_eq!(next_job(&r, "h0", false, false), Some(JobKind::Pull));
        assert_eq!(next_job(&r, "h0", true, false), None, "pulled already");
        assert_eq!(decide(&r, &BTreeMap::new(), &none, 101), Decision::Wait);
        let pulls: BTreeMap<_, _> = hosts(5).into_iter().map(|h| (h, pulled(true))).collect();
        let d = decide(&r, &pulls, &none, 102);
        assert_eq!(d, Decision::Move(Phase::Batch { batch: 0 }));
        r = apply(&r, &d, 102);
        assert_eq!(next_job(&r, "h0", true, false), Some(JobKind::Run));
        assert_eq!(next_job(&r, "h4", true, false), None, "not its batch");
        assert_eq!(host_state(&r, "h0", pulls.get("h0"), None), HostState::Running);
        assert_eq!(host_state(&r, "h4", pulls.get("h4"), None), HostState::Pulled);
        let mut results = BTreeMap::new();
        results.insert("h0".to_owned(), ok(103));
        assert_eq!(decide(&r, &pulls, &results, 103), Decision::Wait);
        results.insert("h1".to_owned(), ok(103));
        let d = decide(&r, &pulls, &results, 104);
        assert_eq!(d, Decision::Move(Phase::Waiting { next: 1, until: 109 }));
        r = apply(&r, &d, 104);
        assert_eq!(decide(&r, &pulls, &results, 108), Decision::Wait);
        let d = decide(&r, &pulls, &results, 109);
        assert_eq!(d, Decision::Move(Phase::Batch { batch: 1 }));
        r = apply(&r, &d, 109);
        for h in ["h2", "h3", "h4"] {
            results.insert(h.to_owned(), ok(110));
        }
        r = apply(&r, &decide(&r, &pulls, &results, 110), 110);
        r = apply(&r, &decide(&r, &pulls, &results, 116), 116);
        assert_eq!(r.phase, Phase::Batch { batch: 2 });
        let d = decide(&r, &pulls, &results, 117);
        assert_eq!(d, Decision::Finish(ReleaseStatus::Succeeded, None));
        r = apply(&r, &d, 117);
        assert_eq!(decide(&r, &pulls, &results, 118), Decision::Wait, "finished releases stay put");
        assert_eq!(next_job(&r, "h4", true, false), None);
    }

    #[test]
    fn failure_budgets_stop_later_batches() {
        let none = BTreeMap::new();
        let within = release(5, serde_json::json!({ "batches": 3, "max_failures": 1, "pull_first": false }));
        let mut r = apply(&within, &Decision::Move(Phase::Batch { batch: 0 }), 100);
        let mut results = BTreeMap::from([("h0".to_owned(), failed()), ("h1".to_owned(), ok(1))]);
        assert_eq!(decide(&r, &none, &results, 101), Decision::Move(Phase::Batch { batch: 1 }));
        r = apply(&r, &Decision::Move(Phase::Batch { batch: 1 }), 101);
        results.insert("h2".into(), failed());
        results.insert("h3".into(), ok(1));
        match decide(&r, &none, &results, 102) {
            Decision::Finish(ReleaseStatus::Failed, Some(reason)) => {
                assert!(reason.contains("max_failures 1"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let strict = release(5, serde_json::json!({ "batches": 3, "max_failures": 3, "max_failures_per_batch": 0 }));
        let r = apply(&strict, &Decision::Move(Phase::Batch { batch: 0 }), 100);
        let results = BTreeMap::from([("h0".to_owned(), failed()), ("h1".to_owned(), ok(1))]);
        assert!(matches!(decide(&r, &none, &results, 101), Decision::Finish(ReleaseStatus::Failed, _)));
        let skipped = apply(&r, &decide(&r, &none, &results, 101), 101);
        assert_eq!(host_state(&skipped, "h4", None, None), HostState::Skipped);
        assert_eq!(host_state(&skipped, "h0", None, results.get("h0")), HostState::Failed);
    }

    #[test]
    fn pull_failures_beyond_the_budget_stop_before_any_host_is_stopped() {
        let r = release(3, serde_json::json!({ "max_failures": 0 }));
        let r = apply(&r, &Decision::Move(Phase::Pulling), 100);
        let pulls =
            BTreeMap::from([("h0".into(), pulled(true)), ("h1".into(), pulled(false)), ("h2".into(), pulled(true))]);
        match decide(&r, &pulls, &BTreeMap::new(), 101) {
            Decision::Finish(ReleaseStatus::Failed, Some(reason)) => assert!(reason.contains("no host was stopped")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn silent_hosts_time_out_after_the_phase_deadline() {
        let r = release(2, serde_json::json!({}));
        let r = apply(&r, &Decision::Move(Phase::Pulling), 100);
        let pulls = BTreeMap::from([("h0".into(), pulled(true))]);
        let deadline = 100 + 10 + REPORT_GRACE_SECONDS;
        assert_eq!(decide(&r, &pulls, &BTreeMap::new(), deadline - 1), Decision::Wait);
        assert_eq!(decide(&r, &pulls, &BTreeMap::new(), deadline), Decision::TimeOut(vec!["h1".into()]));
    }

    #[test]
    fn cancel_and_confirm_follow_the_state() {
        let r = release(4, serde_json::json!({ "batches": 2, "pause": "manual" }));
        let r = apply(&r, &Decision::Move(Phase::AwaitingConfirm { next: 1 }), 100);
        let confirmed = confirm(&r, 101).unwrap();
        assert_eq!(confirmed.phase, Phase::Batch { batch: 1 });
        assert!(matches!(confirm(&confirmed, 102), Err(ApiError::Conflict { .. })));
        let cancelled = cancel(&confirmed, 103).unwrap();
        assert_eq!(cancelled.status, ReleaseStatus::Cancelled);
        assert_eq!(next_job(&cancelled, "h3", true, false), None);
        assert!(matches!(cancel(&cancelled, 104), Err(ApiError::Conflict { code: "release_finished", .. })));
    }

    #[test]
    fn leases_pause_once_and_resume_once() {
        let s = ScalingState::default();
        let s = take_lease(&s, "r1", 100).unwrap();
        assert!(s.paused);
        let renewed = take_lease(&s, "r1", 200).unwrap();
        assert_eq!((renewed.pauses, renewed.lease.as_ref().unwrap().expires_at), (1, 200 + LEASE_SECONDS));
        assert!(take_lease(&renewed, "r2", 300).is_err(), "a live lease of another release");
        assert!(take_lease(&renewed, "r2", 200 + LEASE_SECONDS).is_ok(), "an expired one is taken over");
        let resumed = release_lease(&renewed, "r1");
        assert!(!resumed.paused);
        assert_eq!(resumed.resumes, 1);
        assert_eq!(release_lease(&resumed, "r1"), resumed, "releasing twice changes nothing");
        assert_eq!(release_lease(&renewed, "r2"), renewed, "another release's lease is left alone");
        assert!(!lease_needs_renewal(&renewed, "r1", 201));
        assert!(lease_needs_renewal(&renewed, "r1", 200 + LEASE_SECONDS / 2 + 1));
    }
}

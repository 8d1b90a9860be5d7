//! Deployments: the image (in Berth's registry and the caller's namespace), working
//! directory, start and stop scripts a release runs on each host.

use super::*;

/// Resolves an image spec to a reference in `registry` inside `account`'s namespace (the
/// only place a job-scoped pull key can reach).
pub fn resolve_image(spec: &DeploymentImage, registry: &str, account: &AccountId) -> Result<ImageRef, ApiError> {
    let (host, path, reference) = match spec {
        DeploymentImage::Address { address } => {
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
        DeploymentImage::Package { .. } => {
            return Err(ApiError::Internal("a package image must be resolved before validation".into()));
        }
        DeploymentImage::Parts { registry: r, namespace, repository, version } => {
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
    let tag = reference.get(1..).unwrap_or_default();
    let tag_ok = if reference.starts_with('@') {
        tag.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    } else {
        crate::package::is_image_tag(tag)
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
) -> Result<DeploymentImage, ApiError> {
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
        None => match version.images.as_slice() {
            [only] => only,
            _ => {
                return Err(ApiError::invalid(
                    "image.image",
                    "required",
                    "the version has several images: name one by its repository",
                ));
            }
        },
    };
    let address = crate::package::PackageVersion::image_reference(chosen, registry, true);
    Ok(DeploymentImage::Address { address })
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
        revision: 1,
        health: request.health.map(validate_health).transpose()?,
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
    if dir != "/" && dir.get(1..).unwrap_or_default().split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(ApiError::invalid(
            field,
            "invalid_path",
            format!("'{}' has empty, '.' or '..' segments", crate::platform::http::problem::shown(dir)),
        ));
    }
    Ok(())
}

/// Validates a start or stop script: non-empty, at most [`MAX_SCRIPT_BYTES`], no NUL, and shell
/// (a `#!` line naming another interpreter is refused).
pub fn validate_script(field: &str, script: &str) -> Result<(), ApiError> {
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

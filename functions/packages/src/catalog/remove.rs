//! Deleting packages and versions, refused while a service uses them.

use super::*;

pub(crate) async fn users_of(
    context: &FunctionContext,
    account: &AccountId,
    name: &str,
) -> Result<Vec<String>, ApiError> {
    let paths = context.store.list_paths(&package::users_prefix(account, name)).await?;
    Ok(paths
        .iter()
        .filter_map(|p| p.rsplit('/').next().and_then(|f| f.strip_suffix(".json")).map(str::to_owned))
        .collect())
}

/// `DELETE /v1/packages/{name}`: refused while a service uses it.
pub async fn delete_package(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    load_package(&context, &caller.id, &name).await?;
    if let Err(users) = remove_package(&context, &caller.id, &name).await? {
        return Err(ApiError::Conflict {
            code: "in_use",
            message: format!("package '{name}' is used by service(s) {}; remove it from them first", users.join(", ")),
        });
    }
    tracing::info!(account = %caller.id, package = %name, "package deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a package with its versions unless a service uses it (then answers the services).
/// Marked `deleting` first, markers read second: the reverse of a service definition's order.
pub(crate) async fn remove_package(
    context: &FunctionContext,
    account: &AccountId,
    name: &str,
) -> Result<Result<(), Vec<String>>, ApiError> {
    let package_path = package::package_path(account, name);
    let set_deleting = |deleting: bool| {
        move |package: Option<Package>| {
            let mut package = package.ok_or_else(|| ApiError::NotFound(format!("package '{name}'")))?;
            package.deleting = deleting;
            Ok::<_, ApiError>(package)
        }
    };
    context.store.modify(&package_path, set_deleting(true)).await?;
    let users = users_of(context, account, name).await?;
    if !users.is_empty() {
        context.store.modify(&package_path, set_deleting(false)).await?;
        return Ok(Err(users));
    }
    for version in versions_of(context, account, name).await? {
        remove_version(context, account, &version).await?;
    }
    context.store.delete(&package_path).await?;
    Ok(Ok(()))
}

pub(crate) async fn remove_version(
    context: &FunctionContext,
    account: &AccountId,
    version: &PackageVersion,
) -> Result<(), ApiError> {
    if version.package_type == PackageType::File {
        if let Some(digest) = version.file.as_ref().and_then(|f| f.digest.as_deref()) {
            context.store.delete_object(&package::file_content_path(account, &version.package, digest)).await?;
        }
        context.store.delete_object(&package::legacy_file_path(account, &version.package, &version.version)).await?;
    }
    context.store.delete(&package::version_path(account, &version.package, &version.version)).await?;
    Ok(())
}

/// `DELETE /v1/packages/{name}/versions/{version}`.
pub async fn delete_version(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let doc = load_version(&context, &caller.id, &name, &version).await?;
    remove_version(&context, &caller.id, &doc.value).await?;
    tracing::info!(account = %caller.id, package = %name, %version, "version deleted");
    Ok(StatusCode::NO_CONTENT)
}

//! Package and version routes.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, extract::Request};
use berth_shared::names::AccountId;
use berth_shared::package::{
    self, ClientTokenRecord, CreatePackageRequest, CreatePackageRules as _, CreateVersionRequest, MAX_FILE_BYTES,
    Package, PackageType, PackageVersion, PendingCheck, Tag, UpdatePackageRequest, UpdatePackageRules as _,
    VersionStatus, VersionSubmitted,
};
use berth_shared::platform::clock::rfc3339;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::digest::oci_digest;
use berth_shared::platform::events;
use berth_shared::platform::http::account::Account;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiPath, ApiQuery};
use berth_shared::platform::store::{StoreError, Versioned};
use serde::{Deserialize, Serialize, Serializer};

mod create;
mod remove;
mod upload;

pub use create::{create_package, create_version};
pub(crate) use create::{mark_pending, submit};
pub use remove::{delete_package, delete_version};
pub(crate) use remove::{remove_package, remove_version};
pub use upload::upload_file;

/// Largest page of a listing.
pub const MAX_PAGE_SIZE: usize = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: usize = 20;

pub(crate) fn now() -> String {
    rfc3339(unix_now())
}

/// Serializes `value` with its objects' keys in alphabetical order. Listings answered their
/// documents through `json!`, which sorts keys, while single documents keep their declaration
/// order; this keeps both as they were, byte for byte. The answer structs list their own fields
/// alphabetically for the same reason.
pub(crate) fn sorted_keys<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value).map_err(serde::ser::Error::custom)?.serialize(serializer)
}

/// `GET /v1/packages` answer: one page, and where the next one starts (`None` on the last).
#[derive(Serialize)]
pub struct PackagePage {
    next_page_token: Option<String>,
    #[serde(serialize_with = "sorted_keys")]
    packages: Vec<Package>,
}

/// `GET /v1/packages/{name}` answer: the package with every version, by number.
#[derive(Serialize)]
pub struct PackageView {
    #[serde(serialize_with = "sorted_keys")]
    package: Package,
    #[serde(serialize_with = "sorted_keys")]
    versions: Vec<PackageVersion>,
}

/// `GET /v1/packages/{name}/versions` answer, by number.
#[derive(Serialize)]
pub struct VersionList {
    #[serde(serialize_with = "sorted_keys")]
    versions: Vec<PackageVersion>,
}

/// Checks a name from the path, so a bad one is a 400 rather than a 404 or a store error.
fn path_names(name: &str, version: Option<&str>) -> Result<(), ApiError> {
    package::validate_package_name("name", name)?;
    if let Some(version) = version {
        package::validate_version_name("version", version)?;
    }
    Ok(())
}

/// A package of the caller, or 404 (the name checked first).
pub(crate) async fn load_package(
    context: &FunctionContext,
    account: &AccountId,
    name: &str,
) -> Result<Versioned<Package>, ApiError> {
    path_names(name, None)?;
    context
        .store
        .get::<Package>(&package::package_path(account, name))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("package '{name}'")))
}

/// A version of a package of the caller, or 404 (the names checked first).
async fn load_version(
    context: &FunctionContext,
    account: &AccountId,
    name: &str,
    version: &str,
) -> Result<Versioned<PackageVersion>, ApiError> {
    path_names(name, Some(version))?;
    context
        .store
        .get::<PackageVersion>(&package::version_path(account, name, version))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("version '{version}' of package '{name}'")))
}

/// Query of `GET /v1/packages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(rename = "type")]
    package_type: Option<PackageType>,
    resource_group: Option<String>,
    tag_key: Option<String>,
    tag_value: Option<String>,
    page_size: Option<usize>,
    page_token: Option<String>,
}

fn list_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    // Through serde_json, so a bad value names its parameter like a body field would.
    let mut object = serde_json::Map::new();
    for (key, value) in pairs {
        let value = if key == "page_size" {
            value.parse::<u64>().map(serde_json::Value::from).map_err(|_| {
                ApiError::invalid("page_size", "invalid_field", format!("page_size must be 1 to {MAX_PAGE_SIZE}"))
            })?
        } else {
            serde_json::Value::String(value.clone())
        };
        object.insert(key.clone(), value);
    }
    let query: ListQuery =
        berth_shared::platform::http::request::parse_json(&serde_json::to_vec(&object).unwrap_or_default())?;
    if let Some(size) = query.page_size
        && !(1..=MAX_PAGE_SIZE).contains(&size)
    {
        return Err(ApiError::invalid("page_size", "out_of_range", format!("page_size must be 1 to {MAX_PAGE_SIZE}")));
    }
    Ok(query)
}

/// `GET /v1/packages`: the caller's packages, by name, filtered, a page at a time.
pub async fn list_packages(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<PackagePage>, ApiError> {
    let query = list_query(&pairs)?;
    let size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    let paths = context.store.list_paths(&package::packages_prefix(&caller.id)).await?;
    let mut names: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.strip_suffix("/package.json"))
        .filter_map(|p| p.rsplit('/').next())
        .filter(|name| query.page_token.as_deref().is_none_or(|after| *name > after))
        .collect();
    names.sort_unstable();
    let mut items = Vec::new();
    let mut next = None;
    for name in names {
        let Some(doc) = context.store.get::<Package>(&package::package_path(&caller.id, name)).await? else { continue };
        let p = doc.value;
        let keep = query.package_type.is_none_or(|t| t == p.package_type)
            && query.resource_group.as_deref().is_none_or(|g| g == p.resource_group)
            && query.tag_key.as_deref().is_none_or(|k| {
                p.tags.iter().any(|t| t.key == k && query.tag_value.as_deref().is_none_or(|v| v == t.value))
            });
        if !keep {
            continue;
        }
        if items.len() == size {
            next = items.last().map(|last: &Package| last.name.clone());
            break;
        }
        items.push(p);
    }
    Ok(Json(PackagePage { next_page_token: next, packages: items }))
}

/// `GET /v1/packages/{name}`: the package and its versions.
pub async fn get_package(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PackageView>, ApiError> {
    let package = load_package(&context, &caller.id, &name).await?.value;
    let mut versions = versions_of(&context, &caller.id, &name).await?;
    crate::signing_keys::mark_untrusted(&context, &caller.id, &mut versions).await?;
    Ok(Json(PackageView { package, versions }))
}

pub(crate) async fn versions_of(
    context: &FunctionContext,
    account: &AccountId,
    name: &str,
) -> Result<Vec<PackageVersion>, ApiError> {
    let mut versions: Vec<PackageVersion> = context
        .store
        .list::<PackageVersion>(&package::versions_prefix(account, name))
        .await?
        .into_iter()
        .map(|(_, doc)| doc.value)
        .collect();
    versions.sort_by_key(|v| v.number);
    Ok(versions)
}

/// `GET /v1/packages/{name}/versions`.
pub async fn list_versions(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<VersionList>, ApiError> {
    load_package(&context, &caller.id, &name).await?;
    let mut versions = versions_of(&context, &caller.id, &name).await?;
    crate::signing_keys::mark_untrusted(&context, &caller.id, &mut versions).await?;
    Ok(Json(VersionList { versions }))
}

/// `GET /v1/packages/{name}/versions/{version}`.
pub async fn get_version(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Json<PackageVersion>, ApiError> {
    let mut version = load_version(&context, &caller.id, &name, &version).await?.value;
    crate::signing_keys::mark_untrusted(&context, &caller.id, std::slice::from_mut(&mut version)).await?;
    Ok(Json(version))
}

/// `PATCH /v1/packages/{name}`: description, tags, require_signature.
pub async fn update_package(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<UpdatePackageRequest>,
) -> Result<Json<Package>, ApiError> {
    path_names(&name, None)?;
    let now = now();
    let updated = context
        .store
        .modify(&package::package_path(&caller.id, &name), |package: Option<Package>| {
            let mut package = package.ok_or_else(|| ApiError::NotFound(format!("package '{name}'")))?;
            request.apply(&mut package, &now)?;
            Ok::<_, ApiError>(package)
        })
        .await?;
    Ok(Json(updated.value))
}

//! Package and version routes.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, extract::Request};
use berth_shared::names::AccountId;
use berth_shared::package::{
    self, ClientTokenRecord, CreatePackageRequest, CreateVersionRequest, MAX_FILE_BYTES, Package, PackageType,
    PackageVersion, PendingCheck, Tag, UpdatePackageRequest, VersionStatus, VersionSubmitted,
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

/// Largest page of a listing.
pub const MAX_PAGE_SIZE: usize = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: usize = 20;

pub(crate) fn now() -> String {
    rfc3339(unix_now())
}

/// A package with its version, as create answers.
#[derive(Serialize)]
pub struct Created {
    package: Package,
    version: PackageVersion,
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

/// What a `client_token` record remembers of a `POST /v1/packages`, to tell a retry from a
/// different request. Its digest is stored: the fields (alphabetical) and their forms must not
/// change, or retries of requests made before would be refused as `client_token_reused`.
#[derive(Serialize)]
struct CreatePackageFingerprint<'a> {
    description: &'a str,
    file: Option<&'a str>,
    name: &'a str,
    resource_group: Option<&'a str>,
    tags: &'a [Tag],
    #[serde(rename = "type")]
    package_type: PackageType,
    /// `repository:tag` of each image.
    version: Vec<String>,
    version_name: &'a str,
}

/// What a `client_token` record remembers of a `POST /v1/packages/{name}/versions`; stored as
/// a digest like [`CreatePackageFingerprint`].
#[derive(Serialize)]
struct CreateVersionFingerprint<'a> {
    file: Option<&'a str>,
    /// `repository:tag` of each image.
    images: Vec<String>,
    package: &'a str,
    version: &'a str,
}

/// `repository:tag` of each image of a version.
fn image_names(version: &PackageVersion) -> Vec<String> {
    version.images.iter().map(|i| format!("{}:{}", i.repository, i.tag)).collect()
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

fn request_digest(value: &impl Serialize) -> String {
    oci_digest(&serde_json::to_vec(value).unwrap_or_default())
}

/// Claims a `client_token` for a request. `Ok(None)`: first use, go on. `Ok(Some(record))`:
/// a retry of the same request; answer with what the record names.
async fn claim_client_token(
    context: &FunctionContext,
    account: &AccountId,
    token: &str,
    record: ClientTokenRecord,
) -> Result<Option<ClientTokenRecord>, ApiError> {
    let path = package::client_token_path(account, token);
    match context.store.create(&path, &record).await {
        Ok(_) => Ok(None),
        Err(StoreError::AlreadyExists(_)) => {
            let existing = context
                .store
                .get::<ClientTokenRecord>(&path)
                .await?
                .ok_or_else(|| ApiError::Internal("client token vanished".into()))?
                .value;
            if existing.operation != record.operation || existing.request_digest != record.request_digest {
                return Err(ApiError::Conflict {
                    code: "client_token_reused",
                    message: "client_token was already used for a different request".into(),
                });
            }
            Ok(Some(existing))
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks a version's publish check pending. Written before the version, so that whatever
/// stops this request after the version's write leaves the sweep a marker to find.
pub(crate) async fn mark_pending(
    context: &FunctionContext,
    account: &AccountId,
    version: &PackageVersion,
) -> Result<(), ApiError> {
    if version.package_type == PackageType::File {
        return Ok(());
    }
    let marker = PendingCheck {
        account: account.clone(),
        package: version.package.clone(),
        version: version.version.clone(),
        submitted_at: unix_now(),
        resubmitted: 0,
    };
    context.store.put(&package::pending_check_path(account, &version.package, &version.version), &marker).await?;
    Ok(())
}

pub(crate) async fn submit(
    context: &FunctionContext,
    account: &AccountId,
    version: &PackageVersion,
) -> Result<(), ApiError> {
    if version.package_type == PackageType::File {
        // A file version is settled by its upload, not by a registry check.
        return Ok(());
    }
    let submitted = VersionSubmitted { package: version.package.clone(), version: version.version.clone() };
    events::send(context.queue.as_ref(), Some(account.clone()), &submitted).await?;
    Ok(())
}

/// Creates a version document; a replay (same client token) accepts an identical one that is
/// already there and re-submits it if it is still `Creating` (the first attempt may have
/// stopped before its event was sent; the check is idempotent).
async fn create_version_document(
    context: &FunctionContext,
    account: &AccountId,
    version: &PackageVersion,
    replay: bool,
) -> Result<PackageVersion, ApiError> {
    let path = package::version_path(account, &version.package, &version.version);
    // A marker left by a request refused below points at a settled or absent version; the
    // sweep removes it.
    mark_pending(context, account, version).await?;
    match context.store.create(&path, version).await {
        Ok(_) => {
            submit(context, account, version).await?;
            Ok(version.clone())
        }
        Err(StoreError::AlreadyExists(_)) if replay => {
            let stored =
                context.store.get::<PackageVersion>(&path).await?.ok_or_else(|| ApiError::NotFound(path.clone()))?;
            if stored.value.status == VersionStatus::Creating {
                submit(context, account, &stored.value).await?;
            }
            Ok(stored.value)
        }
        Err(StoreError::AlreadyExists(_)) => Err(ApiError::Conflict {
            code: "already_exists",
            message: format!("version '{}' of package '{}' already exists", version.version, version.package),
        }),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/packages`: a package with its first version.
pub async fn create_package(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiJson(request): ApiJson<CreatePackageRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let valid = request.validate(&caller.id, &now())?;
    let mut replay = false;
    if let Some(token) = &request.client_token {
        let record = ClientTokenRecord {
            operation: "create_package".into(),
            request_digest: request_digest(&CreatePackageFingerprint {
                description: &request.description,
                file: valid.version.file.as_ref().map(|f| f.file_name.as_str()),
                name: &request.name,
                resource_group: request.resource_group.as_deref(),
                tags: &request.tags,
                package_type: request.package_type,
                version: image_names(&valid.version),
                version_name: &valid.version.version,
            }),
            package: valid.package.name.clone(),
            version: valid.version.version.clone(),
        };
        replay = claim_client_token(&context, &caller.id, token, record).await?.is_some();
    }
    let package_path = package::package_path(&caller.id, &valid.package.name);
    let package = match context.store.create(&package_path, &valid.package).await {
        Ok(_) => valid.package.clone(),
        Err(StoreError::AlreadyExists(_)) if replay => {
            context.store.get::<Package>(&package_path).await?.ok_or(ApiError::NotFound(package_path))?.value
        }
        Err(StoreError::AlreadyExists(_)) => {
            // The name was taken by another request: release the token, so a retry with it
            // is refused again instead of answering with a package this request did not make.
            if let Some(token) = &request.client_token {
                context.store.delete(&package::client_token_path(&caller.id, token)).await?;
            }
            return Err(ApiError::Conflict {
                code: "already_exists",
                message: format!("package '{}' already exists", valid.package.name),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let version = create_version_document(&context, &caller.id, &valid.version, replay).await?;
    tracing::info!(account = %caller.id, package = %package.name, version = %version.version, replay, "package created");
    Ok((StatusCode::CREATED, Json(Created { package, version })))
}

/// `POST /v1/packages/{name}/versions`: a new version.
pub async fn create_version(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<CreateVersionRequest>,
) -> Result<(StatusCode, Json<PackageVersion>), ApiError> {
    let current = load_package(&context, &caller.id, &name).await?;
    let package_path = package::package_path(&caller.id, &name);
    let now = now();
    // Validate before numbering, so a bad request does not use up a number.
    let draft =
        package::validate_version("", &request.version, &name, current.value.package_type, 0, &caller.id, &now)?;
    let mut replay = false;
    if let Some(token) = &request.client_token {
        package::validate_client_token("client_token", token)?;
        let record = ClientTokenRecord {
            operation: "create_version".into(),
            request_digest: request_digest(&CreateVersionFingerprint {
                file: draft.file.as_ref().map(|f| f.file_name.as_str()),
                images: image_names(&draft),
                package: &name,
                version: &draft.version,
            }),
            package: name.clone(),
            version: draft.version.clone(),
        };
        replay = claim_client_token(&context, &caller.id, token, record).await?.is_some();
    }
    let version_path = package::version_path(&caller.id, &name, &draft.version);
    if let Some(existing) = context.store.get::<PackageVersion>(&version_path).await? {
        if replay {
            let existing = existing.value;
            if existing.status == VersionStatus::Creating {
                submit(&context, &caller.id, &existing).await?;
            }
            return Ok((StatusCode::CREATED, Json(existing)));
        }
        if let Some(token) = &request.client_token {
            context.store.delete(&package::client_token_path(&caller.id, token)).await?;
        }
        return Err(ApiError::Conflict {
            code: "already_exists",
            message: format!("version '{}' of package '{name}' already exists", draft.version),
        });
    }
    let numbered = context
        .store
        .modify(&package_path, |package: Option<Package>| {
            let mut package = package.ok_or_else(|| ApiError::NotFound(format!("package '{name}'")))?;
            package.next_version_number += 1;
            package.updated_at = now.clone();
            Ok::<_, ApiError>(package)
        })
        .await?;
    let mut version = draft;
    version.number = numbered.value.next_version_number - 1;
    let version = create_version_document(&context, &caller.id, &version, replay).await?;
    tracing::info!(account = %caller.id, package = %name, version = %version.version, number = version.number, "version created");
    Ok((StatusCode::CREATED, Json(version)))
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

/// `PUT /v1/packages/{name}/versions/{version}/file`: the bytes of a File version. The upload
/// settles the version as `Available`; it is immutable after.
pub async fn upload_file(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((name, version)): ApiPath<(String, String)>,
    request: Request<Body>,
) -> Result<Json<PackageVersion>, ApiError> {
    let current = load_version(&context, &caller.id, &name, &version).await?;
    let version_path = package::version_path(&caller.id, &name, &version);
    if current.value.package_type != PackageType::File {
        return Err(ApiError::invalid("body", "not_a_file_package", format!("package '{name}' is not a File package")));
    }
    if current.value.status != VersionStatus::Creating {
        return Err(ApiError::Conflict {
            code: "immutable",
            message: format!("version '{version}' is {:?}; versions cannot change once settled", current.value.status),
        });
    }
    let bytes = berth_shared::platform::http::request::read_body(request.into_body(), MAX_FILE_BYTES).await?;
    let digest = oci_digest(&bytes);
    let size = bytes.len() as u64;
    let content_path = package::file_content_path(&caller.id, &name, &digest);
    context.store.put_object(&content_path, bytes).await?;
    let mut settled = current.value.clone();
    if let Some(file) = settled.file.as_mut() {
        file.size = Some(size);
        file.digest = Some(digest.clone());
    }
    settled.status = VersionStatus::Available;
    settled.updated_at = now();
    match context.store.update(&version_path, &settled, &current.version).await {
        Ok(_) => Ok(Json(settled)),
        Err(StoreError::Conflict(_)) => {
            // Another upload won the swap: drop these bytes unless they are the winner's too.
            let winner = load_version(&context, &caller.id, &name, &version).await.ok();
            let kept = winner.as_ref().and_then(|w| w.value.file.as_ref()).and_then(|f| f.digest.as_deref());
            if kept != Some(digest.as_str()) {
                context.store.delete_object(&content_path).await?;
            }
            Err(ApiError::Conflict {
                code: "concurrent_update",
                message: format!(
                    "version '{version}' changed during the upload; get it and retry if it is still Creating"
                ),
            })
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Records of client tokens hold these digests: they are those of the `json!` objects the
    /// fingerprints replaced (keys sorted, compact), so retries of earlier requests still match.
    #[test]
    fn fingerprints_digest_as_the_json_objects_they_replaced() {
        let tags = vec![Tag { key: "team".into(), value: "web".into() }];
        let package = CreatePackageFingerprint {
            description: "a web front end",
            file: None,
            name: "web",
            resource_group: Some("rg"),
            tags: &tags,
            package_type: PackageType::ContainerImage,
            version: vec!["acme/web:v1".into(), "acme/api:v1".into()],
            version_name: "v_1",
        };
        let expected = json!({
            "name": "web", "description": "a web front end", "resource_group": "rg", "tags": tags,
            "type": PackageType::ContainerImage, "version": ["acme/web:v1", "acme/api:v1"], "version_name": "v_1",
            "file": None::<&String>,
        });
        assert_eq!(serde_json::to_vec(&package).unwrap(), serde_json::to_vec(&expected).unwrap());
        let file = "app.tar.gz".to_owned();
        let package = CreatePackageFingerprint { file: Some(&file), resource_group: None, ..package };
        let expected = json!({
            "name": "web", "description": "a web front end", "resource_group": None::<String>, "tags": tags,
            "type": PackageType::ContainerImage, "version": ["acme/web:v1", "acme/api:v1"], "version_name": "v_1",
            "file": Some(&file),
        });
        assert_eq!(request_digest(&package), request_digest(&expected));
        let version =
            CreateVersionFingerprint { file: None, images: vec!["acme/web:v2".into()], package: "web", version: "v_2" };
        let expected = json!({
            "package": "web", "version": "v_2", "images": ["acme/web:v2"], "file": None::<&String>,
        });
        assert_eq!(request_digest(&version), request_digest(&expected));
    }
}

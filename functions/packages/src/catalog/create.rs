//! Creating packages and versions: `client_token` idempotence, the version document, and the
//! publish check it starts.

use super::*;

/// A package with its version, as create answers.
#[derive(Serialize)]
pub struct Created {
    package: Package,
    version: PackageVersion,
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
    // Content of another type than the stored package's is a conflict with that package, not
    // a malformed request (the same body suits a package of the other type).
    let draft = package::validate_version("", &request.version, &name, current.value.package_type, 0, &caller.id, &now)
        .map_err(|refused| match refused {
            ApiError::Invalid { code: "not_for_type", message, .. } => {
                ApiError::Conflict { code: "not_for_type", message }
            }
            other => other,
        })?;
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

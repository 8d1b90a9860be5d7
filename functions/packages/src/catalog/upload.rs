//! A file package version's file: the one upload.

use super::*;

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
        // The request is well formed; the package it names is of another type (its state).
        return Err(ApiError::Conflict {
            code: "not_a_file_package",
            message: format!("package '{name}' is not a File package"),
        });
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

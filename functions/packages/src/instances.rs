//! Service instance routes: create (pinning the versions the service resolves to now), get,
//! list, suspend, resume, delete, and rotate the instance's pull credential.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_shared::credentials::instance_credential::{self, IssuedCredential};
use berth_shared::names::AccountId;
use berth_shared::package::{PackageType, VersionStatus};
use berth_shared::platform::clock::{rfc3339, unix_now};
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::account::Account;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiPath, ApiQuery};
use berth_shared::platform::slots::{self, Holder};
use berth_shared::service::instance::{
    CreateInstanceRequest, Instance, InstancePulls, InstanceState, InstanceView, PinnedImage, PinnedVersion,
    instance_path, instances_prefix, pulls_path, slot_holder, slots_prefix, validate_instance_name,
};
use berth_shared::service::{self, Service, validate_service_name};
use serde::{Deserialize, Serialize};

use crate::catalog::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// `POST /v1/services/{id}/instances` answer: the instance and its first credential (shown once).
#[derive(Serialize)]
pub struct CreatedInstance {
    credential: IssuedCredential,
    instance: InstanceView,
}

/// `POST .../instances/{name}/credentials` answer: the new credential (shown once).
#[derive(Serialize)]
pub struct RotatedCredential {
    credential: IssuedCredential,
}

/// The instance, after checking both names (they become store paths).
pub async fn load_instance(
    context: &FunctionContext,
    account: &AccountId,
    service_id: &str,
    name: &str,
) -> Result<Instance, ApiError> {
    validate_service_name(service_id)?;
    validate_instance_name("name", name)?;
    Ok(context
        .store
        .get::<Instance>(&instance_path(account, service_id, name))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("instance '{name}' of service '{service_id}'")))?
        .value)
}

async fn view(context: &FunctionContext, account: &AccountId, instance: Instance) -> Result<InstanceView, ApiError> {
    let pulls = context
        .store
        .get::<InstancePulls>(&pulls_path(account, &instance.uid))
        .await?
        .map(|d| d.value)
        .unwrap_or_default();
    Ok(InstanceView::new(instance, pulls, unix_now()))
}

/// Pins every relation of `service` to the version it resolves to now, which must be
/// `Available`; names every one that does not at once.
async fn pin(
    context: &FunctionContext,
    account: &AccountId,
    service: &Service,
) -> Result<(BTreeMap<String, PinnedVersion>, Vec<berth_shared::names::RepositoryName>), ApiError> {
    let mut pins = BTreeMap::new();
    let mut repositories = BTreeSet::new();
    let mut missing = Vec::new();
    let ring = berth_shared::signing::load(&context.store, account).await?;
    for (key, target) in &service.relations {
        match service::resolve(&context.store, account, target).await? {
            Some(version) if version.status == VersionStatus::Available => {
                // A digest whose signing key was revoked since its check is not pinned.
                berth_shared::signing::refuse_untrusted(&ring, &version)?;
                if matches!(version.package_type, PackageType::ContainerImage | PackageType::HelmChart) {
                    repositories.extend(version.images.iter().map(|i| i.repository.clone()));
                }
                let images = version
                    .images
                    .iter()
                    .map(|i| PinnedImage {
                        repository: i.repository.clone(),
                        tag: i.tag.clone(),
                        digest: i.digest.clone(),
                    })
                    .collect();
                pins.insert(
                    key.clone(),
                    PinnedVersion {
                        package: version.package,
                        version: version.version,
                        number: version.number,
                        images,
                    },
                );
            }
            Some(version) => missing.push(format!(
                "{key}: version {} of package '{}' is {:?}, not Available",
                version.version, target.package, version.status
            )),
            None => missing.push(format!("{key}: package '{}' has no version {:?}", target.package, target.version)),
        }
    }
    if !missing.is_empty() {
        // The service is well formed; its packages have no version to pin yet (their state).
        return Err(ApiError::Conflict {
            code: "relations_unresolved",
            message: format!("relations: {}", missing.join("; ")),
        });
    }
    Ok((pins, repositories.into_iter().collect()))
}

fn too_many(service: &str, limit: usize) -> ApiError {
    ApiError::invalid(
        "name",
        "too_many_instances",
        format!("service '{service}' has {limit} instances, the most allowed; delete one first"),
    )
}

/// `POST /v1/services/{id}/instances`: an instance of the service for one customer, with the
/// versions its relations resolve to now and its first pull credential.
pub async fn create_instance(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<CreateInstanceRequest>,
) -> Result<(StatusCode, Json<CreatedInstance>), ApiError> {
    validate_service_name(&id)?;
    request.validate()?;
    let service = crate::services::load(&context, &caller.id, &id).await?;
    let limit = context.config.max_instances_per_service as usize;
    let existing = context.store.list_paths(&instances_prefix(&caller.id, &id)).await?;
    if existing.len() >= limit {
        return Err(too_many(&id, limit));
    }
    let (pins, repositories) = pin(&context, &caller.id, &service).await?;
    let now = unix_now();
    let uid = uuid::Uuid::new_v4().to_string();
    // The listing above refuses cheaply; the slot decides, so racing creates never pass the limit.
    let holder = slot_holder(&request.name, &uid);
    let prefix = slots_prefix(&caller.id, &id);
    let slot = slots::take(&context.store, &prefix, limit, slots::start_for(&holder, limit), &holder, now, |held| {
        let (store, account, service) = (context.store.clone(), caller.id.clone(), id.clone());
        async move {
            let Some((name, uid)) = held.split_once('/') else { return Ok(Holder::Gone) };
            Ok(match store.get::<Instance>(&instance_path(&account, &service, name)).await? {
                None => Holder::Missing,
                Some(instance) if instance.value.uid == uid => Holder::Counts,
                Some(_) => Holder::Gone,
            })
        }
    })
    .await?
    .ok_or_else(|| too_many(&id, limit))?;
    let mut instance = Instance {
        slot: Some(slot),
        uid,
        service: id.clone(),
        name: request.name.clone(),
        state: InstanceState::Active,
        pins,
        repositories,
        credential_ttl_seconds: request.credential_ttl_seconds,
        credentials: Vec::new(),
        created_at: rfc3339(now),
        updated_at: rfc3339(now),
    };
    let (credential, stored) = instance_credential::mint(
        &context.config.registry.host,
        &instance.reference(&caller.id),
        request.credential_ttl_seconds,
        now,
    );
    instance.add_credential(stored, false, now);
    if let Err(e) = context.store.create(&instance_path(&caller.id, &id, &request.name), &instance).await {
        slots::free(&context.store, &prefix, slot, &holder, now).await?;
        return Err(match e {
            berth_shared::platform::store::StoreError::AlreadyExists(_) => ApiError::Conflict {
                code: "already_exists",
                message: format!("service '{id}' already has an instance '{}'", request.name),
            },
            other => other.into(),
        });
    }
    tracing::info!(account = %caller.id, service = %id, instance = %request.name, repositories = instance.repositories.len(), "instance created");
    let instance = InstanceView::new(instance, InstancePulls::default(), now);
    Ok((StatusCode::CREATED, Json(CreatedInstance { credential, instance })))
}

/// Query of `GET /v1/services/{id}/instances`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    page_size: Option<usize>,
    page_token: Option<String>,
}

/// `GET /v1/services/{id}/instances` answer.
#[derive(Serialize)]
pub struct InstancePage {
    instances: Vec<InstanceSummary>,
    next_page_token: Option<String>,
}

/// An instance in a listing: no credentials at all.
#[derive(Serialize)]
pub struct InstanceSummary {
    name: String,
    state: InstanceState,
    repositories: usize,
    credentials: usize,
    created_at: String,
}

/// `GET /v1/services/{id}/instances`: by name, a page at a time.
pub async fn list_instances(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<InstancePage>, ApiError> {
    let size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(ApiError::invalid("page_size", "out_of_range", format!("page_size must be 1 to {MAX_PAGE_SIZE}")));
    }
    crate::services::load(&context, &caller.id, &id).await?;
    let paths = context.store.list_paths(&instances_prefix(&caller.id, &id)).await?;
    let mut names: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.strip_suffix(".json"))
        .filter_map(|p| p.rsplit('/').next())
        .filter(|name| query.page_token.as_deref().is_none_or(|after| *name > after))
        .collect();
    names.sort_unstable();
    let now = unix_now();
    let mut items = Vec::new();
    let mut next = None;
    for name in names {
        let Some(doc) = context.store.get::<Instance>(&instance_path(&caller.id, &id, name)).await? else { continue };
        if items.len() == size {
            next = items.last().map(|last: &InstanceSummary| last.name.clone());
            break;
        }
        let i = doc.value;
        items.push(InstanceSummary {
            credentials: i.credentials.iter().filter(|c| c.is_live(now)).count(),
            repositories: i.repositories.len(),
            name: i.name,
            state: i.state,
            created_at: i.created_at,
        });
    }
    Ok(Json(InstancePage { instances: items, next_page_token: next }))
}

/// `GET /v1/services/{id}/instances/{name}`: the instance, its credentials (ids and times)
/// and who pulled what.
pub async fn get_instance(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    let instance = load_instance(&context, &caller.id, &id, &name).await?;
    Ok(Json(view(&context, &caller.id, instance).await?))
}

async fn set_state(
    context: &FunctionContext,
    account: &AccountId,
    id: &str,
    name: &str,
    state: InstanceState,
) -> Result<InstanceView, ApiError> {
    load_instance(context, account, id, name).await?;
    let written = context
        .store
        .modify(&instance_path(account, id, name), |current: Option<Instance>| {
            let mut instance = current.ok_or_else(|| ApiError::NotFound(format!("instance '{name}'")))?;
            if instance.state != state {
                instance.state = state;
                instance.updated_at = rfc3339(unix_now());
            }
            Ok::<_, ApiError>(instance)
        })
        .await?;
    tracing::info!(account = %account, service = %id, instance = %name, state = ?state, "instance state set");
    view(context, account, written.value).await
}

/// `POST /v1/services/{id}/instances/{name}/suspend`: every credential refused from now on.
pub async fn suspend_instance(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(set_state(&context, &caller.id, &id, &name, InstanceState::Suspended).await?))
}

/// `POST /v1/services/{id}/instances/{name}/resume`: its live credentials accepted again.
pub async fn resume_instance(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(set_state(&context, &caller.id, &id, &name, InstanceState::Active).await?))
}

/// `DELETE /v1/services/{id}/instances/{name}`: the instance and its pull counts; its
/// credentials are refused at once.
pub async fn delete_instance(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let instance = load_instance(&context, &caller.id, &id, &name).await?;
    context.store.delete(&instance_path(&caller.id, &id, &name)).await?;
    context.store.delete(&pulls_path(&caller.id, &instance.uid)).await?;
    if let Some(slot) = instance.slot {
        let holder = slot_holder(&name, &instance.uid);
        slots::free(&context.store, &slots_prefix(&caller.id, &id), slot, &holder, unix_now()).await?;
    }
    tracing::info!(account = %caller.id, service = %id, instance = %name, "instance deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/services/{id}/instances/{name}/credentials`: a new credential; every other one
/// of the instance is revoked at once.
pub async fn rotate_credential(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<RotatedCredential>), ApiError> {
    let instance = load_instance(&context, &caller.id, &id, &name).await?;
    let now = unix_now();
    let (credential, stored) = instance_credential::mint(
        &context.config.registry.host,
        &instance.reference(&caller.id),
        instance.credential_ttl_seconds,
        now,
    );
    context
        .store
        .modify(&instance_path(&caller.id, &id, &name), |current: Option<Instance>| {
            let mut instance = current.ok_or_else(|| ApiError::NotFound(format!("instance '{name}'")))?;
            instance.add_credential(stored.clone(), true, now);
            Ok::<_, ApiError>(instance)
        })
        .await?;
    tracing::info!(account = %caller.id, service = %id, instance = %name, id = %credential.id, "instance credential rotated");
    Ok((StatusCode::CREATED, Json(RotatedCredential { credential })))
}

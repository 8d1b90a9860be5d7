//! Service routes: define or import a service, list its associations, and which services use
//! a package.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_shared::names::AccountId;
use berth_shared::package::{self, Package, PackageVersion, VersionStatus};
use berth_shared::platform::clock::rfc3339;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::account::Account;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiPath};
use berth_shared::service::{
    self, ArtifactRef, PackageUser, PutServiceRequest, Service, ServicePlan, VersionSelector, package_type_for,
    validate_service_name,
};
use serde::Serialize;

/// Checks every relation of a plan against the store, naming everything missing at once.
/// A package or version that does not exist is a 404 naming every absent one; a package of
/// another kind than its placeholder conflicts with what is stored (409).
async fn check_relations(context: &FunctionContext, account: &AccountId, plan: &ServicePlan) -> Result<(), ApiError> {
    let mut absent = Vec::new();
    let mut missing = Vec::new();
    for (key, relation) in &plan.relations {
        let target = &relation.target;
        let found = context.store.get::<Package>(&package::package_path(account, &target.package)).await?;
        let Some(found) = found.filter(|p| !p.value.deleting) else {
            absent.push(format!("package '{}' ({key})", target.package));
            continue;
        };
        if package_type_for(relation.kind) != Some(found.value.package_type) {
            missing.push(format!(
                "{key}: package '{}' is a {:?} package, not what {} needs",
                target.package,
                found.value.package_type,
                relation.kind.as_str()
            ));
            continue;
        }
        if service::resolve(&context.store, account, target).await?.is_none() {
            absent.push(format!("version {:?} of package '{}' ({key})", target.version, target.package));
        }
    }
    if !absent.is_empty() {
        return Err(ApiError::NotFound(absent.join(", ")));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::Conflict { code: "relations_unresolved", message: format!("relations: {}", missing.join("; ")) })
}

/// `PUT /v1/services/{id}`: define or redefine a service from a `config.yaml` and/or explicit
/// templates and relations.
pub async fn put_service(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<PutServiceRequest>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    validate_service_name(&id)?;
    // A config.yaml of up to 1 MiB: parsed off the async workers.
    let plan = berth_shared::platform::work::off_workers(move || request.plan()).await??;
    let (created, service) = define_service(&context, &caller.id, &id, &plan).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(service)))
}

/// Checks a plan's relations and writes the service it defines, with its marks on the packages
/// it uses (stale marks removed). Answers whether it was created, and the service.
pub(crate) async fn define_service(
    context: &FunctionContext,
    account: &AccountId,
    id: &str,
    plan: &ServicePlan,
) -> Result<(bool, Service), ApiError> {
    let path = service::service_path(account, id);
    // The markers first, the packages' check second; a package delete does the reverse (it
    // marks the package deleting, then looks for markers), so of a service defined and a
    // package deleted at once, one always sees the other and no service names a deleted package.
    let wanted: BTreeSet<String> = plan.relations.values().map(|r| r.target.package.clone()).collect();
    let before = context.store.get::<Service>(&path).await?.map(|s| s.value);
    let had: BTreeSet<String> = before.iter().flat_map(|s| s.relations.values().map(|r| r.package.clone())).collect();
    for name in &wanted {
        context.store.put(&package::user_path(account, name, id), &PackageUser { service: id.to_owned() }).await?;
    }
    if let Err(refused) = check_relations(context, account, plan).await {
        for name in wanted.difference(&had) {
            context.store.delete(&package::user_path(account, name, id)).await?;
        }
        return Err(refused);
    }
    let now = rfc3339(unix_now());
    let mut previous_packages = BTreeSet::new();
    let mut created = true;
    let written = context
        .store
        .modify(&path, |current: Option<Service>| {
            created = current.is_none();
            previous_packages = current.iter().flat_map(|s| s.relations.values().map(|r| r.package.clone())).collect();
            Ok::<_, ApiError>(Service {
                name: id.to_owned(),
                templates: plan.templates.clone(),
                relations: plan.relations.iter().map(|(k, r)| (k.clone(), r.target.clone())).collect(),
                ignored: plan.ignored.clone(),
                created_at: current.as_ref().map_or_else(|| now.clone(), |s| s.created_at.clone()),
                updated_at: now.clone(),
            })
        })
        .await?;
    let service = written.value;
    for stale in previous_packages.difference(&wanted) {
        context.store.delete(&package::user_path(account, stale, id)).await?;
    }
    tracing::info!(account = %account, service = %id, relations = service.relations.len(), templates = service.templates.len(), "service defined");
    Ok((created, service))
}

pub(crate) async fn load(context: &FunctionContext, account: &AccountId, id: &str) -> Result<Service, ApiError> {
    validate_service_name(id)?;
    Ok(context
        .store
        .get::<Service>(&service::service_path(account, id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("service '{id}'")))?
        .value)
}

/// `GET /v1/services/{id}`.
pub async fn get_service(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(load(&context, &caller.id, &id).await?))
}

/// `GET /v1/services` answer.
#[derive(Serialize)]
pub struct ServiceList {
    services: Vec<ServiceSummary>,
}

/// A service in a listing: template names and a relation count, not the bodies (a service
/// holds up to 3 MiB of templates).
#[derive(Serialize)]
pub struct ServiceSummary {
    name: String,
    relations: usize,
    templates: Vec<String>,
    updated_at: String,
}

/// `GET /v1/services`: names and counts.
pub async fn list_services(
    State(context): State<FunctionContext>,
    caller: Account,
) -> Result<Json<ServiceList>, ApiError> {
    let services = context.store.list::<Service>(&service::services_prefix(&caller.id)).await?;
    let services = services
        .into_iter()
        .map(|(_, doc)| {
            let s = doc.value;
            ServiceSummary {
                name: s.name,
                relations: s.relations.len(),
                templates: s.templates.into_iter().map(|t| t.name).collect(),
                updated_at: s.updated_at,
            }
        })
        .collect();
    Ok(Json(ServiceList { services }))
}

/// `DELETE /v1/services/{id}`: the service and its marks on the packages it used.
pub async fn delete_service(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let service = load(&context, &caller.id, &id).await?;
    context.store.delete(&service::service_path(&caller.id, &id)).await?;
    let packages: BTreeSet<&String> = service.relations.values().map(|r| &r.package).collect();
    for name in packages {
        context.store.delete(&package::user_path(&caller.id, name, &id)).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/services/{id}/associations` answer.
#[derive(Serialize)]
pub struct Associations {
    associations: Vec<Association>,
    service: String,
}

/// One identifier of a service: the package and selector it names, and the version that
/// selector resolves to now (`None`: none does, and a render would fail on it).
#[derive(Serialize)]
pub struct Association {
    /// The placeholder as templates write it: `{{ computenest::acrimage::x }}`.
    identifier: String,
    package: String,
    selector: VersionSelector,
    version: Option<ResolvedVersion>,
}

/// The version a selector resolves to, without its images.
#[derive(Serialize)]
pub struct ResolvedVersion {
    name: String,
    number: u32,
    status: VersionStatus,
}

fn association(key: &str, target: &ArtifactRef, version: Option<&PackageVersion>) -> Association {
    Association {
        identifier: format!("{{{{ {key} }}}}"),
        package: target.package.clone(),
        selector: target.version.clone(),
        version: version.map(|v| ResolvedVersion { name: v.version.clone(), number: v.number, status: v.status }),
    }
}

/// `GET /v1/services/{id}/associations`: each identifier, its package and the version it
/// resolves to now.
pub async fn associations(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Associations>, ApiError> {
    let service = load(&context, &caller.id, &id).await?;
    let mut items = Vec::new();
    for (key, target) in &service.relations {
        let version = service::resolve(&context.store, &caller.id, target).await?;
        items.push(association(key, target, version.as_ref()));
    }
    Ok(Json(Associations { associations: items, service: id }))
}

/// `GET /v1/packages/{name}/services` answer.
#[derive(Serialize)]
pub struct PackageServices {
    package: String,
    services: Vec<String>,
}

/// `GET /v1/packages/{name}/services`: the services using a package.
pub async fn package_services(
    State(context): State<FunctionContext>,
    caller: Account,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PackageServices>, ApiError> {
    crate::catalog::load_package(&context, &caller.id, &name).await?;
    let users = context.store.list::<PackageUser>(&package::users_prefix(&caller.id, &name)).await?;
    let names: Vec<String> = users.into_iter().map(|(_, doc)| doc.value.service).collect();
    Ok(Json(PackageServices { package: name, services: names }))
}

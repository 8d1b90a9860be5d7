//! The packages function: deployment packages and versions, their publish check against the
//! registry, the services that relate templates' identifiers to package versions, and Compute
//! Nest's own supplier API over them (`POST /`, signed with the access keys of
//! `/v1/access-keys`).

mod access_keys;
mod catalog;
pub mod computenest;
mod instances;
mod publish;
mod registry;
mod services;
mod signing_keys;
mod sweep;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post, put};
use berth_shared::package::VersionSubmitted;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::Dispatcher;
use berth_shared::platform::runtime::{Function, spawn_periodic};

pub use publish::{check_version, registry_client};
pub use registry::RegistryClient;
pub use sweep::{MAX_RESUBMISSIONS, PackagesSweep, SweepOutcome, sweep};

/// The function's name.
pub const NAME: &str = "packages";

/// The function: routes and the events it consumes. Outside Lambda it also sweeps lost
/// publish checks periodically.
pub fn function(context: FunctionContext) -> Function {
    let (sweeping, client) = (context.clone(), publish::registry_client(&context));
    spawn_periodic("publish-check sweep", sweep::SWEEP_INTERVAL, move || {
        let (context, client) = (sweeping.clone(), client.clone());
        async move { sweep(&context, &client, unix_now()).await.map(|_| ()) }
    });
    Function {
        name: NAME,
        router: router(context.clone()),
        events: Some(Arc::new(events(context))),
        winding_down: None,
    }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    Router::new()
        .route("/", post(computenest::handle))
        .route("/v1/access-keys", post(access_keys::create_access_key).get(access_keys::list_access_keys))
        .route("/v1/access-keys/{id}", delete(access_keys::revoke_access_key))
        .route("/v1/computenest/templates/{account}/{service}/{index}/{mac}", get(computenest::template_download))
        .route("/v1/signing-keys", post(signing_keys::add_signing_key).get(signing_keys::list_signing_keys))
        .route("/v1/signing-keys/{id}", delete(signing_keys::revoke_signing_key))
        .route("/v1/signing-policy", get(signing_keys::get_signing_policy).put(signing_keys::put_signing_policy))
        .route("/v1/packages", post(catalog::create_package).get(catalog::list_packages))
        .route(
            "/v1/packages/{name}",
            get(catalog::get_package).patch(catalog::update_package).delete(catalog::delete_package),
        )
        .route("/v1/packages/{name}/versions", post(catalog::create_version).get(catalog::list_versions))
        .route("/v1/packages/{name}/versions/{version}", get(catalog::get_version).delete(catalog::delete_version))
        .route("/v1/packages/{name}/versions/{version}/file", put(catalog::upload_file))
        .route("/v1/packages/{name}/services", get(services::package_services))
        .route("/v1/services", get(services::list_services))
        .route(
            "/v1/services/{id}",
            put(services::put_service).get(services::get_service).delete(services::delete_service),
        )
        .route("/v1/services/{id}/associations", get(services::associations))
        .route("/v1/services/{id}/instances", post(instances::create_instance).get(instances::list_instances))
        .route("/v1/services/{id}/instances/{name}", get(instances::get_instance).delete(instances::delete_instance))
        .route("/v1/services/{id}/instances/{name}/suspend", post(instances::suspend_instance))
        .route("/v1/services/{id}/instances/{name}/resume", post(instances::resume_instance))
        .route("/v1/services/{id}/instances/{name}/credentials", post(instances::rotate_credential))
        .with_state(context)
}

/// The events the function consumes: [`VersionSubmitted`] and [`PackagesSweep`], both idempotent.
pub fn events(context: FunctionContext) -> Dispatcher {
    let client = publish::registry_client(&context);
    let (sweeping, sweep_client) = (context.clone(), client.clone());
    Dispatcher::new()
        .on(move |submitted: VersionSubmitted, event| {
            let (context, client) = (context.clone(), client.clone());
            async move { publish::handle_submitted(&context, &client, submitted, &event).await }
        })
        .on(move |_: PackagesSweep, _| {
            let (context, client) = (sweeping.clone(), sweep_client.clone());
            async move { sweep(&context, &client, unix_now()).await.map(|_| ()) }
        })
}

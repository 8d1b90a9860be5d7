//! The packages function: deployment packages and versions, their publish check against the
//! registry, and the services that relate templates' identifiers to package versions.

mod catalog;
mod instances;
mod publish;
mod registry;
mod services;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};
use berth_shared::package::VersionSubmitted;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::Dispatcher;
use berth_shared::platform::runtime::Function;

pub use publish::check_version;

/// The function's name.
pub const NAME: &str = "packages";

/// The function: routes and the events it consumes.
pub fn function(context: FunctionContext) -> Function {
    Function { name: NAME, router: router(context.clone()), events: Some(Arc::new(events(context))) }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    Router::new()
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

/// The events the function consumes.
pub fn events(context: FunctionContext) -> Dispatcher {
    let client = publish::registry_client(&context);
    Dispatcher::new().on(move |submitted: VersionSubmitted, event| {
        let (context, client) = (context.clone(), client.clone());
        async move { publish::handle_submitted(&context, &client, submitted, &event).await }
    })
}

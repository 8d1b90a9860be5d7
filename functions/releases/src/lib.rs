//! The releases function: applications, groups (hosts join with a join token), Docker-image
//! deployments and releases to groups in batches, driven by events and by the agents'
//! long polls. The domain rules live in `berth_shared::release`; this crate stores and
//! moves them.

pub mod alarms;
pub mod balancer;
pub mod engine;
pub mod routes;
pub mod scaling;
pub mod store_layout;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::Dispatcher;
use berth_shared::platform::runtime::Function;

use crate::engine::{Advance, Engine, Sweep};

/// The function's name.
pub const NAME: &str = "releases";

/// The function: routes and the events it consumes, sharing one engine (so a report wakes
/// held polls in this process). Outside Lambda it also sweeps periodically.
pub fn function(context: FunctionContext) -> Function {
    let engine = Engine::new(context);
    engine.spawn_sweeper();
    engine.spawn_news();
    let winding_down = Some(Box::pin(engine.clone().stopped()) as _);
    Function { name: NAME, router: router(engine.clone()), events: Some(Arc::new(events(engine))), winding_down }
}

/// The function's routes.
pub fn router(engine: Engine) -> Router {
    use routes::*;
    Router::new()
        .route("/v1/applications", post(create_application).get(list_applications))
        .route("/v1/applications/{app}", get(get_application).delete(delete_application))
        .route("/v1/applications/{app}/groups", post(create_group).get(list_groups))
        .route("/v1/applications/{app}/groups/{group}", get(get_group).patch(update_group).delete(delete_group))
        .route("/v1/applications/{app}/groups/{group}/join-token", post(rotate_join_token).delete(revoke_join_token))
        .route("/v1/applications/{app}/groups/{group}/instances/{host}", delete(remove_host))
        .route("/v1/applications/{app}/groups/{group}/releases", get(list_releases))
        .route("/v1/applications/{app}/deployments", post(create_deployment).get(list_deployments))
        .route(
            "/v1/applications/{app}/deployments/{name}",
            get(get_deployment).put(update_deployment).delete(delete_deployment),
        )
        .route("/v1/applications/{app}/deployments/{name}/revisions", get(list_revisions))
        .route("/v1/applications/{app}/deployments/{name}/revisions/{revision}", get(get_revision))
        .route("/v1/releases", post(create_release))
        .route("/v1/releases/{id}", get(get_release))
        .route("/v1/releases/{id}/cancel", post(cancel_release))
        .route("/v1/releases/{id}/confirm", post(confirm_release))
        .route("/v1/releases/{id}/pause", post(pause_release))
        .route("/v1/releases/{id}/rollback", post(rollback_release))
        .route("/v1/releases/{id}/hosts/{host}/logs", get(host_logs))
        .route("/v1/releases/{id}/hosts/{host}/logs/{part}", get(host_log_part))
        .route("/v1/agent/register", post(register))
        .route("/v1/agent/jobs", get(poll))
        // Not operations of the HTTP API (infra/openapi.yaml): the agents' wake channel, which
        // only a WebSocket upgrade reaches, and the Lambda runtime's WebSocket events, which
        // only the runtime reaches (any HTTP request to it is a 404). See docs/aws.md.
        .route_service(berth_shared::release::CHANNEL_PATH, get(channel).with_state(engine.clone()))
        .route_service(
            berth_shared::platform::websocket::WEBSOCKET_EVENT_PATH,
            post(channel_event).with_state(engine.clone()),
        )
        .route("/v1/agent/health", post(health_news))
        .route("/v1/agent/logs", post(upload_log_part).layer(axum::extract::DefaultBodyLimit::disable()))
        .route(
            "/v1/agent/reports",
            // The limit is the extractor's; axum's default 2 MiB would cut reports first.
            post(report).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .with_state(engine)
}

/// The events the function consumes: [`Advance`] and [`Sweep`], both idempotent.
pub fn events(engine: Engine) -> Dispatcher {
    let advancing = engine.clone();
    Dispatcher::new()
        .on(move |event: Advance, _| {
            let engine = advancing.clone();
            async move { engine.advance_on(&event).await }
        })
        .on(move |_: Sweep, _| {
            let engine = engine.clone();
            async move { engine.sweep().await }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_shared::platform::events::handle_sqs_batch;

    /// The sample Lambda batch in `tests/data/sqs-sweep.json` (the schedule's sweep, an
    /// advance of a release that is gone, an advance without a release id): only the last
    /// is retried.
    /// Events may be in flight on SQS, and the schedule sends a sweep: their wire form stays.
    #[test]
    fn event_types_and_payloads_are_stable_on_the_wire() {
        use berth_shared::platform::events::{Event, envelope};
        let advance = envelope(&Advance { release: "r-1".into(), reported_in: None, report: None }, None).unwrap();
        assert_eq!(
            (advance.kind.as_str(), advance.payload.to_string()),
            ("release.advance", r#"{"release":"r-1"}"#.into())
        );
        let sweep = envelope(&Sweep {}, None).unwrap();
        assert_eq!((sweep.kind.as_str(), sweep.payload.to_string()), ("releases.sweep", "{}".into()));
        assert_eq!(<berth_shared::package::VersionSubmitted as Event>::TYPE, "package.version.submitted");
    }

    #[tokio::test]
    async fn the_sample_sqs_batch_sweeps_and_retries_only_the_bad_event() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sqs-sweep.json");
        let event = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let engine = Engine::new(FunctionContext::ephemeral());
        let response = handle_sqs_batch(&events(engine), event).await;
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["releases-advance-bad"]);
    }
}

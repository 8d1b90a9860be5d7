//! The releases function. Its routes and event handlers arrive with its own issue; for now it
//! consumes its queue with the built-in `berth.ping` event only.

use std::sync::Arc;

use axum::Router;
use berth_shared::context::FunctionContext;
use berth_shared::events::Dispatcher;
use berth_shared::runtime::Function;

/// The function's name.
pub const NAME: &str = "releases";

/// The function: routes and the events it consumes.
pub fn function(context: FunctionContext) -> Function {
    Function { name: NAME, router: router(context.clone()), events: Some(Arc::new(events(context))) }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    Router::new().with_state(context)
}

/// The events the function consumes.
pub fn events(_context: FunctionContext) -> Dispatcher {
    Dispatcher::new()
}

//! The render function: service templates with their identifiers replaced. Its routes
//! arrive with its own issue.

use axum::Router;
use berth_shared::context::FunctionContext;
use berth_shared::runtime::Function;

/// The function's name.
pub const NAME: &str = "render";

/// The function: routes only, it consumes no events.
pub fn function(context: FunctionContext) -> Function {
    Function { name: NAME, router: router(context), events: None }
}

/// The function's routes.
pub fn router(context: FunctionContext) -> Router {
    Router::new().with_state(context)
}

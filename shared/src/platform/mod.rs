//! The plumbing every function shares. Nothing here imports the domain (a test checks it).

pub mod aws;
pub mod clock;
pub mod config;
pub mod context;
pub mod counted_queue;
pub mod deferred_http;
pub mod digest;
pub mod events;
pub mod http;
pub mod jws;
pub mod key_bundle;
pub mod metrics;
pub mod news;
pub mod pem;
pub mod queue;
pub mod runtime;
pub mod secret;
pub mod serve;
pub mod slots;
pub mod store;
pub mod telemetry;
pub mod token_kind;
pub mod websocket;
pub mod work;
pub(crate) mod write_deadline;
pub mod yaml;

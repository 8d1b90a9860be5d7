//! Berth's common crate: domain types and the plumbing every function shares.
//!
//! Functions are thin: a router and event handlers over a [`context::FunctionContext`]
//! (config, document store, event queue, account keys), run by [`runtime`] under Lambda or
//! as a plain HTTP server, or all together by `berth serve`.

pub mod account;
pub mod config;
pub mod context;
pub mod error;
pub mod events;
pub mod key_bundle;
pub mod package;
pub mod problem;
pub mod queue;
pub mod registry;
pub mod registry_token;
pub mod release;
pub mod render;
pub mod repository;
pub mod request;
pub mod runtime;
pub mod scope;
pub mod secret;
pub mod service;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod temporary_key;

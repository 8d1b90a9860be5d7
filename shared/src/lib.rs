//! Berth's common crate, in two layers.
//!
//! [`platform`] is the plumbing every function shares (configuration, the document store, the
//! event queue, runtime, telemetry, HTTP errors and extractors, keys); it knows nothing of the
//! domain. Above it, one module per concept of the seed: [`names`] (account IDs, repository
//! names), [`credentials`] (temporary keys, scopes, registry and download tokens),
//! [`package`], [`service`], [`template`], [`render`] and [`release`].
//!
//! Functions are thin: a router and event handlers over a
//! [`platform::context::FunctionContext`], run by [`platform::runtime`] under Lambda or as a
//! plain HTTP server, or all together by `berth serve`.

#![cfg_attr(test, allow(clippy::string_slice, reason = "unit tests slice their own fixtures"))]

pub mod credentials;
pub mod names;
pub mod package;
pub mod platform;
pub mod release;
pub mod render;
pub mod service;
pub mod signing;
pub mod template;

//! Berth's wire types: what goes over HTTP between Berth, its CLI and its host agents.
//!
//! Plain data with serde only (no AWS SDK, no HTTP framework), so that the CLI and the agent
//! read the same types the functions answer with: renaming a field breaks the build, not a
//! run. Validation, storage and limits stay in `berth-shared`; the shapes are documented in
//! `infra/openapi.yaml`.

pub mod agent;
pub mod health;
pub mod problem;

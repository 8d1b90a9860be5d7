//! HTTP handlers: applications, groups, deployments and releases for providers (account
//! bearer token), registration, long-polled jobs and reports for agents (group join token).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use berth_shared::package::PackageVersion;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::http::account::{Account, HasAccountKeys};
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::{ApiJson, ApiPath, ApiQuery, LimitedBody};
use berth_shared::platform::store::{StoreError, Versioned};
use berth_shared::release::{
    self, DeploymentRequest, GroupKind, HostLogs, HostResult, JobKind, PullResult, Release, ReleaseRequest,
    ReleaseStatus, Report, ScalingState, Step,
};
use serde::{Deserialize, Serialize, Serializer};

use crate::engine::{Engine, create_once, read_all};
use crate::store_layout::{self as layout, Application, Group, GroupRef, HostRecord, HostRef, HostView, StoredLogs};

mod agents;
mod applications;
mod deployments;
mod groups;
mod logs;
mod registration;
mod releases;

pub use agents::*;
pub use applications::*;
pub use deployments::*;
pub use groups::*;
pub use logs::host_log_part;
pub use registration::*;
pub use releases::*;

/// Serializes `value` with its objects' keys in alphabetical order, as `json!` (whose maps are
/// sorted) did for the answers these structs replaced, so the bytes on the wire are unchanged.
/// The answer structs list their own fields alphabetically for the same reason.
pub(crate) fn sorted_keys<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value).map_err(serde::ser::Error::custom)?.serialize(serializer)
}

impl HasAccountKeys for Engine {
    fn account_keys(&self) -> &berth_shared::platform::http::account::AccountKeys {
        &self.context.account_keys
    }
}

//! Registration: a host joins its group with the group's join token and gets a host token of
//! its own; a registered host rotates that token with the token itself. A live host's name is
//! not taken over with the join token alone ([`release::may_take_over`]).

use super::agents::{Host, bearer};
use super::*;
use std::sync::Arc;

use berth_api::agent::{Registered, Registration};
use berth_shared::platform::token_kind::{HOST_TOKEN, JOIN_TOKEN};

/// A caller holding a group's current join token (`Authorization: Bearer bjt_...`): it may
/// only register hosts.
pub struct Joining {
    /// The group the token joins.
    pub group: GroupRef,
    /// SHA-256 of the token.
    pub join_token_sha256: String,
    /// The group's `stale_after_seconds`: a host unseen for this long may be taken over.
    pub stale_after_seconds: u64,
}

impl FromRequestParts<Engine> for Joining {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Engine) -> Result<Self, Self::Rejection> {
        let refused = || {
            ApiError::Unauthenticated(format!(
                "a valid group join token is required (Authorization: Bearer {}...)",
                JOIN_TOKEN.prefix
            ))
        };
        let token = bearer(parts, JOIN_TOKEN).ok_or_else(refused)?;
        let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
        let store = &engine.context.store;
        let group = store.get::<GroupRef>(&layout::join_token(&digest)).await?.ok_or_else(refused)?.value;
        // The group's own record decides: a rotated or revoked token is refused at once, even
        // if its index entry is still there.
        let current = store.get::<Group>(&layout::group_doc(&group)).await?.ok_or_else(refused)?.value;
        if current.join_token_sha256.as_deref() != Some(digest.as_str()) || current.deleting {
            return Err(refused());
        }
        berth_shared::platform::serve::mark_authenticated(&parts.extensions);
        Ok(Self { group, join_token_sha256: digest, stale_after_seconds: current.stale_after_seconds })
    }
}

/// Who registers: a holder of the group's join token, or a registered host with its current
/// host token (which rotates it).
pub enum Registrant {
    /// `Authorization: Bearer bjt_...`.
    Joining(Joining),
    /// `Authorization: Bearer bht_...`: the host itself.
    Host(Box<Host>),
}

impl FromRequestParts<Engine> for Registrant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Engine) -> Result<Self, Self::Rejection> {
        if bearer(parts, HOST_TOKEN).is_some() {
            return Ok(Self::Host(Box::new(Host::from_request_parts(parts, engine).await?)));
        }
        Ok(Self::Joining(Joining::from_request_parts(parts, engine).await?))
    }
}

fn host_live(host: &str) -> ApiError {
    ApiError::Conflict {
        code: "host_registered",
        message: format!(
            "host '{host}' is registered and live: its own agent rotates its token with its current host token; \
             for another machine to take the name, rotate the group's join token (or remove the host and rotate it), \
             or wait until the host is stale (the group's stale_after_seconds)"
        ),
    }
}

/// `POST /v1/agent/register`: with the group's join token, the host joins and gets a host
/// token of its own (a name already registered only when [`release::may_take_over`] allows);
/// with the host's current host token, the host's token is rotated.
pub async fn register(
    State(engine): State<Engine>,
    registrant: Registrant,
    ApiJson(body): ApiJson<Registration>,
) -> Result<Json<Registered>, ApiError> {
    release::validate_name("host", &body.host)?;
    if let Some(id) = &body.instance_id {
        release::validate_instance_id("instance_id", id)?;
    }
    let (group, joining, rotating) = match &registrant {
        Registrant::Joining(joining) => (Arc::new(joining.group.clone()), Some(joining), None),
        Registrant::Host(host) => {
            // A host token registers its own host only; for any other name it is no credential.
            if host.host.host != body.host {
                return Err(ApiError::Unauthenticated(format!(
                    "a host token registers its own host ('{}') only; other hosts register with the group's join token",
                    host.host.host
                )));
            }
            (host.host.group.clone(), None, host.record.value.host_token_sha256.clone())
        }
    };
    let reference = HostRef { group: group.clone(), host: body.host.clone() };
    let token = crate::engine::host_token(&reference);
    let digest = berth_shared::platform::digest::sha256_hex(token.as_bytes());
    let store = &engine.context.store;
    let removed_path = layout::removed(&group, &body.host);
    let removal_of = |removal: Option<Versioned<release::Removal>>| {
        removal.filter(|r| joining.is_none_or(|j| !release::may_rejoin(Some(&r.value), &j.join_token_sha256)))
    };
    let host_removed = || ApiError::Conflict {
        code: "host_removed",
        message: format!(
            "host '{}' was removed from the group: it registers again only with a join token made since (rotate it)",
            body.host
        ),
    };
    let removal = store.get::<release::Removal>(&removed_path).await?;
    if removal_of(removal.clone()).is_some() {
        return Err(host_removed());
    }
    // The index first: until the instance names this digest, the entry grants nothing.
    store.create(&layout::host_token(&digest), &reference).await?;
    let now = unix_now();
    let mut replaced = None;
    let host = body.host.clone();
    let instance_path = layout::host_record(&group, &body.host);
    let instance_id = body.instance_id.clone();
    // Decided inside the compare-and-swap: a registration racing another, or the host's own
    // rotation, sees the record the other wrote.
    let written: Result<Versioned<HostRecord>, ApiError> = store
        .modify::<HostRecord, ApiError, _>(&instance_path, |current| {
            let registered = current.as_ref().map(|i| release::Registered {
                has_token: i.host_token_sha256.is_some(),
                joined_with: i.join_token_sha256.as_deref(),
                seen: i.seen(),
            });
            match (joining, &rotating) {
                (Some(j), _)
                    if !release::may_take_over(registered, &j.join_token_sha256, j.stale_after_seconds, now) =>
                {
                    return Err(host_live(&host));
                }
                // The token was rotated or the host removed since this request was authenticated.
                (None, presented)
                    if current.as_ref().and_then(|i| i.host_token_sha256.as_ref()) != presented.as_ref() =>
                {
                    return Err(ApiError::Unauthenticated("the host token was replaced meanwhile".into()));
                }
                _ => {}
            }
            replaced = current.as_ref().and_then(|i| i.host_token_sha256.clone());
            // The ledger stays: the host may still run what it ran (convergence decides).
            let kept = current.unwrap_or_default();
            let joined_with = joining.map(|j| j.join_token_sha256.clone()).or(kept.join_token_sha256.clone());
            Ok(HostRecord {
                host: host.clone(),
                registered_at: if joining.is_some() { now } else { kept.registered_at },
                host_token_sha256: Some(digest.clone()),
                join_token_sha256: joined_with,
                instance_id: instance_id.clone().or(if joining.is_some() { None } else { kept.instance_id.clone() }),
                last_seen: Some(now),
                ..kept
            })
        })
        .await;
    let written = match written {
        Ok(written) => written,
        Err(refusal) => {
            store.delete(&layout::host_token(&digest)).await?;
            return Err(refusal);
        }
    };
    // A removal that raced this registration wins: look again now that the record is written.
    if removal.is_none() && removal_of(store.get::<release::Removal>(&removed_path).await?).is_some() {
        store.delete(&instance_path).await?;
        store.delete(&layout::host_token(&digest)).await?;
        return Err(host_removed());
    }
    if removal.is_some() {
        store.delete(&removed_path).await?;
    }
    // Its agent polls next, most likely here: its record as written answers it.
    engine.remember_token_place(&digest, &reference);
    engine.note_record(&digest, &Arc::new(written));
    if joining.is_some() {
        // A machine (re)joining may have been rebuilt: it converges. A rotation changes nothing it runs.
        engine.converge(&reference, release::Arrival::Registered, now).await?;
    }
    if let Some(old) = replaced {
        store.delete(&layout::host_token(&old)).await?;
        engine.revoke_tokens(&[old]).await;
        // Its wake channel, opened with the old token, is closed: the new token opens another.
        engine.close_channel(&reference.group, &reference.host).await?;
        tracing::info!(host = %body.host, group = %group.group, "host re-registered; its old token is refused");
    } else {
        tracing::info!(host = %body.host, group = %group.group, "host registered");
    }
    Ok(Json(Registered {
        application: group.application.clone(),
        group: group.group.clone(),
        host: body.host,
        host_token: token,
    }))
}

//! Instance credentials at the token endpoint: who a Basic login is, as a grant the registry
//! token is signed from. A temporary key verifies by its signature alone, unless it was
//! exchanged for an instance credential; an instance credential, and a key exchanged for one,
//! is checked against the instance document on every request, so suspending, deleting or
//! rotating refuses it at once.

use berth_shared::credentials::instance_credential::{InstanceBinding, InstanceRef, is_instance_credential};
use berth_shared::credentials::temporary_key::{self, KEY_AUDIENCE, KeyGrant, KeyPurpose};
use berth_shared::credentials::verified_keys::VerifiedKeys;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::BasicAuth;
use berth_shared::service::instance::{Instance, instance_path};

/// What kind of credential a login used (logged; never the credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// A temporary key (perhaps exchanged for an instance credential).
    TemporaryKey,
    /// An instance credential itself.
    InstanceCredential,
}

impl LoginKind {
    /// As logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TemporaryKey => "temporary_key",
            Self::InstanceCredential => "instance_credential",
        }
    }
}

/// A verified login.
pub struct Login {
    /// What it may do.
    pub grant: KeyGrant,
    pub kind: LoginKind,
    /// The instance it acts for, with the instance's uid (pull counts are kept by uid).
    pub instance: Option<(InstanceRef, String)>,
}

fn refused() -> ApiError {
    ApiError::Unauthenticated(temporary_key::KeyRefusal::Invalid.to_string())
}

async fn load(context: &FunctionContext, of: &InstanceRef) -> Result<Option<Instance>, ApiError> {
    Ok(context.store.get::<Instance>(&instance_path(&of.account, &of.service, &of.instance)).await?.map(|d| d.value))
}

/// Verifies a Basic login: a temporary key (its signature checked once, see [`VerifiedKeys`]),
/// or an instance credential.
pub async fn login(
    context: &FunctionContext,
    verified: &VerifiedKeys,
    credentials: &BasicAuth,
    now: u64,
) -> Result<Login, ApiError> {
    let password = credentials.password.expose();
    if !is_instance_credential(password) {
        let grant = verified
            .verify(&credentials.username, password, now)
            .map_err(|refusal| ApiError::Unauthenticated(refusal.to_string()))?;
        let instance = match &grant.instance {
            None => None,
            Some(binding) => {
                let instance = load(context, &binding.of).await?;
                let live = instance.as_ref().and_then(|i| i.still_accepts(&binding.credential, now).map(|_| i));
                let Some(instance) = live else {
                    return Err(ApiError::Unauthenticated(
                        "the instance credential this key was exchanged for is no longer valid".into(),
                    ));
                };
                Some((binding.of.clone(), instance.uid.clone()))
            }
        };
        return Ok(Login { grant, kind: LoginKind::TemporaryKey, instance });
    }
    let of = InstanceRef::from_username(&credentials.username).ok_or_else(refused)?;
    let instance = load(context, &of).await?.ok_or_else(refused)?;
    let credential = instance.accepts(password, now).ok_or_else(refused)?;
    let grant = KeyGrant {
        sub: of.account.clone(),
        aud: KEY_AUDIENCE.to_owned(),
        purpose: KeyPurpose::Pull,
        repositories: Some(instance.repositories.clone()),
        iat: credential.created_at,
        exp: credential.expires_at.unwrap_or(u64::MAX),
        jti: credential.id.clone(),
        instance: Some(InstanceBinding { of: of.clone(), credential: credential.id.clone() }),
    };
    Ok(Login { grant, kind: LoginKind::InstanceCredential, instance: Some((of, instance.uid.clone())) })
}

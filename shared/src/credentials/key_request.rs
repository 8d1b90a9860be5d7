//! A request for a temporary key (`POST /v1/registry/credentials`) and the rules it is
//! checked against before a key is minted.

use crate::credentials::temporary_key::{
    DEFAULT_TTL_SECONDS, KeyPurpose, MAX_KEY_REPOSITORIES, MAX_RELATIVE_REPOSITORY, MAX_TTL_SECONDS, MIN_TTL_SECONDS,
};
use crate::names::{AccountId, RepositoryName};
use crate::platform::http::error::ApiError;

/// `POST /v1/registry/credentials` body: the CLI's type, read as it is sent. Its `ttl_seconds`
/// is [`MIN_TTL_SECONDS`]..=[`MAX_TTL_SECONDS`], default [`DEFAULT_TTL_SECONDS`].
pub use berth_api::credentials::KeyRequest;

/// A validated key request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKeyRequest {
    pub purpose: KeyPurpose,
    /// Full repository names, if limited.
    pub repositories: Option<Vec<RepositoryName>>,
    /// Lifetime in seconds.
    pub ttl_seconds: u64,
}

/// Checks every rule of a request for `account`'s key, naming the field at fault.
pub fn validate(request: KeyRequest, account: &AccountId) -> Result<ValidKeyRequest, ApiError> {
    let ttl_seconds = request.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
        return Err(ApiError::invalid(
            "ttl_seconds",
            "out_of_range",
            format!("ttl_seconds must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}"),
        ));
    }
    let repositories = match request.repositories {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ApiError::invalid("repositories", "empty", "omit repositories, or name at least one"));
        }
        Some(list) if list.len() > MAX_KEY_REPOSITORIES => {
            return Err(ApiError::invalid(
                "repositories",
                "too_many",
                format!("at most {MAX_KEY_REPOSITORIES} repositories per key"),
            ));
        }
        Some(list) => {
            let mut names = Vec::with_capacity(list.len());
            for (i, relative) in list.iter().enumerate() {
                if relative.len() > MAX_RELATIVE_REPOSITORY {
                    return Err(ApiError::invalid(
                        format!("repositories[{i}]"),
                        "invalid_repository",
                        format!("repository names are at most {MAX_RELATIVE_REPOSITORY} characters"),
                    ));
                }
                let name = RepositoryName::within(account, relative).map_err(|e| {
                    ApiError::invalid(
                        format!("repositories[{i}]"),
                        "invalid_repository",
                        format!("{e} (names are relative to your namespace, e.g. app or team/app)"),
                    )
                })?;
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            Some(names)
        }
    };
    Ok(ValidKeyRequest { purpose: request.purpose, repositories, ttl_seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_name_over_the_relative_limit_is_refused_in_every_namespace() {
        let acme = AccountId::parse("acme").unwrap();
        let request =
            |name: String| KeyRequest { purpose: KeyPurpose::Pull, repositories: Some(vec![name]), ttl_seconds: None };
        assert!(validate(request("a".repeat(MAX_RELATIVE_REPOSITORY)), &acme).is_ok());
        assert!(
            validate(request("a".repeat(MAX_RELATIVE_REPOSITORY + 1)), &acme).is_err(),
            "refused though it fits under acme"
        );
        assert_eq!(MAX_RELATIVE_REPOSITORY, 190, "infra/openapi.yaml declares this cap");
    }
}

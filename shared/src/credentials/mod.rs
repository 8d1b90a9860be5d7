//! Credentials: temporary registry keys, the scopes they grant, the registry tokens the token
//! endpoint signs for them, and the download tokens in rendered file URLs.

pub mod access_key;
pub mod docker_config;
pub mod download_token;
pub mod instance_credential;
pub mod key_request;
pub mod registry_token;
pub mod scope;
pub mod temporary_key;

#[cfg(test)]
mod tests {
    use crate::names::AccountId;
    use crate::platform::clock::unix_now;
    use crate::platform::http::account::{ACCOUNT_AUDIENCE, AccountKeys};
    use crate::platform::http::error::ApiError;
    use crate::platform::pem::generate_private_key_pem;

    const ISSUER: &str = crate::platform::config::DEFAULT_ACCOUNT_ISSUER;

    fn acme() -> AccountId {
        AccountId::parse("acme").unwrap()
    }

    fn refusal(keys: &AccountKeys, token: &str) -> String {
        match keys.verify(token) {
            Err(ApiError::Unauthenticated(message)) => message,
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    /// The worst case: one key for everything, and a registry configured so that its tokens'
    /// `aud` and `iss` are those of account tokens. Only the type tells them apart, both ways.
    #[test]
    fn other_kinds_of_credential_signed_by_the_same_key_are_refused_both_ways() {
        use crate::credentials::temporary_key::{self, KeyPurpose};
        use crate::platform::config::RegistrySettings;
        use crate::platform::jws::{SigningKey, SigningKeys};
        use crate::platform::pem::pem_block;

        let pem = generate_private_key_pem();
        let accounts = AccountKeys::from_pem(pem.as_bytes(), ISSUER).unwrap();
        let der = pem_block(&pem, "PRIVATE KEY").unwrap();
        let signing = SigningKeys::from_keys(vec![SigningKey::from_pkcs8(&der, None).unwrap()]);
        let now = unix_now();

        let key = temporary_key::mint(&signing, "r:5000", &acme(), KeyPurpose::Push, None, 3600, now).unwrap();
        let password = key.password.expose();
        assert!(temporary_key::verify(&signing, "acme", password).is_ok(), "control: the key is valid");
        assert!(refusal(&accounts, password).contains("not an account token"));

        let settings = RegistrySettings {
            host: "r:5000".into(),
            service: ACCOUNT_AUDIENCE.into(),
            issuer: ISSUER.into(),
            url: "http://r:5000".into(),
        };
        let grant = temporary_key::verify(&signing, "acme", password).unwrap();
        let registry = crate::credentials::registry_token::issue(&signing, &settings, &grant, &[], now).unwrap();
        let internal = crate::credentials::registry_token::internal_pull_token(
            &signing,
            &settings,
            &crate::names::RepositoryName::parse("acme/web").unwrap(),
            now,
        )
        .unwrap();
        for token in [registry.token.expose(), &internal] {
            assert!(refusal(&accounts, token).contains("not an account token"));
        }

        let account_token = accounts.issue(&acme(), 600).unwrap();
        assert!(temporary_key::verify(&signing, "acme", &account_token).is_err());
        assert!(crate::credentials::download_token::verify_download(&signing, &account_token).is_none());
        assert!(signing.verify::<serde_json::Value>(&account_token, "JWT", ACCOUNT_AUDIENCE).is_err());
    }
}

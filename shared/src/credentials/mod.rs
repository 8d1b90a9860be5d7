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
pub mod verified_keys;

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

    /// Every kind of credential Berth hands out, minted as Berth mints it, is blanked in a log
    /// line. A new kind fails to compile here until it has a sample, and fails the test if the
    /// redaction misses it.
    #[test]
    fn the_log_redaction_blanks_a_token_of_every_kind() {
        use crate::credentials::{download_token, instance_credential, registry_token, temporary_key};
        use crate::platform::config::RegistrySettings;
        use crate::platform::jws::SigningKeys;
        use crate::platform::secret::{REDACTED, redact};
        use crate::platform::token_kind::{Shape, TokenKind};

        let accounts = AccountKeys::from_pem(generate_private_key_pem().as_bytes(), ISSUER).unwrap();
        let signing = SigningKeys::generate();
        let now = unix_now();
        let settings = RegistrySettings {
            host: "r:5000".into(),
            service: "registry".into(),
            issuer: "berth".into(),
            url: "http://r:5000".into(),
        };
        let key = || {
            temporary_key::mint(&signing, "r:5000", &acme(), temporary_key::KeyPurpose::Pull, None, 3600, now).unwrap()
        };
        for kind in TokenKind::ALL {
            let token = match kind {
                TokenKind::AccountToken => accounts.issue(&acme(), 600).unwrap(),
                TokenKind::TemporaryKey => key().password.expose().clone(),
                TokenKind::RegistryToken => {
                    let grant = temporary_key::verify(&signing, "acme", key().password.expose()).unwrap();
                    registry_token::issue(&signing, &settings, &grant, &[], now).unwrap().token.expose().clone()
                }
                TokenKind::DownloadToken => {
                    let grant = download_token::DownloadGrant {
                        sub: acme(),
                        aud: download_token::DOWNLOAD_AUDIENCE.into(),
                        package: "bundle".into(),
                        version: "v_1".into(),
                        file_name: "app.tar.gz".into(),
                        digest: None,
                        iat: now,
                        exp: now + 60,
                    };
                    signing.sign(download_token::DOWNLOAD_TYPE, &grant).unwrap()
                }
                TokenKind::InstanceCredential => {
                    let instance = instance_credential::InstanceRef {
                        account: acme(),
                        service: "web-svc".into(),
                        instance: "cust_1".into(),
                    };
                    instance_credential::mint("r:5000", &instance, None, now).0.password.expose().clone()
                }
                TokenKind::JoinToken | TokenKind::HostToken => match kind.shape() {
                    Shape::Random(random) => random.mint(),
                    Shape::Signed => panic!("{kind:?} is a random kind"),
                },
            };
            for line in [format!("refused {token} for h1"), format!("presented={token}, host=h1")] {
                let logged = redact(&line);
                assert!(!logged.contains(&token) && logged.contains(REDACTED), "{kind:?} survives: {logged}");
            }
        }
    }
}

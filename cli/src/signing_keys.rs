//! `berth signing-key add|list|revoke|require`: the public keys the account's images are
//! signed with (cosign's `cosign.pub`, or the `.pub` of `skopeo generate-sigstore-key`), and
//! whether packages require signatures.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_api::credentials::{NewSigningKey, SignaturePolicy, SigningKeyList, SigningKeyView};
use clap::Subcommand;

use crate::client::{Api, api_client, show};
use crate::exit::fail;

/// What `berth signing-key` does.
#[derive(Subcommand)]
pub enum SigningKeyCommand {
    /// Register a public key (PEM file): versions of packages that require signatures become
    /// Available only when signed by one of your active keys.
    Add {
        /// The PEM file (`-----BEGIN PUBLIC KEY-----`), e.g. cosign.pub.
        file: PathBuf,
        /// A note for yourself.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// List your keys and whether packages require signatures by default.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a key: digests it signed are refused at render, instance and release from now on.
    Revoke {
        /// The key's id (`sk-...`).
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Require signatures (`on`) or not (`off`): for every package that does not say
    /// otherwise, or for one package with --package.
    Require {
        #[arg(value_parser = ["on", "off"])]
        setting: String,
        /// Only this package.
        #[arg(long)]
        package: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

fn key_line(key: &SigningKeyView) -> String {
    format!("{}\t{}\t{}\t{}\t{}", key.id, key.status, key.created_at, key.fingerprint, key.description)
}

/// Runs a `berth signing-key` command.
pub async fn run(command: SigningKeyCommand) -> ExitCode {
    match command {
        SigningKeyCommand::Add { file, description, api } => {
            let public_key = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => return fail(&format!("cannot read {}: {e}", file.display())),
            };
            let body = NewSigningKey { public_key, description: description.unwrap_or_default() };
            match api_client(&api).0.post("/v1/signing-keys", &body).await {
                Ok(key) => show(api.output == "json", key, |key: SigningKeyView| key_line(&key)),
                Err(e) => fail(&e),
            }
        }
        SigningKeyCommand::List { api } => match api_client(&api).0.get("/v1/signing-keys").await {
            Ok(list) => show(api.output == "json", list, |list: SigningKeyList| {
                let mut lines = vec![format!("require_signature\t{}", list.require_signature)];
                lines.extend(list.signing_keys.iter().map(key_line));
                lines.join("\n")
            }),
            Err(e) => fail(&e),
        },
        SigningKeyCommand::Revoke { id, api } => {
            match api_client(&api).0.delete_answered(&format!("/v1/signing-keys/{id}")).await {
                Ok(key) => show(api.output == "json", key, |key: SigningKeyView| key_line(&key)),
                Err(e) => fail(&e),
            }
        }
        SigningKeyCommand::Require { setting, package, api } => {
            let body = SignaturePolicy { require_signature: Some(setting == "on") };
            let client = api_client(&api).0;
            let answer = match &package {
                Some(name) => client.patch(&format!("/v1/packages/{name}"), &body).await,
                None => client.put("/v1/signing-policy", &body).await,
            };
            match answer {
                Ok(answer) => show(api.output == "json", answer, |a: SignaturePolicy| {
                    format!(
                        "require_signature\t{}",
                        a.require_signature.map_or_else(|| "null".to_owned(), |r| r.to_string())
                    )
                }),
                Err(e) => fail(&e),
            }
        }
    }
}

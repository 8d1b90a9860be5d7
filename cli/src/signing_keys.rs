//! `berth signing-key add|list|revoke|require`: the public keys the account's images are
//! signed with (cosign's `cosign.pub`, or the `.pub` of `skopeo generate-sigstore-key`), and
//! whether packages require signatures.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::Api;
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

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

fn key_line(key: &Value) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        text(key, "id"),
        text(key, "status"),
        text(key, "created_at"),
        text(key, "fingerprint"),
        text(key, "description")
    )
}

fn print(json_output: bool, answer: &Value, line: impl Fn(&Value) -> String) -> ExitCode {
    if json_output {
        println!("{}", serde_json::to_string_pretty(answer).expect("JSON"));
    } else {
        println!("{}", line(answer));
    }
    ExitCode::SUCCESS
}

/// Runs a `berth signing-key` command.
pub async fn run(command: SigningKeyCommand) -> ExitCode {
    match command {
        SigningKeyCommand::Add { file, description, api } => {
            let public_key = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => return fail(&format!("cannot read {}: {e}", file.display())),
            };
            let body = json!({ "public_key": public_key, "description": description.unwrap_or_default() });
            match crate::api_client(&api).0.post("/v1/signing-keys", &body).await {
                Ok(key) => print(api.output == "json", &key, key_line),
                Err(e) => fail(&e),
            }
        }
        SigningKeyCommand::List { api } => match crate::api_client(&api).0.get("/v1/signing-keys").await {
            Ok(list) => print(api.output == "json", &list, |list| {
                let mut lines = vec![format!("require_signature\t{}", list["require_signature"])];
                lines.extend(list["signing_keys"].as_array().into_iter().flatten().map(key_line));
                lines.join("\n")
            }),
            Err(e) => fail(&e),
        },
        SigningKeyCommand::Revoke { id, api } => {
            match crate::api_client(&api).0.delete(&format!("/v1/signing-keys/{id}")).await {
                Ok(key) => print(api.output == "json", &key, key_line),
                Err(e) => fail(&e),
            }
        }
        SigningKeyCommand::Require { setting, package, api } => {
            let body = json!({ "require_signature": setting == "on" });
            let client = crate::api_client(&api).0;
            let answer = match &package {
                Some(name) => client.patch(&format!("/v1/packages/{name}"), &body).await,
                None => client.put("/v1/signing-policy", &body).await,
            };
            match answer {
                Ok(answer) => {
                    print(api.output == "json", &answer, |a| format!("require_signature\t{}", a["require_signature"]))
                }
                Err(e) => fail(&e),
            }
        }
    }
}

//! `berth access-key create|list|revoke`: the keys that sign Compute Nest API calls (Alibaba
//! Cloud's SDK and computenest-cli take them as `access_key_id` / `access_key_secret`).

use std::process::ExitCode;

use serde_json::{Value, json};

use clap::Subcommand;

use crate::client::{Api, BerthClient, api_client};
use crate::exit::fail;

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// Creates a key; the secret is printed once, on stdout, the id on stderr.
pub async fn create(client: &BerthClient, description: Option<String>, json_output: bool) -> ExitCode {
    let body = match description {
        Some(description) => json!({ "description": description }),
        None => json!({}),
    };
    let key = match client.post("/v1/access-keys", &body).await {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    if json_output {
        println!("{}", serde_json::to_string_pretty(&key).expect("JSON"));
        return ExitCode::SUCCESS;
    }
    eprintln!("access key {} created; its secret (shown only now) follows on stdout", text(&key, "access_key_id"));
    println!("{}", text(&key, "access_key_secret"));
    ExitCode::SUCCESS
}

/// Lists the account's keys (never their secrets).
pub async fn list(client: &BerthClient, json_output: bool) -> ExitCode {
    let keys = match client.get("/v1/access-keys").await {
        Ok(keys) => keys,
        Err(e) => return fail(&e),
    };
    if json_output {
        println!("{}", serde_json::to_string_pretty(&keys).expect("JSON"));
        return ExitCode::SUCCESS;
    }
    for key in keys["access_keys"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}\t{}",
            text(key, "access_key_id"),
            text(key, "status"),
            text(key, "created_at"),
            text(key, "description")
        );
    }
    ExitCode::SUCCESS
}

/// Revokes a key at once.
pub async fn revoke(client: &BerthClient, id: &str) -> ExitCode {
    match client.delete(&format!("/v1/access-keys/{id}")).await {
        Ok(_) => {
            eprintln!("access key {id} revoked");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

#[derive(Subcommand)]
pub enum AccessKeyCommand {
    /// Create a key: its id on stderr, its secret (shown only now) on stdout.
    Create {
        /// A note for yourself.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// List your keys (ids and states, never secrets).
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a key: calls it signs are refused from now on.
    Revoke {
        /// The access key id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

pub async fn access_key_command(command: AccessKeyCommand) -> ExitCode {
    match command {
        AccessKeyCommand::Create { description, api } => {
            let (client, json) = api_client(&api);
            create(&client, description, json).await
        }
        AccessKeyCommand::List { api } => {
            let (client, json) = api_client(&api);
            list(&client, json).await
        }
        AccessKeyCommand::Revoke { id, api } => revoke(&api_client(&api).0, &id).await,
    }
}

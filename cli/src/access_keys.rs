//! `berth access-key create|list|revoke`: the keys that sign Compute Nest API calls (Alibaba
//! Cloud's SDK and computenest-cli take them as `access_key_id` / `access_key_secret`).

use std::process::ExitCode;

use berth_api::credentials::{AccessKeyList, CreatedAccessKey, NewAccessKey};
use serde_json::Value;

use clap::Subcommand;

use crate::client::{Api, BerthClient, api_client, read};
use crate::exit::fail;

/// Creates a key; the secret is printed once, on stdout, the id on stderr.
pub async fn create(client: &BerthClient, description: Option<String>, json_output: bool) -> ExitCode {
    let answer: Value = match client.post("/v1/access-keys", &NewAccessKey { description }).await {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let key: CreatedAccessKey = match read(answer) {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    eprintln!("access key {} created; its secret (shown only now) follows on stdout", key.access_key_id);
    println!("{}", key.access_key_secret);
    ExitCode::SUCCESS
}

/// Lists the account's keys (never their secrets).
pub async fn list(client: &BerthClient, json_output: bool) -> ExitCode {
    let answer: Value = match client.get("/v1/access-keys").await {
        Ok(keys) => keys,
        Err(e) => return fail(&e),
    };
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let keys: AccessKeyList = match read(answer) {
        Ok(keys) => keys,
        Err(e) => return fail(&e),
    };
    for key in &keys.access_keys {
        println!("{}\t{}\t{}\t{}", key.access_key_id, key.status, key.created_at, key.description);
    }
    ExitCode::SUCCESS
}

pub async fn revoke(client: &BerthClient, id: &str) -> ExitCode {
    match client.delete(&format!("/v1/access-keys/{id}")).await {
        Ok(()) => {
            eprintln!("access key {id} revoked");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// What `berth access-key` does.
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

/// Runs one `berth access-key` command.
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

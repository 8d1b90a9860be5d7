//! `berth instance`: service instances and their pull credentials.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::Api;
use crate::exit::fail;

/// What `berth instance` does.
#[derive(Subcommand)]
pub enum InstanceCommand {
    /// Create an instance: pins the versions the service resolves to now; prints its pull
    /// credential (shown only now).
    Create {
        /// The service.
        #[arg(long)]
        service: String,
        /// The instance's name (letters, digits, '_').
        name: String,
        /// Each credential of the instance expires after this many seconds (default: never, only revocation ends it).
        #[arg(long)]
        credential_ttl_seconds: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// An instance: its pinned versions, repositories, credentials (ids) and pulls.
    Get {
        #[arg(long)]
        service: String,
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// The instances of a service.
    List {
        #[arg(long)]
        service: String,
        #[command(flatten)]
        api: Api,
    },
    /// Suspend: every credential of the instance is refused from now on.
    Suspend {
        #[arg(long)]
        service: String,
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Resume a suspended instance.
    Resume {
        #[arg(long)]
        service: String,
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Delete: its credentials are refused at once.
    Delete {
        #[arg(long)]
        service: String,
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// A new pull credential (printed once); every other one of the instance is revoked.
    Rotate {
        #[arg(long)]
        service: String,
        name: String,
        #[command(flatten)]
        api: Api,
    },
}

fn show(json: bool, value: &Value, text: impl FnOnce(&Value) -> String) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
    } else {
        println!("{}", text(value));
    }
    ExitCode::SUCCESS
}

fn credential_lines(c: &Value) -> String {
    format!(
        "registry: {}\nusername: {}\npassword: {}\nexpires_at: {}",
        c["registry"].as_str().unwrap_or("?"),
        c["username"].as_str().unwrap_or("?"),
        c["password"].as_str().unwrap_or("?"),
        c["expires_at"].as_str().unwrap_or("never (until revoked)")
    )
}

fn instance_line(i: &Value) -> String {
    let mut out = format!(
        "{} ({}): {} repositories, {} live credentials",
        i["name"].as_str().unwrap_or("?"),
        i["state"].as_str().unwrap_or("?"),
        i["repositories"].as_array().map_or(0, Vec::len),
        i["credentials"].as_array().map_or(0, Vec::len),
    );
    for (repository, count) in i["pulls"]["repositories"].as_object().into_iter().flatten() {
        out.push_str(&format!("\n  pulled {repository}: {count}"));
    }
    if let Some(at) = i["pulls"]["last_pull_at"].as_str() {
        out.push_str(&format!("\n  last pull: {at}"));
    }
    out
}

/// Runs one `berth instance` command.
pub async fn run(command: InstanceCommand) -> ExitCode {
    let path = |service: &str| format!("/v1/services/{service}/instances");
    let (api, answer) = match command {
        InstanceCommand::Create { service, name, credential_ttl_seconds, api } => {
            let body = json!({ "name": name, "credential_ttl_seconds": credential_ttl_seconds });
            let answer = crate::api_client(&api).0.post(&path(&service), &body).await;
            return match answer {
                Ok(a) => show(api.output == "json", &a, |a| {
                    format!("{}\n{}", instance_line(&a["instance"]), credential_lines(&a["credential"]))
                }),
                Err(e) => fail(&e),
            };
        }
        InstanceCommand::Rotate { service, name, api } => {
            let answer =
                crate::api_client(&api).0.post(&format!("{}/{name}/credentials", path(&service)), &json!({})).await;
            return match answer {
                Ok(a) => show(api.output == "json", &a, |a| credential_lines(&a["credential"])),
                Err(e) => fail(&e),
            };
        }
        InstanceCommand::List { service, api } => {
            let answer = crate::api_client(&api).0.get(&format!("{}?page_size=100", path(&service))).await;
            return match answer {
                Ok(a) => show(api.output == "json", &a, |a| {
                    let lines: Vec<String> = a["instances"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|i| {
                            format!(
                                "{} ({}): {} repositories, {} live credentials",
                                i["name"].as_str().unwrap_or("?"),
                                i["state"].as_str().unwrap_or("?"),
                                i["repositories"],
                                i["credentials"]
                            )
                        })
                        .collect();
                    lines.join("\n")
                }),
                Err(e) => fail(&e),
            };
        }
        InstanceCommand::Delete { service, name, api } => {
            return match crate::api_client(&api).0.delete(&format!("{}/{name}", path(&service))).await {
                Ok(_) => {
                    eprintln!("instance {name} deleted; its credentials are refused");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        InstanceCommand::Get { service, name, api } => {
            let answer = crate::api_client(&api).0.get(&format!("{}/{name}", path(&service))).await;
            (api, answer)
        }
        InstanceCommand::Suspend { service, name, api } => {
            let answer =
                crate::api_client(&api).0.post(&format!("{}/{name}/suspend", path(&service)), &json!({})).await;
            (api, answer)
        }
        InstanceCommand::Resume { service, name, api } => {
            let answer = crate::api_client(&api).0.post(&format!("{}/{name}/resume", path(&service)), &json!({})).await;
            (api, answer)
        }
    };
    match answer {
        Ok(a) => show(api.output == "json", &a, instance_line),
        Err(e) => fail(&e),
    }
}

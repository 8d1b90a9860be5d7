//! `berth instance`: service instances and their pull credentials.

use std::process::ExitCode;

use berth_api::instance::{
    CreatedInstance, InstancePage, InstanceSummary, InstanceView, IssuedCredential, NewInstance, RotatedCredential,
};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, ClientError, api_client, show};
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

/// Prints an answer (see [`show`]), or the problem.
fn shown<T: serde::de::DeserializeOwned>(
    json: bool,
    answer: Result<Value, ClientError>,
    text: impl FnOnce(T) -> String,
) -> ExitCode {
    match answer {
        Ok(answer) => show(json, answer, text),
        Err(e) => fail(&e),
    }
}

fn credential_lines(c: &IssuedCredential) -> String {
    format!(
        "registry: {}\nusername: {}\npassword: {}\nexpires_at: {}",
        c.registry,
        c.username,
        c.password,
        c.expires_at.as_deref().unwrap_or("never (until revoked)")
    )
}

fn instance_line(i: &InstanceView) -> String {
    let mut out = format!(
        "{} ({}): {} repositories, {} live credentials",
        i.name,
        i.state,
        i.repositories.len(),
        i.credentials.len(),
    );
    for (repository, count) in &i.pulls.repositories {
        out.push_str(&format!("\n  pulled {repository}: {count}"));
    }
    if let Some(at) = &i.pulls.last_pull_at {
        out.push_str(&format!("\n  last pull: {at}"));
    }
    out
}

/// Runs one `berth instance` command.
pub async fn run(command: InstanceCommand) -> ExitCode {
    let path = |service: &str| format!("/v1/services/{service}/instances");
    let (api, answer) = match command {
        InstanceCommand::Create { service, name, credential_ttl_seconds, api } => {
            let body = NewInstance { name, credential_ttl_seconds };
            let answer = api_client(&api).0.post(&path(&service), &body).await;
            return shown(api.output == "json", answer, |a: CreatedInstance| {
                format!("{}\n{}", instance_line(&a.instance), credential_lines(&a.credential))
            });
        }
        InstanceCommand::Rotate { service, name, api } => {
            let answer = api_client(&api).0.post_empty(&format!("{}/{name}/credentials", path(&service))).await;
            return shown(api.output == "json", answer, |a: RotatedCredential| credential_lines(&a.credential));
        }
        InstanceCommand::List { service, api } => {
            let answer = api_client(&api).0.get(&format!("{}?page_size=100", path(&service))).await;
            return shown(api.output == "json", answer, |a: InstancePage| {
                let line = |i: &InstanceSummary| {
                    format!(
                        "{} ({}): {} repositories, {} live credentials",
                        i.name, i.state, i.repositories, i.credentials
                    )
                };
                a.instances.iter().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        InstanceCommand::Delete { service, name, api } => {
            return match api_client(&api).0.delete(&format!("{}/{name}", path(&service))).await {
                Ok(()) => {
                    eprintln!("instance {name} deleted; its credentials are refused");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        InstanceCommand::Get { service, name, api } => {
            let answer = api_client(&api).0.get(&format!("{}/{name}", path(&service))).await;
            (api, answer)
        }
        InstanceCommand::Suspend { service, name, api } => {
            let answer = api_client(&api).0.post_empty(&format!("{}/{name}/suspend", path(&service))).await;
            (api, answer)
        }
        InstanceCommand::Resume { service, name, api } => {
            let answer = api_client(&api).0.post_empty(&format!("{}/{name}/resume", path(&service))).await;
            (api, answer)
        }
    };
    shown(api.output == "json", answer, |i: InstanceView| instance_line(&i))
}

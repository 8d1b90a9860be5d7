//! `berth group ...`: application groups, their hosts and join tokens.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Api, BerthClient, api_client};
use crate::exit::fail;
use crate::fleet::{self, text};

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group; prints its join token (shown only now).
    Create {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        /// `static`, or `scaling` (scaling is paused during releases).
        #[arg(long, value_parser = ["static", "scaling"], default_value = "static")]
        kind: String,
        /// With `--kind scaling`: the AWS Auto Scaling group whose processes releases suspend
        /// (Berth needs BERTH_AUTO_SCALING=aws).
        #[arg(long)]
        auto_scaling_group: Option<String>,
        /// Releases skip hosts not seen for this long (120 to 2592000, default 600).
        #[arg(long)]
        stale_after_seconds: Option<u64>,
        /// The load balancer hosts are drained from before they stop, as JSON:
        /// '{"haproxy":{"runtime_api":"127.0.0.1:9999","backend":"web"},"drain_seconds":10}'
        /// or '{"target_group_arn":"arn:..."}'.
        #[arg(long, value_parser = parse_json)]
        load_balancer: Option<serde_json::Value>,
        #[command(flatten)]
        api: Api,
    },
    /// List an application's groups, newest first.
    List {
        /// The application.
        #[arg(long)]
        application: String,
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Change a group's settings.
    Update {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        /// Releases skip hosts not seen for this long.
        #[arg(long)]
        stale_after_seconds: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a group and its hosts (refused while a release runs on it).
    Delete {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Remove a host: its token is refused at once and later releases leave it out.
    RemoveHost {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group.
        #[arg(long)]
        group: String,
        /// The host id.
        host: String,
        #[command(flatten)]
        api: Api,
    },
    /// List a group's releases (rollbacks and convergences too), newest first, with outcomes.
    Releases {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Show a group: instances, active release, scaling state.
    Get {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Replace the group's join token (prints the new one); the old one is refused at once.
    RotateJoinToken {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke the group's join token: no host joins until it is rotated.
    RevokeJoinToken {
        /// The application.
        #[arg(long)]
        application: String,
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
}

pub async fn group_command(command: GroupCommand) -> ExitCode {
    match command {
        GroupCommand::Create {
            application,
            name,
            kind,
            auto_scaling_group,
            stale_after_seconds,
            load_balancer,
            api,
        } => {
            let (client, json) = api_client(&api);
            let group = NewGroup {
                name: &name,
                kind: &kind,
                auto_scaling_group: auto_scaling_group.as_deref(),
                stale_after_seconds,
                load_balancer,
            };
            create_group(&client, &application, &group, json).await
        }
        GroupCommand::List { application, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/groups");
            fleet::list(&client, &path, "groups", &page, json, group_line).await
        }
        GroupCommand::Update { application, name, stale_after_seconds, api } => {
            update_group(&api_client(&api).0, &application, &name, stale_after_seconds).await
        }
        GroupCommand::Delete { application, name, api } => {
            let path = format!("/v1/applications/{application}/groups/{name}");
            fleet::delete(&api_client(&api).0, &path, &format!("group {name}")).await
        }
        GroupCommand::RemoveHost { application, group, host, api } => {
            let (client, json) = api_client(&api);
            remove_host(&client, &application, &group, &host, json).await
        }
        GroupCommand::Releases { application, name, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/groups/{name}/releases");
            fleet::list(&client, &path, "releases", &page, json, release_line).await
        }
        GroupCommand::Get { application, name, api } => {
            get_group(&api_client(&api).0, &application, &name).await
        }
        GroupCommand::RotateJoinToken { application, name, api } => {
            let (client, json) = api_client(&api);
            rotate_join_token(&client, &application, &name, json).await
        }
        GroupCommand::RevokeJoinToken { application, name, api } => {
            revoke_join_token(&api_client(&api).0, &application, &name).await
        }
    }
}

/// A command-line argument that must be JSON.
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// `POST /v1/applications/{app}/groups` body.
#[derive(serde::Serialize)]
pub struct NewGroup<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<Value>,
}

/// `berth group create --application A NAME [--kind scaling [--auto-scaling-group ASG]]`:
/// prints the join token (shown only now) on stdout, and how to start an agent with it on stderr.
pub async fn create_group(client: &BerthClient, application: &str, group: &NewGroup<'_>, json: bool) -> ExitCode {
    let (name, kind) = (group.name, group.kind);
    let answer = match client.post(&format!("/v1/applications/{application}/groups"), group).await {
        Ok(answer) => answer,
        Err(message) => return fail(&message),
    };
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    eprintln!("group {name} ({kind}) created");
    print_join_token(&answer)
}

/// The join token on stdout, how to start an agent with it on stderr.
fn print_join_token(answer: &serde_json::Value) -> ExitCode {
    let token = answer["join_token"].as_str().unwrap_or_default();
    eprintln!("the join token is below, shown only once; on each host, with it in a file of mode 0600:");
    eprintln!(
        "  berth-agent --berth-url URL --host-id HOST --join-token-file FILE   (or BERTH_JOIN_TOKEN in its environment)"
    );
    println!("{token}");
    ExitCode::SUCCESS
}

/// `berth group rotate-join-token --application A NAME`: a new join token; the old one is
/// refused from now on (registered hosts keep their own host tokens).
pub async fn rotate_join_token(client: &BerthClient, application: &str, name: &str, json: bool) -> ExitCode {
    match client.post(&format!("/v1/applications/{application}/groups/{name}/join-token"), &json!({})).await {
        Ok(answer) if json => {
            println!("{answer:#}");
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!("join token of group {name} rotated; the old one is refused");
            print_join_token(&answer)
        }
        Err(message) => fail(&message),
    }
}

/// `berth group revoke-join-token --application A NAME`: no host joins until a rotation.
pub async fn revoke_join_token(client: &BerthClient, application: &str, name: &str) -> ExitCode {
    match client.delete(&format!("/v1/applications/{application}/groups/{name}/join-token")).await {
        Ok(_) => {
            eprintln!("join token of group {name} revoked; registered hosts keep working");
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// `berth group get --application A NAME`.
pub async fn get_group(client: &BerthClient, application: &str, name: &str) -> ExitCode {
    match client.get(&format!("/v1/applications/{application}/groups/{name}")).await {
        Ok(group) => {
            println!("{group:#}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// A line of `berth group list`.
pub fn group_line(group: &Value) -> String {
    format!(
        "{}\t{}\tstale after {} s\tlast release {} ({})",
        text(&group["name"]),
        text(&group["kind"]),
        text(&group["stale_after_seconds"]),
        text(&group["last_release"]["id"]),
        text(&group["last_release"]["status"])
    )
}

/// A line of `berth group releases`.
pub fn release_line(r: &Value) -> String {
    format!(
        "{}\t{}\t{}\t{} revision {}\t{} hosts",
        text(&r["id"]),
        text(&r["status"]),
        text(&r["trigger"]["kind"]),
        text(&r["deployment"]),
        text(&r["revision"]),
        text(&r["hosts"])
    )
}

/// `berth group remove-host --application A --group G HOST`.
pub async fn remove_host(client: &BerthClient, application: &str, group: &str, host: &str, json: bool) -> ExitCode {
    match client.delete(&format!("/v1/applications/{application}/groups/{group}/instances/{host}")).await {
        Ok(_) if json => {
            println!("{:#}", json!({ "application": application, "group": group, "host": host, "removed": true }));
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("host {host} removed from group {group}: its token is refused, later releases leave it out");
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// `berth group update --application A NAME --stale-after-seconds N`.
pub async fn update_group(
    client: &BerthClient,
    application: &str,
    name: &str,
    stale_after_seconds: Option<u64>,
) -> ExitCode {
    let body = json!({ "stale_after_seconds": stale_after_seconds });
    match client.patch(&format!("/v1/applications/{application}/groups/{name}"), &body).await {
        Ok(group) => {
            println!("{group:#}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

//! `berth group ...`: application groups, their hosts and join tokens.

use std::process::ExitCode;

use berth_api::release::{
    GroupChange, GroupPage, GroupSummary, JoinToken, LoadBalancer, NewGroup, ReleasePage, ReleaseSummary,
};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, BerthClient, api_client, read};
use crate::exit::fail;
use crate::fleet::{self, or_dash};

/// What `berth group` does.
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
        #[arg(long, value_parser = parse_load_balancer)]
        load_balancer: Option<LoadBalancer>,
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

/// Runs one `berth group` command.
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
            let group = NewGroup { name, kind, auto_scaling_group, stale_after_seconds, load_balancer };
            create_group(&client, &application, &group, json).await
        }
        GroupCommand::List { application, page, api } => {
            let (client, json) = api_client(&api);
            let path = format!("/v1/applications/{application}/groups");
            fleet::list::<GroupPage>(&client, &path, &page, json).await
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
            fleet::list::<ReleasePage>(&client, &path, &page, json).await
        }
        GroupCommand::Get { application, name, api } => get_group(&api_client(&api).0, &application, &name).await,
        GroupCommand::RotateJoinToken { application, name, api } => {
            let (client, json) = api_client(&api);
            rotate_join_token(&client, &application, &name, json).await
        }
        GroupCommand::RevokeJoinToken { application, name, api } => {
            revoke_join_token(&api_client(&api).0, &application, &name).await
        }
    }
}

/// A `--load-balancer` that is not a load balancer's JSON.
#[derive(Debug, thiserror::Error)]
#[error("not a load balancer's JSON: {0}")]
struct NotALoadBalancer(#[source] serde_json::Error);

/// `--load-balancer`: JSON of a load balancer.
fn parse_load_balancer(text: &str) -> Result<LoadBalancer, NotALoadBalancer> {
    serde_json::from_str(text).map_err(NotALoadBalancer)
}

/// `berth group create --application A NAME [--kind scaling [--auto-scaling-group ASG]]`:
/// prints the join token (shown only now) on stdout, and how to start an agent with it on stderr.
pub async fn create_group(client: &BerthClient, application: &str, group: &NewGroup, json: bool) -> ExitCode {
    let answer: Value = match client.post(&format!("/v1/applications/{application}/groups"), group).await {
        Ok(answer) => answer,
        Err(error) => return fail(&error),
    };
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    eprintln!("group {} ({}) created", group.name, group.kind);
    print_join_token(answer)
}

/// The join token on stdout, how to start an agent with it on stderr.
fn print_join_token(answer: Value) -> ExitCode {
    let token: JoinToken = match read(answer) {
        Ok(token) => token,
        Err(error) => return fail(&error),
    };
    eprintln!("the join token is below, shown only once; on each host, with it in a file of mode 0600:");
    eprintln!(
        "  berth-agent --berth-url URL --host-id HOST --join-token-file FILE   (or BERTH_JOIN_TOKEN in its environment)"
    );
    println!("{}", token.join_token);
    ExitCode::SUCCESS
}

/// `berth group rotate-join-token --application A NAME`: a new join token; the old one is
/// refused from now on (registered hosts keep their own host tokens).
pub async fn rotate_join_token(client: &BerthClient, application: &str, name: &str, json: bool) -> ExitCode {
    match client.post_empty::<Value>(&format!("/v1/applications/{application}/groups/{name}/join-token")).await {
        Ok(answer) if json => {
            println!("{answer:#}");
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!("join token of group {name} rotated; the old one is refused");
            print_join_token(answer)
        }
        Err(error) => fail(&error),
    }
}

/// `berth group revoke-join-token --application A NAME`: no host joins until a rotation.
pub async fn revoke_join_token(client: &BerthClient, application: &str, name: &str) -> ExitCode {
    match client.delete(&format!("/v1/applications/{application}/groups/{name}/join-token")).await {
        Ok(()) => {
            eprintln!("join token of group {name} revoked; registered hosts keep working");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// `berth group get --application A NAME`: printed as answered.
pub async fn get_group(client: &BerthClient, application: &str, name: &str) -> ExitCode {
    match client.get::<Value>(&format!("/v1/applications/{application}/groups/{name}")).await {
        Ok(group) => {
            println!("{group:#}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

impl fleet::Listing for GroupPage {
    /// A line of `berth group list`.
    fn lines(&self) -> Vec<String> {
        let line = |group: &GroupSummary| {
            format!(
                "{}\t{}\tstale after {} s\tlast release {} ({})",
                group.name,
                group.kind,
                group.stale_after_seconds,
                or_dash(group.last_release.as_ref().map(|r| &r.id)),
                or_dash(group.last_release.as_ref().map(|r| r.status.as_str()))
            )
        };
        self.groups.iter().map(line).collect()
    }

    fn next_page_token(&self) -> Option<&str> {
        self.next_page_token.as_deref()
    }
}

impl fleet::Listing for ReleasePage {
    /// A line of `berth group releases`.
    fn lines(&self) -> Vec<String> {
        let line = |r: &ReleaseSummary| {
            format!(
                "{}\t{}\t{}\t{} revision {}\t{} hosts",
                r.id,
                r.status.as_str(),
                r.trigger.kind(),
                r.deployment,
                r.revision,
                r.hosts
            )
        };
        self.releases.iter().map(line).collect()
    }

    fn next_page_token(&self) -> Option<&str> {
        self.next_page_token.as_deref()
    }
}

/// What `berth group remove-host --output json` prints (the API answers nothing).
#[derive(serde::Serialize)]
struct HostRemoved<'a> {
    application: &'a str,
    group: &'a str,
    host: &'a str,
    removed: bool,
}

/// `berth group remove-host --application A --group G HOST`.
pub async fn remove_host(client: &BerthClient, application: &str, group: &str, host: &str, json: bool) -> ExitCode {
    match client.delete(&format!("/v1/applications/{application}/groups/{group}/instances/{host}")).await {
        Ok(()) if json => {
            let removed = HostRemoved { application, group, host, removed: true };
            println!("{:#}", serde_json::to_value(removed).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(()) => {
            eprintln!("host {host} removed from group {group}: its token is refused, later releases leave it out");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// `berth group update --application A NAME --stale-after-seconds N`: the group as answered.
pub async fn update_group(
    client: &BerthClient,
    application: &str,
    name: &str,
    stale_after_seconds: Option<u64>,
) -> ExitCode {
    let body = GroupChange { stale_after_seconds };
    match client.patch::<_, Value>(&format!("/v1/applications/{application}/groups/{name}"), &body).await {
        Ok(group) => {
            println!("{group:#}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

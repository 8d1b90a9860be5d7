//! Listings (newest first, a page at a time), deletes, host removal, deployment revisions and
//! rollback: the fleet side of `berth application|group|deployment|release`.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::client::BerthClient;
use crate::exit::fail;

/// Which page of a listing to show.
#[derive(clap::Args)]
pub struct PageArgs {
    /// Items per page (1 to 100, default 20).
    #[arg(long)]
    pub page_size: Option<usize>,
    /// The `next_page_token` a previous page printed.
    #[arg(long)]
    pub page_token: Option<String>,
}

impl PageArgs {
    fn query(&self) -> String {
        let mut pairs = Vec::new();
        if let Some(size) = self.page_size {
            pairs.push(format!("page_size={size}"));
        }
        if let Some(token) = &self.page_token {
            pairs.push(format!("page_token={}", urlencoding(token)));
        }
        if pairs.is_empty() { String::new() } else { format!("?{}", pairs.join("&")) }
    }
}

/// Percent-encodes what a page token may hold beyond the unreserved characters.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints one page of `path`'s `key` items: JSON as answered, or one line per item and the
/// token of the next page.
pub async fn list(
    client: &BerthClient,
    path: &str,
    key: &str,
    page: &PageArgs,
    json: bool,
    line: fn(&Value) -> String,
) -> ExitCode {
    let answer = match client.get(&format!("{path}{}", page.query())).await {
        Ok(answer) => answer,
        Err(message) => return fail(&message),
    };
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    for item in answer[key].as_array().into_iter().flatten() {
        println!("{}", line(item));
    }
    if let Some(next) = answer["next_page_token"].as_str() {
        eprintln!("more: --page-token {next}");
    }
    ExitCode::SUCCESS
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A line of `berth application list`.
pub fn application_line(app: &Value) -> String {
    format!("{}\tcreated {}", text(&app["name"]), text(&app["created_at"]))
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

/// A line of `berth deployment list`.
pub fn deployment_line(d: &Value) -> String {
    let image = &d["image"];
    format!(
        "{}\trevision {}\t{}/{}{}",
        text(&d["name"]),
        text(&d["revision"]),
        text(&image["registry"]),
        text(&image["repository"]),
        image["reference"].as_str().unwrap_or("")
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

/// `DELETE path`, saying what went.
pub async fn delete(client: &BerthClient, path: &str, what: &str) -> ExitCode {
    match client.delete(path).await {
        Ok(_) => {
            eprintln!("{what} deleted");
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
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

/// `berth deployment update`: a new revision.
pub async fn update_deployment(client: &BerthClient, args: crate::release::DeploymentArgs, json: bool) -> ExitCode {
    let body = match crate::release::deployment_body(&args) {
        Ok(body) => body,
        Err(message) => return fail(&message),
    };
    match client.put(&format!("/v1/applications/{}/deployments/{}", args.application, args.name), &body).await {
        Ok(answer) if json => {
            println!("{answer:#}");
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            println!("deployment {} is now at revision {}", args.name, text(&answer["revision"]));
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// `berth release rollback ID`: starts the rollback; prints its id.
pub async fn rollback(client: &BerthClient, id: &str, json: bool) -> ExitCode {
    match client.post(&format!("/v1/releases/{id}/rollback"), &json!({})).await {
        Ok(answer) if json => {
            println!("{answer:#}");
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!("rollback of {id} started, back to revision {}", text(&answer["revision"]));
            println!("{}", text(&answer["id"]));
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

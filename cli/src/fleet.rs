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

pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
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


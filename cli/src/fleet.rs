//! What the fleet resources (`berth application|group|deployment|release`) share: listings,
//! newest first and a page at a time, and deletes.

use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{BerthClient, read};
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

/// A page of a listing, as the CLI shows it.
pub trait Listing: DeserializeOwned {
    /// One line per item.
    fn lines(&self) -> Vec<String>;
    /// The token of the next page, if there is one.
    fn next_page_token(&self) -> Option<&str>;
}

/// Prints one page of `path`: JSON as answered, or one line per item and the token of the
/// next page.
pub async fn list<P: Listing>(client: &BerthClient, path: &str, page: &PageArgs, json: bool) -> ExitCode {
    let answer: Value = match client.get(&format!("{path}{}", page.query())).await {
        Ok(answer) => answer,
        Err(error) => return fail(&error),
    };
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    let page: P = match read(answer) {
        Ok(page) => page,
        Err(error) => return fail(&error),
    };
    for line in page.lines() {
        println!("{line}");
    }
    if let Some(next) = page.next_page_token() {
        eprintln!("more: --page-token {next}");
    }
    ExitCode::SUCCESS
}

/// `DELETE path`, saying what went.
pub async fn delete(client: &BerthClient, path: &str, what: &str) -> ExitCode {
    match client.delete(path).await {
        Ok(()) => {
            eprintln!("{what} deleted");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// An optional value as a listing shows it: `-` when absent.
pub fn or_dash(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

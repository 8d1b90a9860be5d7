//! `berth application create|list|delete`.

use std::process::ExitCode;

use berth_api::release::{ApplicationPage, NewApplication};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, BerthClient, api_client};
use crate::exit::fail;
use crate::fleet;

/// What `berth application` does.
#[derive(Subcommand)]
pub enum ApplicationCommand {
    /// Create an application.
    Create {
        /// Its name (lowercase letters, digits, '.', '_', '-').
        name: String,
        #[command(flatten)]
        api: Api,
    },
    /// List your applications, newest first.
    List {
        #[command(flatten)]
        page: fleet::PageArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Delete an application with its groups and deployments (refused while a release runs).
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        api: Api,
    },
}

pub async fn application_command(command: ApplicationCommand) -> ExitCode {
    match command {
        ApplicationCommand::Create { name, api } => {
            let (client, json) = api_client(&api);
            create_application(&client, &name, json).await
        }
        ApplicationCommand::List { page, api } => {
            let (client, json) = api_client(&api);
            fleet::list::<ApplicationPage>(&client, "/v1/applications", &page, json).await
        }
        ApplicationCommand::Delete { name, api } => {
            fleet::delete(&api_client(&api).0, &format!("/v1/applications/{name}"), &format!("application {name}"))
                .await
        }
    }
}

/// `berth application create NAME`.
pub async fn create_application(client: &BerthClient, name: &str, json: bool) -> ExitCode {
    match client.post::<_, Value>("/v1/applications", &NewApplication { name: name.to_owned() }).await {
        Ok(answer) if json => {
            println!("{answer:#}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("application {name} created");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

impl fleet::Listing for ApplicationPage {
    /// A line of `berth application list`.
    fn lines(&self) -> Vec<String> {
        self.applications.iter().map(|app| format!("{}\tcreated {}", app.name, app.created_at)).collect()
    }

    fn next_page_token(&self) -> Option<&str> {
        self.next_page_token.as_deref()
    }
}

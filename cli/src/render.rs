//! `berth render`: a service's template (`--service ID [--template NAME]`) or a local template
//! with its `config.yaml` (`berth render TEMPLATE --config config.yaml`), written to stdout or
//! `-o FILE`; `--dry-run` lists the substitutions without minting a key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_api::render::{RenderAnswer, RenderRequest};
use serde_json::Value;

use crate::client::{BerthClient, read as read_answer};
use crate::exit::fail;
use crate::files::{FileError, read, write_private};

/// Why the flags make no render request (said before Berth is asked).
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("--config and --artifact go with a TEMPLATE file, not --service")]
    ConfigWithService,
    #[error("--template names a service's template; give --service too")]
    TemplateWithoutService,
    #[error("give --service or a TEMPLATE file, not both")]
    ServiceAndFile,
    #[error("give --service ID or a TEMPLATE file (with --config config.yaml)")]
    Nothing,
    #[error("--artifact {0}: expected KEY=PACKAGE")]
    Artifact(String),
    #[error("{}: not UTF-8", path.display())]
    ConfigNotUtf8 {
        path: PathBuf,
        #[source]
        source: std::string::FromUtf8Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// What to render and how.
#[derive(clap::Args)]
pub struct RenderArgs {
    /// A local template file (with `--config`).
    #[arg(value_name = "TEMPLATE")]
    pub template_file: Option<PathBuf>,
    /// Render a template of this service.
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// The service template's name (needed when the service has several).
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// The Compute Nest config.yaml whose relations the TEMPLATE file uses.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Map a config ArtifactId or `Artifact:` key to a Berth package: KEY=PACKAGE (repeatable).
    #[arg(long = "artifact")]
    pub artifacts: Vec<String>,
    /// Write the rendered template here (mode 0600) instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// List the substitutions it would make; mint no key.
    #[arg(long)]
    pub dry_run: bool,
    /// Pin images and charts to their digests.
    #[arg(long)]
    pub pin_digests: bool,
    /// Lifetime of the pull key and file URLs (60..=43200, default 3600).
    #[arg(long)]
    pub credential_ttl_seconds: Option<u64>,
    /// Render for this instance of the service: its pinned versions and a new instance pull
    /// credential, which outlives the render.
    #[arg(long, value_name = "NAME", requires = "service")]
    pub instance: Option<String>,
}

/// Renders and prints or writes the result.
pub async fn run(client: &BerthClient, args: RenderArgs, json: bool) -> ExitCode {
    let (path, body) = match request(&args) {
        Ok(request) => request,
        Err(e) => return fail(&e),
    };
    let answer: Value = match client.post(&path, &body).await {
        Ok(answer) => answer,
        Err(e) => return fail(&e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let answer: RenderAnswer = match read_answer(answer) {
        Ok(answer) => answer,
        Err(e) => return fail(&e),
    };
    if args.dry_run {
        print_substitutions(&answer);
        return ExitCode::SUCCESS;
    }
    let rendered = answer.rendered.as_deref().unwrap_or_default();
    if let Some(key) = &answer.pull_key {
        eprintln!(
            "pull key for {} minted: reaches {}, expires {}",
            key.registry,
            if key.repositories.is_empty() { "no repository".to_owned() } else { key.repositories.join(", ") },
            key.expires_at.as_deref().unwrap_or("")
        );
    }
    let count = answer.substitutions.len();
    match &args.out {
        Some(out) => match write_private(out, rendered.as_bytes()) {
            Ok(()) => {
                eprintln!("{count} identifier(s) replaced; written to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        None => {
            print!("{rendered}");
            eprintln!("{count} identifier(s) replaced");
            ExitCode::SUCCESS
        }
    }
}

/// The route and body for the arguments.
fn request(args: &RenderArgs) -> Result<(String, RenderRequest), RequestError> {
    let mut body = RenderRequest {
        dry_run: args.dry_run,
        pin_digests: args.pin_digests,
        credential_ttl_seconds: args.credential_ttl_seconds,
        ..RenderRequest::default()
    };
    match (&args.service, &args.template_file) {
        (Some(service), None) => {
            if args.config.is_some() || !args.artifacts.is_empty() {
                return Err(RequestError::ConfigWithService);
            }
            body.template = args.template.clone();
            body.instance = args.instance.clone();
            Ok((format!("/v1/services/{service}/render"), body))
        }
        (None, Some(file)) => {
            if args.template.is_some() {
                return Err(RequestError::TemplateWithoutService);
            }
            // The bytes as they are: the server checks the encoding and reports where it breaks.
            body.template_base64 = Some(STANDARD.encode(read(file)?));
            if let Some(config) = &args.config {
                let text = String::from_utf8(read(config)?)
                    .map_err(|source| RequestError::ConfigNotUtf8 { path: config.clone(), source })?;
                body.config = Some(text);
            }
            let mut artifacts = BTreeMap::new();
            for pair in &args.artifacts {
                let (key, package) = pair.split_once('=').ok_or_else(|| RequestError::Artifact(pair.clone()))?;
                artifacts.insert(key.to_owned(), package.to_owned());
            }
            body.artifacts = Some(artifacts);
            Ok(("/v1/render".to_owned(), body))
        }
        (Some(_), Some(_)) => Err(RequestError::ServiceAndFile),
        (None, None) => Err(RequestError::Nothing),
    }
}

/// One line per substitution: where, what, and its value (the pull key is only named).
fn print_substitutions(answer: &RenderAnswer) {
    for s in &answer.substitutions {
        let value = match s.kind.as_str() {
            "pull_key" => "<a pull key for the repositories below, minted at render>",
            _ => s.value.as_deref().unwrap_or(""),
        };
        println!("{}:{}\t{}\t{value}", s.position.line, s.position.column, s.identifier);
    }
    eprintln!("dry run: nothing minted; the pull key would reach: {}", answer.repositories.join(", "));
}

//! `berth render`: a service's template (`--service ID [--template NAME]`) or a local template
//! with its `config.yaml` (`berth render TEMPLATE --config config.yaml`), written to stdout or
//! `-o FILE`; `--dry-run` lists the substitutions without minting a key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::client::BerthClient;

/// What to render and how.
pub struct RenderArgs {
    /// A local template file.
    pub template_file: Option<PathBuf>,
    /// A service whose template to render.
    pub service: Option<String>,
    /// The service template's name.
    pub template: Option<String>,
    /// The `config.yaml` whose relations a local template uses.
    pub config: Option<PathBuf>,
    /// `KEY=PACKAGE` mappings of the config's ArtifactIds or `Artifact:` keys.
    pub artifacts: Vec<String>,
    /// Where to write the rendered template (default stdout).
    pub out: Option<PathBuf>,
    /// List substitutions only.
    pub dry_run: bool,
    /// Pin images and charts to digests.
    pub pin_digests: bool,
    /// Pull key and download URL lifetime.
    pub credential_ttl_seconds: Option<u64>,
    /// Print the whole answer as JSON.
    pub json: bool,
}

/// Renders and prints or writes the result.
pub async fn run(client: &BerthClient, args: RenderArgs) -> ExitCode {
    let (path, body) = match request(&args) {
        Ok(request) => request,
        Err(e) => return fail(&e),
    };
    let answer = match client.post(&path, &body).await {
        Ok(answer) => answer,
        Err(e) => return fail(&e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer).expect("JSON"));
        return ExitCode::SUCCESS;
    }
    if args.dry_run {
        print_substitutions(&answer);
        return ExitCode::SUCCESS;
    }
    let rendered = answer["rendered"].as_str().unwrap_or_default();
    if let Some(key) = answer.get("pull_key") {
        let repositories: Vec<&str> =
            key["repositories"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        eprintln!(
            "pull key for {} minted: reaches {}, expires {}",
            key["registry"].as_str().unwrap_or(""),
            if repositories.is_empty() { "no repository".to_owned() } else { repositories.join(", ") },
            key["expires_at"].as_str().unwrap_or("")
        );
    }
    let count = answer["substitutions"].as_array().map_or(0, Vec::len);
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
fn request(args: &RenderArgs) -> Result<(String, Value), String> {
    let mut body = json!({ "dry_run": args.dry_run, "pin_digests": args.pin_digests });
    if let Some(ttl) = args.credential_ttl_seconds {
        body["credential_ttl_seconds"] = json!(ttl);
    }
    match (&args.service, &args.template_file) {
        (Some(service), None) => {
            if args.config.is_some() || !args.artifacts.is_empty() {
                return Err("--config and --artifact go with a TEMPLATE file, not --service".into());
            }
            if let Some(name) = &args.template {
                body["template"] = json!(name);
            }
            Ok((format!("/v1/services/{service}/render"), body))
        }
        (None, Some(file)) => {
            if args.template.is_some() {
                return Err("--template names a service's template; give --service too".into());
            }
            // The bytes as they are: the server checks the encoding and reports where it breaks.
            body["template_base64"] = json!(STANDARD.encode(read(file)?));
            if let Some(config) = &args.config {
                let text = String::from_utf8(read(config)?).map_err(|_| format!("{}: not UTF-8", config.display()))?;
                body["config"] = json!(text);
            }
            let mut artifacts = BTreeMap::new();
            for pair in &args.artifacts {
                let (key, package) =
                    pair.split_once('=').ok_or_else(|| format!("--artifact {pair}: expected KEY=PACKAGE"))?;
                artifacts.insert(key.to_owned(), package.to_owned());
            }
            body["artifacts"] = json!(artifacts);
            Ok(("/v1/render".to_owned(), body))
        }
        (Some(_), Some(_)) => Err("give --service or a TEMPLATE file, not both".into()),
        (None, None) => Err("give --service ID or a TEMPLATE file (with --config config.yaml)".into()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// One line per substitution: where, what, and its value (the pull key is only named).
fn print_substitutions(answer: &Value) {
    for s in answer["substitutions"].as_array().into_iter().flatten() {
        let value = match s["type"].as_str() {
            Some("pull_key") => "<a pull key for the repositories below, minted at render>".to_owned(),
            _ => s["value"].as_str().unwrap_or("").to_owned(),
        };
        println!(
            "{}:{}\t{}\t{value}",
            s["position"]["line"],
            s["position"]["column"],
            s["identifier"].as_str().unwrap_or("")
        );
    }
    let repositories: Vec<&str> =
        answer["repositories"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    eprintln!("dry run: nothing minted; the pull key would reach: {}", repositories.join(", "));
}

/// Writes a file only its owner can read: rendered templates hold a pull key.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("berth: {message}");
    ExitCode::from(1)
}

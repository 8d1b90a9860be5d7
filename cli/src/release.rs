//! `berth release create|get|cancel|confirm|pause|logs`: releases of a deployment to a group, with
//! `--watch` showing one progress bar per batch and the host states, then the summary.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use clap::Subcommand;

use crate::client::{Api, BerthClient, api_client};
use crate::fleet::text;
use crate::exit::fail;

/// How often `--watch` reads the release.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// What `berth release create` asks for.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// The application.
    #[arg(long)]
    pub application: String,
    /// The deployment to release.
    #[arg(long)]
    pub deployment: String,
    /// The group to release to.
    #[arg(long)]
    pub group: String,
    /// Split the hosts into this many batches.
    #[arg(long, conflicts_with_all = ["batch_size", "percents"])]
    pub batches: Option<usize>,
    /// Or batches of this many hosts.
    #[arg(long, conflicts_with = "percents")]
    pub batch_size: Option<usize>,
    /// Or batches of these percentages (e.g. 10,40,50).
    #[arg(long, value_delimiter = ',')]
    pub percents: Vec<u32>,
    /// Between batches: none, manual, or a number of seconds.
    #[arg(long)]
    pub pause: Option<String>,
    /// With `--pause manual`: seconds a batch waits for `confirm` before the release fails
    /// (default one day).
    #[arg(long)]
    pub pause_timeout: Option<u64>,
    /// Failed hosts tolerated in the whole release: a count or "N%" of its hosts (default 0).
    #[arg(long, value_parser = budget)]
    pub max_failures: Option<Value>,
    /// Failed hosts tolerated in any one batch: a count or "N%" of the batch's hosts
    /// (default: --max-failures).
    #[arg(long, value_parser = budget)]
    pub max_failures_per_batch: Option<Value>,
    /// Pull in each batch instead of on every host first.
    #[arg(long)]
    pub no_pull_first: bool,
    /// When the release fails, roll the hosts it changed back to their previous revision.
    #[arg(long)]
    pub auto_rollback: bool,
    /// A CloudWatch alarm that fails the release when it fires (repeatable).
    #[arg(long = "alarm")]
    pub alarms: Vec<String>,
    /// A Prometheus expression that fails the release when its result is not empty (repeatable).
    #[arg(long = "prometheus-alarm")]
    pub prometheus_alarms: Vec<String>,
    /// How long an alarm source that does not answer is retried before the release fails
    /// (default 120).
    #[arg(long)]
    pub alarm_unreachable_seconds: Option<u64>,
    /// Print the plan (batches and hosts) and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the release: a progress bar per batch, host states, then the summary.
    #[arg(long)]
    pub watch: bool,
}

/// A failure budget as the API takes it: a number, or the "N%" string (Berth checks N).
fn budget(text: &str) -> Result<Value, String> {
    match text.strip_suffix('%') {
        Some(_) => Ok(json!(text)),
        None => text.parse::<usize>().map(|n| json!(n)).map_err(|_| format!("'{text}' is not a count nor N%")),
    }
}

fn body(args: &CreateArgs) -> Result<Value, String> {
    let mut body = json!({ "application": args.application, "deployment": args.deployment, "group": args.group });
    if let Some(n) = args.batches {
        body["batches"] = json!(n);
    }
    if let Some(k) = args.batch_size {
        body["batch_size"] = json!(k);
    }
    if !args.percents.is_empty() {
        body["percents"] = json!(args.percents);
    }
    match args.pause.as_deref() {
        None => {}
        Some("none") => body["pause"] = json!("none"),
        Some("manual") => body["pause"] = json!("manual"),
        Some(seconds) => {
            let seconds: u64 = seconds
                .parse()
                .map_err(|_| format!("--pause: '{seconds}' is not none, manual or a number of seconds"))?;
            body["pause"] = json!("seconds");
            body["pause_seconds"] = json!(seconds);
        }
    }
    if let Some(seconds) = args.pause_timeout {
        body["pause_timeout_seconds"] = json!(seconds);
    }
    if let Some(n) = &args.max_failures {
        body["max_failures"] = n.clone();
    }
    if let Some(n) = &args.max_failures_per_batch {
        body["max_failures_per_batch"] = n.clone();
    }
    if args.no_pull_first {
        body["pull_first"] = json!(false);
    }
    if args.auto_rollback {
        body["auto_rollback"] = json!(true);
    }
    let alarms: Vec<Value> = args
        .alarms
        .iter()
        .map(|name| json!(name))
        .chain(args.prometheus_alarms.iter().map(|expression| json!({ "prometheus": expression })))
        .collect();
    if !alarms.is_empty() {
        body["alarms"] = json!(alarms);
    }
    if let Some(seconds) = args.alarm_unreachable_seconds {
        body["alarm_unreachable_seconds"] = json!(seconds);
    }
    Ok(body)
}

/// `berth release create`.
pub async fn create(client: &BerthClient, args: CreateArgs, json: bool) -> ExitCode {
    let body = match body(&args) {
        Ok(body) => body,
        Err(message) => return fail(&message),
    };
    let path = if args.dry_run { "/v1/releases?dry_run=true" } else { "/v1/releases" };
    let answer = match client.post(path, &body).await {
        Ok(answer) => answer,
        Err(message) => return fail(&message),
    };
    if json && !args.watch {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    if args.dry_run {
        let batches = answer["batches"].as_array().cloned().unwrap_or_default();
        println!(
            "{} hosts in {} batches, image {}",
            answer["hosts"],
            batches.len(),
            answer["image"].as_str().unwrap_or("?")
        );
        for (i, batch) in batches.iter().enumerate() {
            let hosts: Vec<&str> = batch.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!("  batch {}: {}", i + 1, hosts.join(" "));
        }
        return ExitCode::SUCCESS;
    }
    let id = answer["id"].as_str().unwrap_or_default().to_owned();
    eprintln!("release {id} created");
    if !args.watch {
        println!("{id}");
        return ExitCode::SUCCESS;
    }
    watch(client, &id, json).await
}

/// Follows a release to its end: one bar per batch (hosts finished of hosts), the hosts'
/// states as its message, then the summary. Exit code 0 only if it succeeded.
pub async fn watch(client: &BerthClient, id: &str, json: bool) -> ExitCode {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("batch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let mut batch_bars: Vec<ProgressBar> = Vec::new();
    let status_line = bars.add(ProgressBar::new_spinner());
    loop {
        let release = match client.get(&format!("/v1/releases/{id}")).await {
            Ok(release) => release,
            Err(message) => return fail(&message),
        };
        let batches = release["batches"].as_array().cloned().unwrap_or_default();
        while batch_bars.len() < batches.len() {
            let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
            bar.set_prefix((batch_bars.len() + 1).to_string());
            batch_bars.push(bar);
        }
        for (bar, batch) in batch_bars.iter().zip(&batches) {
            let hosts = batch["hosts"].as_array().cloned().unwrap_or_default();
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for host in &hosts {
                *counts.entry(host["state"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            }
            let done = counts
                .iter()
                .filter(|(s, _)| ["succeeded", "failed", "skipped"].contains(&s.as_str()))
                .map(|(_, n)| n)
                .sum::<usize>();
            bar.set_length(hosts.len() as u64);
            bar.set_position(done as u64);
            bar.set_message(counts.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "));
        }
        let status = release["status"].as_str().unwrap_or("?").to_owned();
        status_line.set_message(format!("{status} ({})", phase_text(&release["phase"])));
        if status != "running" {
            for bar in &batch_bars {
                bar.finish();
            }
            status_line.finish_and_clear();
            if json {
                println!("{release:#}");
            } else {
                print_summary(&release);
            }
            return if status == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

fn phase_text(phase: &Value) -> String {
    match phase["step"].as_str() {
        Some("batch") => format!("batch {}", phase["batch"].as_u64().unwrap_or(0) + 1),
        Some("draining") => {
            format!("draining batch {} from the load balancer", phase["batch"].as_u64().unwrap_or(0) + 1)
        }
        Some("waiting") => format!("waiting before batch {}", phase["next"].as_u64().unwrap_or(0) + 1),
        Some("awaiting_confirm") => {
            format!("waiting for `berth release confirm` before batch {}", phase["next"].as_u64().unwrap_or(0) + 1)
        }
        Some(other) => other.replace('_', " "),
        None => "?".into(),
    }
}

fn print_summary(release: &Value) {
    println!(
        "release {}: {}{}",
        release["id"].as_str().unwrap_or("?"),
        release["status"].as_str().unwrap_or("?"),
        release["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    if let Some(lb) = release["load_balancer"].as_object() {
        let target = match (lb.get("haproxy"), lb.get("target_group_arn").and_then(Value::as_str)) {
            (Some(h), _) => format!("HAProxy backend {} at {}", h["backend"], h["runtime_api"]),
            (_, Some(arn)) => format!("target group {arn}"),
            _ => "?".into(),
        };
        let error = lb.get("error").and_then(Value::as_str).map(|e| format!("; error: {e}")).unwrap_or_default();
        println!("  load balancer: {target}, drain {} s{error}", lb.get("drain_seconds").unwrap_or(&Value::Null));
    }
    if let Some(error) = release["alarms_unreachable"]["error"].as_str() {
        println!("  alarms unreachable since {}: {error}", release["alarms_unreachable"]["unreachable_since"]);
    }
    for batch in release["batches"].as_array().into_iter().flatten() {
        for host in batch["hosts"].as_array().into_iter().flatten() {
            let mut detail = match (host["step"].as_str(), host["reason"].as_str()) {
                (Some(step), Some(reason)) if host["state"] == "failed" => format!("  {step}: {reason}"),
                _ => String::new(),
            };
            if let Some(lb) = host["load_balancer"]["state"].as_str() {
                detail.push_str(&format!("  (load balancer: {})", lb.replace('_', " ")));
            }
            println!(
                "  batch {} {:<24} {}{detail}",
                batch["batch"],
                host["host"].as_str().unwrap_or("?"),
                host["state"].as_str().unwrap_or("?")
            );
        }
    }
}

/// `berth release get ID`.
pub async fn get(client: &BerthClient, id: &str, json: bool) -> ExitCode {
    match client.get(&format!("/v1/releases/{id}")).await {
        Ok(release) if json => {
            println!("{release:#}");
            ExitCode::SUCCESS
        }
        Ok(release) => {
            print_summary(&release);
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// `berth release cancel|confirm|pause ID`.
pub async fn act(client: &BerthClient, id: &str, action: &str) -> ExitCode {
    match client.post(&format!("/v1/releases/{id}/{action}"), &json!({})).await {
        Ok(release) => {
            print_summary(&release);
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// `berth release logs ID --host H`: every step's full output, stdout then stderr.
pub async fn logs(client: &BerthClient, id: &str, host: &str, json: bool) -> ExitCode {
    let logs = match client.get(&format!("/v1/releases/{id}/hosts/{host}/logs")).await {
        Ok(logs) => logs,
        Err(message) => return fail(&message),
    };
    if json {
        println!("{logs:#}");
        return ExitCode::SUCCESS;
    }
    println!("host {host}: {}", logs["state"].as_str().unwrap_or("?"));
    if let Some(result) = logs["result"].as_object() {
        println!(
            "result: step {} exit code {}{}",
            result.get("step").and_then(Value::as_str).unwrap_or("?"),
            result.get("exit_code").map(Value::to_string).unwrap_or_else(|| "-".into()),
            result.get("reason").and_then(Value::as_str).map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    for step in ["pull", "stop", "start"] {
        let output = &logs[step];
        if output.is_null() {
            continue;
        }
        for stream in ["stdout", "stderr"] {
            let text = output[stream].as_str().unwrap_or("");
            println!("----- {step} {stream} ({} bytes) -----", text.len());
            print!("{text}");
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
        }
    }
    ExitCode::SUCCESS
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Start a release (or plan one with --dry-run).
    Create {
        #[command(flatten)]
        args: CreateArgs,
        #[command(flatten)]
        api: Api,
    },
    /// Show a release with every host's state (--watch follows it to its end).
    Get {
        /// The release id.
        id: String,
        /// Follow it to its end.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Cancel a release: batches not started never start; scaling resumes.
    Cancel {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Start the next batch of a release paused for confirmation.
    Confirm {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Pause a running release before its next batch; each batch then waits for `confirm`.
    Pause {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Roll a release back: each host it changed goes back to its previous revision.
    Rollback {
        /// The release id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Print the full output of each step run on one host.
    Logs {
        /// The release id.
        id: String,
        /// The host.
        #[arg(long)]
        host: String,
        #[command(flatten)]
        api: Api,
    },
}

pub async fn release_command(command: ReleaseCommand) -> ExitCode {
    let client = api_client;
    match command {
        ReleaseCommand::Create { args, api } => {
            let (client, json) = client(&api);
            create(&client, args, json).await
        }
        ReleaseCommand::Get { id, watch, api } => {
            let (client, json) = client(&api);
            if watch { watch(&client, &id, json).await } else { get(&client, &id, json).await }
        }
        ReleaseCommand::Cancel { id, api } => act(&client(&api).0, &id, "cancel").await,
        ReleaseCommand::Confirm { id, api } => act(&client(&api).0, &id, "confirm").await,
        ReleaseCommand::Pause { id, api } => act(&client(&api).0, &id, "pause").await,
        ReleaseCommand::Rollback { id, api } => {
            let (client, json) = client(&api);
            rollback(&client, &id, json).await
        }
        ReleaseCommand::Logs { id, host, api } => {
            let (client, json) = client(&api);
            logs(&client, &id, &host, json).await
        }
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

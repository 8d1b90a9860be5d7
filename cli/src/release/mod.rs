//! `berth release create|get|cancel|confirm|pause|rollback|logs`: releases of a deployment to
//! a group, with `--watch` showing one progress bar per batch and the host states, then the
//! summary.

use std::process::ExitCode;

use berth_api::release::{Alarm, Budget, DryRun, HostLogsView, PauseMode, ReleaseRequest, ReleaseView};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, BerthClient, api_client, read};
use crate::exit::fail;

mod watch;
use watch::print_release;
pub use watch::watch;

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
    pub max_failures: Option<Budget>,
    /// Failed hosts tolerated in any one batch: a count or "N%" of the batch's hosts
    /// (default: --max-failures).
    #[arg(long, value_parser = budget)]
    pub max_failures_per_batch: Option<Budget>,
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

/// A flag of `berth release create` that says nothing Berth would take.
#[derive(Debug, thiserror::Error)]
enum FlagError {
    #[error("'{text}': {source}")]
    Percent {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("'{text}' is not a count nor N%")]
    Budget {
        text: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("--pause: '{text}' is not none, manual or a number of seconds")]
    Pause {
        text: String,
        #[source]
        source: std::num::ParseIntError,
    },
}

/// A failure budget as the API takes it: a number, or "N%" (Berth checks N).
fn budget(text: &str) -> Result<Budget, FlagError> {
    let text_owned = || text.to_owned();
    match text.strip_suffix('%') {
        Some(_) => serde_json::from_value(Value::String(text.to_owned()))
            .map_err(|source| FlagError::Percent { text: text_owned(), source }),
        None => {
            text.parse::<usize>().map(Budget::Count).map_err(|source| FlagError::Budget { text: text_owned(), source })
        }
    }
}

fn body(args: &CreateArgs) -> Result<ReleaseRequest, FlagError> {
    let (pause, pause_seconds) = match args.pause.as_deref() {
        None | Some("none") => (PauseMode::None, None),
        Some("manual") => (PauseMode::Manual, None),
        Some(seconds) => {
            let seconds: u64 =
                seconds.parse().map_err(|source| FlagError::Pause { text: seconds.to_owned(), source })?;
            (PauseMode::Seconds, Some(seconds))
        }
    };
    let alarms = args
        .alarms
        .iter()
        .map(|name| Alarm::CloudWatch(name.clone()))
        .chain(args.prometheus_alarms.iter().map(|expression| Alarm::Prometheus { prometheus: expression.clone() }))
        .collect();
    Ok(ReleaseRequest {
        application: args.application.clone(),
        deployment: args.deployment.clone(),
        group: args.group.clone(),
        batches: args.batches,
        batch_size: args.batch_size,
        percents: (!args.percents.is_empty()).then(|| args.percents.clone()),
        pause,
        pause_seconds,
        pause_timeout_seconds: args.pause_timeout,
        max_failures: args.max_failures,
        max_failures_per_batch: args.max_failures_per_batch,
        pull_first: args.no_pull_first.then_some(false),
        auto_rollback: args.auto_rollback.then_some(true),
        alarms,
        alarm_unreachable_seconds: args.alarm_unreachable_seconds,
    })
}

/// `berth release create`.
pub async fn create(client: &BerthClient, args: CreateArgs, json: bool) -> ExitCode {
    let body = match body(&args) {
        Ok(body) => body,
        Err(error) => return fail(&error),
    };
    let path = if args.dry_run { "/v1/releases?dry_run=true" } else { "/v1/releases" };
    let answer: Value = match client.post(path, &body).await {
        Ok(answer) => answer,
        Err(error) => return fail(&error),
    };
    if json && !args.watch {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    if args.dry_run {
        let plan: DryRun = match read(answer) {
            Ok(plan) => plan,
            Err(error) => return fail(&error),
        };
        println!("{} hosts in {} batches, image {}", plan.hosts, plan.batches.len(), plan.image);
        for (i, hosts) in plan.batches.iter().enumerate() {
            println!("  batch {}: {}", i + 1, hosts.join(" "));
        }
        return ExitCode::SUCCESS;
    }
    let release: ReleaseView = match read(answer) {
        Ok(release) => release,
        Err(error) => return fail(&error),
    };
    eprintln!("release {} created", release.id);
    if !args.watch {
        println!("{}", release.id);
        return ExitCode::SUCCESS;
    }
    watch(client, &release.id, json).await
}

/// `berth release get ID`.
pub async fn get(client: &BerthClient, id: &str, json: bool) -> ExitCode {
    match client.get(&format!("/v1/releases/{id}")).await {
        Ok(answer) => print_release(answer, json),
        Err(error) => fail(&error),
    }
}

/// `berth release cancel|confirm|pause ID`.
pub async fn act(client: &BerthClient, id: &str, action: &str) -> ExitCode {
    match client.post_empty(&format!("/v1/releases/{id}/{action}")).await {
        Ok(answer) => print_release(answer, false),
        Err(error) => fail(&error),
    }
}

/// `berth release logs ID --host H`: every step's full output, stdout then stderr.
pub async fn logs(client: &BerthClient, id: &str, host: &str, json: bool) -> ExitCode {
    let answer: Value = match client.get(&format!("/v1/releases/{id}/hosts/{host}/logs")).await {
        Ok(answer) => answer,
        Err(error) => return fail(&error),
    };
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    let logs: HostLogsView = match read(answer) {
        Ok(logs) => logs,
        Err(error) => return fail(&error),
    };
    println!("host {host}: {}", logs.state.as_str());
    if let Some(result) = &logs.result {
        println!(
            "result: step {} exit code {}{}",
            result.step.as_str(),
            result.exit_code.map_or_else(|| "null".to_owned(), |code| code.to_string()),
            result.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    for (step, output) in [("pull", &logs.pull), ("stop", &logs.stop), ("start", &logs.start)] {
        let Some(output) = output else { continue };
        for (stream, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
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

/// Runs one `berth release` command.
pub async fn release_command(command: ReleaseCommand) -> ExitCode {
    match command {
        ReleaseCommand::Create { args, api } => {
            let (client, json) = api_client(&api);
            create(&client, args, json).await
        }
        ReleaseCommand::Get { id, watch: follow, api } => {
            let (client, json) = api_client(&api);
            if follow { watch(&client, &id, json).await } else { get(&client, &id, json).await }
        }
        ReleaseCommand::Cancel { id, api } => act(&api_client(&api).0, &id, "cancel").await,
        ReleaseCommand::Confirm { id, api } => act(&api_client(&api).0, &id, "confirm").await,
        ReleaseCommand::Pause { id, api } => act(&api_client(&api).0, &id, "pause").await,
        ReleaseCommand::Rollback { id, api } => {
            let (client, json) = api_client(&api);
            rollback(&client, &id, json).await
        }
        ReleaseCommand::Logs { id, host, api } => {
            let (client, json) = api_client(&api);
            logs(&client, &id, &host, json).await
        }
    }
}

/// `berth release rollback ID`: starts the rollback; prints its id.
pub async fn rollback(client: &BerthClient, id: &str, json: bool) -> ExitCode {
    let answer: Value = match client.post_empty(&format!("/v1/releases/{id}/rollback")).await {
        Ok(answer) => answer,
        Err(error) => return fail(&error),
    };
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    match read::<ReleaseView>(answer) {
        Ok(rollback) => {
            eprintln!("rollback of {id} started, back to revision {}", rollback.revision);
            println!("{}", rollback.id);
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        create: CreateArgs,
    }

    fn parse(flags: &[&str]) -> CreateArgs {
        let base = ["berth", "--application", "a", "--deployment", "d", "--group", "g"];
        Flags::try_parse_from(base.iter().chain(flags)).unwrap().create
    }

    #[test]
    fn a_release_request_says_what_the_flags_say() {
        let flags = "--batches 2 --pause 30 --max-failures 10% --max-failures-per-batch 1 --no-pull-first \
                     --auto-rollback --alarm cpu --prometheus-alarm up==0";
        let args = parse(&flags.split_whitespace().collect::<Vec<_>>());
        let sent = serde_json::to_value(body(&args).unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({
                "application": "a", "deployment": "d", "group": "g", "batches": 2,
                "pause": "seconds", "pause_seconds": 30, "max_failures": "10%", "max_failures_per_batch": 1,
                "pull_first": false, "auto_rollback": true, "alarms": ["cpu", { "prometheus": "up==0" }],
            })
        );
    }

    #[test]
    fn a_pause_that_is_neither_a_mode_nor_seconds_is_refused_before_asking() {
        let refused = body(&parse(&["--pause", "soon"])).unwrap_err();
        assert!(matches!(refused, FlagError::Pause { .. }) && refused.to_string().starts_with("--pause: 'soon'"));
        assert!(
            Flags::try_parse_from([
                "berth",
                "--application",
                "a",
                "--deployment",
                "d",
                "--group",
                "g",
                "--max-failures",
                "x"
            ])
            .is_err()
        );
    }
}

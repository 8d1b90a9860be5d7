//! `--watch` and the summaries: one progress bar per batch with the hosts' states, then the
//! release as a person reads it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use berth_api::release::{HostState, LoadBalancerView, Phase, ReleaseStatus, ReleaseView};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::{BerthClient, read};
use crate::exit::fail;

/// How often `--watch` reads the release.
const WATCH_EVERY: Duration = Duration::from_millis(500);

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
        let answer: Value = match client.get(&format!("/v1/releases/{id}")).await {
            Ok(answer) => answer,
            Err(error) => return fail(&error),
        };
        let release: ReleaseView = match read(answer.clone()) {
            Ok(release) => release,
            Err(error) => return fail(&error),
        };
        while batch_bars.len() < release.batches.len() {
            let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
            bar.set_prefix((batch_bars.len() + 1).to_string());
            batch_bars.push(bar);
        }
        for (bar, batch) in batch_bars.iter().zip(&release.batches) {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for host in &batch.hosts {
                *counts.entry(host.state.as_str()).or_default() += 1;
            }
            let done = batch.hosts.iter().filter(|host| host.state.is_final()).count();
            bar.set_length(batch.hosts.len() as u64);
            bar.set_position(done as u64);
            bar.set_message(counts.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "));
        }
        status_line.set_message(format!("{} ({})", release.status.as_str(), phase_text(release.phase)));
        if release.status != ReleaseStatus::Running {
            for bar in &batch_bars {
                bar.finish();
            }
            status_line.finish_and_clear();
            if json {
                println!("{answer:#}");
            } else {
                print_summary(&release);
            }
            return if release.status == ReleaseStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

fn phase_text(phase: Phase) -> String {
    match phase {
        Phase::Batch { batch } => format!("batch {}", batch + 1),
        Phase::Draining { batch } => format!("draining batch {} from the load balancer", batch + 1),
        Phase::Waiting { next, .. } => format!("waiting before batch {}", next + 1),
        Phase::AwaitingConfirm { next } => format!("waiting for `berth release confirm` before batch {}", next + 1),
        Phase::Starting => "starting".into(),
        Phase::Pulling => "pulling".into(),
        Phase::Done => "done".into(),
    }
}

/// `HAProxy backend "web" at "127.0.0.1:9999"`, or the target group.
fn load_balancer_text(lb: &LoadBalancerView) -> String {
    let target = match (&lb.haproxy, &lb.target_group_arn) {
        (Some(h), _) => format!("HAProxy backend {:?} at {:?}", h.backend, h.runtime_api),
        (_, Some(arn)) => format!("target group {arn}"),
        _ => "?".into(),
    };
    let error = lb.error.as_ref().map(|e| format!("; error: {e}")).unwrap_or_default();
    let drain = lb.drain_seconds.map_or_else(|| "null".to_owned(), |s| s.to_string());
    format!("{target}, drain {drain} s{error}")
}

fn print_summary(release: &ReleaseView) {
    println!(
        "release {}: {}{}",
        release.id,
        release.status.as_str(),
        release.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    if let Some(lb) = &release.load_balancer {
        println!("  load balancer: {}", load_balancer_text(lb));
    }
    if let Some(alarms) = &release.alarms_unreachable
        && let Some(error) = &alarms.error
    {
        let since = alarms.unreachable_since.map_or_else(|| "null".to_owned(), |s| s.to_string());
        println!("  alarms unreachable since {since}: {error}");
    }
    for batch in &release.batches {
        for host in &batch.hosts {
            let mut detail = match (host.step, &host.reason) {
                (Some(step), Some(reason)) if host.state == HostState::Failed => {
                    format!("  {}: {reason}", step.as_str())
                }
                _ => String::new(),
            };
            if let Some(lb) = host.load_balancer {
                detail.push_str(&format!("  (load balancer: {})", lb.as_str().replace('_', " ")));
            }
            println!("  batch {} {:<24} {}{detail}", batch.batch, host.host, host.state.as_str());
        }
    }
}

/// Prints a release answer: JSON as answered, or its summary.
pub(super) fn print_release(answer: Value, json: bool) -> ExitCode {
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    match read::<ReleaseView>(answer) {
        Ok(release) => {
            print_summary(&release);
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

//! Release requests: batching, pauses, failure budgets, and the batches of hosts they plan.

use super::*;

/// How to split hosts into batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batching {
    /// This many near-equal batches (fewer when there are fewer hosts).
    Count(usize),
    /// Batches of this size; the last may be smaller.
    Size(usize),
    /// Percentages of the hosts, summing to 100; empty batches are dropped.
    Percents(Vec<u32>),
}

/// The validated options of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseOptions {
    /// How hosts are split.
    pub batching: Batching,
    /// Between batches.
    pub pause: PauseMode,
    /// With [`PauseMode::Seconds`].
    pub pause_seconds: u64,
    /// With [`PauseMode::Manual`]: the release fails (and scaling resumes) when nobody
    /// confirms within this time. Plans written before it existed get the default.
    #[serde(default = "default_pause_timeout")]
    pub pause_timeout_seconds: u64,
    /// Failed hosts tolerated in the whole release (resolved, when asked in percent).
    pub max_failures: usize,
    /// Failed hosts tolerated per batch (resolved; in percent, the largest batch's count:
    /// `batch_max_failures` has each batch's).
    pub max_failures_per_batch: usize,
    /// Pull everywhere before stopping anywhere.
    pub pull_first: bool,
    /// Roll back by itself when it fails. Plans from before it existed do not.
    #[serde(default)]
    pub auto_rollback: bool,
    /// Alarms that fail the release when they fire (checked before each batch, through
    /// pauses, and every [`ALARM_CHECK_SECONDS`] while a batch runs). A rollback has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<Alarm>,
    /// How long an unreachable alarm source is retried before the release fails.
    #[serde(default = "default_alarm_unreachable")]
    pub alarm_unreachable_seconds: u64,
    /// The budgets as asked, when one is in percent: each plan of hosts (the release's, its
    /// rollback's) resolves them again with [`resolve_budgets`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets_asked: Option<BudgetsAsked>,
    /// Failed hosts tolerated in each batch, resolved from a percent; empty when every batch
    /// has `max_failures_per_batch`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch_max_failures: Vec<usize>,
}

fn default_alarm_unreachable() -> u64 {
    DEFAULT_ALARM_UNREACHABLE_SECONDS
}

impl ReleaseOptions {
    /// Failed hosts tolerated in batch `batch` (from 0).
    pub fn batch_budget(&self, batch: usize) -> usize {
        self.batch_max_failures.get(batch).copied().unwrap_or(self.max_failures_per_batch)
    }
}

/// Budgets with a percent in them, as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetsAsked {
    pub max_failures: Budget,
    /// Absent: each batch may use the whole release's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures_per_batch: Option<Budget>,
}

fn validate_budget(field: &str, budget: Option<Budget>) -> Result<Option<Budget>, ApiError> {
    match budget {
        Some(Budget::Percent(p)) if p > 100 => Err(ApiError::invalid(
            field,
            "invalid_budget",
            "a count of hosts, or a percent of them written \"N%\" with N from 0 to 100",
        )),
        Some(Budget::Count(n)) if n > MAX_RELEASE_HOSTS => {
            Err(ApiError::invalid(field, "out_of_range", format!("must be 0 to {MAX_RELEASE_HOSTS}")))
        }
        other => Ok(other),
    }
}

/// Resolves budgets asked in percent for a plan's batches: the release's budget from all its
/// hosts, each batch's from its own, rounded down (as SSM's `MaxErrors`).
pub fn resolve_budgets(options: &mut ReleaseOptions, batches: &[Vec<String>]) {
    let Some(asked) = &options.budgets_asked else { return };
    let hosts = batches.iter().map(Vec::len).sum();
    options.max_failures = asked.max_failures.of(hosts);
    options.batch_max_failures = match asked.max_failures_per_batch {
        Some(budget) => batches.iter().map(|b| budget.of(b.len())).collect(),
        None => vec![options.max_failures; batches.len()],
    };
    options.max_failures_per_batch = options.batch_max_failures.iter().copied().max().unwrap_or(0);
}

fn default_pause_timeout() -> u64 {
    DEFAULT_PAUSE_TIMEOUT_SECONDS
}

/// Validates the options of a release request.
pub fn validate_options(request: &ReleaseRequest) -> Result<ReleaseOptions, ApiError> {
    validate_name("application", &request.application)?;
    validate_name("deployment", &request.deployment)?;
    validate_name("group", &request.group)?;
    let given = [request.batches.is_some(), request.batch_size.is_some(), request.percents.is_some()];
    let batching = match (&request.batches, &request.batch_size, &request.percents) {
        _ if given.iter().filter(|g| **g).count() > 1 => {
            return Err(ApiError::invalid(
                "batches",
                "conflicting_fields",
                "give only one of batches, batch_size and percents",
            ));
        }
        (Some(n), _, _) => {
            if !(1..=MAX_BATCHES).contains(n) {
                return Err(ApiError::invalid("batches", "out_of_range", format!("must be 1 to {MAX_BATCHES}")));
            }
            Batching::Count(*n)
        }
        (_, Some(k), _) => {
            if *k == 0 || *k > MAX_RELEASE_HOSTS {
                return Err(ApiError::invalid(
                    "batch_size",
                    "out_of_range",
                    format!("must be 1 to {MAX_RELEASE_HOSTS}"),
                ));
            }
            Batching::Size(*k)
        }
        (_, _, Some(p)) => {
            if p.is_empty() || p.len() > MAX_BATCHES {
                return Err(ApiError::invalid("percents", "out_of_range", format!("give 1 to {MAX_BATCHES} batches")));
            }
            if let Some(i) = p.iter().position(|v| *v == 0 || *v > 100) {
                return Err(ApiError::invalid(format!("percents[{i}]"), "out_of_range", "each must be 1 to 100"));
            }
            if p.iter().sum::<u32>() != 100 {
                return Err(ApiError::invalid("percents", "invalid_sum", "the percentages must add up to 100"));
            }
            Batching::Percents(p.clone())
        }
        (None, None, None) => Batching::Count(1),
    };
    let pause_seconds = match (request.pause, request.pause_seconds) {
        (PauseMode::Seconds, Some(s)) if (1..=MAX_PAUSE_SECONDS).contains(&s) => s,
        (PauseMode::Seconds, _) => {
            return Err(ApiError::invalid(
                "pause_seconds",
                "out_of_range",
                format!("pause: seconds needs pause_seconds from 1 to {MAX_PAUSE_SECONDS}"),
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid("pause_seconds", "conflicting_fields", "only with pause: seconds"));
        }
        (_, None) => 0,
    };
    let pause_timeout_seconds = match (request.pause, request.pause_timeout_seconds) {
        (PauseMode::Manual, Some(s)) if (1..=MAX_PAUSE_TIMEOUT_SECONDS).contains(&s) => s,
        (PauseMode::Manual, Some(_)) => {
            return Err(ApiError::invalid(
                "pause_timeout_seconds",
                "out_of_range",
                format!("must be 1 to {MAX_PAUSE_TIMEOUT_SECONDS}"),
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid("pause_timeout_seconds", "conflicting_fields", "only with pause: manual"));
        }
        (_, None) => DEFAULT_PAUSE_TIMEOUT_SECONDS,
    };
    validate_alarms(&request.alarms)?;
    let alarm_unreachable_seconds = validate_alarm_unreachable(request.alarm_unreachable_seconds)?;
    let asked = validate_budget("max_failures", request.max_failures)?.unwrap_or(Budget::Count(0));
    let per_batch = validate_budget("max_failures_per_batch", request.max_failures_per_batch)?;
    let in_percent = matches!(asked, Budget::Percent(_)) || matches!(per_batch, Some(Budget::Percent(_)));
    let max_failures = match asked {
        Budget::Count(n) => n,
        Budget::Percent(_) => 0,
    };
    let max_failures_per_batch = match per_batch {
        Some(Budget::Count(n)) => n,
        _ => max_failures,
    };
    Ok(ReleaseOptions {
        batching,
        pause: request.pause,
        pause_seconds,
        pause_timeout_seconds,
        max_failures,
        max_failures_per_batch,
        pull_first: request.pull_first.unwrap_or(true),
        auto_rollback: request.auto_rollback.unwrap_or(false),
        alarms: request.alarms.clone(),
        alarm_unreachable_seconds,
        budgets_asked: in_percent.then_some(BudgetsAsked { max_failures: asked, max_failures_per_batch: per_batch }),
        batch_max_failures: Vec::new(),
    })
}

/// Splits `hosts` (in the given order) into batches. Errors name the field at fault.
pub fn plan_batches(hosts: &[String], batching: &Batching) -> Result<Vec<Vec<String>>, ApiError> {
    let n = hosts.len();
    if n == 0 {
        return Err(ApiError::Conflict {
            code: "group_empty",
            message: "the group has no hosts: start berth-agent with the group's join token first".into(),
        });
    }
    if n > MAX_RELEASE_HOSTS {
        return Err(ApiError::Conflict {
            code: "group_too_large",
            message: format!("a release reaches at most {MAX_RELEASE_HOSTS} hosts"),
        });
    }
    let sizes: Vec<usize> = match batching {
        Batching::Count(count) => {
            let count = (*count).min(n);
            (0..count).map(|i| n / count + usize::from(i < n % count)).collect()
        }
        Batching::Size(size) => {
            let size = (*size).min(n);
            (0..n.div_ceil(size)).map(|i| size.min(n - i * size)).collect()
        }
        Batching::Percents(percents) => {
            // Cumulative rounding up, so every host lands in exactly one batch.
            let mut cumulative = 0u64;
            let mut done = 0usize;
            percents
                .iter()
                .map(|p| {
                    cumulative += u64::from(*p);
                    let end = ((n as u64 * cumulative).div_ceil(100) as usize).min(n);
                    let size = end - done;
                    done = end;
                    size
                })
                .filter(|s| *s > 0)
                .collect()
        }
    };
    let mut rest = hosts;
    Ok(sizes
        .into_iter()
        .map(|size| {
            let (batch, tail) = rest.split_at(size);
            rest = tail;
            batch.to_vec()
        })
        .collect())
}

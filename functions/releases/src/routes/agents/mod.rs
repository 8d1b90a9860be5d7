//! The agents' side: register with a join token, then poll and report with the host token.
//! `auth` authenticates a host, `poll` hands out jobs (their scheduling is the engine's,
//! `engine::jobs`), `report` takes outcomes and health news, `logs` takes output parts, and
//! `channel` is the wake channel that tells a host to poll.

use super::*;
use crate::engine::Plan;

mod auth;
mod channel;
mod logs;
mod poll;
mod report;

pub use auth::Host;
pub(super) use auth::bearer;
pub use channel::{channel, channel_event};
pub use logs::{LogPartQuery, upload_log_part};
pub use poll::{DEFAULT_POLL_SECONDS, MAX_POLL_SECONDS, PollQuery, WATCH_HEADER, poll};
pub use report::{HealthNewsAccepted, ReportAccepted, ReportQuery, health_news, report};

/// Where `host` is in `plan`, if the plan is a release of the host's own group (another
/// group's release is as absent as a missing one).
fn planned_in(plan: &Plan, host: &HostRef) -> Option<crate::engine::PlannedHost> {
    let (release, group) = (&plan.release, &host.group);
    let same_group =
        release.account == group.account && release.application == group.application && release.group == group.group;
    plan.host(&host.host).filter(|_| same_group)
}

fn refused(why: impl std::fmt::Display) -> ApiError {
    ApiError::Conflict { code: "job_not_handed_out", message: why.to_string() }
}

//! A host's logs one stored part at a time, for viewers (the console) that must stay fast with a
//! job's 256 MiB of output: each answer reads the logs' head and at most one part.

use super::*;
use crate::routes::releases::load_release;
use release::{LOG_PART_BYTES, LogPart, split_logs};

/// Where the text of one job's logs is: inline in the head (cut here into parts of the same size,
/// so a viewer pages it alike), then in part documents, which continue the head's streams.
struct Pages {
    head: Vec<LogPart>,
    kind: JobKind,
    stored: usize,
}

impl Pages {
    fn count(&self) -> usize {
        self.head.len() + self.stored
    }
}

async fn pages_of(engine: &Engine, kind: JobKind, id: &str, host: &str) -> Result<Pages, ApiError> {
    let stored = engine.context.store.get::<StoredLogs>(&layout::job_logs(kind, id, host)).await?.map(|d| d.value);
    Ok(match stored {
        Some(stored) => Pages { head: split_logs(&stored.logs, LOG_PART_BYTES).1, kind, stored: stored.parts },
        None => Pages { head: Vec::new(), kind, stored: 0 },
    })
}

/// `GET /v1/releases/{id}/hosts/{host}/logs/{part}` answer: the host's outcome and part `part`
/// of its output (pull first, then stop, start and health; stdout before stderr within a step).
#[derive(Serialize)]
pub struct HostLogPart {
    host: String,
    /// The index asked for.
    part: usize,
    /// How many parts there are (0: no output yet).
    parts: usize,
    release: String,
    #[serde(serialize_with = "sorted_keys")]
    result: Option<HostResult>,
    state: release::HostState,
    /// `pull`, `stop` or `start`; null past the last part.
    step: Option<String>,
    /// `stdout` or `stderr`; null past the last part.
    stream: Option<String>,
    /// At most 512 KiB; null past the last part.
    text: Option<String>,
}

/// `GET /v1/releases/{id}/hosts/{host}/logs/{part}`.
pub async fn host_log_part(
    State(engine): State<Engine>,
    account: Account,
    ApiPath((id, host, part)): ApiPath<(String, String, usize)>,
) -> Result<Json<HostLogPart>, ApiError> {
    let release = load_release(&engine, &account, &id).await?.value;
    if release.batch_of(&host).is_none() {
        return Err(ApiError::NotFound(format!("host '{host}' in release '{id}'")));
    }
    let store = &engine.context.store;
    let pull = store.get::<PullResult>(&layout::pull(&id, &host)).await?.map(|d| d.value);
    let result = store.get::<HostResult>(&layout::result(&id, &host)).await?.map(|d| d.value);
    let state = release::host_state(&release, &host, pull.as_ref(), result.as_ref());
    let mut pulls = pages_of(&engine, JobKind::Pull, &id, &host).await?;
    if pulls.count() == 0 {
        // A pull-first pull's short output is inline in its result.
        let output = pull.map(|p| p.output);
        let logs = release::HostLogs { pull: output, ..Default::default() };
        pulls = Pages { head: split_logs(&logs, LOG_PART_BYTES).1, kind: JobKind::Pull, stored: 0 };
    }
    let sources = vec![pulls, pages_of(&engine, JobKind::Run, &id, &host).await?];
    let parts = sources.iter().map(Pages::count).sum();
    let mut index = part;
    let mut found = None;
    for source in sources {
        if index >= source.count() {
            index -= source.count();
            continue;
        }
        let Pages { mut head, kind, .. } = source;
        found = Some(match index.checked_sub(head.len()) {
            None => head.swap_remove(index),
            Some(stored) => store
                .get::<LogPart>(&layout::job_logs_part(kind, &id, &host, stored))
                .await?
                .map(|d| d.value)
                .ok_or_else(|| ApiError::Internal(format!("log part {stored} of {host} in {id} is missing")))?,
        });
        break;
    }
    let (step, stream, text) = match found {
        Some(LogPart { step, stream, text }) => (Some(step), Some(stream), Some(text)),
        None => (None, None, None),
    };
    Ok(Json(HostLogPart { host, part, parts, release: id, result, state, step, stream, text }))
}

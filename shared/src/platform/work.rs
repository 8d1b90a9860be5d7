//! Parses of request data off the async workers, in a bounded pool with a deadline.

use std::sync::Arc;

/// The pool was busy, or the work did not finish, within [`PARSE_DEADLINE`].
#[derive(Debug, thiserror::Error)]
#[error("the request parser is busy")]
pub struct Busy;

/// Most parses of request data running at once off the async workers (at least 2).
fn parse_pool() -> &'static Arc<tokio::sync::Semaphore> {
    static POOL: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(tokio::sync::Semaphore::new(cores.max(2)))
    })
}

/// How long a parse of request data may wait for the pool and run, in all.
pub const PARSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a parse of request data (a large JSON body, a `config.yaml`) on a blocking thread, at
/// most one per core at once, so that the async workers go on answering (`/healthz`, other
/// tenants). Past [`PARSE_DEADLINE`] the caller gets [`Busy`] (a 503); every parser is linear in its
/// bounded input, so the thread finishes soon after, holding its place in the pool till then.
pub async fn off_workers<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, Busy> {
    let busy = || Busy;
    let deadline = tokio::time::Instant::now() + PARSE_DEADLINE;
    let permit = tokio::time::timeout_at(deadline, parse_pool().clone().acquire_owned())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(result)) => Ok(result),
        // A panic stays a panic: the handler's catch answers 500, as for one on the worker.
        Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Ok(Err(_)) | Err(_) => Err(busy()),
    }
}

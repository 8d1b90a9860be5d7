//! `berth serve`: every function's router in one process over a local store, one in-process
//! queue per function and its consumer. Each queue journals its events in the data directory
//! before `send` returns, so events survive `kill -9` and are queued again at the next start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use berth_shared::platform::config::{Config, QueueLocation, StoreLocation};
use berth_shared::platform::context::StartupError;
use berth_shared::platform::context::{FunctionContext, SHUTDOWN_GRACE, load_signing_keys, open_queue};
use berth_shared::platform::events::{ConsumerOptions, FirstKnowing, consume};
use berth_shared::platform::http::account::{AccountKeyError, AccountKeys};
use berth_shared::platform::metrics::MetricsError;
use berth_shared::platform::queue::{Envelope, InProcessQueue, QueueError, SharedQueue};
use berth_shared::platform::runtime::{Function, finish, serve_http, shutdown_on_signal};
use berth_shared::platform::store::{DocumentStore, StoreError};
use berth_shared::platform::telemetry;

use crate::exit::misconfigured;
use crate::files::FileError;
use crate::keys::{SigningKeyError, ensure_dev_key, ensure_signing_key};
use crate::serve_lease::{self, LeaseError};

/// Why `berth serve` could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("account key: {0}")]
    DevKey(#[source] std::io::Error),
    #[error(transparent)]
    AccountKey(#[from] AccountKeyError),
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("store: {0}")]
    Store(#[source] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("queue journal: {0}")]
    Journal(#[source] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    SavedFile(#[from] FileError),
    #[error("{}: {source}", path.display())]
    SavedEvents {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(std::io::Error),
}

type Build = fn(FunctionContext) -> Function;

/// Every function `berth serve` mounts.
const FUNCTIONS: [(&str, Build); 4] = [
    (berth_credentials::NAME, berth_credentials::function),
    (berth_packages::NAME, berth_packages::function),
    (berth_render::NAME, berth_render::function),
    (berth_releases::NAME, berth_releases::function),
];

/// Runs until SIGINT/SIGTERM.
pub async fn run(data_dir: PathBuf, listen: String) -> ExitCode {
    let config = Config::from_lookup(|name| match name {
        "BERTH_DATA_DIR" => Some(data_dir.display().to_string()),
        "BERTH_LISTEN" => Some(listen.clone()),
        other => std::env::var(other).ok(),
    });
    let mut config = match config {
        Ok(config) => config,
        Err(e) => return misconfigured(&format!("configuration: {e}")),
    };
    telemetry::init(config.log_format);
    berth_shared::platform::runtime::return_large_buffers();
    match serve(&mut config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => misconfigured(&error),
    }
}

async fn serve(config: &mut Config) -> Result<(), ServeError> {
    let key_path = ensure_dev_key(&config.data_dir).map_err(ServeError::DevKey)?;
    let account_keys = AccountKeys::load(&key_path, &config.account_issuer)
        .map(|keys| keys.with_max_lifetime(config.account_token_max_seconds))?;
    config.account_key_file = Some(key_path);
    let signing_files = ensure_signing_key(&config.data_dir)?;
    config.signing_key_file = Some(signing_files.key);
    config.signing_cert_file = Some(signing_files.certificate);
    let signing = load_signing_keys(config)?;
    let store = DocumentStore::open(&config.store, &config.s3).map_err(ServeError::Store)?;
    let config = Arc::new(config.clone());
    let saved = config.data_dir.join("queue");

    let shutdown = shutdown_on_signal();
    if let Some(address) = config.metrics_listen {
        berth_shared::platform::metrics::serve(address, config.http_limits, shutdown.clone())?;
    }
    // One SQS queue shared by every function (and every process on the store), or one
    // journalled in-process queue per function, which no other process on the store may have.
    let shared_queue = match &config.queue {
        QueueLocation::Sqs { .. } => Some(open_queue(&config)),
        QueueLocation::InProcess => None,
    };
    let lease = match (&shared_queue, &config.store) {
        (None, StoreLocation::File(_) | StoreLocation::S3 { .. }) => {
            Some(serve_lease::hold(store.clone(), serve_lease::owner(&config.data_dir), shutdown.clone()).await?)
        }
        _ => None,
    };
    let mut router = Router::new();
    let mut names = Vec::new();
    let mut consumers = Vec::new();
    let mut handlers = Vec::new();
    let mut winding_down = Vec::new();
    for (name, build) in FUNCTIONS {
        let queue: SharedQueue = match &shared_queue {
            Some(queue) => queue.clone(),
            None => in_process_queue(&config, &saved, name).await?,
        };
        for envelope in load_saved(&saved, name)? {
            queue.send(&envelope).await?;
        }
        let context = FunctionContext {
            config: config.clone(),
            store: store.clone(),
            queue: queue.clone(),
            account_keys: account_keys.clone(),
            signing: signing.clone(),
        };
        let function = build(context);
        router = router.merge(function.router);
        winding_down.extend(function.winding_down);
        names.push(name);
        if let Some(handler) = function.events {
            if shared_queue.is_some() {
                handlers.push(handler);
            } else {
                consumers.push(tokio::spawn(consume(queue, handler, ConsumerOptions::default(), shutdown.clone())));
            }
        }
    }
    if let Some(queue) = shared_queue {
        let handler = Arc::new(FirstKnowing(handlers));
        consumers.push(tokio::spawn(consume(queue, handler, ConsumerOptions::default(), shutdown.clone())));
    }

    // The console's files: no store, queue or events (and not in /healthz's list of functions).
    router = router.merge(berth_console::router());

    let listener = berth_shared::platform::serve::listen(config.listen)
        .map_err(|source| ServeError::Listen { address: config.listen, source })?;
    let address = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(%address, data_dir = %config.data_dir.display(), functions = ?names, "berth serve is listening");
    serve_http(finish(router, names), listener, shutdown.clone(), config.http_limits)
        .await
        .map_err(ServeError::Serve)?;

    // In-flight events finish (or, unsettled, stay in the journal for the next start).
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        futures::future::join_all(consumers).await;
        futures::future::join_all(winding_down).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "event handlers or a function's wind-down still running after the grace period; unsettled events stay queued"
        );
    }
    if let Some(lease) = lease {
        let _ = lease.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A function's in-process queue, journalled in the data directory.
async fn in_process_queue(config: &Config, saved: &Path, name: &str) -> Result<SharedQueue, ServeError> {
    let journal = DocumentStore::local(saved.join(name)).map_err(ServeError::Journal)?;
    let mut queue = InProcessQueue::durable(config.queue_max_attempts, config.queue_visibility, journal).await?;
    // Test switch: prove every handler idempotent under duplicate delivery.
    if std::env::var_os("BERTH_QUEUE_DELIVER_TWICE").is_some_and(|v| v == "1") {
        queue = queue.delivering_twice();
    }
    Ok(berth_shared::platform::counted_queue::MeteredQueue::wrap(Arc::new(queue)))
}

fn saved_path(dir: &Path, function: &str) -> PathBuf {
    dir.join(format!("{function}.json"))
}

fn load_saved(dir: &Path, function: &str) -> Result<Vec<Envelope>, ServeError> {
    let path = saved_path(dir, function);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(FileError { path, source }.into()),
    };
    let envelopes: Vec<Envelope> = match serde_json::from_slice(&bytes) {
        Ok(envelopes) => envelopes,
        Err(source) => return Err(ServeError::SavedEvents { path, source }),
    };
    // Saved at shutdown by a Berth older than the journal; removed once queued (and journalled).
    std::fs::remove_file(&path).map_err(FileError::at(&path))?;
    if !envelopes.is_empty() {
        tracing::info!(function, events = envelopes.len(), "queued events restored");
    }
    Ok(envelopes)
}

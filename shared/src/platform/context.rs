//! What every function is built from: config, store, queue and account keys, made once.

use std::sync::Arc;

use crate::platform::config::{Config, ConfigError, QueueLocation};
use crate::platform::http::account::{AccountKeyError, AccountKeys, HasAccountKeys};
use crate::platform::jws::{SigningKeyError, SigningKeys};
use crate::platform::queue::{InProcessQueue, SharedQueue, SqsQueue};
use crate::platform::store::{DocumentStore, StoreError};

/// Why a function could not start. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The account key could not be used.
    #[error("{0}")]
    AccountKey(#[from] AccountKeyError),
    /// No account key configured.
    #[error("configuration: BERTH_ACCOUNT_KEY_FILE: required (a PEM public key that verifies account tokens)")]
    NoAccountKey,
    /// No signing key configured.
    #[error(
        "configuration: BERTH_SIGNING_KEY_FILE and BERTH_SIGNING_CERT_FILE: required (make them with `berth keys generate`)"
    )]
    NoSigningKey,
    /// The signing key could not be used.
    #[error("signing key: {0}")]
    SigningKey(#[from] SigningKeyError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Shared state of one function: cheap to clone, built once per process.
#[derive(Clone, Debug)]
pub struct FunctionContext {
    /// The configuration.
    pub config: Arc<Config>,
    /// The document store.
    pub store: DocumentStore,
    /// The queue this function's events go to.
    pub queue: SharedQueue,
    /// Verifies account tokens.
    pub account_keys: AccountKeys,
    /// Signs and verifies temporary keys and registry tokens.
    pub signing: SigningKeys,
}

impl HasAccountKeys for FunctionContext {
    fn account_keys(&self) -> &AccountKeys {
        &self.account_keys
    }
}

impl FunctionContext {
    /// Builds a standalone function's context from its configuration.
    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let key_file = config.account_key_file.clone().ok_or(StartupError::NoAccountKey)?;
        // Opening an S3 store reads no roots and calls nobody (its HTTP client is made on
        // first use) but is still a few builders: it runs beside the keys being read.
        let (location, s3) = (config.store.clone(), config.s3.clone());
        let store = tokio::task::spawn_blocking(move || DocumentStore::open(&location, &s3));
        let queue = open_queue(&config);
        let account_keys =
            AccountKeys::load(&key_file, &config.account_issuer)?.with_max_lifetime(config.account_token_max_seconds);
        let signing = load_signing_keys(&config)?;
        let store = store.await.map_err(|e| StoreError::Backend(format!("opening the store: {e}")))??;
        Ok(Self { config: Arc::new(config), store, queue, account_keys, signing })
    }
}

impl FunctionContext {
    /// A self-contained context for tests and benchmarks: `memory://` store, in-process
    /// queue, freshly generated account and signing keys (the account key can issue).
    pub fn ephemeral() -> Self {
        let config = Config::from_lookup(|name| match name {
            "BERTH_STORE_URL" => Some("memory://".to_owned()),
            _ => None,
        })
        .expect("defaults are valid");
        let account_keys =
            AccountKeys::from_pem(crate::platform::pem::generate_private_key_pem().as_bytes(), &config.account_issuer)
                .expect("fresh key")
                .with_max_lifetime(config.account_token_max_seconds);
        let der = crate::platform::pem::pem_block(&crate::platform::pem::generate_private_key_pem(), "PRIVATE KEY")
            .expect("fresh key");
        let signing =
            SigningKeys::from_keys(vec![crate::platform::jws::SigningKey::from_pkcs8(&der, None).expect("fresh key")]);
        let queue = Arc::new(InProcessQueue::new(config.queue_max_attempts, config.queue_visibility));
        Self { store: DocumentStore::in_memory(), queue, account_keys, signing, config: Arc::new(config) }
    }
}

/// Loads the signing keys the configuration names.
pub fn load_signing_keys(config: &Config) -> Result<SigningKeys, StartupError> {
    match (&config.signing_key_file, &config.signing_cert_file) {
        (Some(key), Some(cert)) => Ok(SigningKeys::load(key, cert, &config.previous_signing_key_files)?),
        _ => Err(StartupError::NoSigningKey),
    }
}

/// Opens the queue the configuration names, its requests counted.
pub fn open_queue(config: &Config) -> SharedQueue {
    crate::platform::counted_queue::MeteredQueue::wrap(match &config.queue {
        QueueLocation::InProcess => Arc::new(InProcessQueue::new(config.queue_max_attempts, config.queue_visibility)),
        QueueLocation::Sqs { url, dead_letter_url } => {
            Arc::new(SqsQueue::deferred(url.clone(), &config.s3.region, dead_letter_url.clone()))
        }
    })
}

impl std::fmt::Debug for dyn crate::platform::queue::EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventQueue")
    }
}

pub use crate::platform::serve::SHUTDOWN_GRACE;

//! An AWS SDK client made on first use, shared by the adapters: the SDK's configuration loads
//! asynchronously while the function is built synchronously. Made from the SDK's usual
//! sources (credentials chain, `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL`), for the
//! configured region, with a bound on each call (retries included: an advance waits for it).

use std::time::Duration;

/// A client of one AWS service, made on first use.
pub struct LazyClient<C> {
    region: String,
    timeout: Duration,
    make: fn(&aws_config::SdkConfig) -> C,
    client: tokio::sync::OnceCell<C>,
}

impl<C> LazyClient<C> {
    /// For `region`, each call bounded by `timeout`, built by `make` (the service's `Client::new`).
    pub fn new(region: &str, timeout: Duration, make: fn(&aws_config::SdkConfig) -> C) -> Self {
        Self { region: region.to_owned(), timeout, make, client: tokio::sync::OnceCell::new() }
    }

    /// Over a client of your own (tests, other credentials).
    pub fn with_client(client: C, make: fn(&aws_config::SdkConfig) -> C) -> Self {
        Self {
            region: String::new(),
            timeout: Duration::ZERO,
            make,
            client: tokio::sync::OnceCell::new_with(Some(client)),
        }
    }

    /// The client.
    pub async fn get(&self) -> &C {
        self.client
            .get_or_init(|| async {
                let timeouts = aws_config::timeout::TimeoutConfig::builder().operation_timeout(self.timeout).build();
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()))
                    .timeout_config(timeouts)
                    .load()
                    .await;
                (self.make)(&config)
            })
            .await
    }
}

//! HTTP clients made on first use. Building a `reqwest` client with rustls loads and parses
//! the system's root certificates (a few milliseconds, every client): made at start-up, every
//! S3 store paid for it in the function's cold start, though `/healthz` and most invocations
//! of a fresh instance never call out.

use std::sync::OnceLock;

use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// An `object_store` connector whose clients build their `reqwest` client, as
/// [`ReqwestConnector`] would with the same options, on their first request.
#[derive(Debug, Default)]
pub struct DeferredConnector;

impl HttpConnector for DeferredConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Deferred { options: options.clone(), client: OnceLock::new() }))
    }
}

/// A client not built yet, and its options.
#[derive(Debug)]
struct Deferred {
    options: ClientOptions,
    /// The client, or why it could not be built (options do not change: neither would that).
    client: OnceLock<Result<HttpClient, String>>,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
struct BuildFailed(String);

#[async_trait::async_trait]
impl HttpService for Deferred {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let client =
            self.client.get_or_init(|| ReqwestConnector::default().connect(&self.options).map_err(|e| e.to_string()));
        match client {
            Ok(client) => client.execute(request).await,
            Err(why) => Err(HttpError::new(HttpErrorKind::Unknown, BuildFailed(why.clone()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt as _;

    #[tokio::test]
    async fn a_store_over_deferred_clients_calls_out_on_its_first_request() {
        // Nothing listens on port 9: the request is made (and fails to connect) through the
        // client built on first use, with the options the store gave.
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("a")
            .with_secret_access_key("s")
            .with_endpoint("http://127.0.0.1:9")
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .with_http_connector(DeferredConnector)
            .build()
            .unwrap();
        let error = store.get(&"x".into()).await.unwrap_err().to_string();
        assert!(error.contains("127.0.0.1:9") || error.to_lowercase().contains("connect"), "{error}");
    }
}

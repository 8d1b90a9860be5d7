//! One small request layer for the AWS services Berth calls (SQS, Auto Scaling, Elastic Load
//! Balancing, CloudWatch, the API Gateway Management API), in place of the SDK's clients: their
//! generated code and runtime were a third of a function binary for a dozen calls.
//!
//! Each call is signed with SigV4 ([`sign`]), sent with the process's one `reqwest` client,
//! bounded in time (retries included) and read bounded in size; an error keeps the service's
//! code and message, never a credential. Credentials are object_store's chain, the one the S3
//! store already uses: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
//! (what Lambda sets), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), the ECS
//! and EKS container endpoints, else the EC2 instance metadata. Endpoints are picked as the
//! SDK picks them ([`endpoint`]).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use object_store::aws::{AwsCredential, AwsCredentialProvider};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod endpoint;
mod error;
pub mod sign;
pub mod xml;

pub use endpoint::EndpointError;
pub use error::{AwsError, chain};
use error::{clip, into_text, json_error};
pub use reqwest::Method;

/// A service as this layer calls it.
#[derive(Debug)]
pub struct Service {
    /// Its name in messages.
    pub name: &'static str,
    /// `AWS_ENDPOINT_URL_<this>` names its endpoint.
    pub env_suffix: &'static str,
    /// The name it is signed for.
    pub signing_name: &'static str,
    /// The first label of AWS's host for it.
    pub host_prefix: &'static str,
}

/// Amazon SQS (the JSON protocol).
pub const SQS: Service = Service { name: "SQS", env_suffix: "SQS", signing_name: "sqs", host_prefix: "sqs" };
/// AWS Auto Scaling (awsQuery).
pub const AUTO_SCALING: Service = Service {
    name: "AWS Auto Scaling",
    env_suffix: "AUTO_SCALING",
    signing_name: "autoscaling",
    host_prefix: "autoscaling",
};
/// Elastic Load Balancing v2 (awsQuery).
pub const ELB_V2: Service = Service {
    name: "Elastic Load Balancing",
    env_suffix: "ELASTIC_LOAD_BALANCING_V2",
    signing_name: "elasticloadbalancing",
    host_prefix: "elasticloadbalancing",
};
/// CloudWatch (awsQuery).
pub const CLOUDWATCH: Service =
    Service { name: "CloudWatch", env_suffix: "CLOUDWATCH", signing_name: "monitoring", host_prefix: "monitoring" };
/// The API Gateway Management API (REST, JSON errors); its endpoint is the WebSocket API's own.
pub const API_GATEWAY_MANAGEMENT: Service = Service {
    name: "API Gateway Management API",
    env_suffix: "APIGATEWAYMANAGEMENTAPI",
    signing_name: "execute-api",
    host_prefix: "execute-api",
};

/// Largest answer read (an SQS batch of ten 256 KiB messages, JSON-escaped, fits).
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
/// Attempts of a call that failed in a way worth retrying (throttled, 5xx, no connection).
const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled each time.
const BACKOFF: Duration = Duration::from_millis(100);
/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Where a client's credentials come from.
#[derive(Clone)]
enum Credentials {
    /// object_store's chain from the environment, made on first use.
    Environment,
    /// A provider of the caller's own.
    Given(AwsCredentialProvider),
}

/// A client of one service in one region: where it is called, with which credentials, and
/// how long a call may take. Making one reads only the environment; credentials and the HTTP
/// client are made on first use (not in a function's cold start).
#[derive(Clone)]
pub struct AwsClient {
    service: &'static Service,
    region: String,
    endpoint: Result<Url, EndpointError>,
    credentials: Credentials,
    timeout: Duration,
}

impl std::fmt::Debug for AwsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClient")
            .field("service", &self.service.name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

/// What the service answered, successfully.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status (2xx).
    pub status: StatusCode,
    /// The body, read whole (at most [`MAX_ANSWER_BYTES`]).
    pub body: Vec<u8>,
}

/// How a service writes its errors.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    /// awsQuery: XML.
    Query,
    /// awsJson and REST-JSON: `__type` or `code` and `message` in JSON, or the
    /// `x-amzn-errortype` header.
    Json,
}

impl AwsClient {
    /// `service` in `region` at the endpoint the environment names (or AWS's own), with
    /// credentials from the environment, each call bounded by `timeout` (retries included).
    pub fn from_env(service: &'static Service, region: &str, timeout: Duration) -> Self {
        Self {
            service,
            region: region.to_owned(),
            endpoint: endpoint::from_env(service, region),
            credentials: Credentials::Environment,
            timeout,
        }
    }

    /// The same, called at `endpoint` whatever the environment says.
    pub fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint::parse(endpoint);
        self
    }

    /// The same, with fixed credentials (tests, other accounts).
    pub fn with_credentials(mut self, key_id: &str, secret_key: &str, token: Option<&str>) -> Self {
        let credential = AwsCredential {
            key_id: key_id.to_owned(),
            secret_key: secret_key.to_owned(),
            token: token.map(str::to_owned),
        };
        self.credentials = Credentials::Given(Arc::new(object_store::StaticCredentialProvider::new(credential)));
        self
    }

    /// The same, each call bounded by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint, if it is one to call.
    pub fn endpoint(&self) -> Result<&Url, &EndpointError> {
        self.endpoint.as_ref()
    }

    /// An awsQuery call: `Action`, `Version` and `params` as a form; the answer's XML.
    pub async fn query(
        &self,
        action: &'static str,
        version: &str,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        // In a block of its own: the serializer is not Send, so it must not live across an await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action).append_pair("Version", version);
            for (name, value) in params {
                form.append_pair(name, value);
            }
            form.finish().into_bytes()
        };
        let url = self.url(action, &[])?;
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        let answer = self.send(action, Method::POST, url, &headers, body, Protocol::Query, None).await?;
        into_text(action, answer)
    }

    /// An awsJson 1.0 call (`X-Amz-Target: {prefix}.{operation}`): `input` as JSON, the
    /// answer read as `T`. `timeout` replaces the client's bound for this call (a long poll).
    pub async fn json<T: DeserializeOwned>(
        &self,
        prefix: &str,
        operation: &'static str,
        input: &impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<T, AwsError> {
        let body = serde_json::to_vec(input).map_err(|e| AwsError::Request {
            operation,
            reason: format!("encoding the request: {e}"),
            source: Box::new(e),
        })?;
        let url = self.url(operation, &[])?;
        let target = format!("{prefix}.{operation}");
        let headers = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", target.as_str())];
        let answer = self.send(operation, Method::POST, url, &headers, body, Protocol::Json, timeout).await?;
        // An empty answer is an empty object (SQS answers `{}` or nothing to most calls).
        let body: &[u8] = if answer.body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &answer.body };
        serde_json::from_slice(body).map_err(|e| AwsError::Answer {
            operation,
            status: answer.status.as_u16(),
            reason: format!("an answer that is not the expected JSON ({e})"),
        })
    }

    /// A REST call to the endpoint's path followed by `segments` (each percent-encoded as
    /// one segment), with `body` sent as is; errors read as JSON.
    pub async fn rest(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        body: Vec<u8>,
    ) -> Result<Answer, AwsError> {
        let url = self.url(operation, segments)?;
        self.send(operation, method, url, &[], body, Protocol::Json, None).await
    }

    /// The endpoint with `segments` added to its path.
    fn url(&self, operation: &'static str, segments: &[&str]) -> Result<Url, AwsError> {
        let mut url = self.endpoint.clone().map_err(|source| AwsError::Endpoint { operation, source })?;
        if !segments.is_empty() {
            let mut path = url.path_segments_mut().map_err(|()| AwsError::Request {
                operation,
                reason: "the endpoint cannot have a path".into(),
                source: "the endpoint cannot have a path".into(),
            })?;
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    async fn credential(&self, operation: &'static str) -> Result<Arc<AwsCredential>, AwsError> {
        let refused = |e: object_store::Error| AwsError::Credentials { operation, reason: chain(&e), source: e };
        let provider = match &self.credentials {
            Credentials::Given(provider) => provider.clone(),
            Credentials::Environment => environment_credentials(&self.region).map_err(refused)?,
        };
        provider.get_credential().await.map_err(refused)
    }

    #[allow(clippy::too_many_arguments, reason = "one private call with the request's parts")]
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        protocol: Protocol,
        timeout: Option<Duration>,
    ) -> Result<Answer, AwsError> {
        let timeout = timeout.unwrap_or(self.timeout);
        let attempts = async {
            let mut attempt = 0;
            loop {
                let sent = self.attempt(operation, &method, &url, headers, &body, protocol).await;
                attempt += 1;
                match sent {
                    Err(error) if attempt < ATTEMPTS && error.retryable() => {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout(timeout, attempts).await.unwrap_or(Err(AwsError::Timeout { operation, timeout }))
    }

    async fn attempt(
        &self,
        operation: &'static str,
        method: &Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        protocol: Protocol,
    ) -> Result<Answer, AwsError> {
        let credential = self.credential(operation).await?;
        let request_error = |e: Box<dyn std::error::Error + Send + Sync>| AwsError::Request {
            operation,
            reason: chain(e.as_ref()),
            source: e,
        };
        let signature = sign::sign(
            method.as_str(),
            url.as_str(),
            headers,
            body,
            &credential,
            &self.region,
            self.service.signing_name,
            SystemTime::now(),
        )
        .map_err(|e| request_error(Box::new(e)))?;
        let http = http_client().map_err(|e| request_error(e.into()))?;
        let mut request = http.request(method.clone(), url.clone());
        for (name, value) in headers.iter().copied() {
            request = request.header(name, value);
        }
        for (name, value) in signature {
            request = request.header(name, value);
        }
        let transport = |e: reqwest::Error| {
            let source = e.without_url();
            AwsError::Transport { operation, reason: chain(&source), source }
        };
        let mut response = request.body(body.to_vec()).send().await.map_err(transport)?;
        let status = response.status();
        let unreadable = |reason: String| AwsError::Answer { operation, status: status.as_u16(), reason };
        // Read bounded: the answer is not trusted to be small.
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(unreadable(format!("an answer larger than {MAX_ANSWER_BYTES} bytes")));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(unreadable(format!("an answer larger than {MAX_ANSWER_BYTES} bytes")));
            }
            answer.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(Answer { status, body: answer });
        }
        let error_type = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok());
        let found = match protocol {
            Protocol::Query => std::str::from_utf8(&answer).ok().and_then(xml::error_of),
            Protocol::Json => json_error(error_type, &answer),
        };
        match found {
            Some((code, message)) => Err(AwsError::Service {
                operation,
                status: status.as_u16(),
                code: clip(&code),
                message: clip(&message),
            }),
            None => Err(unreadable(format!(
                "an error answer without a code ({})",
                status.canonical_reason().unwrap_or("unknown status")
            ))),
        }
    }
}

/// The wait before retry `attempt` (from 1): doubling, with up to half of it again at random
/// so that callers throttled together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(8));
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// The process's HTTP client for AWS calls, made on first use.
fn http_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().map_err(|e| chain(&e)))
        .as_ref()
        .map_err(Clone::clone)
}

/// object_store's credential chain from the environment for `region` (the region names the
/// STS endpoint of a web identity), one per region for the process: its cache of fetched
/// credentials is shared by every client.
fn environment_credentials(region: &str) -> Result<AwsCredentialProvider, object_store::Error> {
    static MADE: Mutex<Vec<(String, AwsCredentialProvider)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, provider)) = made.iter().find(|(r, _)| r == region) {
        return Ok(provider.clone());
    }
    // The bucket is never called: only the store's credentials are used.
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("berth-credentials-only")
        .with_region(region)
        .with_http_connector(crate::platform::deferred_http::DeferredConnector)
        .build()?;
    let provider = store.credentials().clone();
    made.push((region.to_owned(), provider.clone()));
    Ok(provider)
}

#[cfg(test)]
mod tests;

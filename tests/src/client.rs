//! The one API client of the end-to-end tests: Berth's HTTP API called with a bearer token,
//! the answer read as JSON.

use std::time::Duration;

use serde_json::Value;

/// A client of one Berth URL.
#[derive(Clone)]
pub struct ApiClient {
    /// The underlying client, for requests that are not JSON calls (uploads, raw bodies).
    pub http: reqwest::Client,
    /// `http://HOST:PORT`, without a trailing slash.
    pub url: String,
    timeout: Option<Duration>,
}

impl ApiClient {
    pub fn new(url: impl Into<String>) -> Self {
        Self { http: reqwest::Client::new(), url: url.into(), timeout: None }
    }

    /// Every call gives up after `timeout` (the default is none: a test's own timeout rules).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `method path` as `bearer`, with a JSON body if given: the status and the answer as
    /// JSON (its text as a JSON string when it is not JSON).
    pub async fn call(&self, bearer: &str, method: impl AsRef<str>, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_url(bearer, method, &format!("{}{path}", self.url), body).await
    }

    /// [`ApiClient::call`] to a full URL (another base than this client's).
    pub async fn call_url(
        &self,
        bearer: &str,
        method: impl AsRef<str>,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_ref().as_bytes()).expect("HTTP method");
        let mut request = self.http.request(method.clone(), url).bearer_auth(bearer);
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: Berth does not answer: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// [`ApiClient::call`] that must succeed (2xx): the answer.
    pub async fn must(&self, bearer: &str, method: impl AsRef<str>, path: &str, body: Option<Value>) -> Value {
        let method = method.as_ref();
        let (status, answer) = self.call(bearer, method, path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    }
}

//! A small client of Berth's HTTP API for the CLI. Problems come back as one readable line.

use serde::Serialize;
use serde_json::Value;

/// Where Berth is and who is calling.
pub struct BerthClient {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl BerthClient {
    /// A client for the Berth at `url`, calling with the account token `token`.
    pub fn new(url: &str, token: &str) -> Self {
        Self { url: url.trim_end_matches('/').to_owned(), token: token.to_owned(), http: reqwest::Client::new() }
    }

    /// POSTs JSON; returns the JSON answer or the problem as one line.
    pub async fn post<T: Serialize>(&self, path: &str, body: &T) -> Result<Value, String> {
        let request = self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body);
        answer(request.send().await.map_err(|e| format!("cannot reach Berth at {}: {e}", self.url))?).await
    }
    /// GETs JSON.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let request = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token);
        answer(request.send().await.map_err(|e| format!("cannot reach Berth at {}: {e}", self.url))?).await
    }

    /// PUTs JSON.
    pub async fn put<T: Serialize>(&self, path: &str, body: &T) -> Result<Value, String> {
        let request = self.http.put(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body);
        answer(request.send().await.map_err(|e| format!("cannot reach Berth at {}: {e}", self.url))?).await
    }

    /// PUTs raw bytes (a file upload).
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<Value, String> {
        let request = self
            .http
            .put(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(body);
        answer(request.send().await.map_err(|e| format!("cannot reach Berth at {}: {e}", self.url))?).await
    }

    /// PATCHes a JSON body.
    pub async fn patch<T: Serialize>(&self, path: &str, body: &T) -> Result<Value, String> {
        let request = self.http.patch(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body);
        answer(request.send().await.map_err(|e| format!("cannot reach Berth at {}: {e}", self.url))?).await
    }

    /// DELETEs.
    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        let request = self.http.delete(format!("{}{path}", self.url)).bearer_auth(&self.token);
        answer(request.send().await.map_err(|e| format!("cannot reach Berth at {}: {e}", self.url))?).await
    }
}

async fn answer(response: reqwest::Response) -> Result<Value, String> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let detail = body["detail"].as_str().unwrap_or("no detail");
    let code = body["code"].as_str().unwrap_or("error");
    let mut message = match body["field"].as_str() {
        Some(field) => format!("{code} ({field}): {detail} [HTTP {}]", status.as_u16()),
        None => format!("{code}: {detail} [HTTP {}]", status.as_u16()),
    };
    // A template's problems come as a list, each with its line:column: show them all.
    for problem in body["problems"].as_array().into_iter().flatten() {
        message.push_str(&format!(
            "\n  {}:{}: {}: {} ({})",
            problem["line"],
            problem["column"],
            problem["code"].as_str().unwrap_or(""),
            problem["message"].as_str().unwrap_or(""),
            problem["identifier"].as_str().unwrap_or("")
        ));
    }
    Err(message)
}

/// Where Berth is and who calls it.
#[derive(clap::Args)]
pub struct Api {
    /// Berth's base URL.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Your account token (`berth dev-token` makes one for local use).
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Print the full answer as JSON.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
}

pub fn api_client(api: &Api) -> (client::BerthClient, bool) {
    (BerthClient::new(&api.url, &api.token), api.output == "json")
}

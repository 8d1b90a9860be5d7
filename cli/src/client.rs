//! A small client of Berth's HTTP API for the CLI: typed requests and answers (`berth-api`),
//! problems as one readable line.

use berth_api::problem::Problem;
use serde::Serialize;
use serde::de::DeserializeOwned;
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

    /// POSTs JSON; returns the answer (`Value` to keep it as sent) or the problem as one line.
    pub async fn post<T: Serialize, A: DeserializeOwned>(&self, path: &str, body: &T) -> Result<A, String> {
        let request = self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body);
        self.answer(request).await
    }

    /// POSTs without a body.
    pub async fn post_empty<A: DeserializeOwned>(&self, path: &str) -> Result<A, String> {
        self.post(path, &serde_json::Map::new()).await
    }

    /// GETs JSON.
    pub async fn get<A: DeserializeOwned>(&self, path: &str) -> Result<A, String> {
        self.answer(self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token)).await
    }

    /// PUTs JSON.
    pub async fn put<T: Serialize, A: DeserializeOwned>(&self, path: &str, body: &T) -> Result<A, String> {
        self.answer(self.http.put(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body)).await
    }

    /// PUTs raw bytes (a file upload).
    pub async fn put_bytes<A: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<A, String> {
        let request = self
            .http
            .put(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(body);
        self.answer(request).await
    }

    /// PATCHes a JSON body.
    pub async fn patch<T: Serialize, A: DeserializeOwned>(&self, path: &str, body: &T) -> Result<A, String> {
        self.answer(self.http.patch(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body)).await
    }

    /// DELETEs; the answer, if any, is not read.
    pub async fn delete(&self, path: &str) -> Result<(), String> {
        self.delete_answered::<Value>(path).await.map(drop)
    }

    /// DELETEs, reading what the answer shows of what went.
    pub async fn delete_answered<A: DeserializeOwned>(&self, path: &str) -> Result<A, String> {
        self.answer(self.http.delete(format!("{}{path}", self.url)).bearer_auth(&self.token)).await
    }

    async fn answer<A: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<A, String> {
        let response = request.send().await.map_err(|e| format!("cannot reach Berth at {}: {e}", self.url))?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(problem_line(status.as_u16(), &serde_json::from_slice(&body).unwrap_or_default()));
        }
        // An empty answer (204) reads as `null`.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| format!("unreadable answer from Berth: {e}"))
    }
}

/// A problem answer as one line, and a template's problems each on its own with its line:column.
fn problem_line(status: u16, problem: &Problem) -> String {
    let detail = problem.detail.as_deref().unwrap_or("no detail");
    let code = problem.code.as_deref().unwrap_or("error");
    let mut message = match &problem.field {
        Some(field) => format!("{code} ({field}): {detail} [HTTP {status}]"),
        None => format!("{code}: {detail} [HTTP {status}]"),
    };
    let number = |n: Option<u64>| n.map_or_else(|| "null".to_owned(), |n| n.to_string());
    for listed in &problem.problems {
        message.push_str(&format!(
            "\n  {}:{}: {}: {} ({})",
            number(listed.line),
            number(listed.column),
            listed.code,
            listed.message,
            listed.identifier
        ));
    }
    message
}

/// Prints an answer: as JSON, as answered (`--output json`), or read as `T` and shown as
/// `text` makes it.
pub fn show<T: DeserializeOwned>(json: bool, answer: Value, text: impl FnOnce(T) -> String) -> std::process::ExitCode {
    if json {
        println!("{answer:#}");
        return std::process::ExitCode::SUCCESS;
    }
    match read(answer) {
        Ok(typed) => {
            println!("{}", text(typed));
            std::process::ExitCode::SUCCESS
        }
        Err(message) => crate::exit::fail(&message),
    }
}

/// Reads a JSON answer kept as sent.
pub fn read<T: DeserializeOwned>(answer: Value) -> Result<T, String> {
    serde_json::from_value(answer).map_err(|e| format!("unreadable answer from Berth: {e}"))
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

/// The client `api` names, and whether answers are printed as JSON.
pub fn api_client(api: &Api) -> (BerthClient, bool) {
    (BerthClient::new(&api.url, &api.token), api.output == "json")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_problem_reads_as_one_line_then_each_listed_fault() {
        let problem: Problem = serde_json::from_value(json!({
            "code": "template_problems", "detail": "1 identifier problem(s)", "field": "template",
            "problems": [{ "line": 3, "column": 5, "code": "unknown_package", "message": "no such package", "identifier": "{{ x }}" }],
        }))
        .unwrap();
        assert_eq!(
            problem_line(422, &problem),
            "template_problems (template): 1 identifier problem(s) [HTTP 422]\n  3:5: unknown_package: no such package ({{ x }})"
        );
        assert_eq!(problem_line(502, &Problem::default()), "error: no detail [HTTP 502]");
    }
}

//! A small client of Berth's HTTP API for the CLI: typed requests and answers (`berth-api`),
//! problems as one readable line, and [`ClientError`] saying which of Berth's answers, or
//! the lack of one, a command failed on.

use berth_api::problem::Problem;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a call to Berth failed: no answer (a transport failure), a problem answer (with its
/// status and stable `code`), or an answer that does not read as expected.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Berth could not be reached, or its answer was cut off (connection refused, DNS, TLS, a
    /// timeout: `source.is_timeout()`).
    #[error("cannot reach Berth at {url}: {source}")]
    Unreachable {
        /// Berth's base URL.
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Berth answered with a problem (`application/problem+json`).
    #[error("{}", problem_line(*status, problem))]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem document (empty when the answer had none).
        problem: Box<Problem>,
    },
    /// The answer is not what the command reads.
    #[error("unreadable answer from Berth: {0}")]
    Unreadable(#[from] serde_json::Error),
}

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

    /// POSTs JSON; returns the answer (`Value` to keep it as sent) or why there is none.
    pub async fn post<T: Serialize, A: DeserializeOwned>(&self, path: &str, body: &T) -> Result<A, ClientError> {
        let request = self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body);
        self.answer(request).await
    }

    /// POSTs without a body.
    pub async fn post_empty<A: DeserializeOwned>(&self, path: &str) -> Result<A, ClientError> {
        self.post(path, &serde_json::Map::new()).await
    }

    /// GETs JSON.
    pub async fn get<A: DeserializeOwned>(&self, path: &str) -> Result<A, ClientError> {
        self.answer(self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token)).await
    }

    /// PUTs JSON.
    pub async fn put<T: Serialize, A: DeserializeOwned>(&self, path: &str, body: &T) -> Result<A, ClientError> {
        self.answer(self.http.put(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body)).await
    }

    /// PUTs raw bytes (a file upload).
    pub async fn put_bytes<A: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<A, ClientError> {
        let request = self
            .http
            .put(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(body);
        self.answer(request).await
    }

    /// PATCHes a JSON body.
    pub async fn patch<T: Serialize, A: DeserializeOwned>(&self, path: &str, body: &T) -> Result<A, ClientError> {
        self.answer(self.http.patch(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body)).await
    }

    /// DELETEs; the answer, if any, is not read.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.delete_answered::<Value>(path).await.map(drop)
    }

    /// DELETEs, reading what the answer shows of what went.
    pub async fn delete_answered<A: DeserializeOwned>(&self, path: &str) -> Result<A, ClientError> {
        self.answer(self.http.delete(format!("{}{path}", self.url)).bearer_auth(&self.token)).await
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable { url: self.url.clone(), source }
    }

    async fn answer<A: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<A, ClientError> {
        let response = request.send().await.map_err(|source| self.unreachable(source))?;
        let status = response.status();
        let body = response.bytes().await;
        if !status.is_success() {
            // A problem whose body was cut off or is not JSON still says its status.
            let problem = body.ok().and_then(|body| serde_json::from_slice(&body).ok()).unwrap_or_default();
            return Err(ClientError::Problem { status: status.as_u16(), problem: Box::new(problem) });
        }
        let body = body.map_err(|source| self.unreachable(source))?;
        // An empty answer (204) reads as `null`.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        Ok(serde_json::from_slice(body)?)
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
        Err(error) => crate::exit::fail(&error),
    }
}

/// Reads a JSON answer kept as sent.
pub fn read<T: DeserializeOwned>(answer: Value) -> Result<T, ClientError> {
    Ok(serde_json::from_value(answer)?)
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
        let refused = ClientError::Problem { status: 422, problem: Box::new(problem) };
        assert!(
            matches!(&refused, ClientError::Problem { status: 422, problem } if problem.code.as_deref() == Some("template_problems")),
            "a refusal keeps its status and code"
        );
        assert!(refused.to_string().starts_with("template_problems (template): "), "{refused}");
    }

    #[tokio::test]
    async fn no_answer_is_told_from_a_refusal_and_from_an_unreadable_answer() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let client = BerthClient::new(&format!("http://{closed}"), "token");
        let error = client.get::<Value>("/v1/packages").await.unwrap_err();
        assert!(matches!(error, ClientError::Unreachable { .. }), "{error:?}");
        assert!(error.to_string().starts_with(&format!("cannot reach Berth at http://{closed}: ")), "{error}");
        assert!(std::error::Error::source(&error).is_some(), "the transport error is kept");
        let unreadable = read::<u32>(json!("seven")).unwrap_err();
        assert!(matches!(unreadable, ClientError::Unreadable(_)), "{unreadable:?}");
        assert!(unreadable.to_string().starts_with("unreadable answer from Berth: "), "{unreadable}");
    }
}

//! Cross-tenant isolation (issue #12, item 4), end to end: `berth serve` with its local file
//! store and the real `docker-registry`. Two accounts, `acme` (A) and `bravo` (B), own
//! identically named packages, versions, services, applications, groups, deployments, releases
//! and hosts; A also owns objects B has no namesake of (`onlya`, `onlyf`, group `canary`,
//! deployment `onlyd`, versions `v_a2`/`f_a2`). B then tries every route on A's objects.
//!
//! - An attempt on an A-only object answers exactly what the same attempt on a name that
//!   exists nowhere answers (same status, code and body once the names are swapped): 404, or
//!   the documented 4xx of that route; it never carries A's data (digests, ids, tokens,
//!   names, "acme") unless the attacker itself put it in the request.
//! - An attempt on a name both accounts have sees B's own object only.
//! - Every document of A (`accounts/acme/`, `files/acme/`, `releases/{A's ids}/`, A's token
//!   index entries) is byte-identical before and after, and was stable before the attack (A's
//!   releases are cancelled, or pulling with an hour's step timeout and no agent, so the
//!   2-second sweep rewrites nothing).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use berth_shared::names::AccountId;
use berth_shared::platform::digest::sha256_hex;
use berth_shared::platform::http::account::AccountKeys;
use berth_shared::platform::pem::generate_private_key_pem;
use berth_tests::client::ApiClient;
use berth_tests::registry::{SERVICE, oci_image, skopeo};
use berth_tests::snapshot;
use berth_tests::stack::Stack;
use serde_json::{Value, json};

const A: &str = "acme";
const B: &str = "bravo";
/// A-only names and names that exist nowhere, of the same length (template problems carry
/// columns). Answers about the former must equal answers about the latter, names swapped.
const GHOSTS: [(&str, &str); 6] = [
    ("onlya", "ghsta"),
    ("onlyf", "ghstf"),
    ("canary", "ghostc"),
    ("onlyd", "ghstd"),
    ("v_a2", "v_g2"),
    ("f_a2", "f_g2"),
];

// ---------------------------------------------------------------------------------------
// Requests, answers and the attack bookkeeping
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
enum Auth {
    /// B's account token.
    Bravo,
    Bearer(String),
    Basic(String, String),
    None,
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

#[derive(Clone)]
struct Req {
    method: &'static str,
    path: String,
    body: Body,
    auth: Auth,
    accept: Option<&'static str>,
}

fn req(method: &'static str, path: impl Into<String>, body: Body) -> Req {
    Req { method, path: path.into(), body, auth: Auth::Bravo, accept: None }
}
fn get(path: impl Into<String>) -> Req {
    req("GET", path, Body::None)
}
fn delete(path: impl Into<String>) -> Req {
    req("DELETE", path, Body::None)
}
fn post(path: impl Into<String>, body: Value) -> Req {
    req("POST", path, Body::Json(body))
}
fn put(path: impl Into<String>, body: Value) -> Req {
    req("PUT", path, Body::Json(body))
}
fn patch(path: impl Into<String>, body: Value) -> Req {
    req("PATCH", path, Body::Json(body))
}
fn upload(path: impl Into<String>, bytes: &[u8]) -> Req {
    req("PUT", path, Body::Bytes(bytes.to_vec()))
}

impl Req {
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    fn bearer(self, token: &str) -> Self {
        self.auth(Auth::Bearer(token.to_owned()))
    }
    fn anonymous(self) -> Self {
        self.auth(Auth::None)
    }
    fn accept(mut self, accept: &'static str) -> Self {
        self.accept = Some(accept);
        self
    }
    /// Everything the caller itself put in the request (echoes of it are no leak).
    fn text(&self) -> String {
        let body = match &self.body {
            Body::None => String::new(),
            Body::Json(v) => v.to_string(),
            Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        };
        let auth = match &self.auth {
            Auth::Bearer(t) => t.clone(),
            Auth::Basic(u, p) => format!("{u}:{p}"),
            Auth::Bravo | Auth::None => String::new(),
        };
        format!("{} {} {body} {auth}", self.method, self.path)
    }
    fn line(&self) -> String {
        let mut line = format!("{} {}", self.method, short(&self.path, 160));
        if let Body::Json(v) = &self.body {
            let text = v.to_string();
            line.push(' ');
            line.push_str(&short(&text, 160));
        }
        line
    }
}

struct Answer {
    status: u16,
    text: String,
    json: Value,
    /// Headers and body together, for the leak check.
    all: String,
}

fn short(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(limit).collect::<String>())
    }
}

/// The attacks: who answers, what A's data is, what ran and what failed.
struct Suite {
    http: reqwest::Client,
    url: String,
    /// The caller's account token (`Auth::Bravo`): B's, or another attacker's.
    bravo: String,
    /// A-only name or id -> a name or id that exists nowhere, of the same length.
    ghosts: Vec<(String, String)>,
    /// A's data, by what it is: never in an answer to B unless B's request holds it.
    secrets: Vec<(String, String)>,
    counts: BTreeMap<&'static str, usize>,
    group: &'static str,
    failures: Vec<String>,
}

impl Suite {
    fn ghost(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (real, ghost) in &self.ghosts {
            text = text.replace(real.as_str(), ghost);
        }
        text
    }

    fn ghosted(&self, request: &Req) -> Req {
        let mut control = request.clone();
        control.path = self.ghost(&request.path);
        if let Body::Json(v) = &request.body {
            control.body = Body::Json(serde_json::from_str(&self.ghost(&v.to_string())).expect("ghosted JSON"));
        }
        control
    }

    async fn send(&self, request: &Req) -> Answer {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("HTTP method");
        let mut builder = self.http.request(method, format!("{}{}", self.url, request.path));
        builder = match &request.auth {
            Auth::Bravo => builder.bearer_auth(&self.bravo),
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic(user, password) => builder.basic_auth(user, Some(password)),
            Auth::None => builder,
        };
        if let Some(accept) = request.accept {
            builder = builder.header("accept", accept);
        }
        builder = match &request.body {
            Body::None => builder,
            Body::Json(v) => builder.json(v),
            Body::Bytes(b) => builder.header("content-type", "application/octet-stream").body(b.clone()),
        };
        let response =
            builder.send().await.unwrap_or_else(|e| panic!("{}: Berth does not answer: {e}", request.line()));
        let status = response.status().as_u16();
        let headers: String = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != "x-request-id")
            .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        let bytes = response.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, all: format!("{headers}\n{text}"), text, json }
    }

    /// A's data in the answer that the request did not carry itself; and any 5xx.
    fn leaks(&self, request: &Req, answer: &Answer) -> Vec<String> {
        let asked = request.text();
        let mut problems: Vec<String> = self
            .secrets
            .iter()
            .filter(|(secret, _)| !asked.contains(secret.as_str()) && answer.all.contains(secret.as_str()))
            .map(|(_, what)| format!("the answer reveals {what}: {}", short(&answer.all, 600)))
            .collect();
        if answer.status >= 500 {
            problems.push(format!("answered {} (a server error): {}", answer.status, short(&answer.text, 400)));
        }
        problems
    }

    fn record(&mut self, request: &Req, what: &str, status: u16, problems: Vec<String>) {
        *self.counts.entry(self.group).or_default() += 1;
        let verdict = if problems.is_empty() { "ok" } else { "FAILED" };
        println!("[{}] {status} {verdict} {what}: {}", self.group, request.line());
        if !problems.is_empty() {
            self.failures.push(format!(
                "[{}] {what}\n    {}\n    {}",
                self.group,
                request.line(),
                problems.join("\n    ")
            ));
        }
    }

    /// An attempt on an A-only object: 404 (or `expected`, the route's documented answer),
    /// exactly as for a name that exists nowhere.
    async fn absent_as(&mut self, what: &str, request: Req, expected: u16) {
        let attack = self.send(&request).await;
        let control = self.send(&self.ghosted(&request)).await;
        let mut problems = Vec::new();
        if attack.status != expected {
            problems.push(format!("answered {} (expected {expected}): {}", attack.status, short(&attack.text, 400)));
        }
        if (attack.status, &attack.json["code"]) != (control.status, &control.json["code"]) {
            problems.push(format!(
                "differs from a name that exists nowhere: {} {} vs {} {}",
                attack.status, attack.json["code"], control.status, control.json["code"]
            ));
        } else {
            let normalised = self.ghost(&attack.text);
            let same = match (serde_json::from_str::<Value>(&normalised), &control.json) {
                (Ok(a), c) if !c.is_null() => a == *c,
                _ => normalised == control.text,
            };
            if !same {
                problems.push(format!(
                    "body differs from a name that exists nowhere:\n      {}\n      {}",
                    short(&normalised, 400),
                    short(&control.text, 400)
                ));
            }
        }
        problems.extend(self.leaks(&request, &attack));
        self.record(&request, what, attack.status, problems);
    }

    async fn absent(&mut self, what: &str, request: Req) {
        self.absent_as(what, request, 404).await;
    }

    /// A malformed or unauthenticated attempt: one of `statuses` (with `code`, if given),
    /// revealing nothing.
    async fn refused(&mut self, what: &str, request: Req, statuses: &[u16], code: Option<&str>) -> Answer {
        let answer = self.send(&request).await;
        let mut problems = Vec::new();
        if !statuses.contains(&answer.status) {
            problems.push(format!(
                "answered {} (expected one of {statuses:?}): {}",
                answer.status,
                short(&answer.text, 400)
            ));
        } else if let Some(code) = code
            && answer.json["code"] != code
        {
            problems.push(format!("code {} (expected {code}): {}", answer.json["code"], short(&answer.text, 400)));
        }
        problems.extend(self.leaks(&request, &answer));
        self.record(&request, what, answer.status, problems);
        answer
    }

    /// An attempt on a name both accounts have: B's own object, which `check` recognises.
    async fn own(&mut self, what: &str, request: Req, check: impl FnOnce(&Answer) -> Result<(), String>) -> Answer {
        let answer = self.send(&request).await;
        let mut problems = self.leaks(&request, &answer);
        if let Err(why) = check(&answer) {
            problems.push(format!("{why} (answered {}: {})", answer.status, short(&answer.text, 600)));
        }
        self.record(&request, what, answer.status, problems);
        answer
    }

    /// A check done outside HTTP (a registry client): counted like the others.
    fn outcome(&mut self, what: &str, line: &str, problems: Vec<String>) {
        let request = get(line.to_owned());
        self.record(&request, what, 0, problems);
    }

    fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

fn status_in(answer: &Answer, statuses: &[u16]) -> Result<(), String> {
    if statuses.contains(&answer.status) { Ok(()) } else { Err(format!("expected a status in {statuses:?}")) }
}

// ---------------------------------------------------------------------------------------
// The two tenants
// ---------------------------------------------------------------------------------------

/// A plain client for setting up each account: the API client, and the calls that are not
/// JSON calls as an account.
struct Client(ApiClient);

impl std::ops::Deref for Client {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.0
    }
}

impl Client {
    async fn upload(&self, token: &str, path: &str, bytes: &[u8]) {
        let response = self
            .http
            .put(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(status, 200, "upload {path}: {}", response.text().await.unwrap_or_default());
    }

    async fn register(&self, join_token: &str, host: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/agent/register", self.url))
            .bearer_auth(join_token)
            .json(&json!({ "host": host }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "register {host}: {answer}");
        answer
    }

    async fn wait_release(&self, token: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let release = self.must(token, "GET", &format!("/v1/releases/{id}"), None).await;
            if done(&release) {
                return release;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "release {id} never reached {what}: {release:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the test keeps of one account's objects.
struct Tenant {
    token: String,
    web_digest: String,
    file_bytes: Vec<u8>,
    join_token: String,
    /// Host tokens of the hosts registered in `shop/prod` (the new agent contract).
    host_tokens: BTreeMap<String, String>,
    release: String,
    /// The `files` download URL a render of `shop` handed out.
    download_url: String,
    push_key: (String, String),
}

fn template(account: &str) -> String {
    format!(
        "# the shop of {account}\nimage: {{{{ computenest::acrimage::web }}}}\n\
         auth: {{{{ computenest::acr::dockerconfigjson }}}}\nfile: '{{{{ computenest::file::files }}}}'\n"
    )
}

fn deployment(name: &str, image: Value) -> Value {
    json!({
        "name": name, "image": image, "working_directory": "/srv/shop",
        "start_script": "echo start\n", "stop_script": "echo stop\n",
        // An hour: the release waits for its pulls, and nothing times out during the test.
        "step_timeout_seconds": 3600,
    })
}

fn quoted_url(rendered: &str) -> String {
    rendered
        .lines()
        .find_map(|line| line.strip_prefix("file: '").and_then(|rest| rest.strip_suffix('\'')))
        .unwrap_or_else(|| panic!("no file URL in {rendered}"))
        .to_owned()
}

/// The objects both accounts have, under the same names.
async fn common(stack: &Stack, client: &Client, account: &str) -> Tenant {
    let token = stack.berth.dev_token(account);
    stack.push_image(account, &format!("{account}/web"), "v1").await;
    let created = client
        .must(
            &token,
            "POST",
            "/v1/packages",
            Some(json!({
                "name": "web", "description": format!("the web front end of {account}"), "type": "ContainerImage",
                "tags": [{ "key": "owner", "value": account }],
                "version": { "name": "v_1", "images": [{ "repository": format!("{account}/web"), "tag": "v1" }] },
                // The same client token in both accounts: each is a first use in its own.
                "client_token": "the-same-client-token",
            })),
        )
        .await;
    assert_eq!(created["package"]["name"], "web", "{created}");
    let version = stack.settled_version(account, "web", "v_1", Duration::from_secs(30)).await;
    assert_eq!(version["status"], "Available", "{version}");
    let web_digest = version["images"][0]["digest"].as_str().unwrap().to_owned();

    client
        .must(
            &token,
            "POST",
            "/v1/packages",
            Some(json!({
                "name": "files", "description": format!("the tools of {account}"), "type": "File",
                "version": { "name": "f_1", "file_name": "tools.tar.gz" },
            })),
        )
        .await;
    let file_bytes = format!("{account}'s file bytes {}", uuid::Uuid::new_v4()).into_bytes();
    client.upload(&token, "/v1/packages/files/versions/f_1/file", &file_bytes).await;

    let service = json!({
        "templates": { "main": template(account) },
        "relations": {
            "{{ computenest::acrimage::web }}": { "package": "web", "version": "latest" },
            "{{ computenest::file::files }}": { "package": "files", "version": "latest" },
        },
    });
    client.must(&token, "PUT", "/v1/services/shop", Some(service)).await;
    let rendered = client.must(&token, "POST", "/v1/services/shop/render", Some(json!({}))).await;
    let text = rendered["rendered"].as_str().unwrap();
    assert!(text.contains(&format!("{}/{account}/web:v1", stack.registry.host)), "{text}");
    let download_url = quoted_url(text);

    client.must(&token, "POST", "/v1/applications", Some(json!({ "name": "shop" }))).await;
    let group = client.must(&token, "POST", "/v1/applications/shop/groups", Some(json!({ "name": "prod" }))).await;
    let join_token = group["join_token"].as_str().unwrap().to_owned();
    let image = json!({ "package": "web", "version": "v_1" });
    client.must(&token, "POST", "/v1/applications/shop/deployments", Some(deployment("web", image))).await;
    let hosts: &[&str] = if account == A { &["h1", "h2"] } else { &["h1"] };
    let mut host_tokens = BTreeMap::new();
    for host in hosts {
        let registered = client.register(&join_token, host).await;
        assert_eq!((registered["application"].as_str(), registered["group"].as_str()), (Some("shop"), Some("prod")));
        if let Some(host_token) = registered["host_token"].as_str() {
            host_tokens.insert(host.to_string(), host_token.to_owned());
        }
    }
    let release = client
        .must(
            &token,
            "POST",
            "/v1/releases",
            Some(json!({ "application": "shop", "deployment": "web", "group": "prod" })),
        )
        .await;
    let release = release["id"].as_str().unwrap().to_owned();
    let key = client.must(&token, "POST", "/v1/registry/credentials", Some(json!({ "purpose": "push" }))).await;
    let push_key = (key["username"].as_str().unwrap().to_owned(), key["password"].as_str().unwrap().to_owned());
    Tenant { token, web_digest, file_bytes, join_token, host_tokens, release, download_url, push_key }
}

/// What only A has.
struct OnlyA {
    onlya_digest: String,
    onlyf_bytes: Vec<u8>,
    /// A real download URL of A's `onlyf` file.
    onlyf_url: String,
    /// A's cancelled release (application `onlya`).
    cancelled: String,
    join_tokens: Vec<String>,
    host_tokens: Vec<String>,
}

async fn only_a(stack: &Stack, client: &Client, a: &Tenant) -> OnlyA {
    let token = &a.token;
    stack.push_image(A, "acme/onlya", "v1").await;
    let body = json!({
        "name": "onlya", "description": "a package only acme has", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "acme/onlya", "tag": "v1" }] },
        "client_token": "acme-onlya-token",
    });
    client.must(token, "POST", "/v1/packages", Some(body)).await;
    let onlya = stack.settled_version(A, "onlya", "v_1", Duration::from_secs(30)).await;
    assert_eq!(onlya["status"], "Available", "{onlya}");
    let onlya_digest = onlya["images"][0]["digest"].as_str().unwrap().to_owned();
    // Versions of the shared names that only A has: an image version and a file version
    // still waiting for its bytes.
    let body =
        json!({ "name": "v_a2", "images": [{ "repository": "acme/web", "tag": "v1" }], "client_token": "acme-v-a2" });
    client.must(token, "POST", "/v1/packages/web/versions", Some(body)).await;
    assert_eq!(stack.settled_version(A, "web", "v_a2", Duration::from_secs(30)).await["status"], "Available");
    client
        .must(token, "POST", "/v1/packages/files/versions", Some(json!({ "name": "f_a2", "file_name": "later.bin" })))
        .await;

    let body = json!({ "name": "onlyf", "description": "a file only acme has", "type": "File",
        "version": { "name": "f_1", "file_name": "onlyf.bin" } });
    client.must(token, "POST", "/v1/packages", Some(body)).await;
    let onlyf_bytes = format!("acme's only file {}", uuid::Uuid::new_v4()).into_bytes();
    client.upload(token, "/v1/packages/onlyf/versions/f_1/file", &onlyf_bytes).await;
    client
        .must(token, "POST", "/v1/packages/onlyf/versions", Some(json!({ "name": "f_2", "file_name": "onlyf.bin" })))
        .await;

    let service = json!({
        "templates": { "main": "image: {{ computenest::acrimage::onlya }}\nweb: {{ computenest::acrimage::web }}\nfile: '{{ computenest::file::onlyf }}'\n" },
        "relations": {
            "{{ computenest::acrimage::onlya }}": { "package": "onlya", "version": "latest" },
            "{{ computenest::acrimage::web }}": { "package": "web", "version": { "name": "v_a2" } },
            "{{ computenest::file::onlyf }}": { "package": "onlyf", "version": { "number": 1 } },
        },
    });
    client.must(token, "PUT", "/v1/services/onlya", Some(service)).await;
    let rendered = client.must(token, "POST", "/v1/services/onlya/render", Some(json!({}))).await;
    let onlyf_url = quoted_url(rendered["rendered"].as_str().unwrap());
    let bytes = reqwest::get(&onlyf_url).await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), onlyf_bytes.as_slice(), "A's own download URL works");

    // An application only A has, whose release A cancels; a group and a deployment only A
    // has in the shared application.
    client.must(token, "POST", "/v1/applications", Some(json!({ "name": "onlya" }))).await;
    let group = client.must(token, "POST", "/v1/applications/onlya/groups", Some(json!({ "name": "prod" }))).await;
    let onlya_join = group["join_token"].as_str().unwrap().to_owned();
    let image = json!({ "package": "onlya", "version": "v_1" });
    client.must(token, "POST", "/v1/applications/onlya/deployments", Some(deployment("web", image))).await;
    let canary = client.must(token, "POST", "/v1/applications/shop/groups", Some(json!({ "name": "canary" }))).await;
    let canary_join = canary["join_token"].as_str().unwrap().to_owned();
    let image = json!({ "package": "onlya", "version": "v_1" });
    client.must(token, "POST", "/v1/applications/shop/deployments", Some(deployment("onlyd", image))).await;
    let mut host_tokens = Vec::new();
    for join in [&onlya_join, &canary_join] {
        let registered = client.register(join, "h1").await;
        host_tokens.extend(registered["host_token"].as_str().map(str::to_owned));
    }
    let release = client
        .must(
            token,
            "POST",
            "/v1/releases",
            Some(json!({ "application": "onlya", "deployment": "web", "group": "prod" })),
        )
        .await;
    let cancelled = release["id"].as_str().unwrap().to_owned();
    client.must(token, "POST", &format!("/v1/releases/{cancelled}/cancel"), None).await;
    OnlyA { onlya_digest, onlyf_bytes, onlyf_url, cancelled, join_tokens: vec![onlya_join, canary_join], host_tokens }
}

// ---------------------------------------------------------------------------------------
// Tokens and registry helpers
// ---------------------------------------------------------------------------------------

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// The token with its claims changed, its header and signature kept.
fn rewritten(token: &str, change: impl Fn(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = jwt_part(token, 1);
    change(&mut claims);
    format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2])
}

/// The token's claims, changed, under `alg: none` and without a signature.
fn unsigned(token: &str, change: impl Fn(&mut Value)) -> String {
    let mut header = jwt_part(token, 0);
    header["alg"] = json!("none");
    let mut claims = jwt_part(token, 1);
    change(&mut claims);
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// The signed part of a download URL.
fn download_token(url: &str) -> String {
    url.split('/').rev().nth(1).unwrap().to_owned()
}

fn registry_token_path(scopes: &[&str]) -> String {
    let mut path = format!("/v1/registry/token?service={SERVICE}");
    for scope in scopes {
        path.push_str("&scope=");
        path.push_str(scope);
    }
    path
}

/// The actions a registry token grants on each repository.
fn grants(token: &str) -> BTreeMap<String, Vec<String>> {
    jwt_part(token, 1)["access"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let actions = a["actions"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned));
            (a["name"].as_str().unwrap_or_default().to_owned(), actions.collect())
        })
        .collect()
}

fn nothing_granted_outside(answer: &Answer, namespace: &str) -> Result<(), String> {
    if answer.status != 200 {
        return Err("expected 200 with an empty grant".into());
    }
    let token = answer.json["token"].as_str().ok_or("no token")?;
    let granted: Vec<_> = grants(token).into_iter().filter(|(_, actions)| !actions.is_empty()).collect();
    if granted.iter().any(|(name, _)| !name.starts_with(&format!("{namespace}/"))) {
        return Err(format!("granted outside {namespace}/: {granted:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_reaches_nothing_of_acme_and_sees_only_its_own() {
    let started = Instant::now();
    let stack = Stack::start(&[]);
    let client = Client(ApiClient::new(stack.berth.url.clone()));
    let registry = stack.registry.host.clone();

    let a = common(&stack, &client, A).await;
    let b = common(&stack, &client, B).await;
    let only = only_a(&stack, &client, &a).await;
    assert_ne!(a.web_digest, b.web_digest, "the two accounts' images differ");

    // A's releases in a state nothing moves: the shop release pulling (no agent polls; the
    // step timeout is an hour), the onlya release cancelled. B's pulls too.
    let pulling = |r: &Value| r["phase"]["step"] == "pulling";
    client.wait_release(&a.token, &a.release, "pulling", pulling).await;
    client.wait_release(&b.token, &b.release, "pulling", pulling).await;
    client.wait_release(&a.token, &only.cancelled, "cancelled", |r| r["status"] == "cancelled").await;

    let store = stack.berth.data.join("store");
    let folders: Vec<String> = ["accounts/acme".to_owned(), "files/acme".to_owned()]
        .into_iter()
        .chain([&a.release, &only.cancelled].iter().map(|id| format!("releases/{id}")))
        .collect();
    let mut documents: Vec<String> = [&a.release, &only.cancelled]
        .iter()
        .flat_map(|id| [format!("active-releases/{id}.json"), format!("scaling-leases/{id}.json")])
        .collect();
    let a_join_tokens: Vec<&String> = std::iter::once(&a.join_token).chain(&only.join_tokens).collect();
    let a_host_tokens: Vec<&String> = a.host_tokens.values().chain(&only.host_tokens).collect();
    documents.extend(a_join_tokens.iter().map(|t| format!("join-tokens/{}.json", sha256_hex(t.as_bytes()))));
    documents.extend(a_host_tokens.iter().map(|t| format!("host-tokens/{}.json", sha256_hex(t.as_bytes()))));
    // Nothing of A changes by itself any more (queued advances and the cancel's clean-up are
    // done; sweeps every 2 s find nothing to move): two snapshots a few sweeps apart agree.
    // That is what the attack is compared with.
    let mut before = snapshot::take(&store, &folders, &documents);
    let quiet_by = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let again = snapshot::take(&store, &folders, &documents);
        let drift = snapshot::diff(&before, &again);
        before = again;
        if drift.is_empty() {
            break;
        }
        assert!(
            Instant::now() < quiet_by,
            "A's store keeps changing with nobody calling (the comparison would mean nothing):\n{}",
            drift.join("\n")
        );
    }
    assert!(snapshot::documents(&before) >= 30, "A's snapshot is too small to mean much: {:?}", before.keys());

    let ghost_a_release = uuid::Uuid::new_v4().to_string();
    let ghost_cancelled = uuid::Uuid::new_v4().to_string();
    let mut ghosts: Vec<(String, String)> = GHOSTS.iter().map(|(r, g)| (r.to_string(), g.to_string())).collect();
    ghosts.push((a.release.clone(), ghost_a_release));
    ghosts.push((only.cancelled.clone(), ghost_cancelled));
    let mut secrets: Vec<(String, String)> = vec![
        ("acme".into(), "the name of account acme".into()),
        (a.web_digest.clone(), "A's web digest".into()),
        (only.onlya_digest.clone(), "A's onlya digest".into()),
        (String::from_utf8(a.file_bytes.clone()).unwrap(), "A's file bytes".into()),
        (String::from_utf8(only.onlyf_bytes.clone()).unwrap(), "A's onlyf bytes".into()),
        (a.release.clone(), "A's release id".into()),
        (only.cancelled.clone(), "A's cancelled release id".into()),
        (download_token(&a.download_url), "A's download token".into()),
        (download_token(&only.onlyf_url), "A's onlyf download token".into()),
        (a.push_key.1.clone(), "A's push key".into()),
    ];
    secrets.extend(a_join_tokens.iter().map(|t| (t.to_string(), "a join token of A".into())));
    secrets.extend(a_host_tokens.iter().map(|t| (t.to_string(), "a host token of A".into())));
    secrets.extend(GHOSTS.iter().map(|(name, _)| (name.to_string(), format!("A-only name {name}"))));
    let mut s = Suite {
        http: reqwest::Client::new(),
        url: stack.berth.url.clone(),
        bravo: b.token.clone(),
        ghosts,
        secrets,
        counts: BTreeMap::new(),
        group: "",
        failures: Vec::new(),
    };

    // The leak check itself: A's own answer about A's package is full of what it looks for.
    let probe = get("/v1/packages/onlya");
    let own_answer = s.send(&probe.clone().bearer(&a.token)).await;
    assert_eq!(own_answer.status, 200, "{}", own_answer.text);
    assert!(s.leaks(&probe, &own_answer).len() >= 2, "the leak check does not see A's data in A's own answer");

    packages(&mut s, &b).await;
    services_and_render(&mut s, &b, &registry).await;
    downloads(&mut s, &a, &b, &only).await;
    credentials(&mut s, &a, &b, &only, &registry, &stack).await;
    applications_and_releases(&mut s, &a, &b, &only, &registry).await;
    agents(&mut s, &a, &b, &only).await;
    same_names_created_by_b(&mut s, &stack, &b, &registry).await;
    prefix_account(&mut s, &a, stack.berth.dev_token("acme-corp")).await;

    // A's documents, byte for byte.
    let after = snapshot::take(&store, &folders, &documents);
    let changes = snapshot::diff(&before, &after);

    let n = s.total();
    for (group, count) in &s.counts {
        println!("cross-tenant: {group}: {count}");
    }
    let server_errors: Vec<String> = stack
        .berth
        .logs()
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
        .map(|l| short(l, 600))
        .collect();
    assert!(
        s.failures.is_empty() && changes.is_empty(),
        "{} of {n} cross-tenant attempts went wrong:\n{}\n\nA's store changed:\n{}\n\nberth serve's errors and warnings:\n{}",
        s.failures.len(),
        s.failures.join("\n"),
        changes.join("\n"),
        server_errors.join("\n")
    );
    assert!(n >= 60, "only {n} route x attack pairs ran");

    // The registry still holds A's own image: B's push over it failed.
    assert_eq!(stack.registry_digest(A, "acme/web", "v1").await, a.web_digest, "A's image was overwritten");
    // B's rotations and revocations left A's join token and hosts working.
    let registered = client.register(&a.join_token, "h3").await;
    assert_eq!((registered["application"].as_str(), registered["group"].as_str()), (Some("shop"), Some("prod")));
    let h1 = a.host_tokens.get("h1").expect("A's h1 host token");
    let job = s.send(&get("/v1/agent/jobs?wait_seconds=2").bearer(h1)).await;
    assert_eq!((job.status, job.json["release"].as_str()), (200, Some(a.release.as_str())), "{}", job.text);
    println!(
        "cross-tenant: {n} route x attack pairs, all 404 (or the route's documented 4xx) as for names that exist nowhere, \
         B saw only its own objects, A's store unchanged ({} documents), {:.1} s",
        snapshot::documents(&before),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// Packages
// ---------------------------------------------------------------------------------------

async fn packages(s: &mut Suite, b: &Tenant) {
    s.group = "packages";
    for (package, version, other) in [("onlya", "v_1", "v_9"), ("onlyf", "f_1", "f_9")] {
        let base = format!("/v1/packages/{package}");
        s.absent("get", get(&base)).await;
        s.absent("patch", patch(&base, json!({ "description": "rewritten by another account" }))).await;
        s.absent("patch tags", patch(&base, json!({ "tags": [{ "key": "owner", "value": "bravo" }] }))).await;
        s.absent("delete", delete(&base)).await;
        s.absent("list versions", get(format!("{base}/versions"))).await;
        s.absent("services using it", get(format!("{base}/services"))).await;
        s.absent("get version", get(format!("{base}/versions/{version}"))).await;
        s.absent("delete version", delete(format!("{base}/versions/{version}"))).await;
        s.absent("upload file", upload(format!("{base}/versions/{version}/file"), b"bravo's bytes")).await;
        let new_version = if package == "onlya" {
            json!({ "name": other, "images": [{ "repository": "bravo/web", "tag": "v1" }] })
        } else {
            json!({ "name": other, "file_name": "x.bin" })
        };
        s.absent("create version", post(format!("{base}/versions"), new_version)).await;
    }
    s.absent("upload into A's waiting version", upload("/v1/packages/onlyf/versions/f_2/file", b"bravo's bytes")).await;
    // Versions only A has, of names both have.
    s.absent("get A-only version", get("/v1/packages/web/versions/v_a2")).await;
    s.absent("delete A-only version", delete("/v1/packages/web/versions/v_a2")).await;
    s.absent("get A-only file version", get("/v1/packages/files/versions/f_a2")).await;
    s.absent("delete A-only file version", delete("/v1/packages/files/versions/f_a2")).await;
    s.absent("upload into A-only file version", upload("/v1/packages/files/versions/f_a2/file", b"bravo's bytes"))
        .await;

    // Images of A's namespace: refused at create (documented 400 outside_namespace).
    for (what, path, body) in [
        (
            "new package of A's image",
            "/v1/packages",
            json!({ "name": "stolen", "description": "somebody else's image", "type": "ContainerImage",
                "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] } }),
        ),
        (
            "new package of A's onlya image (A's own request, replayed with A's client token)",
            "/v1/packages",
            json!({ "name": "onlya", "description": "a package only acme has", "type": "ContainerImage",
                "version": { "name": "v_1", "images": [{ "repository": "acme/onlya", "tag": "v1" }] },
                "client_token": "acme-onlya-token" }),
        ),
        (
            "new version of A's image",
            "/v1/packages/web/versions",
            json!({ "name": "v_9", "images": [{ "repository": "acme/web", "tag": "v1" }] }),
        ),
    ] {
        s.refused(what, post(path, body), &[400], Some("outside_namespace")).await;
    }
    // Names that try to leave the namespace in the path.
    for path in [
        "/v1/packages/..%2F..%2Facme%2Fpackages%2Fonlya",
        "/v1/packages/web/versions/..%2F..%2F..%2F..%2Facme%2Fpackages%2Fonlya%2Fversions%2Fv_1",
        "/v1/packages/%2E%2E/versions",
    ] {
        s.refused("path traversal", get(path), &[400, 404], None).await;
    }

    // Names both have: B's own.
    let bravo_digest = b.web_digest.clone();
    s.own("get web", get("/v1/packages/web"), |a| {
        status_in(a, &[200])?;
        let text = a.json.to_string();
        (text.contains("bravo/web") && a.json["package"]["tags"][0]["value"] == "bravo")
            .then_some(())
            .ok_or("not B's package".into())
    })
    .await;
    s.own("get web v_1", get("/v1/packages/web/versions/v_1"), |a| {
        status_in(a, &[200])?;
        (a.json["images"][0]["digest"] == bravo_digest.as_str() && a.json["images"][0]["repository"] == "bravo/web")
            .then_some(())
            .ok_or("not B's version".into())
    })
    .await;
    s.own("list web versions", get("/v1/packages/web/versions"), |a| {
        status_in(a, &[200])?;
        a.text.contains("v_1").then_some(()).ok_or("B's v_1 missing".into())
    })
    .await;
    s.own("services using web", get("/v1/packages/web/services"), |a| {
        status_in(a, &[200])?;
        (a.json["services"] == json!(["shop"])).then_some(()).ok_or("expected B's shop only".into())
    })
    .await;
    let names = |a: &Answer| -> Vec<String> {
        a.json["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    };
    s.own("list packages", get("/v1/packages"), |a| {
        status_in(a, &[200])?;
        (names(a) == ["files", "web"]).then_some(()).ok_or("expected B's files and web only".into())
    })
    .await;
    s.own("list packages by A's tag", get("/v1/packages?tag_key=owner&tag_value=acme"), |a| {
        status_in(a, &[200])?;
        names(a).is_empty().then_some(()).ok_or("B has no package tagged acme".into())
    })
    .await;
    s.own("list packages of a type", get("/v1/packages?type=ContainerImage"), |a| {
        status_in(a, &[200])?;
        (names(a) == ["web"]).then_some(()).ok_or("expected B's web only".into())
    })
    .await;
    s.own("list after A's page token", get("/v1/packages?page_size=1&page_token=onlya"), |a| {
        status_in(a, &[200, 400])?;
        (a.status == 400 || names(a) == ["web"]).then_some(()).ok_or("expected B's web only".into())
    })
    .await;
    s.own("patch web", patch("/v1/packages/web", json!({ "description": "bravo's own web front end" })), |a| {
        status_in(a, &[200])?;
        (a.json["description"] == "bravo's own web front end").then_some(()).ok_or("not changed".into())
    })
    .await;
    let body = json!({ "name": "reuse", "description": "B's package, A's client token", "type": "File",
        "version": { "name": "f_1", "file_name": "r.bin" }, "client_token": "acme-onlya-token" });
    s.own("create with A's client token", post("/v1/packages", body), |a| {
        status_in(a, &[201])?;
        (a.json["package"]["name"] == "reuse").then_some(()).ok_or("not B's new package".into())
    })
    .await;
    let body =
        json!({ "name": "v_b2", "images": [{ "repository": "bravo/web", "tag": "v1" }], "client_token": "acme-v-a2" });
    s.own("create version with A's client token", post("/v1/packages/web/versions", body), |a| {
        status_in(a, &[201])?;
        (a.json["version"] == "v_b2").then_some(()).ok_or("not B's new version".into())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Services and render
// ---------------------------------------------------------------------------------------

fn relation(kind: &str, name: &str, package: &str, version: Value) -> Value {
    json!({ format!("{{{{ computenest::{kind}::{name} }}}}"): { "package": package, "version": version } })
}

fn config_yaml(artifact: &str) -> String {
    format!(
        "Service:\n  DeployMetadata:\n    SupplierDeployMetadata:\n      AcrImageArtifactRelation:\n        \
         '{{{{ computenest::acrimage::img }}}}':\n          ArtifactId: {artifact}\n          ArtifactVersion: 1\n    \
         TemplateConfigs:\n      - Name: main\n        Url: t.yaml\n"
    )
}

async fn services_and_render(s: &mut Suite, b: &Tenant, registry: &str) {
    s.group = "services";
    s.absent("get", get("/v1/services/onlya")).await;
    s.absent("delete", delete("/v1/services/onlya")).await;
    s.absent("associations", get("/v1/services/onlya/associations")).await;
    let image = "image: {{ computenest::acrimage::img }}\n";
    for (what, relations) in [
        ("define with A's package", relation("acrimage", "img", "onlya", json!("latest"))),
        ("define with A's package by number", relation("acrimage", "img", "onlya", json!({ "number": 1 }))),
        ("define with A's version of web", relation("acrimage", "img", "web", json!({ "name": "v_a2" }))),
        ("define with A's file", relation("file", "f", "onlyf", json!("latest"))),
        ("define with A's waiting file version", relation("file", "f", "files", json!({ "name": "f_a2" }))),
        (
            "define with a version name leaving the package",
            relation("acrimage", "img", "web", json!({ "name": "../../../../../acme/packages/onlya/versions/v_1" })),
        ),
    ] {
        // A name breaking its rule is a bad request; another account's package, one that
        // does not exist here.
        let expected = if what.contains("leaving") { 400 } else { 404 };
        let body = json!({ "templates": { "main": image }, "relations": relations });
        s.absent_as(what, put("/v1/services/bsvc", body), expected).await;
    }
    let body = json!({ "config": config_yaml("onlya"), "templates": { "t.yaml": image } });
    s.absent_as("import a config naming A's package", put("/v1/services/bsvc", body), 404).await;
    let body = json!({ "config": config_yaml("${Artifact.k.ArtifactId}").replace("ArtifactVersion: 1", "ArtifactVersion: draft"),
        "templates": { "t.yaml": image }, "artifacts": { "k": "onlya" } });
    s.absent_as("import mapping an artifact to A's package", put("/v1/services/bsvc", body), 404).await;

    s.own("get shop", get("/v1/services/shop"), |a| {
        status_in(a, &[200])?;
        a.text.contains("the shop of bravo").then_some(()).ok_or("not B's service".into())
    })
    .await;
    s.own("list services", get("/v1/services"), |a| {
        status_in(a, &[200])?;
        let names: Vec<&str> =
            a.json["services"].as_array().into_iter().flatten().filter_map(|x| x["name"].as_str()).collect();
        (names == ["shop"]).then_some(()).ok_or("expected B's shop only".into())
    })
    .await;
    s.own("shop associations", get("/v1/services/shop/associations"), |a| {
        status_in(a, &[200])?;
        let names: Vec<&str> = a.json["associations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["version"]["name"].as_str())
            .collect();
        (names.len() == 2 && names.contains(&"f_1")).then_some(()).ok_or("expected B's two associations".into())
    })
    .await;

    s.group = "render";
    s.absent("render A's service", post("/v1/services/onlya/render", json!({}))).await;
    s.absent("render A's service's template", post("/v1/services/onlya/render", json!({ "template": "main" }))).await;
    s.absent("dry run of A's service", post("/v1/services/onlya/render", json!({ "dry_run": true }))).await;
    s.absent("A's service as YAML", post("/v1/services/onlya/render", json!({})).accept("application/yaml")).await;
    s.absent("A's service, pinned", post("/v1/services/onlya/render", json!({ "pin_digests": true }))).await;
    let acr = "image: {{ computenest::acrimage::img }}\nauth: {{ computenest::acr::dockerconfigjson }}\n";
    let file = "file: '{{ computenest::file::f }}'\n";
    for (what, text, relations, extra) in [
        ("A's package", acr, relation("acrimage", "img", "onlya", json!("latest")), json!({})),
        (
            "A's package, pinned",
            acr,
            relation("acrimage", "img", "onlya", json!("latest")),
            json!({ "pin_digests": true }),
        ),
        ("A's package by number", acr, relation("acrimage", "img", "onlya", json!({ "number": 1 })), json!({})),
        ("A's package by version name", acr, relation("acrimage", "img", "onlya", json!({ "name": "v_1" })), json!({})),
        (
            "A's package, dry run",
            acr,
            relation("acrimage", "img", "onlya", json!("latest")),
            json!({ "dry_run": true }),
        ),
        ("A's version of web", acr, relation("acrimage", "img", "web", json!({ "name": "v_a2" })), json!({})),
        ("A's file (minting A's download URL)", file, relation("file", "f", "onlyf", json!("latest")), json!({})),
        ("A's file by number", file, relation("file", "f", "onlyf", json!({ "number": 1 })), json!({})),
        ("A's waiting file version", file, relation("file", "f", "files", json!({ "name": "f_a2" })), json!({})),
        (
            "A's file as a chart",
            "c: {{ computenest::helmchart::f }}\n",
            relation("helmchart", "f", "onlyf", json!("latest")),
            json!({}),
        ),
    ] {
        let mut body = json!({ "template": text, "relations": relations });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s.absent_as(what, post("/v1/render", body), 422).await;
    }
    let body = json!({ "template_base64": STANDARD.encode(acr), "relations": relation("acrimage", "img", "onlya", json!("latest")) });
    s.absent_as("A's package, base64 template", post("/v1/render", body), 422).await;
    let body = json!({ "template": acr, "relations": relation("acrimage", "img", "onlya", json!("latest")) });
    s.absent_as("A's package, as YAML", post("/v1/render", body).accept("text/yaml"), 422).await;
    let body = json!({ "template": acr, "config": config_yaml("onlya") });
    s.absent_as("a config naming A's package", post("/v1/render", body), 422).await;
    let body = json!({ "template": acr, "config": config_yaml("artifact-x"), "artifacts": { "artifact-x": "onlya" } });
    s.absent_as("an artifact mapped to A's package", post("/v1/render", body), 422).await;
    let body = json!({ "template": acr, "relations": relation("acrimage", "img", "../../acme/packages/onlya", json!("latest")) });
    s.refused("a package name leaving the namespace", post("/v1/render", body), &[400, 422], None).await;
    let body = json!({ "template": acr, "relations": relation("acrimage", "img", "web", json!({ "name": "../../../../../acme/packages/onlya/versions/v_1" })) });
    s.refused("a version name leaving the package", post("/v1/render", body), &[400, 422], None).await;

    // The names both have render B's objects.
    let b_image = format!("{registry}/bravo/web:v1");
    let b_pinned = format!("{registry}/bravo/web@{}", b.web_digest);
    let b_image_line = format!("image: {registry}/bravo/web:v1\n");
    s.own("render shop as YAML", post("/v1/services/shop/render", json!({})).accept("application/yaml"), |a| {
        status_in(a, &[200])?;
        let headers_ok = a.all.contains("berth-repositories: bravo/web\n");
        (headers_ok && a.text.contains(&b_image_line)).then_some(()).ok_or("not B's template or repositories".into())
    })
    .await;
    let b_bytes = b.file_bytes.clone();
    let rendered = s
        .own("render shop", post("/v1/services/shop/render", json!({})), |a| {
            status_in(a, &[200])?;
            let text = a.json["rendered"].as_str().unwrap_or_default();
            (text.contains("the shop of bravo") && text.contains(&format!("image: {b_image}\n")))
                .then_some(())
                .ok_or(String::from("not B's image"))?;
            (a.json["pull_key"]["repositories"] == json!(["bravo/web"]))
                .then_some(())
                .ok_or("the key reaches more".into())
        })
        .await;
    let b_url = quoted_url(rendered.json["rendered"].as_str().unwrap_or("file: 'x'"));
    s.own("render shop, pinned", post("/v1/services/shop/render", json!({ "pin_digests": true })), |a| {
        status_in(a, &[200])?;
        a.json["rendered"].as_str().unwrap_or_default().contains(&b_pinned).then_some(()).ok_or("not B's digest".into())
    })
    .await;
    let body = json!({ "template": format!("{acr}{file}"), "relations": {
        "computenest::acrimage::img": { "package": "web", "version": "latest" },
        "computenest::file::f": { "package": "files", "version": "latest" } } });
    let b_image = format!("{registry}/bravo/web:v1");
    s.own("render with web and files", post("/v1/render", body), |a| {
        status_in(a, &[200])?;
        a.json["rendered"].as_str().unwrap_or_default().contains(&b_image).then_some(()).ok_or("not B's image".into())
    })
    .await;
    s.group = "downloads";
    s.own("B's download URL", get(b_url.trim_start_matches(&s.url).to_owned()).anonymous(), |a| {
        status_in(a, &[200])?;
        (a.text.as_bytes() == b_bytes.as_slice()).then_some(()).ok_or("not B's bytes".into())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------------------

async fn downloads(s: &mut Suite, a: &Tenant, b: &Tenant, only: &OnlyA) {
    s.group = "downloads";
    let a_token = download_token(&only.onlyf_url);
    let b_token = download_token(&b.download_url);
    // B's own URL naming A's file.
    s.absent("B's token, A's file name", get(format!("/v1/downloads/{b_token}/onlyf.bin")).anonymous()).await;
    // A's URL (a capability, by design) altered: another name, a broken signature, claims
    // rewritten, no signature at all.
    s.refused(
        "A's token, another file name",
        get(format!("/v1/downloads/{a_token}/tools.tar.gz")).anonymous(),
        &[404],
        None,
    )
    .await;
    let mut tampered = a_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    s.refused(
        "A's token, signature changed",
        get(format!("/v1/downloads/{tampered}/onlyf.bin")).anonymous(),
        &[401],
        None,
    )
    .await;
    let to_a = |claims: &mut Value| {
        claims["sub"] = json!("acme");
        claims["package"] = json!("onlyf");
        claims["version"] = json!("f_1");
        claims["file_name"] = json!("onlyf.bin");
    };
    let forged = rewritten(&b_token, to_a);
    s.refused(
        "B's token rewritten to A's file",
        get(format!("/v1/downloads/{forged}/onlyf.bin")).anonymous(),
        &[401],
        None,
    )
    .await;
    let forged = rewritten(&download_token(&a.download_url), |c| c["exp"] = json!(c["exp"].as_u64().unwrap() + 86_400));
    s.refused(
        "A's token with a later expiry",
        get(format!("/v1/downloads/{forged}/tools.tar.gz")).anonymous(),
        &[401],
        None,
    )
    .await;
    let none = unsigned(&b_token, to_a);
    s.refused(
        "an unsigned token for A's file",
        get(format!("/v1/downloads/{none}/onlyf.bin")).anonymous(),
        &[401],
        None,
    )
    .await;
    let parts: Vec<&str> = a_token.split('.').collect();
    let b_sig = b_token.rsplit('.').next().unwrap();
    let spliced = format!("{}.{}.{b_sig}", parts[0], parts[1]);
    s.refused(
        "A's claims with B's signature",
        get(format!("/v1/downloads/{spliced}/onlyf.bin")).anonymous(),
        &[401],
        None,
    )
    .await;
    // Other credentials of B as download tokens.
    let b_key = s
        .send(&post("/v1/registry/credentials", json!({ "purpose": "pull", "repositories": ["web"] })))
        .await
        .json["password"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (what, token) in [("B's account token", b.token.clone()), ("B's temporary key", b_key)] {
        s.refused(
            &format!("{what} as a download token"),
            get(format!("/v1/downloads/{token}/onlyf.bin")).anonymous(),
            &[401],
            None,
        )
        .await;
    }
    s.refused(
        "B's token, a path to A's file object",
        get(format!("/v1/downloads/{b_token}/..%2F..%2F..%2Ffiles%2Facme%2Fonlyf%2Ff_1%2Fcontent")).anonymous(),
        &[400, 404],
        None,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Credentials, registry tokens and account tokens
// ---------------------------------------------------------------------------------------

async fn credentials(s: &mut Suite, a: &Tenant, b: &Tenant, only: &OnlyA, registry: &str, stack: &Stack) {
    s.group = "credentials";
    s.own("account", get("/v1/account"), |x| {
        status_in(x, &[200])?;
        (x.json["namespace"] == "bravo").then_some(()).ok_or("not B's namespace".into())
    })
    .await;
    let in_bravo = |x: &Answer| -> Result<(), String> {
        status_in(x, &[200])?;
        let all_bravo = x.json["available_resources"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r.to_string().contains("bravo/") || r.to_string().contains("\"bravo\""));
        (x.json["namespace"] == "bravo" && all_bravo).then_some(()).ok_or("a key outside bravo".into())
    };
    let body = json!({ "purpose": "push", "repositories": ["acme/web"] });
    s.own("a key for 'acme/web' (relative: bravo/acme/web)", post("/v1/registry/credentials", body), in_bravo).await;
    for repository in ["../acme/web", "/acme/web", "..", "acme/../../acme/web"] {
        let body = json!({ "purpose": "pull", "repositories": [repository] });
        s.refused("a key for a repository leaving the namespace", post("/v1/registry/credentials", body), &[400], None)
            .await;
    }

    s.group = "registry";
    let basic = Auth::Basic(b.push_key.0.clone(), b.push_key.1.clone());
    for scopes in [
        vec!["repository:acme/web:pull,push"],
        vec!["repository:acme/onlya:pull"],
        vec!["repository:acme/web:*"],
        vec!["repository:acme/web:delete"],
        vec!["registry:catalog:*"],
        vec!["repository:bravo/web:pull", "repository:acme/web:pull"],
        vec!["repository:bravo/../acme/web:pull"],
    ] {
        let request = get(registry_token_path(&scopes)).auth(basic.clone());
        let what = format!("a registry token for {scopes:?}");
        let answer = s.send(&request).await;
        let mut problems = s.leaks(&request, &answer);
        if answer.status != 400
            && let Err(why) = nothing_granted_outside(&answer, "bravo")
        {
            problems.push(format!("{why}: {}", short(&answer.text, 300)));
        }
        s.record(&request, &what, answer.status, problems);
    }
    let request =
        get(format!("{}&account=acme", registry_token_path(&["repository:acme/web:pull"]))).auth(basic.clone());
    s.refused("a registry token claiming account acme", request, &[401], None).await;
    // A's download token (a host may hold it) is no registry credential for A.
    let request = get(registry_token_path(&["repository:acme/onlya:pull"]))
        .auth(Auth::Basic("acme".into(), download_token(&only.onlyf_url)));
    s.refused("A's download token as A's registry password", request, &[401], None).await;
    let request =
        get(registry_token_path(&["repository:acme/web:pull"])).auth(Auth::Basic("acme".into(), b.push_key.1.clone()));
    s.refused("B's key under A's name", request, &[401], None).await;

    // The registry itself, with skopeo: B's push key reads and writes nothing of A's.
    let creds = format!("{}:{}", b.push_key.0, b.push_key.1);
    for repository in ["acme/web:v1", "acme/onlya:v1"] {
        let reference = format!("docker://{registry}/{repository}");
        let (ok, _) = skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &reference]);
        let problems = if ok { vec!["B's push key read A's image".to_owned()] } else { Vec::new() };
        s.outcome("skopeo inspect of A's image with B's push key", &format!("skopeo inspect {reference}"), problems);
    }
    let layout = stack.dir.path().join("isolation-overwrite");
    oci_image(&layout, "v1", "bravo overwriting acme\n");
    let source = format!("oci:{}:v1", layout.display());
    let destination = format!("docker://{registry}/acme/web:v1");
    let (ok, _) = skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &creds, &source, &destination]);
    let problems = if ok { vec!["B's push key overwrote A's image".to_owned()] } else { Vec::new() };
    s.outcome("skopeo push over A's image with B's push key", &format!("skopeo copy {destination}"), problems);
    // The pull key B's render handed out.
    let rendered = s.send(&post("/v1/services/shop/render", json!({}))).await;
    let auth = rendered.json["rendered"]
        .as_str()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("auth: ")))
        .map(|v| STANDARD.decode(v.trim()).expect("base64 dockerconfigjson"))
        .expect("B's render holds a dockerconfigjson");
    let authfile = stack.dir.path().join("isolation-bravo-auth.json");
    std::fs::write(&authfile, auth).unwrap();
    let authfile = authfile.display().to_string();
    let (own_ok, own_err) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--authfile",
        &authfile,
        &format!("docker://{registry}/bravo/web:v1"),
    ]);
    assert!(own_ok, "B's rendered key pulls B's own image: {own_err}");
    for repository in ["acme/web:v1", "acme/onlya:v1"] {
        let reference = format!("docker://{registry}/{repository}");
        let (ok, _) = skopeo(&["inspect", "--tls-verify=false", "--authfile", &authfile, &reference]);
        let problems = if ok { vec!["B's rendered pull key read A's image".to_owned()] } else { Vec::new() };
        s.outcome(
            "skopeo inspect of A's image with B's rendered key",
            &format!("skopeo inspect {reference}"),
            problems,
        );
    }

    // Account tokens naming acme that are not A's.
    s.group = "account tokens";
    let foreign = AccountKeys::from_pem(generate_private_key_pem().as_bytes(), "berth").expect("a key");
    let acme = AccountId::parse(A).unwrap();
    let registry_token =
        s.send(&get(registry_token_path(&["repository:bravo/web:pull"])).auth(basic.clone())).await.json["token"]
            .as_str()
            .unwrap_or("none")
            .to_owned();
    let host_token = b.host_tokens.get("h1").cloned().expect("B's h1 host token");
    for (what, token) in [
        ("a token for acme signed by another key", foreign.issue(&acme, 300).unwrap()),
        ("B's token with its subject changed to acme", rewritten(&b.token, |c| c["sub"] = json!("acme"))),
        ("an unsigned token for acme", unsigned(&b.token, |c| c["sub"] = json!("acme"))),
        ("A's download token", download_token(&a.download_url)),
        ("B's temporary key", b.push_key.1.clone()),
        ("B's registry token", registry_token),
        ("B's join token", b.join_token.clone()),
        ("B's host token", host_token),
    ] {
        s.refused(&format!("{what} on A's package"), get("/v1/packages/onlya").bearer(&token), &[401], None).await;
    }
    s.refused(
        "B's token with subject acme on A's release",
        get(format!("/v1/releases/{}", a.release)).bearer(&rewritten(&b.token, |c| c["sub"] = json!("acme"))),
        &[401],
        None,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Applications, groups, deployments, releases
// ---------------------------------------------------------------------------------------

async fn applications_and_releases(s: &mut Suite, a: &Tenant, b: &Tenant, only: &OnlyA, registry: &str) {
    s.group = "applications";
    let b_image = json!({ "address": format!("{registry}/bravo/web:v1") });
    s.absent("get", get("/v1/applications/onlya")).await;
    s.absent("create a group in it", post("/v1/applications/onlya/groups", json!({ "name": "g2" }))).await;
    s.absent("get its group", get("/v1/applications/onlya/groups/prod")).await;
    s.absent(
        "create a deployment in it",
        post("/v1/applications/onlya/deployments", deployment("web2", b_image.clone())),
    )
    .await;
    s.absent("get its deployment", get("/v1/applications/onlya/deployments/web")).await;
    for (what, image) in [
        ("a deployment of A's package", json!({ "package": "onlya", "version": "v_1" })),
        ("a deployment of A's version of web", json!({ "package": "web", "version": "v_a2" })),
        ("a deployment of A's image of onlya", json!({ "package": "onlya", "version": "v_1", "image": "onlya" })),
    ] {
        let body = deployment("stolen", image);
        s.absent_as(what, post("/v1/applications/shop/deployments", body), 404).await;
    }
    for image in [
        json!({ "address": format!("{registry}/acme/web:v1") }),
        json!({ "namespace": "acme", "repository": "web", "version": "v1" }),
        json!({ "package": "web", "version": "../../../../acme/packages/onlya/versions/v_1" }),
        json!({ "package": "../../acme/packages/onlya", "version": "v_1" }),
    ] {
        let body = deployment("stolen", image);
        s.refused("a deployment of A's image", post("/v1/applications/shop/deployments", body), &[400], None).await;
    }
    s.absent("get A's group of shop", get("/v1/applications/shop/groups/canary")).await;
    s.absent("get A's deployment of shop", get("/v1/applications/shop/deployments/onlyd")).await;
    for (app, group) in [("onlya", "prod"), ("shop", "canary")] {
        let path = format!("/v1/applications/{app}/groups/{group}/join-token");
        s.absent("rotate A's join token", post(&path, json!({}))).await;
        s.absent("revoke A's join token", delete(&path)).await;
        let group_path = format!("/v1/applications/{app}/groups/{group}");
        s.absent("change A's group", patch(&group_path, json!({ "stale_after_seconds": 900 }))).await;
        s.absent("list A's group's releases", get(format!("{group_path}/releases"))).await;
        for host in ["h1", "h9"] {
            s.absent("remove A's host", delete(format!("{group_path}/instances/{host}"))).await;
        }
        s.absent("delete A's group", delete(&group_path)).await;
    }
    s.absent("list A's application's groups", get("/v1/applications/onlya/groups")).await;
    s.absent("list A's application's deployments", get("/v1/applications/onlya/deployments")).await;
    for (app, name) in [("onlya", "web"), ("shop", "onlyd")] {
        let path = format!("/v1/applications/{app}/deployments/{name}");
        s.absent("revise A's deployment", put(&path, deployment(name, b_image.clone()))).await;
        s.absent("list A's deployment's revisions", get(format!("{path}/revisions"))).await;
        s.absent("get A's deployment's revision", get(format!("{path}/revisions/1"))).await;
        s.absent("delete A's deployment", delete(&path)).await;
    }
    s.absent("delete A's application", delete("/v1/applications/onlya")).await;

    s.group = "releases";
    for (app, deployment_name, group) in
        [("onlya", "web", "prod"), ("shop", "web", "canary"), ("shop", "onlyd", "prod")]
    {
        let body = json!({ "application": app, "deployment": deployment_name, "group": group });
        s.absent("release to A's objects", post("/v1/releases", body.clone())).await;
        s.absent("dry run on A's objects", post("/v1/releases?dry_run=true", body)).await;
    }
    for id in [a.release.clone(), only.cancelled.clone()] {
        s.absent("get A's release", get(format!("/v1/releases/{id}"))).await;
        s.absent("cancel A's release", post(format!("/v1/releases/{id}/cancel"), json!({}))).await;
        s.absent("confirm A's release", post(format!("/v1/releases/{id}/confirm"), json!({}))).await;
        s.absent("roll A's release back", post(format!("/v1/releases/{id}/rollback"), json!({}))).await;
        for host in ["h1", "h2", "h9"] {
            s.absent("read A's release logs", get(format!("/v1/releases/{id}/hosts/{host}/logs"))).await;
        }
    }
    let upper = a.release.to_uppercase();
    let simple = a.release.replace('-', "");
    let braced = format!("%7B{}%7D", a.release);
    for id in [upper, simple, braced, format!("urn:uuid:{}", a.release)] {
        s.refused("A's release id spelt another way", get(format!("/v1/releases/{id}")), &[404], Some("not_found"))
            .await;
        s.refused(
            "cancel A's release spelt another way",
            post(format!("/v1/releases/{id}/cancel"), json!({})),
            &[404],
            None,
        )
        .await;
    }

    // Names both have: B's own.
    s.group = "applications";
    s.own("get shop", get("/v1/applications/shop"), |x| status_in(x, &[200])).await;
    let b_release = b.release.clone();
    s.own("get shop/prod", get("/v1/applications/shop/groups/prod"), |x| {
        status_in(x, &[200])?;
        let hosts: Vec<&str> =
            x.json["instances"].as_array().into_iter().flatten().filter_map(|i| i["host"].as_str()).collect();
        (hosts == ["h1"] && x.json["active_release"] == b_release.as_str()).then_some(()).ok_or("not B's group".into())
    })
    .await;
    let names = |x: &Answer, key: &str| -> Vec<String> {
        x.json[key].as_array().into_iter().flatten().filter_map(|i| i["name"].as_str().map(str::to_owned)).collect()
    };
    s.own("list applications", get("/v1/applications?page_size=100"), |x| {
        status_in(x, &[200])?;
        let apps = names(x, "applications");
        (apps.contains(&"shop".to_owned()) && !apps.contains(&"onlya".to_owned()))
            .then_some(())
            .ok_or(format!("not B's applications: {apps:?}"))
    })
    .await;
    s.own("list shop's groups", get("/v1/applications/shop/groups"), |x| {
        status_in(x, &[200])?;
        let groups = names(x, "groups");
        (groups == ["prod"]).then_some(()).ok_or(format!("not B's groups: {groups:?}"))
    })
    .await;
    s.own("list shop's deployments", get("/v1/applications/shop/deployments"), |x| {
        status_in(x, &[200])?;
        let deployments = names(x, "deployments");
        (!deployments.contains(&"onlyd".to_owned()) && deployments.contains(&"web".to_owned()))
            .then_some(())
            .ok_or(format!("not B's deployments: {deployments:?}"))
    })
    .await;
    let b_release = b.release.clone();
    s.own("list shop/prod's releases", get("/v1/applications/shop/groups/prod/releases"), |x| {
        status_in(x, &[200])?;
        let ids: Vec<&str> =
            x.json["releases"].as_array().into_iter().flatten().filter_map(|r| r["id"].as_str()).collect();
        (ids == [b_release.as_str()]).then_some(()).ok_or(format!("not B's releases: {ids:?}"))
    })
    .await;
    s.own("get shop/web", get("/v1/applications/shop/deployments/web"), |x| {
        status_in(x, &[200])?;
        (x.json["image"]["repository"] == "bravo/web").then_some(()).ok_or("not B's deployment".into())
    })
    .await;
    s.own("create group prod again", post("/v1/applications/shop/groups", json!({ "name": "prod" })), |x| {
        status_in(x, &[409])
    })
    .await;
    s.group = "releases";
    let body = json!({ "application": "shop", "deployment": "web", "group": "prod" });
    let b_release = b.release.clone();
    s.own("release shop/web to prod", post("/v1/releases", body.clone()), |x| {
        status_in(x, &[409])?;
        (x.json["code"] == "release_in_progress" && x.text.contains(&b_release))
            .then_some(())
            .ok_or("not B's release".into())
    })
    .await;
    s.own("dry run shop/web on prod", post("/v1/releases?dry_run=true", body), |x| {
        status_in(x, &[200])?;
        (x.json["batches"] == json!([["h1"]])).then_some(()).ok_or("not B's hosts".into())
    })
    .await;
    let b_release = b.release.clone();
    s.own("get B's release", get(format!("/v1/releases/{b_release}")), |x| {
        status_in(x, &[200])?;
        x.json["image"].as_str().unwrap_or_default().contains("bravo/web").then_some(()).ok_or("not B's release".into())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Agents: join tokens register, host tokens poll and report for their own host only
// ---------------------------------------------------------------------------------------

async fn agents(s: &mut Suite, a: &Tenant, b: &Tenant, only: &OnlyA) {
    s.group = "agent";
    let h1 = b.host_tokens.get("h1").cloned().unwrap_or_else(|| {
        panic!("registering answered no host_token: the agent API with host tokens is not there yet")
    });
    assert!(h1.starts_with("bht_"), "{h1}");
    let join = b.join_token.clone();
    let cancelled = only.cancelled.clone();

    // Registering: B's join token joins B's group only, whatever the body says.
    let registered = s
        .own(
            "register A's host name h2 with B's join token",
            post("/v1/agent/register", json!({ "host": "h2" })).bearer(&join),
            |x| {
                status_in(x, &[200])?;
                let ok = x.json["application"] == "shop"
                    && x.json["group"] == "prod"
                    && x.json["host_token"].as_str().is_some_and(|t| t.starts_with("bht_"));
                ok.then_some(()).ok_or("not B's group".into())
            },
        )
        .await;
    let h2 = registered.json["host_token"].as_str().unwrap_or_default().to_owned();
    for body in [
        json!({ "host": "h1", "application": "onlya", "group": "prod" }),
        json!({ "host": "h1", "group": "canary" }),
        json!({ "host": "../../acme/applications/onlya/groups/prod/instances/h1" }),
    ] {
        s.refused("register naming A's group", post("/v1/agent/register", body).bearer(&join), &[400], None).await;
    }
    // A host token registers (rotates) its own host only.
    s.refused(
        "register another host's name with B's host token",
        post("/v1/agent/register", json!({ "host": "h2" })).bearer(&h1),
        &[401],
        None,
    )
    .await;
    for (what, token) in [
        ("B's account token", b.token.clone()),
        ("a made-up join token", format!("bjt_{}", URL_SAFE_NO_PAD.encode([7u8; 32]))),
    ] {
        s.refused(
            &format!("register with {what}"),
            post("/v1/agent/register", json!({ "host": "h1" })).bearer(&token),
            &[401],
            None,
        )
        .await;
    }
    s.refused(
        "register without a token",
        post("/v1/agent/register", json!({ "host": "h1" })).anonymous(),
        &[401],
        None,
    )
    .await;

    // Polling: B's hosts get B's jobs, never A's, though A has hosts of the same names.
    let b_release = b.release.clone();
    let job = s
        .own("poll as B's h1", get("/v1/agent/jobs?wait_seconds=5").bearer(&h1), |x| {
            status_in(x, &[200])?;
            let ok = x.json["release"] == b_release.as_str()
                && x.json["image"].as_str().unwrap_or_default().contains("bravo/web")
                && x.json["job_id"].is_string();
            ok.then_some(()).ok_or("not B's job".into())
        })
        .await;
    let job_id = job.json["job_id"].as_str().unwrap_or("none").to_owned();
    let b_release = b.release.clone();
    s.own("poll as B's h1, naming it", get("/v1/agent/jobs?host=h1&wait_seconds=1").bearer(&h1), |x| {
        status_in(x, &[200])?;
        (x.json["release"] == b_release.as_str()).then_some(()).ok_or("not B's job".into())
    })
    .await;
    s.own(
        "poll as B's h2 (A's h2 has a job; B's is in no release)",
        get("/v1/agent/jobs?wait_seconds=1").bearer(&h2),
        |x| status_in(x, &[204]),
    )
    .await;
    s.refused("poll naming A's host h2", get("/v1/agent/jobs?host=h2&wait_seconds=1").bearer(&h1), &[403], None).await;
    s.refused(
        "poll naming a host of A's other group",
        get("/v1/agent/jobs?host=h9&wait_seconds=1").bearer(&h1),
        &[403],
        None,
    )
    .await;
    for (what, token) in [("B's join token", join.clone()), ("B's account token", b.token.clone())] {
        s.refused(&format!("poll with {what}"), get("/v1/agent/jobs?wait_seconds=1").bearer(&token), &[401], None)
            .await;
    }

    // Reporting: nothing handed to B's host is a job of A's releases.
    let report = |job: &str, release: &str, kind: &str| {
        let step = if kind == "pull" { "pull" } else { "start" };
        json!({ "job_id": job, "release": release, "kind": kind, "ok": true, "step": step, "exit_code": 0,
            "logs": { "pull": { "stdout": "bravo was here", "stderr": "" } } })
    };
    for (what, token, body) in [
        ("B's job id on A's release", &h1, report(&job_id, &a.release, "pull")),
        ("a made-up job on A's release", &h1, report("made-up", &a.release, "pull")),
        ("a run job on A's release", &h1, report("made-up", &a.release, "run")),
        ("B's job id on A's cancelled release", &h1, report(&job_id, &cancelled, "pull")),
        ("A's release from B's h2", &h2, report("made-up", &a.release, "pull")),
        ("A's release run from B's h2", &h2, report(&job_id, &a.release, "run")),
    ] {
        s.absent_as(what, post("/v1/agent/reports", body).bearer(token), 409).await;
    }
    s.refused(
        "report naming A's host h2",
        post("/v1/agent/reports?host=h2", report(&job_id, &a.release, "pull")).bearer(&h1),
        &[403],
        None,
    )
    .await;
    for (what, token) in [("B's join token", join.clone()), ("B's account token", b.token.clone())] {
        s.refused(
            &format!("report with {what}"),
            post("/v1/agent/reports", report(&job_id, &a.release, "pull")).bearer(&token),
            &[401],
            None,
        )
        .await;
    }
    // B's own report of its own job is accepted: the refusals above are not a broken format.
    s.own("B's own report", post("/v1/agent/reports", report(&job_id, &b.release, "pull")).bearer(&h1), |x| {
        status_in(x, &[200])?;
        (x.json["accepted"] == true).then_some(()).ok_or("B's own report was not accepted".into())
    })
    .await;

    // B rotates and revokes its own join token; A's keeps working (checked after the attack).
    let path = "/v1/applications/shop/groups/prod/join-token";
    let rotated = s
        .own("rotate B's join token", post(path, json!({})), |x| {
            status_in(x, &[200])?;
            x.json["join_token"]
                .as_str()
                .is_some_and(|t| t.starts_with("bjt_"))
                .then_some(())
                .ok_or("no new token".into())
        })
        .await;
    let new_join = rotated.json["join_token"].as_str().unwrap_or("bjt_none").to_owned();
    s.refused(
        "register with B's rotated-out join token",
        post("/v1/agent/register", json!({ "host": "h3" })).bearer(&join),
        &[401],
        None,
    )
    .await;
    s.own(
        "register with B's new join token",
        post("/v1/agent/register", json!({ "host": "h3" })).bearer(&new_join),
        |x| {
            status_in(x, &[200])?;
            (x.json["application"] == "shop" && x.json["group"] == "prod").then_some(()).ok_or("not B's group".into())
        },
    )
    .await;
    s.own("revoke B's join token", delete(path), |x| status_in(x, &[204, 200])).await;
    s.refused(
        "register with B's revoked join token",
        post("/v1/agent/register", json!({ "host": "h4" })).bearer(&new_join),
        &[401],
        None,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// B creates objects named like A's: its own, empty, never A's
// ---------------------------------------------------------------------------------------

async fn same_names_created_by_b(s: &mut Suite, stack: &Stack, b: &Tenant, registry: &str) {
    s.group = "same names";
    s.own("create application onlya", post("/v1/applications", json!({ "name": "onlya" })), |x| status_in(x, &[201]))
        .await;
    s.refused("get A's group under B's onlya", get("/v1/applications/onlya/groups/prod"), &[404], Some("not_found"))
        .await;
    s.refused(
        "get A's deployment under B's onlya",
        get("/v1/applications/onlya/deployments/web"),
        &[404],
        Some("not_found"),
    )
    .await;
    let body = json!({ "application": "onlya", "deployment": "web", "group": "prod" });
    s.refused("release to A's group under B's onlya", post("/v1/releases", body), &[404], Some("not_found")).await;
    s.refused(
        "rotate A's join token under B's onlya",
        post("/v1/applications/onlya/groups/prod/join-token", json!({})),
        &[404],
        Some("not_found"),
    )
    .await;
    s.own("create group prod in B's onlya", post("/v1/applications/onlya/groups", json!({ "name": "prod" })), |x| {
        status_in(x, &[201])
    })
    .await;

    let body = json!({ "name": "onlya", "description": "B's package named like A's", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "bravo/web", "tag": "v1" }] } });
    s.own("create package onlya", post("/v1/packages", body), |x| status_in(x, &[201])).await;
    let settled = stack.settled_version(B, "onlya", "v_1", Duration::from_secs(30)).await;
    assert_eq!(settled["status"], "Available", "{settled}");
    let digest = b.web_digest.clone();
    s.own("get B's onlya v_1", get("/v1/packages/onlya/versions/v_1"), |x| {
        status_in(x, &[200])?;
        (x.json["images"][0]["digest"] == digest.as_str()).then_some(()).ok_or("not B's digest".into())
    })
    .await;
    s.refused("get A's onlya v_a2 under B's onlya", get("/v1/packages/onlya/versions/v_a2"), &[404], Some("not_found"))
        .await;
    let image = format!("{registry}/bravo/web:v1");
    let body = json!({ "template": "image: {{ computenest::acrimage::onlya }}\n",
        "relations": relation("acrimage", "onlya", "onlya", json!("latest")) });
    s.own("render B's onlya", post("/v1/render", body), |x| {
        status_in(x, &[200])?;
        x.json["rendered"].as_str().unwrap_or_default().contains(&image).then_some(()).ok_or("not B's image".into())
    })
    .await;
    let body = json!({ "templates": { "main": "image: {{ computenest::acrimage::onlya }}\n" },
        "relations": relation("acrimage", "onlya", "onlya", json!("latest")) });
    s.own("define service onlya", put("/v1/services/onlya", body), |x| {
        // 201: a new service of B's; 200 would mean it found one to redefine.
        status_in(x, &[201])
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// An account whose id starts with A's: `acme-corp`
// ---------------------------------------------------------------------------------------

/// `acme-corp` shares A's id as a prefix (and `acme-corp/...` repositories start with
/// `acme`): it reaches nothing of A's either, and A's key nothing of its namespace.
async fn prefix_account(s: &mut Suite, a: &Tenant, token: String) {
    const PREFIXED: &str = "acme-corp";
    // Its own answers name `acme-corp`: what is A's is `acme/...` and the id alone.
    let secrets: Vec<(String, String)> = s
        .secrets
        .iter()
        .filter(|(secret, _)| secret != "acme")
        .cloned()
        .chain([
            ("acme/".to_owned(), "a repository of acme".to_owned()),
            ("\"acme\"".to_owned(), "the id acme".to_owned()),
        ])
        .collect();
    let mut p = Suite {
        http: s.http.clone(),
        url: s.url.clone(),
        bravo: token,
        ghosts: s.ghosts.clone(),
        secrets,
        counts: BTreeMap::new(),
        group: "prefix account",
        failures: Vec::new(),
    };
    let empty = |field: &'static str| {
        move |x: &Answer| -> Result<(), String> {
            status_in(x, &[200])?;
            x.json[field].as_array().is_some_and(|v| v.is_empty()).then_some(()).ok_or(format!("{field} not empty"))
        }
    };
    p.own("list packages", get("/v1/packages"), empty("packages")).await;
    p.own("list services", get("/v1/services"), empty("services")).await;
    for path in [
        "/v1/packages/onlya".to_owned(),
        "/v1/packages/web/versions/v_1".to_owned(),
        "/v1/services/shop".to_owned(),
        "/v1/services/onlya/associations".to_owned(),
        "/v1/applications/shop/groups/prod".to_owned(),
        "/v1/applications/onlya".to_owned(),
        format!("/v1/releases/{}", a.release),
        format!("/v1/releases/{}/hosts/h1/logs", a.release),
    ] {
        p.absent("read A's object", get(path)).await;
    }
    p.absent("render A's service", post("/v1/services/onlya/render", json!({}))).await;
    let acr = "image: {{ computenest::acrimage::img }}\n";
    let body = json!({ "template": acr, "relations": relation("acrimage", "img", "onlya", json!("latest")) });
    p.absent_as("render A's package", post("/v1/render", body), 422).await;
    let body = json!({ "name": "stolen", "description": "somebody else's image", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] } });
    p.refused("a package of A's image", post("/v1/packages", body), &[400], Some("outside_namespace")).await;

    let key = p.send(&post("/v1/registry/credentials", json!({ "purpose": "push" }))).await;
    let basic = Auth::Basic(
        key.json["username"].as_str().unwrap_or_default().to_owned(),
        key.json["password"].as_str().unwrap_or_default().to_owned(),
    );
    for scope in ["repository:acme/web:pull,push", "repository:acme/onlya:pull", "repository:acme:pull"] {
        let request = get(registry_token_path(&[scope])).auth(basic.clone());
        let answer = p.send(&request).await;
        let mut problems = p.leaks(&request, &answer);
        if answer.status != 400
            && let Err(why) = nothing_granted_outside(&answer, PREFIXED)
        {
            problems.push(why);
        }
        p.record(&request, &format!("a registry token for {scope}"), answer.status, problems);
    }
    // The other way round: A's key reaches nothing of acme-corp's namespace.
    let request = get(registry_token_path(&["repository:acme-corp/web:pull,push"]))
        .auth(Auth::Basic(a.push_key.0.clone(), a.push_key.1.clone()));
    let answer = p.send(&request).await;
    let problems = nothing_granted_outside(&answer, "acme").err().into_iter().collect();
    p.record(&request, "A's registry token for acme-corp/web", answer.status, problems);

    for (group, count) in p.counts {
        *s.counts.entry(group).or_default() += count;
    }
    s.failures.extend(p.failures);
}

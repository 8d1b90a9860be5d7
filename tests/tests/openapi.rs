//! `infra/openapi.yaml` against the routers:
//!
//! - every route documented, nothing documented that does not exist (routes read from the
//!   functions' sources: `.route("PATH", get(..).post(..))`), and every documented operation
//!   reaches a handler of the mounted routers (no fallback 404, no 405);
//! - every route that takes credentials documents 401 and answers it without them;
//! - every query parameter a handler reads (the fields of its `ApiQuery<T>` struct, read from the
//!   source, or what reads its raw pairs) is documented, and nothing else;
//! - a scenario drives every operation to its success answers in process (packages, services,
//!   renders, a download, a release through its batches with two hosts), then probes each one
//!   without credentials, with a path that does not decode and with a body over its limit:
//!   every status met is documented for its operation with the media type answered, and every
//!   JSON success answer has exactly the top-level fields its schema lists (`required` always,
//!   the others in some answer).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use berth_shared::names::AccountId;
use berth_shared::package::{PackageVersion, VersionStatus, version_path};
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::runtime::finish;
use berth_shared::release::{HostLogs, Job, JobKind, Report, Step, StepOutput};
use bytes::Bytes;
use serde_json::{Value, json};
use tower::ServiceExt;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `/v1/services/{id}/render` → `/v1/services/{}/render`: parameter names do not matter.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if inside => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every `.rs` file under `dir`, recursively, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            files.push((path, text));
        }
    }
    files
}

/// The text of a call or block that starts right after its opening `open`, up to (not
/// including) the matching `close`.
fn balanced(text: &str, open: char, close: char) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return &text[..i];
            }
        }
    }
    panic!("unbalanced {open}{close} in {text:.200}");
}

/// One `.route(...)` of a function: its path and each method's handler (the function's name).
struct RouteCall {
    /// The function's directory under `functions/`.
    function: String,
    path: String,
    handlers: Vec<(String, String)>,
}

/// Every `.route(...)` call in the functions' sources.
fn route_calls() -> Vec<RouteCall> {
    let root = berth_tests::workspace_root().join("functions");
    let mut calls = Vec::new();
    let mut functions: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    functions.sort();
    for function in functions {
        let name = function.file_name().unwrap().to_string_lossy().into_owned();
        for (_, text) in sources(&function.join("src")) {
            let mut rest = text.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                let call = balanced(rest, '(', ')');
                let path = call.split('"').nth(1).expect("a route path literal");
                let mut handlers = Vec::new();
                for method in METHODS {
                    let starts_call = |i: usize| {
                        i == 0 || !call.as_bytes()[i - 1].is_ascii_alphanumeric() && call.as_bytes()[i - 1] != b'_'
                    };
                    let marker = format!("{method}(");
                    for (i, _) in call.match_indices(&marker).filter(|(i, _)| starts_call(*i)) {
                        let handler = balanced(&call[i + marker.len()..], '(', ')');
                        let handler = handler.rsplit("::").next().unwrap().trim().to_owned();
                        handlers.push((method.to_uppercase(), handler));
                    }
                }
                assert!(!handlers.is_empty(), "no method in .route({call})");
                calls.push(RouteCall { function: name.clone(), path: path.to_owned(), handlers });
            }
        }
    }
    calls
}

/// (METHOD, path shape) of every `.route(...)` in the functions' sources, plus `/healthz`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::from([("GET".to_owned(), "/healthz".to_owned())]);
    for call in route_calls() {
        for (method, _) in &call.handlers {
            routes.insert((method.clone(), shape(&call.path)));
        }
    }
    routes
}

/// The parsed document.
fn document() -> yaml_serde::Value {
    let text = std::fs::read_to_string(berth_tests::workspace_root().join("infra/openapi.yaml")).unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "an OpenAPI 3 document");
    doc
}

/// (METHOD, path) pairs.
type Operations = Vec<(String, String)>;

fn documented() -> (BTreeSet<(String, String)>, Operations) {
    let doc = document();
    let mut shapes = BTreeSet::new();
    let mut concrete = Vec::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        for method in METHODS {
            if item.get(method).is_some() {
                shapes.insert((method.to_uppercase(), shape(path)));
                concrete.push((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    (shapes, concrete)
}

/// `#/components/...` references followed to what they name.
fn resolve<'a>(doc: &'a yaml_serde::Value, mut value: &'a yaml_serde::Value) -> &'a yaml_serde::Value {
    while let Some(reference) = value.get("$ref").and_then(|r| r.as_str()) {
        let pointer = reference.strip_prefix("#/").unwrap_or_else(|| panic!("a local reference: {reference}"));
        value = pointer.split('/').fold(doc, |at, key| &at[key]);
        assert!(!value.is_null(), "{reference} names nothing");
    }
    value
}

fn operation<'a>(doc: &'a yaml_serde::Value, method: &str, path: &str) -> &'a yaml_serde::Value {
    &doc["paths"][path][method.to_lowercase().as_str()]
}

/// The documented statuses of an operation, each with its response (references followed).
fn responses<'a>(doc: &'a yaml_serde::Value, method: &str, path: &str) -> BTreeMap<String, &'a yaml_serde::Value> {
    let responses = operation(doc, method, path)["responses"].as_mapping().unwrap();
    responses.iter().map(|(status, response)| (status.as_str().unwrap().to_owned(), resolve(doc, response))).collect()
}

/// Whether an operation takes credentials: its own `security`, else the document's, is not empty.
fn authenticated(doc: &yaml_serde::Value, method: &str, path: &str) -> bool {
    let security = operation(doc, method, path).get("security").unwrap_or(&doc["security"]);
    security.as_sequence().is_some_and(|s| !s.is_empty())
}

/// The parameters of an operation (its own and its path's) that are `in: where`, by name.
fn parameters(doc: &yaml_serde::Value, method: &str, path: &str, place: &str) -> BTreeSet<String> {
    let item = &doc["paths"][path];
    let mut names = BTreeSet::new();
    for list in [&item["parameters"], &operation(doc, method, path)["parameters"]] {
        for parameter in list.as_sequence().into_iter().flatten() {
            let parameter = resolve(doc, parameter);
            if parameter["in"].as_str() == Some(place) {
                names.insert(parameter["name"].as_str().unwrap().to_owned());
            }
        }
    }
    names
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let in_source = routes_in_source();
    let (in_doc, _) = documented();
    let undocumented: Vec<_> = in_source.difference(&in_doc).collect();
    let phantom: Vec<_> = in_doc.difference(&in_source).collect();
    assert!(undocumented.is_empty(), "routes missing from infra/openapi.yaml: {undocumented:?}");
    assert!(phantom.is_empty(), "documented but not routed: {phantom:?}");
    assert!(in_source.len() >= 30, "the scan found the routes ({})", in_source.len());
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler_and_401_is_documented_where_credentials_are_taken() {
    let context = FunctionContext::ephemeral();
    let router = axum::Router::new()
        .merge(berth_credentials::function(context.clone()).router)
        .merge(berth_packages::function(context.clone()).router)
        .merge(berth_render::function(context.clone()).router)
        .merge(berth_releases::function(context.clone()).router);
    let router = finish(router, vec!["all"]);
    let doc = document();
    let (_, operations) = documented();
    let mut failures = Vec::new();
    let mut authenticated_operations = 0;
    for (method, path) in operations {
        let concrete: String = shape(&path).replace("{}", "abc");
        let request = Request::builder().method(method.as_str()).uri(&concrete).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_ne!(status.as_u16(), 405, "{method} {path}: method not routed");
        assert!(!body.contains("route not found"), "{method} {path}: fell through to the fallback");
        let documented = responses(&doc, &method, &path);
        if !documented.contains_key(status.as_str()) {
            failures.push(format!("{method} {path}: answered {status} without credentials, which is not documented"));
        }
        if authenticated(&doc, &method, &path) {
            authenticated_operations += 1;
            if !documented.contains_key("401") {
                failures.push(format!("{method} {path}: takes credentials but documents no 401"));
            }
            if status.as_u16() != 401 {
                failures.push(format!("{method} {path}: documented as taking credentials, answered {status} without"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(authenticated_operations >= 35, "{authenticated_operations} operations take credentials");
}

/// Handlers that take the query's raw pairs (`ApiQuery<Vec<(String, String)>>`) and what reads
/// them: the struct the pairs are parsed into, or a `match` on each pair's key.
enum PairsReader {
    /// A struct in the same crate, as for `ApiQuery<T>`.
    Struct(&'static str),
    /// The string literals of the `match key.as_str() { ... }` in this function of this file.
    KeyMatch { file: &'static str, function: &'static str },
}

const RAW_QUERIES: [(&str, PairsReader); 2] = [
    ("list_packages", PairsReader::Struct("ListQuery")),
    ("token", PairsReader::KeyMatch { file: "shared/src/credentials/registry_token.rs", function: "pub fn parse(" }),
];

/// The query parameters (or body fields) a struct reads: its fields, renamed as serde renames
/// them, a flattened struct's fields in place of the field.
fn struct_fields(sources: &[(PathBuf, String)], name: &str) -> BTreeSet<String> {
    let marker = format!("struct {name} {{");
    let found: Vec<_> = sources.iter().filter_map(|(_, text)| text.find(&marker).map(|at| (text, at))).collect();
    assert_eq!(found.len(), 1, "struct {name} is defined once in its crate");
    let (text, at) = found[0];
    let attributes: String = text[..at].lines().rev().take_while(|l| !l.trim().is_empty()).collect();
    assert!(!attributes.contains("rename_all"), "{name}: rename_all is not read by this test");
    let body = balanced(&text[at + marker.len()..], '{', '}');
    let rename = regex::Regex::new(r#"rename\s*=\s*"([^"]+)""#).unwrap();
    let mut fields = BTreeSet::new();
    let mut renamed = None;
    let mut flattened = false;
    for line in body.lines().map(str::trim) {
        if line.starts_with("#[serde(") {
            flattened |= line.contains("flatten");
            renamed = rename.captures(line).map(|c| c[1].to_owned()).or(renamed);
            continue;
        }
        if line.is_empty() || line.starts_with("//") || line.starts_with("#[") {
            continue;
        }
        let field = line.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
        let (field, type_name) = field.split_once(':').unwrap_or((field, ""));
        let field = field.trim();
        assert!(field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}: cannot read field {line:?}");
        if std::mem::take(&mut flattened) {
            // A flattened struct's fields are the outer one's.
            fields.extend(struct_fields(sources, type_name.trim().trim_end_matches(',')));
            continue;
        }
        fields.insert(renamed.take().unwrap_or_else(|| field.to_owned()));
    }
    assert!(!fields.is_empty(), "{name} has fields");
    fields
}

/// The query parameters each routed handler reads, by (METHOD, path shape).
fn query_parameters_in_source() -> BTreeMap<(String, String), BTreeSet<String>> {
    let root = berth_tests::workspace_root();
    let query_type = regex::Regex::new(r"ApiQuery\s*\(\s*\w+\s*\)\s*:\s*ApiQuery<").unwrap();
    let arm = regex::Regex::new(r#""([^"]+)"\s*=>"#).unwrap();
    let mut read = BTreeMap::new();
    let mut raw_used = BTreeSet::new();
    for call in route_calls() {
        let crate_sources = sources(&root.join("functions").join(&call.function).join("src"));
        for (method, handler) in &call.handlers {
            let marker = format!("async fn {handler}(");
            let found: Vec<_> = crate_sources.iter().filter_map(|(_, t)| t.find(&marker).map(|at| (t, at))).collect();
            assert_eq!(found.len(), 1, "handler {handler} is defined once in functions/{}", call.function);
            let (text, at) = found[0];
            let signature = balanced(&text[at + marker.len()..], '(', ')');
            let Some(query) = query_type.find(signature) else {
                assert!(!signature.contains("ApiQuery"), "{handler}: cannot read its ApiQuery");
                continue;
            };
            let generic = balanced(&signature[query.end()..], '<', '>').replace(char::is_whitespace, "");
            let fields = if generic == "Vec<(String,String)>" {
                let (_, reader) = RAW_QUERIES
                    .iter()
                    .find(|(name, _)| name == handler)
                    .unwrap_or_else(|| panic!("{handler} takes raw query pairs: list what reads them in RAW_QUERIES"));
                raw_used.insert(handler.clone());
                match reader {
                    PairsReader::Struct(name) => struct_fields(&crate_sources, name),
                    PairsReader::KeyMatch { file, function } => {
                        let text = std::fs::read_to_string(root.join(file)).unwrap();
                        let at = text.find(function).unwrap_or_else(|| panic!("{function} in {file}"));
                        let from = &text[at..];
                        let start =
                            from.find("match key.as_str() {").unwrap_or_else(|| panic!("the key match of {file}"));
                        let arms = balanced(&from[start + "match key.as_str() {".len()..], '{', '}');
                        arm.captures_iter(arms).map(|c| c[1].to_owned()).collect()
                    }
                }
            } else {
                assert!(
                    generic.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{handler}: ApiQuery<{generic}>"
                );
                struct_fields(&crate_sources, &generic)
            };
            read.insert((method.clone(), shape(&call.path)), fields);
        }
    }
    let listed: BTreeSet<String> = RAW_QUERIES.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(raw_used, listed, "RAW_QUERIES lists exactly the handlers that take raw pairs");
    read
}

#[test]
fn every_query_parameter_a_handler_reads_is_documented_and_nothing_else() {
    let doc = document();
    let read = query_parameters_in_source();
    let (_, operations) = documented();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path) in &operations {
        let in_doc = parameters(&doc, method, path, "query");
        let in_source = read.get(&(method.clone(), shape(path))).cloned().unwrap_or_default();
        if in_doc != in_source {
            failures.push(format!("{method} {path}: the handler reads {in_source:?}, the document lists {in_doc:?}"));
        }
        checked += in_source.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 15, "{checked} query parameters found");
}

/// Handlers that read their JSON body without `ApiJson` (a larger limit), and the struct it is
/// parsed into.
const RAW_BODIES: [(&str, &str); 1] = [("render_template", "RenderRequest")];

/// Whether a struct refuses fields it does not know (`#[serde(deny_unknown_fields)]`).
fn denies_unknown_fields(sources: &[(PathBuf, String)], name: &str) -> bool {
    let marker = format!("struct {name} {{");
    let (_, text) = sources.iter().find(|(_, text)| text.contains(&marker)).unwrap();
    let at = text.find(&marker).unwrap();
    let attributes: Vec<&str> = text[..at].lines().rev().take_while(|l| !l.trim().is_empty()).collect();
    attributes.iter().any(|l| l.contains("deny_unknown_fields"))
}

/// A struct's name, and the sources it is defined in (its crate's and shared's, or berth-api's).
type StructSource = (String, Vec<(PathBuf, String)>);

/// The JSON body struct each routed handler reads, by (METHOD, path shape).
fn json_bodies_in_source() -> BTreeMap<(String, String), StructSource> {
    let root = berth_tests::workspace_root();
    let body_type = regex::Regex::new(r"ApiJson\s*\(\s*\w+\s*\)\s*:\s*ApiJson<").unwrap();
    let shared = sources(&root.join("shared/src"));
    // The wire types shared re-exports from berth-api; a client's own copy there of a type
    // the server defines itself is not what the handler reads.
    let api = sources(&root.join("api/src"));
    let mut read = BTreeMap::new();
    for call in route_calls() {
        let mut crate_sources = sources(&root.join("functions").join(&call.function).join("src"));
        crate_sources.extend(shared.iter().cloned());
        for (method, handler) in &call.handlers {
            let marker = format!("async fn {handler}(");
            let (text, at) = crate_sources.iter().find_map(|(_, t)| t.find(&marker).map(|at| (t, at))).unwrap();
            let signature = balanced(&text[at + marker.len()..], '(', ')');
            let name = match body_type.find(signature) {
                Some(found) => balanced(&signature[found.end()..], '<', '>').trim().to_owned(),
                None => match RAW_BODIES.iter().find(|(raw, _)| raw == handler) {
                    Some((_, name)) => (*name).to_owned(),
                    None => continue,
                },
            };
            let marker = format!("struct {name} {{");
            let mut searched = crate_sources.clone();
            if !searched.iter().any(|(_, text)| text.contains(&marker)) {
                searched.extend(api.iter().cloned());
            }
            read.insert((method.clone(), shape(&call.path)), (name, searched));
        }
    }
    read
}

/// Every JSON body an account sends is described as the server parses it (schemathesis
/// generates requests from the description: `make api-fuzz`, `tests/tests/api_fuzz.rs`): an
/// object listing exactly the fields of the handler's request struct, closed
/// (`additionalProperties: false`) exactly when the struct denies unknown fields. The agents'
/// routes (a join or host token, never an account's) are left out.
#[test]
fn every_json_body_an_account_sends_is_described_field_for_field() {
    let doc = document();
    let read = json_bodies_in_source();
    let (_, operations) = documented();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path) in &operations {
        let operation = operation(&doc, method, path);
        let by_account = operation.get("security").is_none_or(|s| s == &doc["security"]);
        let content = &resolve(&doc, &operation["requestBody"])["content"]["application/json"];
        let source = read.get(&(method.clone(), shape(path)));
        if content.is_null() || !by_account {
            continue;
        }
        let Some((name, sources)) = source else {
            failures.push(format!("{method} {path}: documents a JSON body no handler reads with ApiJson"));
            continue;
        };
        let schema = resolve(&doc, &content["schema"]);
        let described: BTreeSet<String> = schema["properties"]
            .as_mapping()
            .map(|p| p.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        let fields = struct_fields(sources, name);
        if described != fields {
            failures.push(format!("{method} {path}: {name} has {fields:?}, the description lists {described:?}"));
        }
        let closed = schema["additionalProperties"].as_bool() == Some(false);
        if closed != denies_unknown_fields(sources, name) {
            failures.push(format!(
                "{method} {path}: additionalProperties: false must say whether {name} denies unknown fields"
            ));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 17, "{checked} bodies checked");
}

/// The function crate x-berth-functions assigns a path to (longest matching prefix).
fn function_for(doc: &yaml_serde::Value, path: &str) -> String {
    let mut best = (0, String::new());
    for (function, prefixes) in doc["x-berth-functions"].as_mapping().unwrap() {
        for prefix in prefixes.as_sequence().unwrap() {
            let prefix = shape(prefix.as_str().unwrap());
            if shape(path).starts_with(&prefix) && prefix.len() > best.0 {
                best = (prefix.len(), function.as_str().unwrap().to_owned());
            }
        }
    }
    best.1
}

/// Whether an HTTP API event route (`/v1/packages/{proxy+}`, method or ANY) takes `method path`.
fn event_takes(event_path: &str, event_method: &str, method: &str, path: &str) -> bool {
    let method_ok = event_method.eq_ignore_ascii_case("ANY") || event_method.eq_ignore_ascii_case(method);
    let path_ok = match event_path.strip_suffix("{proxy+}") {
        Some(prefix) => shape(path).starts_with(&shape(prefix)) && shape(path).len() > shape(prefix).len(),
        None => shape(event_path) == shape(path),
    };
    method_ok && path_ok
}

#[test]
fn the_sam_template_routes_every_documented_operation_to_its_function() {
    let root = berth_tests::workspace_root();
    let doc = document();
    let template: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(root.join("infra/template.yaml")).unwrap()).unwrap();
    let (_, operations) = documented();
    let mut routed = 0;
    for (method, path) in operations.iter().filter(|(_, p)| p != "/healthz") {
        let takers: Vec<String> = template["Resources"]
            .as_mapping()
            .unwrap()
            .values()
            .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function"))
            .filter(|r| {
                r["Properties"]["Events"].as_mapping().into_iter().flatten().any(|(_, e)| {
                    e["Type"].as_str() == Some("HttpApi")
                        && event_takes(
                            e["Properties"]["Path"].as_str().unwrap_or_default(),
                            e["Properties"]["Method"].as_str().unwrap_or_default(),
                            method,
                            path,
                        )
                })
            })
            .map(|r| r["Properties"]["CodeUri"].as_str().unwrap().to_owned())
            .collect();
        let expected = format!("../target/lambda/berth-{}/", function_for(&doc, path));
        assert_eq!(takers, [expected], "{method} {path}: the template must route it to exactly its function");
        routed += 1;
    }
    assert!(routed >= 30);
}

/// One request the scenario or a probe made, and its answer.
struct Exchange {
    method: String,
    /// The documented path it matched.
    path: String,
    uri: String,
    authorization: Option<String>,
    status: u16,
    content_type: String,
    body: Bytes,
}

/// Every router of Berth over one ephemeral context, recording each exchange.
struct Api {
    router: axum::Router,
    templates: Vec<String>,
    exchanges: Vec<Exchange>,
}

impl Api {
    /// The documented path `uri` is an instance of.
    fn template_of(&self, uri: &str) -> String {
        let path = uri.split('?').next().unwrap();
        let segments: Vec<&str> = path.split('/').collect();
        let matches: Vec<&String> = self
            .templates
            .iter()
            .filter(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(t, s)| t.starts_with('{') && !s.is_empty() || t == s)
            })
            .collect();
        assert_eq!(matches.len(), 1, "{uri} matches {matches:?}");
        matches[0].clone()
    }

    async fn send(&mut self, method: &str, uri: &str, authorization: Option<&str>, body: Body, json: bool) -> Exchange {
        let mut request = Request::builder().method(method).uri(uri).header("host", "berth.test");
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if json {
            request = request.header("content-type", "application/json");
        }
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
        Exchange {
            method: method.to_owned(),
            path: self.template_of(uri),
            uri: uri.to_owned(),
            authorization: authorization.map(str::to_owned),
            status,
            content_type,
            body,
        }
    }

    /// A Compute Nest call signed with `key` (ACS3-HMAC-SHA256, as Alibaba Cloud's SDK signs it),
    /// expecting a 200; its JSON answer.
    async fn computenest(&mut self, key: &Value, action: &str, query: &str) -> Value {
        use berth_packages::computenest::signature;
        let secret = key["access_key_secret"].as_str().unwrap();
        let empty = signature::sha256_hex(b"");
        let now = berth_shared::platform::clock::rfc3339(berth_shared::platform::clock::unix_now());
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in [
            ("host", "berth.test"),
            ("x-acs-action", action),
            ("x-acs-content-sha256", &empty),
            ("x-acs-date", &now),
            ("x-acs-signature-nonce", &nonce),
            ("x-acs-version", "2021-05-21"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        let signed: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        let parameters = signature::parse_query(query).unwrap();
        let canonical = signature::canonical_request("POST", "/", &parameters, &headers, &signed, &empty);
        let authorization = format!(
            "{} Credential={},SignedHeaders={},Signature={}",
            signature::ALGORITHM,
            key["access_key_id"].as_str().unwrap(),
            signed.join(";"),
            signature::sign(secret, &canonical)
        );
        let uri = format!("/?{query}");
        let mut request = Request::builder().method("POST").uri(&uri).header("authorization", &authorization);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{action}: {answer}");
        self.exchanges.push(Exchange {
            method: "POST".into(),
            path: self.template_of(&uri),
            uri,
            authorization: Some(authorization),
            status,
            content_type,
            body,
        });
        answer
    }

    /// `method uri` with a JSON body (or none); the status and the JSON answer (`Null` if none).
    async fn call(&mut self, method: &str, uri: &str, authorization: &str, body: Option<Value>) -> (u16, Value) {
        let json = body.is_some();
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let exchange = self.send(method, uri, Some(authorization), body, json).await;
        let answer = (exchange.status, serde_json::from_slice(&exchange.body).unwrap_or(Value::Null));
        self.exchanges.push(exchange);
        answer
    }

    /// As [`Api::call`], expecting `status`.
    async fn expect(
        &mut self,
        status: u16,
        method: &str,
        uri: &str,
        authorization: &str,
        body: Option<Value>,
    ) -> Value {
        let (got, answer) = self.call(method, uri, authorization, body).await;
        assert_eq!(got, status, "{method} {uri}: {answer}");
        answer
    }
}

/// A body of `size` bytes made as it is read, so a limit stops it without it ever existing whole.
fn streamed(size: usize) -> Body {
    let chunk = Bytes::from(vec![b' '; 1 << 20]);
    let chunks = size.div_ceil(chunk.len());
    Body::from_stream(futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The JSON type a schema's property has, checked against a value (`nullable` allows null).
fn type_problem(doc: &yaml_serde::Value, property: &yaml_serde::Value, value: &Value) -> Option<String> {
    let property = resolve(doc, property);
    if value.is_null() {
        return (property["nullable"].as_bool() != Some(true)).then(|| "null, but not nullable".to_owned());
    }
    let fits = match property["type"].as_str() {
        None => true,
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        Some(other) => return Some(format!("unknown type {other}")),
    };
    if !fits {
        return Some(format!("{value:.80} is not a {}", property["type"].as_str().unwrap()));
    }
    let allowed = property["enum"].as_sequence()?;
    let listed = allowed.iter().any(|a| match (a.as_str(), a.as_bool()) {
        (Some(s), _) => value.as_str() == Some(s),
        (_, Some(b)) => value.as_bool() == Some(b),
        _ => false,
    });
    (!listed).then(|| format!("{value} is not one of the documented values"))
}

/// The scenario: every documented operation, up to its success answers.
async fn scenario(api: &mut Api, context: &FunctionContext, engine: &berth_releases::engine::Engine) {
    let acme = AccountId::parse("acme").unwrap();
    let account = bearer(&context.account_keys.issue(&acme, 600).unwrap());
    let account = account.as_str();
    let registry = context.config.registry.host.clone();

    // Credentials.
    api.expect(200, "GET", "/healthz", account, None).await;
    api.expect(200, "GET", "/v1/account", account, None).await;
    let key = api.expect(200, "POST", "/v1/registry/credentials", account, Some(json!({ "purpose": "push" }))).await;
    let basic = {
        use base64::Engine as _;
        let pair = format!("{}:{}", key["username"].as_str().unwrap(), key["password"].as_str().unwrap());
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    };
    let service = &context.config.registry.service;
    let token_uri = format!(
        "/v1/registry/token?service={service}&scope=repository:acme/web:pull,push&account=acme&client_id=openapi&offline_token=true"
    );
    api.expect(200, "GET", &token_uri, &basic, None).await;
    api.expect(200, "GET", "/.well-known/jwks.json", account, None).await;

    // Packages: an image package (its version settled Available in the store, as a publish
    // check against a registry would), a file package with its upload, a failed version.
    let web = json!({
        "name": "web", "description": "the web front end", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] },
    });
    let created = api.expect(201, "POST", "/v1/packages", account, Some(web)).await;
    let mut available: PackageVersion = serde_json::from_value(created["version"].clone()).unwrap();
    available.status = VersionStatus::Available;
    available.images[0].digest = Some(format!("sha256:{}", "1".repeat(64)));
    available.images[0].platforms = vec!["linux/amd64".into()];
    context.store.put(&version_path(&acme, "web", "v_1"), &available).await.unwrap();
    let v2 = json!({ "name": "v_2", "images": [{ "repository": "acme/web", "tag": "v2" }] });
    let created = api.expect(201, "POST", "/v1/packages/web/versions", account, Some(v2)).await;
    let mut failed: PackageVersion = serde_json::from_value(created).unwrap();
    failed.status = VersionStatus::Failed;
    failed.reason = Some("acme/web:v2 was not found".into());
    failed.label = Some("second release".into());
    context.store.put(&version_path(&acme, "web", "v_2"), &failed).await.unwrap();
    let failed = api.expect(200, "GET", "/v1/packages/web/versions/v_2", account, None).await;
    assert_eq!(failed["status"], "Failed");

    // Signing keys and the policy; a version signed by a key revoked since shows it.
    let public_key = berth_tests::signing::ImageKey::generate().public_pem();
    let body = json!({ "public_key": public_key, "description": "ci" });
    let key = api.expect(201, "POST", "/v1/signing-keys", account, Some(body)).await;
    let listed = api.expect(200, "GET", "/v1/signing-keys", account, None).await;
    assert_eq!(listed["signing_keys"][0]["id"], key["id"]);
    api.expect(200, "PUT", "/v1/signing-policy", account, Some(json!({ "require_signature": false }))).await;
    api.expect(200, "GET", "/v1/signing-policy", account, None).await;
    let key_id = key["id"].as_str().unwrap();
    let revoked = api.expect(200, "DELETE", &format!("/v1/signing-keys/{key_id}"), account, None).await;
    assert_eq!(revoked["status"], "Revoked");
    let mut signed: PackageVersion = serde_json::from_value(failed).unwrap();
    signed.images[0].signed_by = Some(key_id.to_owned());
    context.store.put(&version_path(&acme, "web", "v_2"), &signed).await.unwrap();
    let shown = api.expect(200, "GET", "/v1/packages/web/versions/v_2", account, None).await;
    assert!(shown["untrusted"].as_str().unwrap().contains(key_id), "{shown}");
    let files = json!({
        "name": "files", "description": "configuration files", "type": "File",
        "version": { "name": "v_1", "file_name": "app.tar.gz" },
    });
    api.expect(201, "POST", "/v1/packages", account, Some(files)).await;
    let exchange =
        api.send("PUT", "/v1/packages/files/versions/v_1/file", Some(account), Body::from("hello"), false).await;
    assert_eq!(exchange.status, 200, "{:?}", exchange.body);
    api.exchanges.push(exchange);
    // A version left Creating takes the oversized upload (a settled one refuses any upload first).
    let big = json!({ "name": "v_2", "file_name": "big.tar.gz" });
    api.expect(201, "POST", "/v1/packages/files/versions", account, Some(big)).await;
    let oversized = berth_shared::package::MAX_FILE_BYTES + 1;
    let exchange =
        api.send("PUT", "/v1/packages/files/versions/v_2/file", Some(account), streamed(oversized), false).await;
    assert_eq!(exchange.status, 413);
    api.exchanges.push(exchange);
    api.expect(204, "DELETE", "/v1/packages/files/versions/v_2", account, None).await;
    let tags = json!({ "tags": [{ "key": "team", "value": "web" }], "require_signature": false });
    api.expect(200, "PATCH", "/v1/packages/web", account, Some(tags)).await;
    let page = api.expect(200, "GET", "/v1/packages?page_size=1", account, None).await;
    assert_eq!(page["next_page_token"], "files");
    let filtered = "/v1/packages?type=ContainerImage&resource_group=default&tag_key=team&tag_value=web&page_token=a";
    let page = api.expect(200, "GET", filtered, account, None).await;
    assert_eq!(page["packages"][0]["name"], "web");
    api.expect(200, "GET", "/v1/packages/web", account, None).await;
    api.expect(200, "GET", "/v1/packages/web/versions", account, None).await;
    let scratch = json!({
        "name": "scratch", "description": "deleted right away", "type": "File",
        "version": { "name": "v_1", "file_name": "x.txt" },
    });
    api.expect(201, "POST", "/v1/packages", account, Some(scratch)).await;
    api.expect(204, "DELETE", "/v1/packages/scratch", account, None).await;

    // Services, and renders of them.
    let template = "image: {{ computenest::acrimage::web }}\npull: {{ computenest::acr::dockerconfigjson }}\nfile: {{ computenest::file::files }}\n";
    let shop = json!({
        "templates": { "app.yaml": template },
        "relations": {
            "{{ computenest::acrimage::web }}": { "package": "web", "version": "latest" },
            "{{ computenest::file::files }}": { "package": "files", "version": { "number": 1 } },
        },
    });
    api.expect(201, "PUT", "/v1/services/shop", account, Some(shop.clone())).await;
    api.expect(200, "PUT", "/v1/services/shop", account, Some(shop)).await;

    // Access keys, and Compute Nest's API signed with one: GetService answers the URL of the
    // service's template, which serves its body to whoever holds it.
    let key = api.expect(201, "POST", "/v1/access-keys", account, Some(json!({ "description": "openapi" }))).await;
    let listed = api.expect(200, "GET", "/v1/access-keys", account, None).await;
    assert_eq!(listed["access_keys"][0]["access_key_id"], key["access_key_id"]);
    let service = api.computenest(&key, "GetService", "ServiceId=shop").await;
    let deploy: Value = serde_json::from_str(service["DeployMetadata"].as_str().unwrap()).unwrap();
    let url = deploy["TemplateConfigs"][0]["Url"].as_str().unwrap();
    let exchange = api.send("GET", url.strip_prefix("http://berth.test").unwrap(), None, Body::empty(), false).await;
    assert_eq!((exchange.status, &exchange.body[..]), (200, template.as_bytes()));
    api.exchanges.push(exchange);
    let revoke = format!("/v1/access-keys/{}", key["access_key_id"].as_str().unwrap());
    assert_eq!(api.expect(200, "DELETE", &revoke, account, None).await["status"], "Revoked");
    api.expect(200, "GET", "/v1/services", account, None).await;
    api.expect(200, "GET", "/v1/services/shop", account, None).await;
    api.expect(200, "GET", "/v1/services/shop/associations", account, None).await;
    api.expect(200, "GET", "/v1/packages/web/services", account, None).await;
    api.expect(409, "DELETE", "/v1/packages/web", account, None).await;
    api.expect(201, "PUT", "/v1/services/tmp", account, Some(json!({ "templates": { "t.yaml": "a: b\n" } }))).await;
    api.expect(204, "DELETE", "/v1/services/tmp", account, None).await;
    let rendered = api.expect(200, "POST", "/v1/services/shop/render", account, Some(json!({}))).await;
    let text = rendered["rendered"].as_str().unwrap();
    let at = text.find("/v1/downloads/").unwrap();
    let download = text[at..].split_whitespace().next().unwrap().to_owned();
    let exchange = api.send("GET", &download, None, Body::empty(), false).await;
    assert_eq!((exchange.status, &exchange.body[..]), (200, &b"hello"[..]));
    api.exchanges.push(exchange);
    let exchange = api.send("GET", "/v1/downloads/abc/app.tar.gz", None, Body::empty(), false).await;
    assert_eq!(exchange.status, 401);
    api.exchanges.push(exchange);
    // Instances of the service: created (with and without a credential TTL), listed, read,
    // their credential rotated and exchanged, suspended, resumed, rendered for, deleted.
    let instances = "/v1/services/shop/instances";
    let ttl = json!({ "name": "cust_a", "credential_ttl_seconds": 3600 });
    api.expect(201, "POST", instances, account, Some(ttl)).await;
    api.expect(201, "POST", instances, account, Some(json!({ "name": "cust_b" }))).await;
    let page = api.expect(200, "GET", &format!("{instances}?page_size=1&page_token=a"), account, None).await;
    assert_eq!(page["next_page_token"], "cust_a");
    api.expect(200, "GET", &format!("{instances}/cust_a"), account, None).await;
    let rotated = api.expect(201, "POST", &format!("{instances}/cust_a/credentials"), account, None).await;
    let instance_basic = {
        use base64::Engine as _;
        let credential = &rotated["credential"];
        let pair = format!("{}:{}", credential["username"].as_str().unwrap(), credential["password"].as_str().unwrap());
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    };
    api.expect(200, "POST", "/v1/registry/exchange", &instance_basic, None).await;
    api.expect(200, "POST", &format!("{instances}/cust_a/suspend"), account, None).await;
    api.expect(401, "POST", "/v1/registry/exchange", &instance_basic, None).await;
    api.expect(200, "POST", &format!("{instances}/cust_a/resume"), account, None).await;
    api.expect(200, "POST", "/v1/services/shop/render", account, Some(json!({ "instance": "cust_a" }))).await;
    api.expect(204, "DELETE", &format!("{instances}/cust_b"), account, None).await;
    let dry = json!({
        "template": "image: {{ computenest::acrimage::web }}\n",
        "relations": { "{{ computenest::acrimage::web }}": { "package": "web", "version": "latest" } },
        "dry_run": true,
    });
    api.expect(200, "POST", "/v1/render", account, Some(dry)).await;

    // Releases: an application, a static group whose join token is rotated and revoked, two
    // hosts, a deployment, a dry run, and a release through its first batch, confirmed and
    // cancelled in its second.
    api.expect(201, "POST", "/v1/applications", account, Some(json!({ "name": "app" }))).await;
    api.expect(200, "GET", "/v1/applications/app", account, None).await;
    api.expect(201, "POST", "/v1/applications/app/groups", account, Some(json!({ "name": "g" }))).await;
    api.expect(200, "POST", "/v1/applications/app/groups/g/join-token", account, None).await;
    api.expect(204, "DELETE", "/v1/applications/app/groups/g/join-token", account, None).await;
    let joined = api.expect(200, "POST", "/v1/applications/app/groups/g/join-token", account, None).await;
    let join = bearer(joined["join_token"].as_str().unwrap());
    let deployment = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
        "health": { "tcp": { "address": "localhost:8080" }, "interval_seconds": 1 },
    });
    api.expect(201, "POST", "/v1/applications/app/deployments", account, Some(deployment)).await;
    api.expect(200, "GET", "/v1/applications/app/deployments/d", account, None).await;
    let mut hosts = Vec::new();
    for host in ["h1", "h2"] {
        let registered = api.expect(200, "POST", "/v1/agent/register", &join, Some(json!({ "host": host }))).await;
        hosts.push((host, bearer(registered["host_token"].as_str().unwrap())));
    }
    api.expect(200, "GET", "/v1/applications/app/groups/g", account, None).await;
    let body = json!({ "application": "app", "deployment": "d", "group": "g", "batches": 2, "pause": "manual" });
    api.expect(200, "POST", "/v1/releases?dry_run=true", account, Some(body.clone())).await;
    let release = api.expect(201, "POST", "/v1/releases", account, Some(body)).await;
    let id = release["id"].as_str().unwrap().to_owned();
    let output = |text: &str| Some(StepOutput { stdout: format!("{text}\n"), stderr: String::new() });
    for round in 0.. {
        assert!(round < 10, "the release did not reach its confirmation");
        engine.advance(&id).await.unwrap();
        let now = api.expect(200, "GET", &format!("/v1/releases/{id}"), account, None).await;
        if now["phase"]["step"] == "awaiting_confirm" {
            break;
        }
        for (host, token) in &hosts {
            let (status, job) =
                api.call("GET", &format!("/v1/agent/jobs?wait_seconds=0&host={host}"), token, None).await;
            if status == 204 {
                continue;
            }
            assert_eq!(status, 200, "{job}");
            let job: Job = serde_json::from_value(job).unwrap();
            // A run's stop output travels as a log part, as a long output would.
            let mut log_parts = None;
            if job.kind == JobKind::Run {
                let uri = format!("/v1/agent/logs?release={id}&job_id={}&part=0&step=stop&stream=stdout", job.job_id);
                let exchange = api.send("POST", &uri, Some(token.as_str()), Body::from("stopped\n"), false).await;
                assert_eq!(exchange.status, 204, "{}", String::from_utf8_lossy(&exchange.body));
                api.exchanges.push(exchange);
                log_parts = Some(1);
                let news = json!({ "release": id, "job_id": job.job_id, "news": "verifying" });
                api.expect(200, "POST", "/v1/agent/health", token, Some(news)).await;
            }
            let logs = match job.kind {
                JobKind::Pull => HostLogs { pull: output("pulled"), ..HostLogs::default() },
                JobKind::Run => HostLogs {
                    pull: None,
                    stop: Some(StepOutput::default()),
                    start: output("started"),
                    health: output("+0.0s healthy | connected to localhost:8080"),
                },
            };
            let report = Report {
                job_id: job.job_id,
                release: id.clone(),
                kind: job.kind,
                ok: true,
                step: if job.kind == JobKind::Pull { Step::Pull } else { Step::Health },
                exit_code: Some(0),
                reason: None,
                logs,
                log_parts,
            };
            let uri = format!("/v1/agent/reports?host={host}");
            api.expect(200, "POST", &uri, token, Some(serde_json::to_value(&report).unwrap())).await;
        }
    }
    // Already waiting for confirmation: pausing changes nothing but is answered.
    let paused = api.expect(200, "POST", &format!("/v1/releases/{id}/pause"), account, None).await;
    assert_eq!(paused["options"]["pause"], "manual", "{paused}");
    api.expect(200, "POST", &format!("/v1/releases/{id}/confirm"), account, None).await;
    let logs = api.expect(200, "GET", &format!("/v1/releases/{id}/hosts/h1/logs"), account, None).await;
    assert_eq!(logs["start"]["stdout"], "started\n", "{logs}");
    assert_eq!(logs["stop"]["stdout"], "stopped\n", "the uploaded part: {logs}");
    assert!(logs["health"]["stdout"].as_str().unwrap().contains("healthy"), "{logs}");
    // The same output a part at a time: each step's text once, whatever the order of its parts.
    let first = api.expect(200, "GET", &format!("/v1/releases/{id}/hosts/h1/logs/0"), account, None).await;
    let parts = first["parts"].as_u64().unwrap();
    let mut texts = std::collections::BTreeSet::new();
    for part in 0..parts {
        let page = api.expect(200, "GET", &format!("/v1/releases/{id}/hosts/h1/logs/{part}"), account, None).await;
        texts.insert(format!(
            "{} {} {}",
            page["step"].as_str().unwrap(),
            page["stream"].as_str().unwrap(),
            page["text"].as_str().unwrap()
        ));
    }
    let health = format!("health stdout {}", logs["health"]["stdout"].as_str().unwrap());
    let expected =
        ["pull stdout pulled\n", "start stdout started\n", "stop stdout stopped\n", &health].map(String::from).into();
    assert_eq!(texts, expected, "{first}");
    let past = api.expect(200, "GET", &format!("/v1/releases/{id}/hosts/h1/logs/{parts}"), account, None).await;
    assert!(past["text"].is_null() && past["step"].is_null(), "{past}");
    api.expect(200, "POST", &format!("/v1/releases/{id}/cancel"), account, None).await;
    api.expect(409, "POST", &format!("/v1/releases/{id}/pause"), account, None).await;
    // A watched host's news after the release ended: the agent is told to stop watching.
    let (_, token) = &hosts[0];
    let job_id = berth_shared::release::job_id(&id, "h1", JobKind::Run);
    let news = json!({ "release": id, "job_id": job_id, "news": "unhealthy", "reason": "HTTP 502" });
    let ended = api.expect(409, "POST", "/v1/agent/health", token, Some(news)).await;
    assert_eq!(ended["code"], "release_ended", "{ended}");
    let (_, token) = &hosts[1];
    api.expect(204, "GET", "/v1/agent/jobs?wait_seconds=0", token, None).await;

    // The fleet: listings, a group setting, a second revision released to both hosts, its
    // rollback (409 for a second one and for deletes while it runs), a host removed, deletes.
    api.expect(200, "GET", "/v1/applications?page_size=10", account, None).await;
    api.expect(200, "GET", "/v1/applications/app/groups", account, None).await;
    api.expect(200, "PATCH", "/v1/applications/app/groups/g", account, Some(json!({ "stale_after_seconds": 900 })))
        .await;
    api.expect(200, "GET", "/v1/applications/app/deployments", account, None).await;
    let revised = json!({
        "name": "d", "image": { "address": format!("{registry}/acme/app:v2") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    api.expect(200, "PUT", "/v1/applications/app/deployments/d", account, Some(revised)).await;
    api.expect(200, "GET", "/v1/applications/app/deployments/d/revisions?page_size=5", account, None).await;
    api.expect(200, "GET", "/v1/applications/app/deployments/d/revisions/1", account, None).await;
    let body = json!({ "application": "app", "deployment": "d", "group": "g" });
    let second = api.expect(201, "POST", "/v1/releases", account, Some(body)).await;
    let second = second["id"].as_str().unwrap().to_owned();
    for round in 0.. {
        assert!(round < 10, "the second release did not end");
        engine.advance(&second).await.unwrap();
        let now = api.expect(200, "GET", &format!("/v1/releases/{second}"), account, None).await;
        if now["status"] != "running" {
            assert_eq!(now["status"], "succeeded", "{now}");
            break;
        }
        for (_, token) in &hosts {
            let (status, job) = api.call("GET", "/v1/agent/jobs?wait_seconds=0", token, None).await;
            if status != 200 {
                continue;
            }
            let job: Job = serde_json::from_value(job).unwrap();
            let report = Report {
                job_id: job.job_id,
                release: second.clone(),
                kind: job.kind,
                ok: true,
                step: if job.kind == JobKind::Pull { Step::Pull } else { Step::Start },
                exit_code: Some(0),
                reason: None,
                logs: HostLogs::default(),
                log_parts: None,
            };
            api.expect(200, "POST", "/v1/agent/reports", token, Some(serde_json::to_value(&report).unwrap())).await;
        }
    }
    api.expect(200, "GET", "/v1/applications/app/groups/g/releases?page_size=1", account, None).await;
    let rollback = api.expect(201, "POST", &format!("/v1/releases/{second}/rollback"), account, None).await;
    assert_eq!(rollback["revision"], 1, "{rollback}");
    api.expect(409, "POST", &format!("/v1/releases/{second}/rollback"), account, None).await;
    for path in ["/v1/applications/app/deployments/d", "/v1/applications/app/groups/g", "/v1/applications/app"] {
        api.expect(409, "DELETE", path, account, None).await;
    }
    api.expect(200, "POST", &format!("/v1/releases/{}/cancel", rollback["id"].as_str().unwrap()), account, None).await;
    // A third host to remove, and another application to delete: the probes after the
    // scenario reuse the first hosts' tokens and the join token.
    api.expect(200, "POST", "/v1/agent/register", &join, Some(json!({ "host": "h3" }))).await;
    api.expect(204, "DELETE", "/v1/applications/app/groups/g/instances/h3", account, None).await;
    api.expect(201, "POST", "/v1/applications", account, Some(json!({ "name": "old" }))).await;
    api.expect(201, "POST", "/v1/applications/old/groups", account, Some(json!({ "name": "g0" }))).await;
    let old = json!({
        "name": "d0", "image": { "address": format!("{registry}/acme/app:v1") }, "working_directory": "/srv",
        "start_script": "true", "stop_script": "true",
    });
    api.expect(201, "POST", "/v1/applications/old/deployments", account, Some(old)).await;
    api.expect(204, "DELETE", "/v1/applications/old/deployments/d0", account, None).await;
    api.expect(204, "DELETE", "/v1/applications/old/groups/g0", account, None).await;
    api.expect(204, "DELETE", "/v1/applications/old", account, None).await;
}

#[tokio::test]
async fn every_answer_has_its_documented_status_and_fields() {
    let context = FunctionContext::ephemeral();
    let engine = berth_releases::engine::Engine::new(context.clone());
    let router = axum::Router::new()
        .merge(berth_credentials::function(context.clone()).router)
        .merge(berth_packages::function(context.clone()).router)
        .merge(berth_render::function(context.clone()).router)
        .merge(berth_releases::router(engine.clone()));
    let doc = document();
    let (_, operations) = documented();
    let templates = operations.iter().map(|(_, path)| path.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut api = Api { router: finish(router, vec!["all"]), templates, exchanges: Vec::new() };
    scenario(&mut api, &context, &engine).await;

    // Probes of every operation, from its last successful exchange: without credentials, with
    // the first path parameter not decoding, with a body over every limit.
    let mut failures = Vec::new();
    for (method, path) in &operations {
        let Some(last) = api.exchanges.iter().rev().find(|e| &e.method == method && &e.path == path && e.status < 300)
        else {
            failures.push(format!("{method} {path}: the scenario never succeeded with it"));
            continue;
        };
        let (uri, authorization) = (last.uri.clone(), last.authorization.clone());
        let operation = operation(&doc, method, path);
        if authenticated(&doc, method, path) {
            let exchange = api.send(method, &uri, None, Body::empty(), false).await;
            if exchange.status != 401 {
                failures.push(format!("{method} {uri}: answered {} without credentials", exchange.status));
            }
            api.exchanges.push(exchange);
        }
        if path.contains('{') {
            let parameter = path.split('/').position(|s| s.starts_with('{')).unwrap();
            let mut segments: Vec<&str> = uri.split('/').collect();
            segments[parameter] = "%FF";
            let malformed = segments.join("/");
            let exchange = api.send(method, &malformed, authorization.as_deref(), Body::empty(), false).await;
            let problem: Value = serde_json::from_slice(&exchange.body).unwrap_or_default();
            if (exchange.status, problem["field"].as_str()) != (400, Some("path")) {
                failures.push(format!(
                    "{method} {malformed}: answered {} {problem}, not a 400 naming path",
                    exchange.status
                ));
            }
            api.exchanges.push(exchange);
        }
        let limited = api.exchanges.iter().any(|e| &e.method == method && &e.path == path && e.status == 413);
        if !operation["requestBody"].is_null() && !limited {
            // Over every body limit: the largest is the 32 MiB of a File upload.
            let body = streamed((256 << 20) + 1);
            let exchange = api.send(method, &uri, authorization.as_deref(), body, true).await;
            if exchange.status != 413 {
                failures.push(format!("{method} {uri}: answered {} to an oversized body", exchange.status));
            }
            api.exchanges.push(exchange);
        }
    }

    // Every status met is documented; every JSON success answer has its schema's fields.
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut fields_seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for exchange in &api.exchanges {
        let Exchange { method, path, uri, status, .. } = exchange;
        let documented = responses(&doc, method, path);
        let Some(response) = documented.get(&status.to_string()) else {
            failures.push(format!("{method} {uri}: answered {status}, which {path} does not document"));
            continue;
        };
        // The media type is one the response documents (none: an empty body).
        let media_type = exchange.content_type.split(';').next().unwrap().trim();
        let content = &response["content"];
        let listed = match content.as_mapping() {
            Some(types) => types.contains_key(media_type),
            None => exchange.body.is_empty(),
        };
        if !listed {
            failures.push(format!("{method} {uri}: the {status} answer is {media_type:?}, not as documented"));
        }
        if *status >= 300 || media_type != "application/json" {
            continue;
        }
        let schema = &response["content"]["application/json"]["schema"];
        let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) else {
            failures.push(format!("{method} {path}: the {status} answer has no named schema"));
            continue;
        };
        let schema = resolve(&doc, schema);
        let answer: Value = serde_json::from_slice(&exchange.body).unwrap();
        let Some(object) = answer.as_object() else {
            failures.push(format!("{method} {uri}: the answer is not an object"));
            continue;
        };
        let properties = schema["properties"].as_mapping().unwrap();
        for (key, value) in object {
            match properties.get(key.as_str()) {
                None => failures.push(format!("{method} {uri}: `{key}` is not in schema {name}")),
                Some(property) => {
                    if let Some(problem) = type_problem(&doc, property, value) {
                        failures.push(format!("{method} {uri}: {name}.{key}: {problem}"));
                    }
                }
            }
        }
        for required in schema["required"].as_sequence().unwrap() {
            let required = required.as_str().unwrap();
            if !object.contains_key(required) {
                failures.push(format!("{method} {uri}: required `{required}` of {name} is missing"));
            }
        }
        fields_seen.entry(name.to_owned()).or_default().extend(object.keys().cloned());
        *seen.entry((method.clone(), path.clone(), status.to_string())).or_default() += 1;
    }

    // Every documented JSON success answer has a schema of its own and was checked; every
    // property of a schema appeared in some answer.
    let mut checked_operations = BTreeSet::new();
    for (method, path) in &operations {
        for (status, response) in responses(&doc, method, path) {
            if !status.starts_with('2') || response["content"]["application/json"].is_null() {
                continue;
            }
            let schema = resolve(&doc, &response["content"]["application/json"]["schema"]);
            let shaped = schema["type"].as_str() == Some("object")
                && schema["properties"].is_mapping()
                && schema["required"].is_sequence();
            if !shaped {
                failures.push(format!(
                    "{method} {path}: the {status} schema is not an object with properties and required"
                ));
            }
            if seen.contains_key(&(method.clone(), path.clone(), status.clone())) {
                checked_operations.insert((method.clone(), path.clone(), status));
            } else {
                failures.push(format!("{method} {path}: no {status} answer was checked"));
            }
        }
    }
    for (name, seen) in &fields_seen {
        let schema = &doc["components"]["schemas"][name.as_str()];
        let listed: BTreeSet<String> =
            schema["properties"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_owned()).collect();
        let never: Vec<_> = listed.difference(seen).collect();
        if !never.is_empty() {
            failures.push(format!("schema {name}: {never:?} appeared in no answer"));
        }
    }
    let statuses: BTreeSet<(String, String, u16)> =
        api.exchanges.iter().map(|e| (e.method.clone(), e.path.clone(), e.status)).collect();
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
    assert!(checked_operations.len() >= 48, "{} success answers checked", checked_operations.len());
    println!(
        "{} exchanges; {} (operation, success status) answers checked against {} schemas; {} (operation, status) pairs met",
        api.exchanges.len(),
        checked_operations.len(),
        fields_seen.len(),
        statuses.len()
    );
}

//! `infra/openapi.yaml` against the routers: every route documented, nothing documented that
//! does not exist. Routes are read from the functions' sources (`.route("PATH", get(..).post(..))`)
//! and every documented operation is called on the mounted routers, which must not answer
//! with the fallback 404 or a 405.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::Request;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::runtime::finish;
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

/// (METHOD, path shape) of every `.route(...)` in the functions' sources, plus `/healthz`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let root = berth_tests::workspace_root().join("functions");
    let mut routes = BTreeSet::from([("GET".to_owned(), "/healthz".to_owned())]);
    for function in std::fs::read_dir(&root).unwrap() {
        let src = function.unwrap().path().join("src");
        for file in std::fs::read_dir(&src).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                // The call's text up to its closing parenthesis.
                let (mut depth, mut end) = (1, 0);
                for (i, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                let call = &rest[..end];
                let path = call.split('"').nth(1).expect("a route path literal");
                let mut found = false;
                for method in METHODS {
                    let starts_call = |i: usize| {
                        i == 0 || !call.as_bytes()[i - 1].is_ascii_alphanumeric() && call.as_bytes()[i - 1] != b'_'
                    };
                    if call.match_indices(&format!("{method}(")).any(|(i, _)| starts_call(i)) {
                        routes.insert((method.to_uppercase(), shape(path)));
                        found = true;
                    }
                }
                assert!(found, "no method in .route({call})");
            }
        }
    }
    routes
}

/// (METHOD, path) pairs.
type Operations = Vec<(String, String)>;

fn documented() -> (BTreeSet<(String, String)>, Operations) {
    let text = std::fs::read_to_string(berth_tests::workspace_root().join("infra/openapi.yaml")).unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "an OpenAPI 3 document");
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
async fn every_documented_operation_reaches_a_handler() {
    let context = FunctionContext::ephemeral();
    let router = axum::Router::new()
        .merge(berth_credentials::function(context.clone()).router)
        .merge(berth_packages::function(context.clone()).router)
        .merge(berth_render::function(context.clone()).router)
        .merge(berth_releases::function(context.clone()).router);
    let router = finish(router, vec!["all"]);
    let (_, operations) = documented();
    for (method, path) in operations {
        let concrete: String = shape(&path).replace("{}", "abc");
        let request = Request::builder().method(method.as_str()).uri(&concrete).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_ne!(status.as_u16(), 405, "{method} {path}: method not routed");
        assert!(!body.contains("route not found"), "{method} {path}: fell through to the fallback");
    }
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
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(root.join("infra/openapi.yaml")).unwrap()).unwrap();
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

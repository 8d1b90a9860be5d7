//! The packages API in-process (memory store, in-process queue): rules, problem+json errors,
//! idempotency, races, services and associations. The registry check itself is tested
//! against the real registry in tests/tests/packages.rs.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_shared::names::AccountId;
use berth_shared::package;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::digest::oci_digest;
use berth_shared::platform::http::in_process;
use serde_json::{Value, json};

struct Api {
    context: FunctionContext,
    token: String,
}

impl Api {
    fn new() -> Self {
        let context = FunctionContext::ephemeral();
        let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
        Self { context, token }
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value, String) {
        let mut request =
            Request::builder().method(method).uri(path).header("authorization", format!("Bearer {}", self.token));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let router = berth_packages::router(self.context.clone());
        let answer = in_process::send(&router, request.body(Body::from(body)).unwrap()).await;
        (answer.status, answer.json(), answer.content_type.unwrap_or_default())
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, value, _) = self.raw(method, path, Some("application/json"), bytes).await;
        (status, value)
    }

    async fn pending_events(&self) -> usize {
        self.context.queue.receive(100, std::time::Duration::from_millis(10)).await.unwrap().len()
    }
}

fn package(name: &str) -> Value {
    json!({
        "name": name, "description": "the web front end", "type": "ContainerImage",
        "tags": [{ "key": "team", "value": "web" }],
        "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] }
    })
}

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    match body.pointer_mut(pointer) {
        Some(slot) => *slot = value,
        None => {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = if parent.is_empty() { &mut body } else { body.pointer_mut(parent).unwrap() };
            parent[key] = value;
        }
    }
    body
}

#[tokio::test]
async fn create_answers_the_package_and_a_creating_version_and_queues_its_check() {
    let api = Api::new();
    let (status, created) = api.call("POST", "/v1/packages", Some(package("web"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["package"]["name"], "web");
    assert_eq!(created["package"]["resource_group"], "default");
    assert_eq!(created["version"]["status"], "Creating");
    assert_eq!(created["version"]["number"], 1);
    assert_eq!(api.pending_events().await, 1);
    let (status, got) = api.call("GET", "/v1/packages/web/versions/v_1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created["version"]);
}

#[tokio::test]
async fn at_least_thirty_bad_requests_are_problems_naming_their_field() {
    let api = Api::new();
    let (status, _) =
        api.call("POST", "/v1/packages", Some(with(package("taken"), "/version/name", json!("v_0")))).await;
    assert_eq!(status, StatusCode::CREATED);
    let tags = |n: usize| json!((0..n).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect::<Vec<_>>());
    let base = package("web");
    let cases: Vec<(&str, Value, &str, u16)> = vec![
        ("name 2 chars", with(base.clone(), "/name", json!("ab")), "name", 400),
        ("name 129 chars", with(base.clone(), "/name", json!("a".repeat(129))), "name", 400),
        ("name with -", with(base.clone(), "/name", json!("web-app")), "name", 400),
        ("name with space", with(base.clone(), "/name", json!("web app")), "name", 400),
        ("name non-ascii", with(base.clone(), "/name", json!("wébapp")), "name", 400),
        ("name not a string", with(base.clone(), "/name", json!(7)), "name", 400),
        ("version 2 chars", with(base.clone(), "/version/name", json!("v1")), "version.name", 400),
        ("version 51 chars", with(base.clone(), "/version/name", json!("v".repeat(51))), "version.name", 400),
        ("version with .", with(base.clone(), "/version/name", json!("v1.0")), "version.name", 400),
        ("description 9 chars", with(base.clone(), "/description", json!("123456789")), "description", 400),
        ("description 501 chars", with(base.clone(), "/description", json!("d".repeat(501))), "description", 400),
        ("description control", with(base.clone(), "/description", json!("bad\u{7}description")), "description", 400),
        ("21 tags", with(base.clone(), "/tags", tags(21)), "tags", 400),
        ("duplicate tag", with(base.clone(), "/tags", json!([{"key":"a"},{"key":"a"}])), "tags[1].key", 400),
        ("empty tag key", with(base.clone(), "/tags", json!([{"key":""}])), "tags[0].key", 400),
        ("tag key 129", with(base.clone(), "/tags", json!([{"key": "k".repeat(129)}])), "tags[0].key", 400),
        (
            "tag value 129",
            with(base.clone(), "/tags", json!([{"key":"k","value": "v".repeat(129)}])),
            "tags[0].value",
            400,
        ),
        ("reserved tag", with(base.clone(), "/tags", json!([{"key":"acs:x"}])), "tags[0].key", 400),
        ("unknown type", with(base.clone(), "/type", json!("EcsImage")), "type", 400),
        (
            "missing type",
            {
                let mut b = base.clone();
                b.as_object_mut().unwrap().remove("type");
                b
            },
            "type",
            400,
        ),
        (
            "missing version",
            {
                let mut b = base.clone();
                b.as_object_mut().unwrap().remove("version");
                b
            },
            "version",
            400,
        ),
        ("unknown field", with(base.clone(), "/colour", json!("red")), "colour", 400),
        ("no images", with(base.clone(), "/version/images", json!([])), "version.images", 400),
        (
            "21 images",
            with(
                base.clone(),
                "/version/images",
                json!((0..21).map(|i| json!({"repository":"acme/web","tag":format!("t{i}")})).collect::<Vec<_>>()),
            ),
            "version.images",
            400,
        ),
        (
            "same image twice",
            with(
                base.clone(),
                "/version/images",
                json!([{"repository":"acme/web","tag":"v1"},{"repository":"acme/web","tag":"v1"}]),
            ),
            "version.images[1]",
            400,
        ),
        (
            "outside namespace",
            with(base.clone(), "/version/images/0/repository", json!("other/web")),
            "version.images[0].repository",
            400,
        ),
        (
            "the namespace itself",
            with(base.clone(), "/version/images/0/repository", json!("acme")),
            "version.images[0].repository",
            400,
        ),
        (
            "prefix confusion",
            with(base.clone(), "/version/images/0/repository", json!("acme12/web")),
            "version.images[0].repository",
            400,
        ),
        (
            "uppercase repository",
            with(base.clone(), "/version/images/0/repository", json!("acme/Web")),
            "version.images[0].repository",
            400,
        ),
        (
            "dot-dot repository",
            with(base.clone(), "/version/images/0/repository", json!("acme/../other")),
            "version.images[0].repository",
            400,
        ),
        (
            "encoded slash",
            with(base.clone(), "/version/images/0/repository", json!("acme%2Fweb")),
            "version.images[0].repository",
            400,
        ),
        ("bad tag", with(base.clone(), "/version/images/0/tag", json!(".v1")), "version.images[0].tag", 400),
        ("tag 129", with(base.clone(), "/version/images/0/tag", json!("t".repeat(129))), "version.images[0].tag", 400),
        (
            "chart on images type",
            with(base.clone(), "/version/chart", json!({"repository":"acme/c","tag":"1"})),
            "version.chart",
            400,
        ),
        (
            "file name on images type",
            with(base.clone(), "/version/file_name", json!("a.tgz")),
            "version.file_name",
            400,
        ),
        ("helm without chart", with(base.clone(), "/type", json!("HelmChart")), "version.images", 400),
        ("bad resource group", with(base.clone(), "/resource_group", json!("a/b")), "resource_group", 400),
        ("client token too long", with(base.clone(), "/client_token", json!("t".repeat(65))), "client_token", 400),
        ("duplicate name", with(package("taken"), "/version/name", json!("v_9")), "", 409),
    ];
    assert!(cases.len() >= 30);
    for (what, body, field, status) in cases {
        let (got, problem, content_type) =
            api.raw("POST", "/v1/packages", Some("application/json"), body.to_string().into_bytes()).await;
        assert_eq!(got.as_u16(), status, "{what}: {problem}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        if !field.is_empty() {
            assert_eq!(problem["field"], field, "{what}: {problem}");
        }
        assert!(problem["code"].is_string() && problem["detail"].is_string(), "{what}: {problem}");
    }
    type RawCase<'a> = (&'a str, Option<&'a str>, Vec<u8>, &'a str, u16);
    let raw_cases: Vec<RawCase> = vec![
        ("malformed JSON", Some("application/json"), b"{\"name\":".to_vec(), "body", 400),
        ("wrong content type", Some("text/plain"), package("web").to_string().into_bytes(), "body", 400),
        ("over-size body", Some("application/json"), vec![b' '; (1 << 20) + 1], "body", 413),
        ("not UTF-8", Some("application/json"), b"{\"name\":\"\xff\xfe\"}".to_vec(), "body", 400),
    ];
    for (what, content_type, body, field, status) in raw_cases {
        let (got, problem, media) = api.raw("POST", "/v1/packages", content_type, body).await;
        assert_eq!(got.as_u16(), status, "{what}: {problem}");
        assert_eq!(media, "application/problem+json", "{what}");
        assert_eq!(problem["field"], field, "{what}: {problem}");
    }
    let (status, listed) = api.call("GET", "/v1/packages", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["packages"].as_array().unwrap().len(), 1, "nothing but the one good package was created");
}

#[tokio::test]
async fn a_client_token_retry_returns_the_same_result_and_creates_nothing() {
    let api = Api::new();
    let body = with(package("web"), "/client_token", json!("retry-1"));
    let (first_status, first) = api.call("POST", "/v1/packages", Some(body.clone())).await;
    let (second_status, second) = api.call("POST", "/v1/packages", Some(body.clone())).await;
    assert_eq!((first_status, second_status), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first, second);
    let (_, got) = api.call("GET", "/v1/packages/web", None).await;
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);
    // A token whose request lost to an existing name does not later answer with that package.
    let taken = with(with(package("web"), "/client_token", json!("late")), "/description", json!("someone else's"));
    assert_eq!(api.call("POST", "/v1/packages", Some(taken.clone())).await.0, StatusCode::CONFLICT);
    assert_eq!(api.call("POST", "/v1/packages", Some(taken)).await.0, StatusCode::CONFLICT);
    // The same token for a different request is refused.
    let other = with(body.clone(), "/description", json!("another description"));
    let (status, problem) = api.call("POST", "/v1/packages", Some(other)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("client_token_reused")));
    // Versions: a retry gives the same number, not a new one.
    let version = json!({ "name": "v_2", "images": [{ "repository": "acme/web", "tag": "v2" }], "client_token": "v2" });
    let (s1, v1) = api.call("POST", "/v1/packages/web/versions", Some(version.clone())).await;
    let (s2, v2) = api.call("POST", "/v1/packages/web/versions", Some(version)).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(v1, v2);
    assert_eq!(v1["number"], 2);
    let (_, got) = api.call("GET", "/v1/packages/web", None).await;
    assert_eq!(got["versions"].as_array().unwrap().len(), 2);
    assert_eq!(got["package"]["next_version_number"], 3);
}

#[tokio::test]
async fn concurrent_creates_of_one_name_have_one_winner() {
    let api = Api::new();
    for round in 0..10 {
        let name = format!("race_{round}");
        let calls = (0..8).map(|i| {
            let body = with(package(&name), "/description", json!(format!("contender number {i}")));
            let api = &api;
            async move { api.call("POST", "/v1/packages", Some(body)).await.0 }
        });
        let statuses = futures::future::join_all(calls).await;
        let won = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
        let lost = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
        assert_eq!((won, lost), (1, 7), "round {round}: {statuses:?}");
    }
    // Concurrent new versions get distinct numbers.
    let calls = (0..6).map(|i| {
        let body = json!({ "name": format!("v_n{i}"), "images": [{ "repository": "acme/web", "tag": "v1" }] });
        let api = &api;
        async move { api.call("POST", "/v1/packages/race_0/versions", Some(body)).await }
    });
    let mut numbers: Vec<u64> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|(s, v)| {
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["number"].as_u64().unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, [2, 3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn list_filters_and_pages() {
    let api = Api::new();
    for i in 0..5 {
        let mut body = package(&format!("pkg_{i}"));
        body["resource_group"] = json!(if i % 2 == 0 { "even" } else { "odd" });
        body["tags"] = json!([{ "key": "n", "value": i.to_string() }]);
        assert_eq!(api.call("POST", "/v1/packages", Some(body)).await.0, StatusCode::CREATED);
    }
    let chart = json!({ "name": "chart_pkg", "description": "a helm chart package", "type": "HelmChart",
        "version": { "name": "c_1", "chart": { "repository": "acme/charts/web", "tag": "0.1.0" } } });
    assert_eq!(api.call("POST", "/v1/packages", Some(chart)).await.0, StatusCode::CREATED);

    let names = |v: &Value| {
        v["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (_, page1) = api.call("GET", "/v1/packages?page_size=2", None).await;
    assert_eq!(names(&page1), ["chart_pkg", "pkg_0"]);
    let token = page1["next_page_token"].as_str().unwrap();
    let (_, page2) = api.call("GET", &format!("/v1/packages?page_size=2&page_token={token}"), None).await;
    assert_eq!(names(&page2), ["pkg_1", "pkg_2"]);
    let (_, odd) = api.call("GET", "/v1/packages?resource_group=odd", None).await;
    assert_eq!(names(&odd), ["pkg_1", "pkg_3"]);
    let (_, tagged) = api.call("GET", "/v1/packages?tag_key=n&tag_value=4", None).await;
    assert_eq!(names(&tagged), ["pkg_4"]);
    let (_, charts) = api.call("GET", "/v1/packages?type=HelmChart", None).await;
    assert_eq!(names(&charts), ["chart_pkg"]);
    for bad in ["page_size=0", "page_size=101", "page_size=x", "type=Nope", "colour=red"] {
        let (status, problem) = api.call("GET", &format!("/v1/packages?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
    }
}

#[tokio::test]
async fn update_changes_description_and_tags_only() {
    let api = Api::new();
    api.call("POST", "/v1/packages", Some(package("web"))).await;
    let (status, updated) =
        api.call("PATCH", "/v1/packages/web", Some(json!({ "description": "a better description", "tags": [] }))).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["description"], "a better description");
    assert_eq!(updated["tags"], json!([]));
    let (status, problem) = api.call("PATCH", "/v1/packages/web", Some(json!({ "name": "renamed" }))).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")), "names cannot change");
    let (status, _) =
        api.call("PATCH", "/v1/packages/nope", Some(json!({ "description": "a better description" }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn file_packages_settle_on_upload_and_are_immutable() {
    let api = Api::new();
    let body = json!({ "name": "tools", "description": "a tools archive", "type": "File",
        "version": { "name": "f_1", "file_name": "tools.tar.gz" } });
    let (status, created) = api.call("POST", "/v1/packages", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"]["status"], "Creating");
    assert_eq!(api.pending_events().await, 0, "files are settled by their upload, not a registry check");
    let (status, uploaded, _) = api
        .raw("PUT", "/v1/packages/tools/versions/f_1/file", Some("application/octet-stream"), b"hello".to_vec())
        .await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    assert_eq!(uploaded["status"], "Available");
    assert_eq!(uploaded["file"]["size"], 5);
    assert_eq!(uploaded["file"]["digest"], "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    let (status, problem, _) = api
        .raw("PUT", "/v1/packages/tools/versions/f_1/file", Some("application/octet-stream"), b"other".to_vec())
        .await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("immutable")));
}

/// Racing uploads of different bytes: whichever wins the version's swap, the recorded digest
/// is the digest of the bytes stored under it, and the loser's bytes are gone.
#[tokio::test]
async fn racing_uploads_leave_a_digest_that_matches_the_stored_bytes() {
    let api = Api::new();
    let acme = AccountId::parse("acme").unwrap();
    for round in 0..20 {
        let name = format!("race_{round}");
        let body = json!({ "name": name, "description": "a tools archive", "type": "File",
            "version": { "name": "f_1", "file_name": "tools.tar.gz" } });
        assert_eq!(api.call("POST", "/v1/packages", Some(body)).await.0, StatusCode::CREATED);
        let path = format!("/v1/packages/{name}/versions/f_1/file");
        let (a, b) = tokio::join!(
            api.raw("PUT", &path, Some("application/octet-stream"), b"first bytes".to_vec()),
            api.raw("PUT", &path, Some("application/octet-stream"), b"second bytes".to_vec()),
        );
        let won: Vec<StatusCode> = [a.0, b.0].into_iter().filter(|s| *s == StatusCode::OK).collect();
        assert_eq!(won.len(), 1, "round {round}: one upload wins ({:?}, {:?})", a.1, b.1);
        let (_, version) = api.call("GET", &format!("/v1/packages/{name}/versions/f_1"), None).await;
        let digest = version["file"]["digest"].as_str().unwrap().to_owned();
        let stored = api.context.store.get_object(&package::file_content_path(&acme, &name, &digest)).await.unwrap();
        assert_eq!(oci_digest(&stored.expect("the winner's bytes")), digest, "round {round}");
        for bytes in [b"first bytes".as_slice(), b"second bytes".as_slice()] {
            let other = oci_digest(bytes);
            if other != digest {
                let path = package::file_content_path(&acme, &name, &other);
                assert!(api.context.store.get_object(&path).await.unwrap().is_none(), "round {round}: loser kept");
            }
        }
    }
}

const CONFIG: &str = r#"
Service:
  RegionId: cn-hangzhou
  DeployMetadata:
    SupplierDeployMetadata:
      AcrImageArtifactRelation:
        '{{ computenest::acrimage::nginx }}':
          ArtifactId: ${Artifact.Web.ArtifactId}
          ArtifactVersion: draft
    TemplateConfigs:
      - Name: ECS
        Url: 'ros_templates/template.yaml'
Artifact:
  Web:
    ArtifactType: AcrImage
    ArtifactName: web
"#;

#[tokio::test]
async fn services_import_config_yaml_and_pin_their_packages() {
    let api = Api::new();
    let service = json!({ "config": CONFIG, "templates": { "ros_templates/template.yaml": "image: {{ computenest::acrimage::nginx }}" } });
    // The package does not exist yet: a 404 names what is missing.
    let (status, problem) = api.call("PUT", "/v1/services/shop", Some(service.clone())).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("package 'web'"), "{problem}");
    // A template the config names but the request lacks is named too.
    let (status, problem) = api.call("PUT", "/v1/services/shop", Some(json!({ "config": CONFIG }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap().contains("template 'ros_templates/template.yaml'"), "{problem}");

    api.call("POST", "/v1/packages", Some(package("web"))).await;
    let (status, stored) = api.call("PUT", "/v1/services/shop", Some(service.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["relations"]["computenest::acrimage::nginx"], json!({ "package": "web", "version": "latest" }));
    assert_eq!(stored["ignored"], json!(["Service.RegionId"]));
    assert_eq!(stored["templates"][0]["name"], "ECS");
    let (status, again) = api.call("PUT", "/v1/services/shop", Some(service)).await;
    assert_eq!(status, StatusCode::OK, "redefining is an update: {again}");

    let (_, associations) = api.call("GET", "/v1/services/shop/associations", None).await;
    assert_eq!(associations["associations"][0]["identifier"], "{{ computenest::acrimage::nginx }}");
    assert_eq!(associations["associations"][0]["version"]["name"], "v_1");
    let (_, users) = api.call("GET", "/v1/packages/web/services", None).await;
    assert_eq!(users["services"], json!(["shop"]));

    let (status, problem) = api.call("DELETE", "/v1/packages/web", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("in_use")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("shop"));
    assert_eq!(api.call("DELETE", "/v1/services/shop", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.call("DELETE", "/v1/packages/web", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.call("GET", "/v1/packages/web", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.call("GET", "/v1/packages/web/versions/v_1", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_relation_to_the_wrong_kind_of_package_is_refused() {
    let api = Api::new();
    api.call("POST", "/v1/packages", Some(package("web"))).await;
    let service = json!({
        "templates": { "main": "chart: {{ computenest::helmchart::web }}" },
        "relations": { "{{ computenest::helmchart::web }}": { "package": "web", "version": { "number": 1 } } }
    });
    // Well formed, but the stored package is of another kind: a conflict with it.
    let (status, problem) = api.call("PUT", "/v1/services/charts", Some(service)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("relations_unresolved")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("ContainerImage"), "{problem}");
}

/// A service defined while its package is deleted, on two threads: either the service is
/// refused and the package gone, or the delete is refused (`in_use`) and both stay; never a
/// service naming a deleted package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_and_its_package_delete_cannot_both_win() {
    let api = std::sync::Arc::new(Api::new());
    let mut outcomes = std::collections::BTreeMap::new();
    for round in 0..30 {
        let name = format!("web_{round}");
        assert_eq!(api.call("POST", "/v1/packages", Some(package(&name))).await.0, StatusCode::CREATED);
        let service = json!({
            "templates": { "t.yaml": format!("image: {{{{ computenest::acrimage::{name} }}}}") },
            "relations": { format!("computenest::acrimage::{name}"): { "package": name, "version": "latest" } },
        });
        let (define, delete) = (api.clone(), api.clone());
        let id = format!("shop-{round}");
        let uri = format!("/v1/services/{id}");
        let defined = tokio::spawn(async move { define.call("PUT", &uri, Some(service)).await });
        let gone = format!("/v1/packages/{name}");
        let deleted = tokio::spawn(async move { delete.call("DELETE", &gone, None).await });
        let (defined, deleted) = (defined.await.unwrap(), deleted.await.unwrap());
        let service_exists = api.call("GET", &format!("/v1/services/{id}"), None).await.0 == StatusCode::OK;
        let package_exists = api.call("GET", &format!("/v1/packages/{name}"), None).await.0 == StatusCode::OK;
        assert!(
            !service_exists || package_exists,
            "round {round}: service kept a deleted package ({defined:?}, {deleted:?})"
        );
        assert_ne!(service_exists, defined.0.is_client_error(), "round {round}: {defined:?}");
        assert_ne!(package_exists, deleted.0 == StatusCode::NO_CONTENT, "round {round}: {deleted:?}");
        *outcomes.entry((defined.0.as_u16(), deleted.0.as_u16())).or_insert(0) += 1;
    }
    eprintln!("outcomes (define, delete): {outcomes:?}");
}

#[tokio::test]
async fn instances_per_service_are_limited_and_names_checked() {
    let mut api = Api::new();
    std::sync::Arc::make_mut(&mut api.context.config).max_instances_per_service = 2;
    let (status, body) =
        api.call("PUT", "/v1/services/shop", Some(json!({ "templates": { "t.yaml": "a: b\n" } }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for name in ["cust_1", "cust_2"] {
        let (status, body) = api.call("POST", "/v1/services/shop/instances", Some(json!({ "name": name }))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body["credential"]["password"].as_str().unwrap().starts_with("bic_"));
    }
    let (status, body) = api.call("POST", "/v1/services/shop/instances", Some(json!({ "name": "cust_3" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!((body["code"].as_str(), body["field"].as_str()), (Some("too_many_instances"), Some("name")), "{body}");
    // Deleting one makes room.
    let (status, _) = api.call("DELETE", "/v1/services/shop/instances/cust_1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call("POST", "/v1/services/shop/instances", Some(json!({ "name": "cust_3" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A path name that breaks the rule is refused before it becomes a store path.
    let (status, body) = api.call("GET", "/v1/services/shop/instances/..%2Fx", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "name", "{body}");
    // A service whose relation has no Available version cannot be pinned.
    let (status, body) = api.call("POST", "/v1/packages", Some(package("web"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let service = json!({
        "templates": { "t.yaml": "image: {{ computenest::acrimage::web }}\n" },
        "relations": { "{{ computenest::acrimage::web }}": { "package": "web", "version": "latest" } },
    });
    let (status, body) = api.call("PUT", "/v1/services/pending", Some(service)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.call("POST", "/v1/services/pending/instances", Some(json!({ "name": "cust_1" }))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("relations_unresolved")), "{body}");
}

/// 20 creates racing from separate tasks, against the memory store (native compare-and-swap)
/// and the file store (`berth serve`'s lock and rename): exactly the limit pass, for access
/// keys (10 per account) and instances (here 5 per service); a revoke or delete makes room
/// for exactly one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_never_pass_the_access_key_and_instance_limits() {
    let dir = tempfile::tempdir().unwrap();
    for file_store in [false, true] {
        let mut api = Api::new();
        if file_store {
            api.context.store = berth_shared::platform::store::DocumentStore::local(dir.path().join("store")).unwrap();
        }
        std::sync::Arc::make_mut(&mut api.context.config).max_instances_per_service = 5;
        let (status, body) =
            api.call("PUT", "/v1/services/shop", Some(json!({ "templates": { "t.yaml": "a: b\n" } }))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let api = std::sync::Arc::new(api);
        let race = |uri: &'static str, body: fn(usize) -> Value| {
            let api = api.clone();
            async move {
                let tasks: Vec<_> = (0..20)
                    .map(|i| {
                        let api = api.clone();
                        tokio::spawn(async move { api.call("POST", uri, Some(body(i))).await })
                    })
                    .collect();
                let mut answers = Vec::new();
                for task in tasks {
                    answers.push(task.await.unwrap());
                }
                answers
            }
        };
        let keys = race("/v1/access-keys", |i| json!({ "description": format!("key {i}") })).await;
        let created: Vec<&Value> = keys.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, b)| b).collect();
        assert_eq!(created.len(), 10, "file store {file_store}: {keys:?}");
        assert!(keys.iter().all(|(s, b)| *s == StatusCode::CREATED || b["code"] == "too_many_access_keys"), "{keys:?}");
        let (_, listed) = api.call("GET", "/v1/access-keys", None).await;
        assert_eq!(listed["access_keys"].as_array().unwrap().len(), 10, "{listed}");
        let revoked = created[0]["access_key_id"].as_str().unwrap();
        assert_eq!(api.call("DELETE", &format!("/v1/access-keys/{revoked}"), None).await.0, StatusCode::OK);
        let again = race("/v1/access-keys", |_| json!({})).await;
        assert_eq!(again.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "{again:?}");

        let instances = race("/v1/services/shop/instances", |i| json!({ "name": format!("cust_{i}") })).await;
        let made: Vec<&Value> = instances.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, b)| b).collect();
        assert_eq!(made.len(), 5, "file store {file_store}: {instances:?}");
        assert!(instances.iter().all(|(s, b)| *s == StatusCode::CREATED || b["code"] == "too_many_instances"));
        let gone = made[0]["instance"]["name"].as_str().unwrap();
        let (status, _) = api.call("DELETE", &format!("/v1/services/shop/instances/{gone}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let again = race("/v1/services/shop/instances", |i| json!({ "name": format!("late_{i}") })).await;
        assert_eq!(again.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "{again:?}");
    }
}

//! The render API in-process over a `memory://` store: values, the pull key's scope, dry
//! runs, file downloads, and every error as problem+json with line:column.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_shared::credentials::temporary_key::{self, KeyPurpose};
use berth_shared::names::AccountId;
use berth_shared::names::RepositoryName;
use berth_shared::package::{
    FileRecord, ImageRecord, PackageType, PackageVersion, VersionStatus, file_content_path, package_path, version_path,
};
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::digest::oci_digest;
use berth_shared::platform::http::in_process;
use berth_shared::service::{ArtifactRef, Service, ServiceTemplate, VersionSelector, service_path};
use serde_json::{Value, json};
use tower::ServiceExt;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// The seed's ACK sample: a Secret holding the pull key and a Deployment using the image.
const ACK_SAMPLE: &str = "Resources:
  ClusterApplication:
    Type: ALIYUN::CS::ClusterApplication
    Properties:
      YamlContent: |
          apiVersion: v1
          data:
            .dockerconfigjson: {{computenest::acr::dockerconfigjson}}
          kind: Secret
          metadata:
            name: computenestrepo
            namespace: nginx
          type: kubernetes.io/dockerconfigjson
          ---
          apiVersion: apps/v1
          kind: Deployment
          spec:
            template:
              spec:
                containers:
                - name: nginx
                  image: {{ computenest::acrimage::nginx }}
                  ports:
                  - containerPort: 80
                imagePullSecrets:
                - name: computenestrepo
";

fn acme() -> AccountId {
    AccountId::parse("acme").unwrap()
}

async fn call(context: &FunctionContext, request: Request<Body>) -> (StatusCode, Option<String>, Value, Vec<u8>) {
    let answer = in_process::send(&berth_render::router(context.clone()), request).await;
    (answer.status, answer.content_type.clone(), answer.json(), answer.body.to_vec())
}

fn post(context: &FunctionContext, path: &str, body: &Value) -> Request<Body> {
    let token = context.account_keys.issue(&acme(), 60).unwrap();
    Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("host", "berth.test:8080")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn image(repository: &str, number: u32) -> ImageRecord {
    ImageRecord {
        digest: Some(DIGEST.into()),
        ..ImageRecord::unchecked(RepositoryName::parse(repository).unwrap(), &format!("v{number}"))
    }
}

async fn put_version(
    context: &FunctionContext,
    package: &str,
    number: u32,
    status: VersionStatus,
    kind: PackageType,
) -> PackageVersion {
    let store = &context.store;
    store.put(&package_path(&acme(), package), &json!({ "name": package })).await.unwrap();
    let version = PackageVersion {
        package: package.into(),
        version: format!("v_{number}"),
        number,
        package_type: kind,
        status,
        images: match kind {
            PackageType::File => Vec::new(),
            _ => vec![image(&format!("acme/{package}"), number)],
        },
        file: (kind == PackageType::File).then(|| FileRecord {
            file_name: "app.tar.gz".into(),
            size: Some(5),
            digest: Some(DIGEST.into()),
        }),
        reason: (status == VersionStatus::Failed).then(|| "acme/broken:v1 was not found".into()),
        label: None,
        created_at: String::new(),
        updated_at: String::new(),
        untrusted: None,
    };
    store.put(&version_path(&acme(), package, &version.version), &version).await.unwrap();
    version
}

fn latest(package: &str) -> ArtifactRef {
    ArtifactRef { package: package.into(), version: VersionSelector::Latest }
}

async fn put_service(context: &FunctionContext, templates: &[(&str, &str)], relations: &[(&str, ArtifactRef)]) {
    let service = Service {
        name: "shop".into(),
        templates: templates
            .iter()
            .map(|(name, body)| ServiceTemplate { name: (*name).into(), url: None, body: (*body).into() })
            .collect(),
        relations: relations.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<BTreeMap<_, _>>(),
        ignored: Vec::new(),
        created_at: String::new(),
        updated_at: String::new(),
    };
    context.store.put(&service_path(&acme(), "shop"), &service).await.unwrap();
}

async fn shop(context: &FunctionContext) {
    put_version(context, "nginx", 1, VersionStatus::Available, PackageType::ContainerImage).await;
    put_version(context, "unused", 1, VersionStatus::Available, PackageType::ContainerImage).await;
    put_service(
        context,
        &[("ACK", ACK_SAMPLE)],
        &[("computenest::acrimage::nginx", latest("nginx")), ("computenest::acrimage::unused", latest("unused"))],
    )
    .await;
}

#[tokio::test]
async fn the_seed_sample_renders_with_a_pull_key_for_exactly_its_image() {
    let context = FunctionContext::ephemeral();
    shop(&context).await;
    let (status, _, answer, _) =
        call(&context, post(&context, "/v1/services/shop/render", &json!({ "credential_ttl_seconds": 600 }))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rendered = answer["rendered"].as_str().unwrap();
    assert!(rendered.contains("                  image: 127.0.0.1:5000/acme/nginx:v1\n"), "{rendered}");
    let key_line = rendered.lines().find(|l| l.contains(".dockerconfigjson:")).unwrap();
    let encoded = key_line.trim().strip_prefix(".dockerconfigjson: ").unwrap();
    // Everything else is byte for byte the template.
    let expected = ACK_SAMPLE
        .replace("{{computenest::acr::dockerconfigjson}}", encoded)
        .replace("{{ computenest::acrimage::nginx }}", "127.0.0.1:5000/acme/nginx:v1");
    assert_eq!(rendered, expected);

    let config: Value = serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap();
    let entry = &config["auths"]["127.0.0.1:5000"];
    let grant = temporary_key::verify(&context.signing, "acme", entry["password"].as_str().unwrap()).unwrap();
    assert_eq!(grant.purpose, KeyPurpose::Pull);
    assert_eq!(grant.repositories, Some(vec![RepositoryName::parse("acme/nginx").unwrap()]));
    assert_eq!(grant.exp - grant.iat, 600);
    assert_eq!(answer["pull_key"]["repositories"], json!(["acme/nginx"]));
    assert_eq!(answer["repositories"], json!(["acme/nginx"]));
    assert_eq!(answer["format"], "yaml");
    assert!(!answer["pull_key"].to_string().contains(entry["password"].as_str().unwrap()));
    let substitutions = answer["substitutions"].as_array().unwrap();
    assert_eq!(substitutions[0]["type"], "pull_key");
    assert_eq!(substitutions[0]["position"], json!({ "line": 8, "column": 32 }));
    assert_eq!(substitutions[1]["value"], "127.0.0.1:5000/acme/nginx:v1");

    // Pinned to the digest.
    let (status, _, answer, _) =
        call(&context, post(&context, "/v1/services/shop/render", &json!({ "pin_digests": true }))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["rendered"].as_str().unwrap().contains(&format!("image: 127.0.0.1:5000/acme/nginx@{DIGEST}\n")));
}

#[tokio::test]
async fn a_dry_run_lists_the_substitutions_and_mints_nothing() {
    let context = FunctionContext::ephemeral();
    shop(&context).await;
    let (status, _, answer, _) =
        call(&context, post(&context, "/v1/services/shop/render", &json!({ "template": "ACK", "dry_run": true })))
            .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["dry_run"], true);
    assert!(answer.get("rendered").is_none() && answer.get("pull_key").is_none(), "{answer}");
    let listed: Vec<(String, String)> = answer["substitutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_owned(), s["type"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        listed,
        [
            ("computenest::acr::dockerconfigjson".to_owned(), "pull_key".to_owned()),
            ("computenest::acrimage::nginx".to_owned(), "text".to_owned())
        ]
    );
}

#[tokio::test]
async fn accept_picks_the_template_itself_or_the_json_answer() {
    use axum::body::HttpBody;
    let context = FunctionContext::ephemeral();
    put_version(&context, "web_pkg", 1, VersionStatus::Available, PackageType::ContainerImage).await;
    let template = r#"{"Image": "{{computenest::acrimage::web}}", "Note": "{{.ID}} ${Var}"}"#;
    let body = json!({
        "template": template,
        "relations": { "computenest::acrimage::web": { "package": "web_pkg", "version": "latest" } },
    });
    let expected = template.replace("{{computenest::acrimage::web}}", "127.0.0.1:5000/acme/web_pkg:v1");
    let with_accept = |accept: &str, body: &Value| {
        let mut request = post(&context, "/v1/render", body);
        request.headers_mut().insert("accept", accept.parse().unwrap());
        request
    };

    // The preferred acceptable type decides (highest q, first of equals); case does not matter.
    for (accept, content_type) in [
        ("text/plain", "text/plain; charset=utf-8"),
        ("Application/YAML;q=1, application/json", "application/yaml"),
        ("application/json;q=0.5, text/yaml", "text/yaml"),
        ("application/x-yaml", "application/x-yaml"),
    ] {
        let response = berth_render::router(context.clone()).oneshot(with_accept(accept, &body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{accept}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["vary"], "accept");
        assert_eq!(headers["berth-substitutions"], "1");
        assert_eq!(headers["berth-repositories"], "acme/web_pkg");
        assert!(headers.get("berth-pull-key-username").is_none(), "no key was minted");
        assert_eq!(response.body().size_hint().exact(), Some(expected.len() as u64), "an exact length");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert_eq!(bytes, expected.as_bytes(), "{accept}");
    }

    // JSON (asked for, anything else, or nothing) is the JSON answer, not cached either.
    for accept in [
        "application/json",
        "*/*",
        "application/xml",
        "application/yaml;q=0, application/json",
        "application/json, text/yaml",
    ] {
        let response = berth_render::router(context.clone()).oneshot(with_accept(accept, &body)).await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/json", "{accept}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["rendered"], expected.as_str(), "{accept}");
    }

    // A dry run renders nothing: JSON whatever was asked.
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let response = berth_render::router(context.clone()).oneshot(with_accept("application/yaml", &dry)).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((answer["dry_run"].as_bool(), answer.get("rendered")), (Some(true), None));
}

#[tokio::test]
async fn every_bad_identifier_is_listed_with_its_line_and_column() {
    let context = FunctionContext::ephemeral();
    put_version(&context, "nginx", 1, VersionStatus::Available, PackageType::ContainerImage).await;
    put_version(&context, "pending", 1, VersionStatus::Creating, PackageType::ContainerImage).await;
    put_version(&context, "broken", 1, VersionStatus::Failed, PackageType::ContainerImage).await;
    put_version(&context, "chart", 1, VersionStatus::Available, PackageType::HelmChart).await;
    let template = "a: {{ computenest::acrimage::nginx }}\n\
                    b: {{ computenest::acrimage::pending }}\n\
                    c:   {{ computenest::acrimage::broken }}\n\
                    d: {{ computenest::acrimage::nobody }}\n\
                    e: {{ computenest::image::nginx }}\n\
                    f: {{ computenest::acrimage:: }}\n\
                    g: {{ computenest::acrimage::nginx\n\
                    h: {{ computenest::acrimage::chart }} {{ computenest::acrimage::ghost }}\n\
                    i: {{ computenest::acr::other }}\n";
    let relations = json!({
        "{{ computenest::acrimage::nginx }}": { "package": "nginx", "version": "latest" },
        "computenest::acrimage::pending": { "package": "pending", "version": { "number": 1 } },
        "computenest::acrimage::broken": { "package": "broken", "version": { "name": "v_1" } },
        "computenest::acrimage::chart": { "package": "chart", "version": "latest" },
        "computenest::acrimage::ghost": { "package": "ghost", "version": "latest" },
    });
    let body = json!({ "template": template, "relations": relations });
    let (status, content_type, problem, _) = call(&context, post(&context, "/v1/render", &body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!((problem["code"].as_str(), problem["field"].as_str()), (Some("template_problems"), Some("template")));
    let listed: Vec<(String, &str)> = problem["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (format!("{}:{}", p["line"], p["column"]), p["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("2:4".to_owned(), "not_available"),
            ("3:6".to_owned(), "not_available"),
            ("4:4".to_owned(), "not_associated"),
            ("5:4".to_owned(), "unknown_kind"),
            ("6:4".to_owned(), "malformed_identifier"),
            ("7:4".to_owned(), "unclosed_identifier"),
            ("8:4".to_owned(), "wrong_package_type"),
            ("8:39".to_owned(), "package_not_found"),
            ("9:4".to_owned(), "malformed_identifier"),
        ]
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("9 identifier problem(s) in template: 2:4: {{ computenest::acrimage::pending }}"),
        "{detail}"
    );
    assert!(problem["problems"][1]["message"].as_str().unwrap().contains("Failed: acme/broken:v1 was not found"));
}

#[tokio::test]
async fn requests_break_rules_as_problems_naming_their_field() {
    let context = FunctionContext::ephemeral();
    shop(&context).await;
    let cases = [
        (
            "/v1/services/shop/render",
            json!({ "credential_ttl_seconds": 59 }),
            400,
            "credential_ttl_seconds",
            "out_of_range",
        ),
        (
            "/v1/services/shop/render",
            json!({ "credential_ttl_seconds": 43_201 }),
            400,
            "credential_ttl_seconds",
            "out_of_range",
        ),
        ("/v1/services/shop/render", json!({ "template": "EKS" }), 400, "template", "unknown_template"),
        ("/v1/services/shop/render", json!({ "pin": true }), 400, "pin", "invalid_field"),
        ("/v1/render", json!({}), 400, "template", "required"),
        ("/v1/render", json!({ "template": "x", "template_base64": "eA==" }), 400, "template", "conflict"),
        ("/v1/render", json!({ "template_base64": "%%%" }), 400, "template_base64", "invalid_base64"),
        (
            "/v1/render",
            json!({ "template_base64": STANDARD.encode(b"a: 1\nb: \xff") }),
            400,
            "template_base64",
            "invalid_utf8",
        ),
        (
            "/v1/render",
            json!({ "template": "x", "relations": { "computenest::acr::dockerconfigjson": { "package": "a_b", "version": "latest" } } }),
            400,
            "relations.computenest::acr::dockerconfigjson",
            "not_relatable",
        ),
        ("/v1/render", json!({ "template": "x", "config": "Service: [" }), 400, "config", "invalid_yaml"),
    ];
    for (path, body, status, field, code) in cases {
        let (got, content_type, problem, _) = call(&context, post(&context, path, &body)).await;
        assert_eq!(got.as_u16(), status, "{body}: {problem}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{body}");
        assert_eq!(
            (problem["field"].as_str(), problem["code"].as_str()),
            (Some(field), Some(code)),
            "{body}: {problem}"
        );
    }
    let (status, _, problem, _) = call(&context, post(&context, "/v1/services/nothere/render", &json!({}))).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    // A name that breaks the service-name rule is refused as on every service route.
    let (status, _, problem, _) = call(&context, post(&context, "/v1/services/..%2Fx/render", &json!({}))).await;
    assert_eq!(
        (status, problem["field"].as_str(), problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"), Some("invalid_name"))
    );
    let unauthenticated = Request::post("/v1/render").body(Body::from("{}")).unwrap();
    assert_eq!(call(&context, unauthenticated).await.0, StatusCode::UNAUTHORIZED);

    // Over 10 MiB: 413 naming the template; just under renders.
    let big = "a".repeat(berth_shared::template::MAX_TEMPLATE_BYTES + 1);
    let (status, _, problem, _) = call(&context, post(&context, "/v1/render", &json!({ "template": big }))).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("template")), "{problem}");
    let (status, _, answer, _) = call(&context, post(&context, "/v1/render", &json!({ "template": &big[1..] }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["rendered"].as_str().unwrap().len(), big.len() - 1);
    let huge = format!("{{\"template\": \"{}\"}}", "a".repeat(berth_render::MAX_RENDER_BODY));
    let token = context.account_keys.issue(&acme(), 60).unwrap();
    let request = Request::post("/v1/render")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap();
    let (status, _, problem, _) = call(&context, request).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body")));
}

#[tokio::test]
async fn a_config_yaml_gives_the_relations_and_json_templates_stay_json() {
    let context = FunctionContext::ephemeral();
    put_version(&context, "web_pkg", 1, VersionStatus::Available, PackageType::ContainerImage).await;
    put_version(&context, "web_pkg", 2, VersionStatus::Available, PackageType::ContainerImage).await;
    let config = "Service:\n  DeployMetadata:\n    SupplierDeployMetadata:\n      AcrImageArtifactRelation:\n        \
                  '{{computenest::acrimage::nginx}}':\n          ArtifactId: artifact-xxx\n          ArtifactVersion: 2\n    \
                  TemplateConfigs:\n      - Name: ECS\n        Url: 'ros_templates/template.yaml'\n";
    let template =
        r#"{"Image": "{{computenest::acrimage::nginx}}", "Key": "{{ computenest::acr::dockerconfigjson }}"}"#;
    let body = json!({ "template": template, "config": config, "artifacts": { "artifact-xxx": "web_pkg" } });
    let (status, _, answer, _) = call(&context, post(&context, "/v1/render", &body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["format"], "json");
    let rendered: Value = serde_json::from_str(answer["rendered"].as_str().unwrap()).unwrap();
    assert_eq!(rendered["Image"], "127.0.0.1:5000/acme/web_pkg:v2", "ArtifactVersion 2 is version number 2");
    assert!(STANDARD.decode(rendered["Key"].as_str().unwrap()).is_ok());
    assert_eq!(answer["substitutions"][0]["value"], "127.0.0.1:5000/acme/web_pkg:v2");

    // `latest` is the newest Available version: a newer one still Creating does not count.
    put_version(&context, "web_pkg", 3, VersionStatus::Creating, PackageType::ContainerImage).await;
    let body = json!({
        "template": "image: {{ computenest::acrimage::web }}",
        "relations": { "computenest::acrimage::web": { "package": "web_pkg", "version": "latest" } },
    });
    let (status, _, answer, _) = call(&context, post(&context, "/v1/render", &body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["rendered"], "image: 127.0.0.1:5000/acme/web_pkg:v2");
}

#[tokio::test]
async fn file_urls_download_the_uploaded_bytes_and_nothing_else() {
    let context = FunctionContext::ephemeral();
    let mut version = put_version(&context, "bundle", 1, VersionStatus::Available, PackageType::File).await;
    let hello = oci_digest(b"hello");
    version.file.as_mut().unwrap().digest = Some(hello.clone());
    context.store.put(&version_path(&acme(), "bundle", "v_1"), &version).await.unwrap();
    let content = file_content_path(&acme(), "bundle", &hello);
    context.store.put_object(&content, bytes::Bytes::from_static(b"hello")).await.unwrap();
    let body = json!({
        "template": "url: {{ computenest::file::bundle }}\n",
        "relations": { "computenest::file::bundle": { "package": "bundle", "version": "latest" } },
        "credential_ttl_seconds": 120,
    });
    let (status, _, answer, _) = call(&context, post(&context, "/v1/render", &body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.get("pull_key").is_none(), "no credential identifier, no key");
    let url = answer["rendered"].as_str().unwrap().strip_prefix("url: ").unwrap().trim_end().to_owned();
    let path = url.strip_prefix("http://berth.test:8080").expect("the URL the caller reached Berth at");
    assert!(path.starts_with("/v1/downloads/") && path.ends_with("/app.tar.gz"), "{path}");
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let (status, _, _, bytes) = call(&context, get(path)).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, b"hello".as_slice()));
    let other_name = path.replace("/app.tar.gz", "/other.tar.gz");
    assert_eq!(call(&context, get(&other_name)).await.0, StatusCode::NOT_FOUND);
    // Bytes that are not the ones the URL names (a damaged store) are not served.
    context.store.put_object(&content, bytes::Bytes::from_static(b"hellO")).await.unwrap();
    let (status, content_type, _, served) = call(&context, get(path)).await;
    assert_eq!((status, content_type.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("application/problem+json")));
    assert!(!String::from_utf8_lossy(&served).contains("hellO"));
    context.store.put_object(&content, bytes::Bytes::from_static(b"hello")).await.unwrap();
    // A dry run signs no download URL either.
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let (status, _, listed, _) = call(&context, post(&context, "/v1/render", &dry)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(
        listed["substitutions"][0]["value"],
        "http://berth.test:8080/v1/downloads/{signed-at-render}/app.tar.gz"
    );
    let token = path.split('/').nth(3).unwrap();
    let tampered = path.replace(token, &format!("{}x", token));
    let (status, content_type, _, _) = call(&context, get(&tampered)).await;
    assert_eq!((status, content_type.as_deref()), (StatusCode::UNAUTHORIZED, Some("application/problem+json")));
}

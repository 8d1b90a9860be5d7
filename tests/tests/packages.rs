//! Publish validation against the real registry: images pushed with a push key (skopeo),
//! packages created through `berth serve`, the check resolving tags to the digests the
//! registry reports.

use std::sync::Arc;
use std::time::Duration;

use berth_shared::names::AccountId;

use berth_shared::package::version_path;
use berth_shared::platform::config::Config;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::events::EventHandler;
use berth_shared::platform::http::account::AccountKeys;
use berth_shared::platform::jws::SigningKeys;
use berth_shared::platform::queue::{Envelope, InProcessQueue};
use berth_shared::platform::store::DocumentStore;
use berth_tests::free_port;
use berth_tests::registry::SERVICE;
use berth_tests::stack::Stack;
use serde_json::{Value, json};

fn package(name: &str, repository: &str, tag: &str) -> Value {
    json!({
        "name": name, "description": "published by the test", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": repository, "tag": tag }] }
    })
}

/// The packages function as `berth serve` runs it, over the same data directory, so the test
/// can deliver an event again by hand.
fn same_context(stack: &Stack) -> FunctionContext {
    let data = &stack.berth.data;
    let registry = stack.registry.host.clone();
    let store_url = format!("file://{}", data.join("store").display());
    let config = Config::from_lookup(|name| match name {
        "BERTH_STORE_URL" => Some(store_url.clone()),
        "BERTH_REGISTRY_HOST" => Some(registry.clone()),
        "BERTH_REGISTRY_SERVICE" => Some(SERVICE.to_owned()),
        _ => None,
    })
    .unwrap();
    let keys = data.join("keys");
    FunctionContext {
        store: DocumentStore::local(data.join("store")).unwrap(),
        queue: Arc::new(InProcessQueue::new(5, Duration::from_secs(30))),
        account_keys: AccountKeys::load(&keys.join("account.pem"), &config.account_issuer).unwrap(),
        signing: SigningKeys::load(&keys.join("signing.key.pem"), &keys.join("signing.crt.pem"), &[]).unwrap(),
        config: Arc::new(config),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_settle_against_the_real_registry() {
    let stack = Stack::start(&[]);
    stack.push_image("acme", "acme/web", "v1").await;
    let digest = stack.registry_digest("acme", "acme/web", "v1").await;

    // A pushed image: Available, pinned to the digest the registry reports.
    let (status, created) = stack.call("acme", "POST", "/v1/packages", Some(package("web", "acme/web", "v1"))).await;
    assert_eq!(status, 201, "{created}");
    let version = stack.settled_version("acme", "web", "v_1", Duration::from_secs(30)).await;
    assert_eq!(version["status"], "Available", "{version}");
    let image = &version["images"][0];
    assert_eq!(image["digest"], digest.as_str());
    assert_eq!(image["platforms"], json!(["linux/amd64"]));
    assert!(image["size"].as_u64().unwrap() > 0);

    // A Docker v2 schema 2 manifest resolves as well as an OCI one.
    stack.push_image_as("acme", "acme/web", "docker", &["--format", "v2s2", "--dest-compress"]).await;
    let docker_digest = stack.registry_digest("acme", "acme/web", "docker").await;
    let body = json!({ "name": "v_docker", "images": [{ "repository": "acme/web", "tag": "docker" }] });
    assert_eq!(stack.call("acme", "POST", "/v1/packages/web/versions", Some(body)).await.0, 201);
    let docker = stack.settled_version("acme", "web", "v_docker", Duration::from_secs(30)).await;
    assert_eq!(docker["status"], "Available", "{docker}");
    assert_eq!(docker["images"][0]["digest"], docker_digest.as_str());
    assert_eq!(docker["images"][0]["media_type"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(docker["images"][0]["platforms"], json!(["linux/amd64"]));

    // An image index: its own digest, a platform per manifest.
    let layout = stack.dir.path().join("multi");
    berth_tests::registry::oci_multi_platform(&layout, "multi", &[("linux", "amd64"), ("linux", "arm64")]);
    let (ok, err) = stack.push_layout("acme", &layout, "acme/web", "multi").await;
    assert!(ok, "push the index: {err}");
    let body = json!({ "name": "v_multi", "images": [{ "repository": "acme/web", "tag": "multi" }] });
    assert_eq!(stack.call("acme", "POST", "/v1/packages/web/versions", Some(body)).await.0, 201);
    let multi = stack.settled_version("acme", "web", "v_multi", Duration::from_secs(30)).await;
    assert_eq!(multi["status"], "Available", "{multi}");
    assert_eq!(multi["images"][0]["media_type"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(multi["images"][0]["platforms"], json!(["linux/amd64", "linux/arm64"]));

    // A Helm chart package takes a chart, and refuses an image as one.
    let layout = stack.dir.path().join("chart");
    berth_tests::registry::oci_helm_chart(&layout, "0.1.0", "web");
    let (ok, err) = stack.push_layout("acme", &layout, "acme/charts/web", "0.1.0").await;
    assert!(ok, "push the chart: {err}");
    let chart = |version: &str, repository: &str, tag: &str| {
        json!({ "name": format!("chart_{version}"), "description": "the web chart",
        "type": "HelmChart", "version": { "name": version, "chart": { "repository": repository, "tag": tag } } })
    };
    assert_eq!(stack.call("acme", "POST", "/v1/packages", Some(chart("c_1", "acme/charts/web", "0.1.0"))).await.0, 201);
    let settled = stack.settled_version("acme", "chart_c_1", "c_1", Duration::from_secs(30)).await;
    assert_eq!(settled["status"], "Available", "{settled}");
    assert_eq!(stack.call("acme", "POST", "/v1/packages", Some(chart("c_2", "acme/web", "v1"))).await.0, 201);
    let refused = stack.settled_version("acme", "chart_c_2", "c_2", Duration::from_secs(30)).await;
    assert_eq!(refused["status"], "Failed", "{refused}");
    assert_eq!(refused["images"][0]["failure"]["code"], "not_a_chart");

    // A missing tag: Failed with not_found, naming the image.
    let missing = json!({ "name": "v_2", "images": [{ "repository": "acme/web", "tag": "v1" }, { "repository": "acme/web", "tag": "nope" }] });
    let (status, body) = stack.call("acme", "POST", "/v1/packages/web/versions", Some(missing)).await;
    assert_eq!(status, 201, "{body}");
    let failed = stack.settled_version("acme", "web", "v_2", Duration::from_secs(30)).await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    assert_eq!(failed["images"][0]["failure"], Value::Null, "the good image passed");
    assert_eq!(failed["images"][1]["failure"]["code"], "not_found");
    assert_eq!(failed["reason"], "acme/web:nope: not_found");

    // An image of another namespace is refused at create, before any check.
    stack.push_image("other", "other/web", "v1").await;
    let (status, problem) =
        stack.call("acme", "POST", "/v1/packages", Some(package("theirs", "other/web", "v1"))).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "outside_namespace");
    assert_eq!(problem["field"], "version.images[0].repository");

    // A duplicate delivery of the check changes nothing: same document, byte for byte.
    let context = same_context(&stack);
    let account = AccountId::parse("acme").unwrap();
    let before: Value = context.store.get(&version_path(&account, "web", "v_1")).await.unwrap().unwrap().value;
    let event = Envelope::new(
        "package.version.submitted",
        Some(account.clone()),
        json!({ "package": "web", "version": "v_1" }),
    );
    let handler = berth_packages::events(context.clone());
    handler.handle(&event).await.unwrap();
    handler.handle(&event).await.unwrap();
    let after: Value = context.store.get(&version_path(&account, "web", "v_1")).await.unwrap().unwrap().value;
    assert_eq!(before, after);
    // A version settled Available does not change even if its tag moves: immutable.
    stack.push_image("acme", "acme/web", "v1").await;
    handler.handle(&event).await.unwrap();
    let again: Value = context.store.get(&version_path(&account, "web", "v_1")).await.unwrap().unwrap().value;
    assert_eq!(again["images"][0]["digest"], digest.as_str());

    // The log holds no secret: no push key password appears.
    let logs = stack.berth.logs();
    assert!(!logs.contains("eyJ"), "a JWT-shaped secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_does_not_answer_fails_the_version_after_the_retries() {
    let dead = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let berth = berth_tests::berth::BerthServe::start(
        &dir.path().join("data"),
        &dir.path().join("berth.log"),
        0,
        &[("BERTH_REGISTRY_HOST", &dead), ("BERTH_QUEUE_MAX_ATTEMPTS", "2")],
    );
    let token = berth.dev_token("acme");
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v1/packages", berth.url))
        .bearer_auth(&token)
        .json(&package("web", "acme/web", "v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let start = std::time::Instant::now();
    let version = loop {
        let version: Value = http
            .get(format!("{}/v1/packages/web/versions/v_1", berth.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if version["status"] != "Creating" {
            break version;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still Creating: {version}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(version["status"], "Failed", "{version}");
    assert_eq!(version["images"][0]["failure"]["code"], "registry_unreachable", "{version}");
    let logs = berth.logs();
    assert!(logs.contains("registry did not answer; backing off"), "the check backed off before giving up");
}

/// Runs `berth` with the stack's URL and a token of `account`; returns (success, stdout, stderr).
fn berth_cli(stack: &Stack, account: &str, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(berth_tests::berth_bin("berth"))
        .args(args)
        .env("BERTH_URL", &stack.berth.url)
        .env("BERTH_TOKEN", stack.berth.dev_token(account))
        .output()
        .expect("run berth");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_imports_and_refuses_deleting_a_used_package() {
    let stack = Stack::start(&[]);
    stack.push_image("acme", "acme/web", "v1").await;
    let (ok, out, err) = berth_cli(
        &stack,
        "acme",
        &[
            "package",
            "create",
            "web",
            "--description",
            "the web front end",
            "--version",
            "v_1",
            "--image",
            "acme/web:v1",
            "--wait",
            "--output",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["version"]["status"], "Available", "{out}");
    let (ok, out, err) = berth_cli(&stack, "acme", &["package", "list"]);
    assert!(ok && out.contains("web\tContainerImage\tdefault"), "{out}{err}");

    let repo = stack.dir.path().join("shop/.computenest");
    std::fs::create_dir_all(repo.join("ros_templates")).unwrap();
    std::fs::write(
        repo.join("config.yaml"),
        "Service:\n  DeployMetadata:\n    SupplierDeployMetadata:\n      AcrImageArtifactRelation:\n        '{{ computenest::acrimage::web }}':\n          ArtifactId: web\n          ArtifactVersion: 1\n    TemplateConfigs:\n      - Name: ECS\n        Url: ros_templates/template.yaml\n",
    )
    .unwrap();
    std::fs::write(repo.join("ros_templates/template.yaml"), "image: {{ computenest::acrimage::web }}\n").unwrap();
    let config = repo.join("config.yaml");
    let (ok, out, err) = berth_cli(&stack, "acme", &["service", "import", config.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("service shop: 1 template(s)"), "{out}");
    let (ok, _, err) = berth_cli(&stack, "acme", &["package", "delete", "web"]);
    assert!(!ok && err.contains("in_use") && err.contains("shop"), "{err}");
    let (ok, _, err) = berth_cli(
        &stack,
        "acme",
        &[
            "package",
            "create",
            "bad-name",
            "--description",
            "the web front end",
            "--version",
            "v_1",
            "--image",
            "acme/web:v1",
        ],
    );
    assert!(!ok && err.contains("(name)"), "the problem names its field: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_images_signed_by_an_active_key_become_available_and_stay_trusted_until_revoked() {
    use berth_tests::signing::{ImageKey, payload};
    let stack = Stack::start(&[]);
    let host = stack.registry.host.clone();
    let (ours, theirs) = (ImageKey::generate(), ImageKey::generate());
    let pem = stack.dir.path().join("cosign.pub");
    std::fs::write(&pem, ours.public_pem()).unwrap();
    let (ok, out, err) = berth_cli(&stack, "acme", &["signing-key", "add", pem.to_str().unwrap(), "--output", "json"]);
    assert!(ok, "{err}");
    let key_id = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_owned();
    let (ok, out, err) = berth_cli(&stack, "acme", &["signing-key", "require", "on"]);
    assert!(ok && out.contains("true"), "{out}{err}");
    // A key of the account revoked before its signature is checked.
    let retired = ImageKey::generate();
    let (status, key) =
        stack.call("acme", "POST", "/v1/signing-keys", Some(json!({ "public_key": retired.public_pem() }))).await;
    assert_eq!(status, 201, "{key}");
    let retired_id = key["id"].as_str().unwrap().to_owned();
    let (status, _) = stack.call("acme", "DELETE", &format!("/v1/signing-keys/{retired_id}"), None).await;
    assert_eq!(status, 200);
    // Another account's key, registered there: no use here.
    let (status, _) =
        stack.call("other", "POST", "/v1/signing-keys", Some(json!({ "public_key": theirs.public_pem() }))).await;
    assert_eq!(status, 201);

    // One image per case, each signed (or not) as the case says, then published.
    let mut cases: Vec<(String, &str)> = Vec::new();
    for tag in ["signed", "unsigned", "other_key", "other_digest", "tampered", "other_repo", "retired_key"] {
        stack.push_image("acme", "acme/web", tag).await;
        let digest = stack.registry_digest("acme", "acme/web", tag).await;
        let reference = format!("{host}/acme/web:{tag}");
        let signatures = match tag {
            "signed" => vec![(payload(&digest, &reference), ours.sign(&payload(&digest, &reference)))],
            "other_key" => vec![(payload(&digest, &reference), theirs.sign(&payload(&digest, &reference)))],
            // A good signature of another image, moved under this digest's tag.
            "other_digest" => {
                let (signed, _) = &cases[0];
                let moved = payload(signed, &format!("{host}/acme/web:signed"));
                vec![(moved.clone(), ours.sign(&moved))]
            }
            "tampered" => {
                let signature = ours.sign(&payload(&digest, &reference));
                vec![(payload(&digest, &format!("{host}/acme/web:tampered2")), signature)]
            }
            "other_repo" => {
                let elsewhere = payload(&digest, &format!("{host}/acme/api:{tag}"));
                vec![(elsewhere.clone(), ours.sign(&elsewhere))]
            }
            "retired_key" => vec![(payload(&digest, &reference), retired.sign(&payload(&digest, &reference)))],
            _ => Vec::new(),
        };
        if !signatures.is_empty() {
            stack.push_signatures("acme", "acme/web", &digest, &signatures).await;
        }
        cases.push((digest, tag));
    }
    let (status, body) = stack.call("acme", "POST", "/v1/packages", Some(package("web", "acme/web", "signed"))).await;
    assert_eq!(status, 201, "{body}");
    for (_, tag) in &cases[1..] {
        let body = json!({ "name": format!("v_{tag}"), "images": [{ "repository": "acme/web", "tag": tag }] });
        assert_eq!(stack.call("acme", "POST", "/v1/packages/web/versions", Some(body)).await.0, 201);
    }
    let signed = stack.settled_version("acme", "web", "v_1", Duration::from_secs(30)).await;
    assert_eq!(signed["status"], "Available", "{signed}");
    assert_eq!(signed["images"][0]["signed_by"], key_id.as_str());
    for (tag, code) in [
        ("unsigned", "signature_missing"),
        ("other_key", "signature_untrusted"),
        ("other_digest", "signature_digest_mismatch"),
        ("tampered", "signature_untrusted"),
        ("other_repo", "signature_identity_mismatch"),
        ("retired_key", "signature_key_revoked"),
    ] {
        let version = stack.settled_version("acme", "web", &format!("v_{tag}"), Duration::from_secs(30)).await;
        assert_eq!(version["status"], "Failed", "{tag}: {version}");
        assert_eq!(version["images"][0]["failure"]["code"], code, "{tag}: {version}");
        assert_eq!(version["reason"], format!("acme/web:{tag}: {code}"));
    }
    let moved = stack.settled_version("acme", "web", "v_other_digest", Duration::from_secs(30)).await;
    let message = moved["images"][0]["failure"]["message"].as_str().unwrap();
    assert!(message.contains(&key_id) && message.contains(&cases[0].0), "names the key and the digest: {message}");

    // Everything downstream of the signed version: a service, an instance, a deployment.
    let service = json!({
        "templates": { "app.yaml": "image: {{ computenest::acrimage::web }}\n" },
        "relations": { "{{ computenest::acrimage::web }}": { "package": "web", "version": { "number": 1 } } },
    });
    let (status, body) = stack.call("acme", "PUT", "/v1/services/shop", Some(service)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack.call("acme", "POST", "/v1/services/shop/render", Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stack.call("acme", "POST", "/v1/applications", Some(json!({ "name": "app" }))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        stack.call("acme", "POST", "/v1/applications/app/groups", Some(json!({ "name": "hosts" }))).await;
    assert_eq!(status, 201, "{body}");
    let registered = stack
        .http
        .post(format!("{}/v1/agent/register", stack.berth.url))
        .bearer_auth(body["join_token"].as_str().unwrap())
        .json(&json!({ "host": "h1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let deployment = json!({
        "name": "web", "image": { "package": "web", "version": "v_1" }, "working_directory": "/tmp",
        "start_script": "true", "stop_script": "true",
    });
    let (status, body) = stack.call("acme", "POST", "/v1/applications/app/deployments", Some(deployment)).await;
    assert_eq!(status, 201, "{body}");
    let release = json!({ "application": "app", "group": "hosts", "deployment": "web" });
    let (status, body) = stack.call("acme", "POST", "/v1/releases?dry_run=true", Some(release.clone())).await;
    assert_eq!(status, 200, "a trusted digest plans: {body}");

    // The key is revoked: every door refuses the digest it signed, naming the key.
    let (ok, _, err) = berth_cli(&stack, "acme", &["signing-key", "revoke", &key_id]);
    assert!(ok, "{err}");
    let version = stack.settled_version("acme", "web", "v_1", Duration::from_secs(1)).await;
    assert_eq!(version["status"], "Available", "the version is kept: {version}");
    assert!(version["untrusted"].as_str().unwrap().contains(&key_id), "{version}");
    let refusals = [
        ("POST", "/v1/services/shop/render", json!({})),
        ("POST", "/v1/services/shop/instances", json!({ "name": "cust_a" })),
        ("POST", "/v1/releases", release),
    ];
    for (method, path, body) in refusals {
        let (status, problem) = stack.call("acme", method, path, Some(body)).await;
        assert_eq!(status, 409, "{path}: {problem}");
        assert_eq!(problem["code"], "signing_key_revoked", "{path}: {problem}");
        assert!(problem["detail"].as_str().unwrap_or_default().contains(&key_id), "{path} names the key: {problem}");
    }
}

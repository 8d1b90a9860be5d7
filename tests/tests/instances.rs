//! Service instances against the real stack: `berth serve` as the token server of the Debian
//! `docker-registry`. An instance credential pulls with skopeo until its instance is suspended,
//! deleted or the credential rotated; the `docker` CLI pulls through `docker-credential-berth`,
//! which hands the registry only fresh temporary keys; a render for an instance writes a
//! Secret that keeps pulling after the render's own keys have expired; the same binary answers
//! the kubelet's credential provider protocol.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_tests::berth_bin;
use berth_tests::registry::skopeo;
use berth_tests::stack::Stack;
use serde_json::{Value, json};

/// A stack whose pull counts are written at most once a second (instead of once a minute).
fn stack() -> Stack {
    Stack::start(&[("BERTH_PULL_FLUSH_SECONDS", "1")])
}

/// Publishes `repository:tag` as version `version` of `package` (created if `first`).
async fn publish(stack: &Stack, package: &str, repository: &str, version: &str, tag: &str, first: bool) -> Value {
    stack.push_image("acme", repository, tag).await;
    let spec = json!({ "name": version, "images": [{ "repository": repository, "tag": tag }] });
    let (status, created) = if first {
        let body = json!({
            "name": package, "description": "published for the instance test", "type": "ContainerImage", "version": spec
        });
        stack.call("acme", "POST", "/v1/packages", Some(body)).await
    } else {
        stack.call("acme", "POST", &format!("/v1/packages/{package}/versions"), Some(spec)).await
    };
    assert_eq!(status, 201, "{created}");
    let settled = stack.settled_version("acme", package, version, Duration::from_secs(30)).await;
    assert_eq!(settled["status"], "Available", "{settled}");
    settled
}

const TEMPLATE: &str = "secret: {{ computenest::acr::dockerconfigjson }}\nimage: {{ computenest::acrimage::web }}\n";

/// Publishes `web` (acme/web:v1) and `other` (acme/other:v1), and a service `shop` using `web`.
async fn shop(stack: &Stack) {
    publish(stack, "web", "acme/web", "v_1", "v1", true).await;
    publish(stack, "other", "acme/other", "v_1", "v1", true).await;
    let service = json!({
        "templates": { "app.yaml": TEMPLATE },
        "relations": { "{{ computenest::acrimage::web }}": { "package": "web", "version": "latest" } },
    });
    let (status, body) = stack.call("acme", "PUT", "/v1/services/shop", Some(service)).await;
    assert_eq!(status, 201, "{body}");
}

fn creds(credential: &Value) -> String {
    format!("{}:{}", credential["username"].as_str().unwrap(), credential["password"].as_str().unwrap())
}

/// `skopeo inspect` of `reference` with `creds`.
fn inspect(stack: &Stack, creds: &str, reference: &str) -> (bool, String) {
    let target = format!("docker://{}/{reference}", stack.registry.host);
    skopeo(&["inspect", "--raw", "--tls-verify=false", "--creds", creds, &target])
}

/// The token endpoint's status for a pull of `repository` with `creds`, as the registry's
/// clients ask for it.
async fn token_status(stack: &Stack, creds: &str, repository: &str) -> u16 {
    let (username, password) = creds.split_once(':').unwrap();
    let scope = format!("repository:{repository}:pull");
    let response = stack
        .http
        .get(format!("{}/v1/registry/token", stack.berth.url))
        .basic_auth(username, Some(password))
        .query(&[("service", berth_tests::registry::SERVICE), ("scope", scope.as_str())])
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// Creds pull `acme/web` (skopeo and the token endpoint agree).
async fn assert_pulls(stack: &Stack, creds: &str, what: &str) {
    let (ok, err) = inspect(stack, creds, "acme/web:v1");
    assert!(ok, "{what}: skopeo pulls acme/web: {err}");
    assert_eq!(token_status(stack, creds, "acme/web").await, 200, "{what}");
}

/// Creds are refused: 401 at the token endpoint, and skopeo cannot pull.
async fn assert_refused(stack: &Stack, creds: &str, what: &str) {
    assert_eq!(token_status(stack, creds, "acme/web").await, 401, "{what}: the token endpoint answers 401");
    let (ok, err) = inspect(stack, creds, "acme/web:v1");
    assert!(!ok, "{what}: skopeo must not pull");
    assert!(err.contains("401") || err.to_lowercase().contains("unauthorized"), "{what}: {err}");
}

async fn create_instance(stack: &Stack, body: Value) -> Value {
    let (status, created) = stack.call("acme", "POST", "/v1/services/shop/instances", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_credential_pulls_until_suspended_rotated_or_deleted() {
    let stack = stack();
    shop(&stack).await;
    let mut secrets = Vec::new();

    // (a) skopeo pulls with the instance credential, exactly the instance's repositories.
    let created = create_instance(&stack, json!({ "name": "cust_a" })).await;
    let credential = &created["credential"];
    assert_eq!(credential["registry"], stack.registry.host);
    assert_eq!(credential["username"], "acme+shop+cust_a");
    assert!(credential["password"].as_str().unwrap().starts_with("bic_"), "{credential}");
    assert!(credential.get("expires_at").is_none(), "no TTL: it expires only when revoked");
    assert_eq!(created["instance"]["repositories"], json!(["acme/web"]));
    assert_eq!(created["instance"]["pins"]["computenest::acrimage::web"]["version"], "v_1");
    let first = creds(credential);
    secrets.push(credential["password"].as_str().unwrap().to_owned());
    secrets.push(credential["dockerconfigjson"].as_str().unwrap().to_owned());
    assert_pulls(&stack, &first, "a new instance credential").await;
    let (ok, _) = inspect(&stack, &first, "acme/other:v1");
    assert!(!ok, "acme/other is in the namespace but not the instance's");

    // Who pulled what: aggregated, flushed within the (1 s) interval, shown on GET.
    let mut pulls = Value::Null;
    for _ in 0..50 {
        let (status, instance) = stack.call("acme", "GET", "/v1/services/shop/instances/cust_a", None).await;
        assert_eq!(status, 200, "{instance}");
        pulls = instance["pulls"].clone();
        if pulls["repositories"]["acme/web"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(pulls["repositories"]["acme/web"].as_u64().unwrap_or(0) >= 2, "{pulls}");
    assert!(pulls["last_pull_at"].is_string(), "{pulls}");
    assert!(pulls["repositories"].get("acme/other").is_none(), "nothing was granted on acme/other: {pulls}");

    // (c) suspend: refused at once; resume: accepted again.
    let (status, suspended) = stack.call("acme", "POST", "/v1/services/shop/instances/cust_a/suspend", None).await;
    assert_eq!((status, suspended["state"].as_str()), (200, Some("suspended")), "{suspended}");
    assert_refused(&stack, &first, "a suspended instance's credential").await;
    let (status, body) =
        stack.call("acme", "POST", "/v1/services/shop/render", Some(json!({ "instance": "cust_a" }))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("instance_suspended")), "{body}");
    let (status, _) = stack.call("acme", "POST", "/v1/services/shop/instances/cust_a/resume", None).await;
    assert_eq!(status, 200);
    assert_pulls(&stack, &first, "after resume").await;

    // Rotation: the old credential is refused at once, the new one works.
    let (status, rotated) = stack.call("acme", "POST", "/v1/services/shop/instances/cust_a/credentials", None).await;
    assert_eq!(status, 201, "{rotated}");
    let second = creds(&rotated["credential"]);
    secrets.push(rotated["credential"]["password"].as_str().unwrap().to_owned());
    assert_refused(&stack, &first, "a rotated-out credential").await;
    assert_pulls(&stack, &second, "the rotated credential").await;

    // Delete: refused at once; a new instance of the same name has a credential of its own.
    let (status, _) = stack.call("acme", "DELETE", "/v1/services/shop/instances/cust_a", None).await;
    assert_eq!(status, 204);
    assert_refused(&stack, &second, "a deleted instance's credential").await;
    let again = create_instance(&stack, json!({ "name": "cust_a" })).await;
    let third = creds(&again["credential"]);
    secrets.push(again["credential"]["password"].as_str().unwrap().to_owned());
    assert_refused(&stack, &second, "the old instance's credential, after re-creation").await;
    assert_pulls(&stack, &third, "the re-created instance's credential").await;
    let (_, fresh) = stack.call("acme", "GET", "/v1/services/shop/instances/cust_a", None).await;
    assert!(fresh["pulls"]["repositories"]["acme/web"].as_u64().unwrap_or(0) <= 2, "no counts inherited: {fresh}");

    // A temporary key is not an instance credential, and a made-up one is refused.
    let forged = format!("acme+shop+cust_a:bic_{}", "A".repeat(43));
    assert_eq!(token_status(&stack, &forged, "acme/web").await, 401);
    assert_eq!(token_status(&stack, "acme+shop+nobody:bic_x", "acme/web").await, 401);

    // Bad input: each a problem naming its field.
    for (body, field, code) in [
        (json!({ "name": "has-dash" }), "name", "invalid_characters"),
        (json!({ "name": "ab" }), "name", "too_short"),
        (json!({ "name": "cust_b", "credential_ttl_seconds": 5 }), "credential_ttl_seconds", "out_of_range"),
        (json!({ "name": "cust_b", "extra": 1 }), "extra", "invalid_field"),
    ] {
        let (status, problem) = stack.call("acme", "POST", "/v1/services/shop/instances", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
        if code != "too_short" {
            assert_eq!(problem["code"], code, "{body}: {problem}");
        }
    }
    let (status, problem) =
        stack.call("acme", "POST", "/v1/services/shop/instances", Some(json!({ "name": "cust_a" }))).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("already_exists")), "{problem}");
    let (status, _) =
        stack.call("acme", "POST", "/v1/services/nope/instances", Some(json!({ "name": "cust_a" }))).await;
    assert_eq!(status, 404);
    let (status, _) = stack.call("bravo", "GET", "/v1/services/shop/instances/cust_a", None).await;
    assert_eq!(status, 404, "another account sees nothing");
    let (status, problem) = stack.call("acme", "GET", "/v1/services/shop/instances?page_size=0", None).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("page_size")), "{problem}");

    // The credential appears in no listing, no GET and no log line.
    create_instance(&stack, json!({ "name": "cust_b", "credential_ttl_seconds": 3600 })).await;
    let (status, page) = stack.call("acme", "GET", "/v1/services/shop/instances?page_size=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (page["instances"][0]["name"].as_str(), page["next_page_token"].as_str()),
        (Some("cust_a"), Some("cust_a"))
    );
    let (_, rest) = stack.call("acme", "GET", "/v1/services/shop/instances?page_token=cust_a", None).await;
    assert_eq!(rest["instances"][0]["name"], "cust_b", "{rest}");
    let (_, one) = stack.call("acme", "GET", "/v1/services/shop/instances/cust_a", None).await;
    let shown = format!("{page}{rest}{one}");
    let logs = stack.berth.logs();
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "a credential in an answer");
        assert!(!logs.contains(secret.as_str()), "a credential in the logs");
    }
    assert!(!shown.contains("sha256\""), "no digests shown: {shown}");
    let store = std::fs::read_to_string(stack.berth.data.join("store/accounts/acme/instances/shop/cust_a.json"))
        .expect("the instance document");
    assert!(!store.contains(&third[third.find(':').unwrap() + 1..]), "stored only hashed");
}

/// Runs `docker-credential-berth` with `args`, `stdin` and `env`; returns (success, stdout, stderr).
fn helper(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(berth_bin("docker-credential-berth"));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for name in ["BERTH_INSTANCE_USERNAME", "BERTH_INSTANCE_PASSWORD", "BERTH_URL", "BERTH_CREDENTIALS_FILE"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("docker-credential-berth");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `docker pull` (then `docker rmi`) with `config` as DOCKER_CONFIG and the helper on PATH.
fn docker_pull(config: &Path, image: &str, env: &[(&str, &str)]) -> (bool, String) {
    let helper_dir = berth_bin("docker-credential-berth").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", helper_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("docker")
        .args(["pull", "--quiet", image])
        .env("DOCKER_CONFIG", config)
        .env("PATH", &path)
        .envs(env.iter().copied())
        .output()
        .expect("the docker CLI");
    let _ = Command::new("docker").args(["rmi", "--force", image]).output();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

fn log_lines(logs: &str, message: &str) -> Vec<Value> {
    logs.lines().filter(|l| l.contains(message)).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A field of a JSON log line, wherever the formatter put it.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line.get(name).or_else(|| line["fields"].get(name)).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pulls_through_the_credential_helper_with_fresh_temporary_keys() {
    let stack = stack();
    shop(&stack).await;
    let created = create_instance(&stack, json!({ "name": "cust_d" })).await;
    let credential = &created["credential"];
    let password = credential["password"].as_str().unwrap().to_owned();
    let host = stack.registry.host.clone();

    // The helper keeps the instance credential (stored by the protocol's `store`).
    let file = stack.dir.path().join("helper/credentials.json");
    let file_text = file.display().to_string();
    let env = [("BERTH_URL", stack.berth.url.as_str()), ("BERTH_CREDENTIALS_FILE", file_text.as_str())];
    let stored = json!({ "ServerURL": host, "Username": credential["username"], "Secret": password }).to_string();
    let (ok, _, err) = helper(&["store"], &stored, &env);
    assert!(ok, "store: {err}");
    let (ok, listed, _) = helper(&["list"], "", &env);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap(), json!({ host.clone(): "acme+shop+cust_d" }));
    let (ok, got, err) = helper(&["get"], &host, &env);
    assert!(ok, "get: {err}");
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["ServerURL"], host);
    let key = got["Secret"].as_str().unwrap();
    assert!(key.starts_with("eyJ") && !key.starts_with("bic_"), "a temporary key, not the instance credential");
    assert_ne!(key, password);
    let (ok, out, _) = helper(&["get"], "127.0.0.1:1", &env);
    assert!(!ok && out.trim() == "credentials not found in native keychain", "{out}");

    // (b) docker pulls through the helper configured in credHelpers.
    let config = stack.dir.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.json"), json!({ "credHelpers": { host.clone(): "berth" } }).to_string())
        .unwrap();
    let before = stack.berth.logs().len();
    let image = format!("{host}/acme/web:v1");
    // The docker CLI runs the helper with its own environment: the helper's settings go with it.
    let (ok, out) = docker_pull(&config, &image, &env);
    assert!(ok, "docker pull through docker-credential-berth: {out}");

    // What the token endpoint saw: temporary keys exchanged for the instance, never the
    // instance credential itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = stack.berth.logs();
    let during = &logs[before..];
    let tokens = log_lines(during, "registry token issued");
    assert!(!tokens.is_empty(), "the registry asked Berth for tokens:\n{during}");
    for line in &tokens {
        assert_eq!(field(line, "kind"), Some("temporary_key"), "{line}");
        assert_eq!(field(line, "instance"), Some("cust_d"), "a key bound to the instance: {line}");
    }
    assert!(!log_lines(during, "temporary key exchanged").is_empty(), "the helper exchanged:\n{during}");
    assert!(!logs.contains(&password), "the instance credential is never logged");
    assert!(!logs.contains(key), "nor the temporary key");

    // A suspended instance: the helper's exchange is refused, and so is a key it exchanged before.
    let (status, _) = stack.call("acme", "POST", "/v1/services/shop/instances/cust_d/suspend", None).await;
    assert_eq!(status, 200);
    let (ok, _, err) = helper(&["get"], &host, &env);
    assert!(!ok && err.contains("401") && !err.contains(&password), "{err}");
    assert_eq!(token_status(&stack, &format!("acme:{key}"), "acme/web").await, 401, "the exchanged key dies with it");
    let (ok, out) = docker_pull(&config, &image, &env);
    assert!(!ok, "docker pulls nothing for a suspended instance: {out}");
    let (ok, _, _) = helper(&["erase"], &host, &env);
    assert!(ok);
    let (_, listed, _) = helper(&["list"], "", &env);
    assert_eq!(listed.trim(), "{}");
}

/// A Go duration string, as `time.ParseDuration` reads it.
fn is_go_duration(text: &str) -> bool {
    regex::Regex::new(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$").unwrap().is_match(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_provider_answers_with_a_pull_key_for_the_instance() {
    let stack = stack();
    shop(&stack).await;
    let created = create_instance(&stack, json!({ "name": "cust_k" })).await;
    let credential = &created["credential"];
    let host = stack.registry.host.clone();
    let env = [
        ("BERTH_URL", stack.berth.url.as_str()),
        ("BERTH_INSTANCE_USERNAME", credential["username"].as_str().unwrap()),
        ("BERTH_INSTANCE_PASSWORD", credential["password"].as_str().unwrap()),
    ];
    let request = json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": format!("{host}/acme/web:v1"),
    })
    .to_string();
    // As configured with `args: [kubelet]`, and with no argument at all.
    for args in [&["kubelet"][..], &[][..]] {
        let (ok, out, err) = helper(args, &request, &env);
        assert!(ok, "{args:?}: {err}");
        let response: Value = serde_json::from_str(&out).expect("one JSON document");
        // Upstream's CredentialProviderResponse (credentialprovider.kubelet.k8s.io/v1): exactly
        // these fields, with these types.
        let object = response.as_object().unwrap();
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["apiVersion", "auth", "cacheDuration", "cacheKeyType", "kind"], "{response}");
        assert_eq!(response["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
        assert_eq!(response["kind"], "CredentialProviderResponse");
        assert!(["Image", "Registry", "Global"].contains(&response["cacheKeyType"].as_str().unwrap()), "{response}");
        assert!(is_go_duration(response["cacheDuration"].as_str().unwrap()), "{response}");
        let auth = response["auth"].as_object().unwrap();
        assert_eq!(auth.keys().collect::<Vec<_>>(), [&host], "keyed by the registry (a matchImages pattern)");
        let entry = auth[&host].as_object().unwrap();
        assert_eq!(entry.keys().map(String::as_str).collect::<Vec<_>>(), ["password", "username"]);
        let (username, password) = (entry["username"].as_str().unwrap(), entry["password"].as_str().unwrap());
        assert!(!password.starts_with("bic_"), "the kubelet gets a temporary key");
        // The answer pulls.
        let (ok, err) = inspect(&stack, &format!("{username}:{password}"), "acme/web:v1");
        assert!(ok, "the kubelet's credentials pull: {err}");
    }
    // An image of another registry, or a request of another kind: a failure, no credential.
    let other = request.replace(&host, "registry.example.com");
    let (ok, _, _) = helper(&["kubelet"], &other, &[("BERTH_URL", stack.berth.url.as_str())]);
    assert!(!ok, "nothing stored for registry.example.com");
    let (ok, _, err) = helper(&["kubelet"], &request.replace("CredentialProviderRequest", "Pod"), &env);
    assert!(!ok && err.contains("CredentialProviderRequest"), "{err}");

    // `berth instance`: list, rotate (the kubelet's credential is then refused), suspend.
    let token = stack.berth.dev_token("acme");
    let berth = |args: &[&str]| {
        let output = Command::new(berth_bin("berth"))
            .args(args)
            .env("BERTH_URL", &stack.berth.url)
            .env("BERTH_TOKEN", &token)
            .output()
            .expect("berth");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (ok, out) = berth(&["instance", "list", "--service", "shop"]);
    assert!(ok && out.contains("cust_k (active)"), "{out}");
    assert!(!out.contains("bic_"), "{out}");
    let (ok, out) = berth(&["instance", "rotate", "--service", "shop", "cust_k", "--output", "json"]);
    assert!(ok, "{out}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert!(rotated["credential"]["password"].as_str().unwrap().starts_with("bic_"));
    let (ok, _, err) = helper(&["kubelet"], &request, &env);
    assert!(!ok && err.contains("401"), "the rotated-out credential: {err}");
    let (ok, out) = berth(&["instance", "suspend", "--service", "shop", "cust_k"]);
    assert!(ok && out.contains("cust_k (suspended)"), "{out}");
    let (ok, out) = berth(&["instance", "get", "--service", "shop", "cust_k"]);
    assert!(ok && out.contains("pulled acme/web"), "{out}");
}

/// The dockerconfigjson of a rendered `secret:` line, as a docker auth file.
fn secret_auth_file(dir: &Path, name: &str, rendered: &str) -> String {
    let line = rendered.lines().find_map(|l| l.strip_prefix("secret: ")).expect("the secret line");
    let decoded = STANDARD.decode(line.trim()).expect("base64 dockerconfigjson");
    let path = dir.join(name);
    std::fs::write(&path, decoded).unwrap();
    path.display().to_string()
}

fn pull_with(stack: &Stack, authfile: &str, reference: &str, into: &str) -> (bool, String) {
    let destination = format!("oci:{}:pulled", stack.dir.path().join(into).display());
    let source = format!("docker://{}/{reference}", stack.registry.host);
    skopeo(&["copy", "--src-tls-verify=false", "--authfile", authfile, &source, &destination])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_for_an_instance_keeps_pulling_after_its_own_keys_expire() {
    let stack = stack();
    shop(&stack).await;
    create_instance(&stack, json!({ "name": "cust_r" })).await;
    // The service moves on to v_2 after the instance was created; the instance stays pinned.
    publish(&stack, "web", "acme/web", "v_2", "v2", false).await;

    let render = |instance: Option<&str>| {
        let mut body = json!({ "credential_ttl_seconds": 60 });
        if let Some(name) = instance {
            body["instance"] = json!(name);
        }
        body
    };
    let (status, plain) = stack.call("acme", "POST", "/v1/services/shop/render", Some(render(None))).await;
    assert_eq!(status, 200, "{plain}");
    let (status, pinned) = stack.call("acme", "POST", "/v1/services/shop/render", Some(render(Some("cust_r")))).await;
    assert_eq!(status, 200, "{pinned}");
    let host = &stack.registry.host;
    let (plain_text, pinned_text) = (plain["rendered"].as_str().unwrap(), pinned["rendered"].as_str().unwrap());
    assert!(plain_text.contains(&format!("image: {host}/acme/web:v2")), "{plain_text}");
    assert!(
        pinned_text.contains(&format!("image: {host}/acme/web:v1")),
        "the instance's pinned version: {pinned_text}"
    );
    assert_eq!(pinned["pull_key"]["username"], "acme+shop+cust_r", "{pinned}");
    assert!(pinned["pull_key"].get("expires_at").is_none(), "{pinned}");
    assert_eq!(pinned["pull_key"]["repositories"], json!(["acme/web"]), "{pinned}");
    let expires = plain["pull_key"]["expires_at"].as_str().unwrap().to_owned();

    let dir = stack.dir.path();
    let plain_auth = secret_auth_file(dir, "plain.json", plain_text);
    let pinned_auth = secret_auth_file(dir, "pinned.json", pinned_text);
    let (ok, err) = pull_with(&stack, &pinned_auth, "acme/web:v1", "pinned-now");
    assert!(ok, "the instance Secret pulls: {err}");

    // Past the render's own key's expiry (60 s): its Secret is dead, the instance's pulls.
    tokio::time::sleep(Duration::from_secs(62)).await;
    let now = berth_shared::platform::clock::rfc3339(berth_shared::platform::clock::unix_now());
    assert!(now > expires, "the render's key ({expires}) has expired ({now})");
    let (ok, _) = pull_with(&stack, &plain_auth, "acme/web:v2", "plain-later");
    assert!(!ok, "the temporary key's Secret no longer pulls");
    let (ok, err) = pull_with(&stack, &pinned_auth, "acme/web:v1", "pinned-later");
    assert!(ok, "the instance Secret still pulls after the render's keys expired: {err}");
    let (ok, _) = pull_with(&stack, &pinned_auth, "acme/other:v1", "other");
    assert!(!ok, "and only the instance's repositories");
}

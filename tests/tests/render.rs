//! Rendering against the real stack: `berth serve` with the Debian `docker-registry`, images
//! pushed with skopeo and published through the packages API, then the seed's two sample
//! templates rendered. The ACK Secret's dockerconfigjson, written as an auth file, lets skopeo
//! pull the associated image and nothing else; the ECS script's `docker login` line logs in.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_tests::registry::skopeo;
use berth_tests::stack::Stack;
use serde_json::{Value, json};

const SEED: &str = "../../shared/seeds/000_4d977b4e6aa6941a.txt";
const CORPUS: &str = "../../shared/corpus/ros";

fn seed() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED)).expect("the seed document")
}

/// Lines of the seed from the one starting with `first` (trimmed) up to, not including, the
/// first one starting with `stop`, with `indent` spaces removed.
fn seed_block(first: &str, stop: &str, indent: usize) -> String {
    let text = seed();
    let mut lines = text.lines().skip_while(|l| l.trim() != first);
    let mut out = String::new();
    for line in lines.by_ref() {
        if line.starts_with(stop) {
            break;
        }
        out.push_str(line.get(indent..).unwrap_or("").trim_end_matches('\r'));
        out.push('\n');
    }
    assert!(out.lines().count() > 10, "seed block starting at {first:?} not found");
    out
}

/// The seed's ACK sample: a Secret with `{{computenest::acr::dockerconfigjson}}` and a
/// Deployment with `{{ computenest::acrimage::nginx }}`.
fn ack_sample() -> String {
    seed_block("Resources:", "Create and use", 0)
}

/// The seed's ECS sample: a ROS template whose shell script decodes the dockerconfigjson and
/// runs `docker login`, then writes a compose file with `{{computenest::acrimage::nginx}}`.
fn ecs_sample() -> String {
    seed_block("ROSTemplateFormatVersion: '2015-09-01'", "  5. In the Deployment", 4)
}

async fn publish(stack: &Stack, package: &str, repository: &str) -> Value {
    stack.push_image("acme", repository, "v1").await;
    let body = json!({
        "name": package, "description": "published for the render test", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": repository, "tag": "v1" }] }
    });
    let (status, created) = stack.call("acme", "POST", "/v1/packages", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let version = stack.settled_version("acme", package, "v_1", Duration::from_secs(30)).await;
    assert_eq!(version["status"], "Available", "{version}");
    version
}

/// Writes a docker auth file from a base64 dockerconfigjson.
fn auth_file(dir: &Path, name: &str, encoded: &str) -> String {
    let decoded = STANDARD.decode(encoded.trim()).expect("base64 dockerconfigjson");
    let _: Value = serde_json::from_slice(&decoded).expect("a JSON docker config");
    let path = dir.join(name);
    std::fs::write(&path, decoded).unwrap();
    path.display().to_string()
}

/// Copies `reference` from the registry into an OCI layout at `into`, authenticating with `authfile`.
fn pull(authfile: &str, reference: &str, into: &Path) -> (bool, String) {
    let destination = format!("oci:{}:pulled", into.display());
    skopeo(&["copy", "--src-tls-verify=false", "--authfile", authfile, &format!("docker://{reference}"), &destination])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_samples_render_into_working_credentials() {
    let stack = Stack::start(&[]);
    let version = publish(&stack, "nginx", "acme/nginx").await;
    let digest = version["images"][0]["digest"].as_str().unwrap().to_owned();
    publish(&stack, "other", "acme/other").await;
    let host = stack.registry.host.clone();

    // The service: both seed samples, with nginx associated (and `other`, which neither uses).
    let service = json!({
        "templates": { "ACK": ack_sample(), "ECS": ecs_sample() },
        "relations": {
            "{{ computenest::acrimage::nginx }}": { "package": "nginx", "version": "latest" },
            "computenest::acrimage::other": { "package": "other", "version": { "number": 1 } },
        }
    });
    let (status, body) = stack.call("acme", "PUT", "/v1/services/shop", Some(service)).await;
    assert!(status == 200 || status == 201, "{body}");

    // ACK: the Secret's dockerconfigjson pulls the associated image, and only that.
    let (status, answer) = stack
        .call(
            "acme",
            "POST",
            "/v1/services/shop/render",
            Some(json!({ "template": "ACK", "credential_ttl_seconds": 300 })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let rendered = answer["rendered"].as_str().unwrap();
    let documents: Vec<Value> = {
        let root: yaml_serde::Value = yaml_serde::from_str(rendered).expect("the rendered template is YAML");
        let content = root["Resources"]["ClusterApplication"]["Properties"]["YamlContent"].as_str().unwrap().to_owned();
        content
            .split("\n---\n")
            .map(|doc| serde_json::to_value(yaml_serde::from_str::<yaml_serde::Value>(doc).unwrap()).unwrap())
            .collect()
    };
    let image = documents[1]["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
    assert_eq!(image, format!("{host}/acme/nginx:v1"));
    let secret = documents[0]["data"][".dockerconfigjson"].as_str().unwrap();
    let authfile = auth_file(stack.dir.path(), "ack-auth.json", secret);
    let (ok, err) = pull(&authfile, image, &stack.dir.path().join("pulled-ack"));
    assert!(ok, "skopeo pulls {image} with the rendered Secret: {err}");
    let (ok, _) = pull(&authfile, &format!("{host}/acme/other:v1"), &stack.dir.path().join("pulled-other"));
    assert!(!ok, "the rendered key must not reach acme/other, which the template does not reference");
    assert_eq!(answer["pull_key"]["repositories"], json!(["acme/nginx"]));

    // Pinned: the digest the registry reported, and it pulls too.
    let (status, pinned) = stack
        .call("acme", "POST", "/v1/services/shop/render", Some(json!({ "template": "ACK", "pin_digests": true })))
        .await;
    assert_eq!(status, 200, "{pinned}");
    let pinned_ref = format!("{host}/acme/nginx@{digest}");
    assert!(pinned["rendered"].as_str().unwrap().contains(&format!("image: {pinned_ref}\n")));
    let (ok, err) = pull(&authfile, &pinned_ref, &stack.dir.path().join("pulled-pinned"));
    assert!(ok, "pull by digest: {err}");

    // The template itself, as `Accept: application/yaml` asks: sent from the template's own
    // bytes with an exact Content-Length, never cached, and its Secret's key pulls too.
    let response = stack
        .http
        .post(format!("{}/v1/services/shop/render", stack.berth.url))
        .bearer_auth(stack.berth.dev_token("acme"))
        .header("accept", "application/yaml")
        .json(&json!({ "template": "ACK" }))
        .send()
        .await
        .expect("Berth answers");
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("application/yaml"));
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(header("berth-substitutions").as_deref(), Some("2"));
    assert!(header("berth-pull-key-expires-at").is_some() && header("berth-pull-key-username").is_some());
    let length: usize = header("content-length").expect("an exact length").parse().unwrap();
    let raw = response.text().await.unwrap();
    assert_eq!(raw.len(), length);
    let key = raw.lines().find_map(|l| l.trim().strip_prefix(".dockerconfigjson: ")).expect("the Secret's key");
    assert_eq!(raw, rendered.replace(secret, key), "the same template as the JSON answer's, its own key aside");
    let authfile = auth_file(stack.dir.path(), "raw-auth.json", key);
    let (ok, err) = pull(&authfile, image, &stack.dir.path().join("pulled-raw"));
    assert!(ok, "skopeo pulls {image} with the raw answer's Secret: {err}");

    // ECS: the script's own lines decode the key and `docker login` with it.
    let (status, answer) =
        stack.call("acme", "POST", "/v1/services/shop/render", Some(json!({ "template": "ECS" }))).await;
    assert_eq!(status, 200, "{answer}");
    let rendered = answer["rendered"].as_str().unwrap();
    assert!(rendered.contains(&format!("    image: {host}/acme/nginx:v1\n")), "compose file image");
    let script: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("dockerJson="))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(script.len(), 7, "{script:?}");
    assert!(script[6].starts_with("docker login $host"), "{script:?}");
    let docker_config = stack.dir.path().join("ecs-docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let output = Command::new("bash")
        .args(["-euc", &script.join("\n")])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .expect("bash");
    assert!(output.status.success(), "the ECS login lines: {}", String::from_utf8_lossy(&output.stderr));
    let config: Value = serde_json::from_slice(&std::fs::read(docker_config.join("config.json")).unwrap()).unwrap();
    assert!(config["auths"][&host].is_object(), "docker login stored {host}: {config}");
    let authfile = docker_config.join("config.json").display().to_string();
    let (ok, err) = pull(&authfile, &format!("{host}/acme/nginx:v1"), &stack.dir.path().join("pulled-ecs"));
    assert!(ok, "pull with the credentials docker login stored: {err}");

    // Nothing secret reached the logs: no password, no dockerconfigjson, no rendered key.
    let logs = stack.berth.logs();
    assert!(logs.contains("template rendered"), "renders are logged");
    let ack_config: Value = serde_json::from_slice(&STANDARD.decode(secret).unwrap()).unwrap();
    let password = ack_config["auths"][&host]["password"].as_str().unwrap();
    for leaked in [secret, password] {
        assert!(!logs.contains(leaked), "a secret reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_template_renders_with_its_config_yaml_and_errors_carry_positions() {
    let stack = Stack::start(&[]);
    publish(&stack, "nginx_pkg", "acme/nginx").await;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let config = std::fs::read_to_string(
        corpus.join("aliyun-computenest__quickstart-docker-compose__.computenest__config.yaml"),
    )
    .unwrap();
    let template = std::fs::read(
        corpus.join("aliyun-computenest__quickstart-docker-compose__.computenest__ros_templates__template.yaml"),
    )
    .unwrap();
    // The config's AcrImageArtifactRelation names `artifact-xxx`, version 1: map it to nginx_pkg.
    let body = json!({
        "template_base64": STANDARD.encode(&template),
        "config": config,
        "artifacts": { "artifact-xxx": "nginx_pkg" },
    });
    let (status, answer) = stack.call("acme", "POST", "/v1/render", Some(body.clone())).await;
    assert_eq!(status, 200, "{answer}");
    let rendered = answer["rendered"].as_str().unwrap();
    assert!(!rendered.contains("computenest::"));
    let _: yaml_serde::Value = yaml_serde::from_str(rendered).expect("still YAML");
    assert_eq!(answer["pull_key"]["repositories"], json!(["acme/nginx"]));
    let host = &stack.registry.host;
    let expected_image = format!("{host}/acme/nginx:v1");
    assert!(rendered.contains(&expected_image));

    // A dry run lists the same substitutions and mints nothing.
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let (status, listed) = stack.call("acme", "POST", "/v1/render", Some(dry)).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed.get("rendered").is_none() && listed.get("pull_key").is_none());
    assert_eq!(listed["substitutions"], answer["substitutions"]);

    // Without the artifacts mapping the config's id is not a package: 400 naming config.
    let mut unmapped = body.clone();
    unmapped.as_object_mut().unwrap().remove("artifacts");
    let (status, problem) = stack.call("acme", "POST", "/v1/render", Some(unmapped)).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("config")), "{problem}");

    // The same template with a version still Creating and a misspelt identifier: 422, both listed.
    let body = json!({ "name": "slow", "description": "never pushed, so it fails", "type": "ContainerImage",
        "version": { "name": "v_1", "images": [{ "repository": "acme/slow", "tag": "v1" }] } });
    let (status, created) = stack.call("acme", "POST", "/v1/packages", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    stack.settled_version("acme", "slow", "v_1", Duration::from_secs(30)).await;
    let broken = "a: {{ computenest::acrimage::slow }}\nb:\n  - {{ computenest::acrimage }}\n";
    let body = json!({ "template": broken, "relations": { "computenest::acrimage::slow": { "package": "slow", "version": "latest" } } });
    let (status, problem) = stack.call("acme", "POST", "/v1/render", Some(body)).await;
    assert_eq!(status, 422, "{problem}");
    let listed: Vec<String> = problem["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}:{} {}", p["line"], p["column"], p["code"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, ["1:4 not_available", "3:5 malformed_identifier"]);
}

/// Runs the `berth` CLI against the stack as `account`.
fn berth_cli(stack: &Stack, account: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(berth_tests::berth_bin("berth"))
        .args(args)
        .env("BERTH_URL", &stack.berth.url)
        .env("BERTH_TOKEN", stack.berth.dev_token(account))
        .output()
        .expect("run berth");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_renders_services_and_files_and_lists_problems() {
    let stack = Stack::start(&[]);
    publish(&stack, "nginx", "acme/nginx").await;
    let host = stack.registry.host.clone();
    let service = json!({
        "templates": { "ACK": ack_sample() },
        "relations": { "computenest::acrimage::nginx": { "package": "nginx", "version": "latest" } },
    });
    let (status, body) = stack.call("acme", "PUT", "/v1/services/shop", Some(service)).await;
    assert!(status == 200 || status == 201, "{body}");

    // --service with -o: the file holds the rendered template, readable by its owner only.
    let out = stack.dir.path().join("rendered.yaml");
    let (ok, stdout, stderr) = berth_cli(&stack, "acme", &["render", "--service", "shop", "-o", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty(), "the template goes to the file: {stdout}");
    assert!(stderr.contains("reaches acme/nginx"), "{stderr}");
    let rendered = std::fs::read_to_string(&out).unwrap();
    assert!(rendered.contains(&format!("image: {host}/acme/nginx:v1\n")), "{rendered}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);

    // A local template with its config.yaml, dry run: substitutions listed, nothing minted.
    let dir = stack.dir.path();
    std::fs::write(dir.join("template.yaml"), ecs_sample()).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        "Service:\n  DeployMetadata:\n    SupplierDeployMetadata:\n      AcrImageArtifactRelation:\n        \
         '{{computenest::acrimage::nginx}}':\n          ArtifactId: artifact-xxx\n          ArtifactVersion: 1\n    \
         TemplateConfigs:\n      - Name: ECS\n        Url: 'ros_templates/template.yaml'\n",
    )
    .unwrap();
    let template = dir.join("template.yaml");
    let config = dir.join("config.yaml");
    let args = [
        "render",
        template.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--artifact",
        "artifact-xxx=nginx",
        "--dry-run",
    ];
    let (ok, stdout, stderr) = berth_cli(&stack, "acme", &args);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("195:25\t"), "{stdout}");
    assert!(lines[0].contains("{{ computenest::acr::dockerconfigjson }}\t<a pull key"), "{stdout}");
    assert!(lines[1].ends_with(&format!("{{{{computenest::acrimage::nginx}}}}\t{host}/acme/nginx:v1")), "{stdout}");
    assert!(stderr.contains("nothing minted"), "{stderr}");

    // The same without --dry-run goes to stdout.
    let (ok, stdout, stderr) = berth_cli(&stack, "acme", &args[..6]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("image: {host}/acme/nginx:v1")) && !stdout.contains("computenest::"));

    // Problems: every one, with its line:column, exit code 1.
    std::fs::write(
        dir.join("bad.yaml"),
        "a: {{ computenest::acrimage::nginx }}\nb: {{ computenest::acrimage::x }}\n  c: {{ computenest::nope::y }}\n",
    )
    .unwrap();
    let bad = dir.join("bad.yaml");
    let (ok, _, stderr) = berth_cli(
        &stack,
        "acme",
        &["render", bad.to_str().unwrap(), "--config", config.to_str().unwrap(), "--artifact", "artifact-xxx=nginx"],
    );
    assert!(!ok);
    assert!(stderr.contains("template_problems (template_base64)"), "{stderr}");
    assert!(stderr.contains("\n  2:4: not_associated: "), "{stderr}");
    assert!(stderr.contains("\n  3:6: unknown_kind: "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_identifier_becomes_a_url_the_host_downloads_from() {
    let stack = Stack::start(&[]);
    let body = json!({ "name": "tools", "description": "a file for the render test", "type": "File",
        "version": { "name": "f_1", "file_name": "tools.tar.gz" } });
    let (status, created) = stack.call("acme", "POST", "/v1/packages", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let token = stack.berth.dev_token("acme");
    let upload = stack
        .http
        .put(format!("{}/v1/packages/tools/versions/f_1/file", stack.berth.url))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(b"the file's bytes".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200, "{}", upload.text().await.unwrap());

    let template = "Resources:\n  Run:\n    Properties:\n      CommandContent: |\n        wget '{{ computenest::file::tools }}' -O /tmp/t.tgz\n";
    let body = json!({
        "template": template,
        "relations": { "computenest::file::tools": { "package": "tools", "version": "latest" } },
        "credential_ttl_seconds": 120,
    });
    let (status, answer) = stack.call("acme", "POST", "/v1/render", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let rendered = answer["rendered"].as_str().unwrap();
    let url = rendered.split('\'').nth(1).unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/v1/downloads/", stack.berth.url)) && url.ends_with("/tools.tar.gz"), "{url}");

    // The deployed host has no account token: the URL alone downloads the bytes.
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"tools.tar.gz\"");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"the file's bytes");
    // Another name under the same token, or a forged token, gets nothing.
    assert_eq!(reqwest::get(url.replace("/tools.tar.gz", "/other.tgz")).await.unwrap().status(), 404);
    let signed = url.split('/').rev().nth(1).unwrap();
    let tampered = format!("{}{}", &signed[..signed.len() - 2], if signed.ends_with("AA") { "BB" } else { "AA" });
    let forged = url.replace(signed, &tampered);
    assert_eq!(reqwest::get(&forged).await.unwrap().status(), 401);

    // The signed part of the URL is a credential: it is not in the logs.
    assert!(stack.berth.logs().contains("file downloaded"));
    assert!(!stack.berth.logs().contains(signed), "the download token reached the logs");
}

//! Compute Nest's own supplier API, checked by Alibaba Cloud's real clients against `berth serve`
//! and the real registry: the official SDK (`alibabacloud-computenestsupplier20210521`) through
//! every operation Berth implements (`tests/computenest/sdk_flow.py`), and the unmodified
//! `computenest-cli import` of a project with an AcrImage artifact, its image pushed by `docker`
//! with the credentials Berth handed out.

use std::path::Path;
use std::process::{Command, Output};

use berth_tests::registry::{oci_helm_chart, oci_image, skopeo};
use berth_tests::stack::Stack;
use berth_tests::{venv_bin, workspace_root};
use serde_json::{Value, json};

/// An access key of `account`: (id, secret).
async fn access_key(stack: &Stack, account: &str) -> (String, String) {
    let (status, key) = stack.call(account, "POST", "/v1/access-keys", Some(json!({ "description": "tests" }))).await;
    assert_eq!(status, 201, "access key: {key}");
    (key["access_key_id"].as_str().unwrap().to_owned(), key["access_key_secret"].as_str().unwrap().to_owned())
}

/// A command of the venv with the proxies unset (the clients would send 127.0.0.1 through them).
fn venv_command(program: &str) -> Command {
    let mut command = Command::new(venv_bin(program));
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"] {
        command.env_remove(proxy);
    }
    command.env("NO_PROXY", "*");
    command
}

fn shown(output: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts no secret of `secrets` reached Berth's logs.
fn assert_not_logged(stack: &Stack, secrets: &[&str]) {
    let logs = stack.berth.logs();
    assert!(logs.contains("Compute Nest call"), "the calls were logged");
    for secret in secrets {
        assert!(!secret.is_empty() && !logs.contains(secret), "a secret reached berth serve's log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_drives_every_operation_against_berth() {
    let stack = Stack::start(&[]);
    stack.push_image("acme", "acme/web", "v1").await;
    let chart = stack.dir.path().join("chart");
    oci_helm_chart(&chart, "0.1.0", "web");
    let (ok, err) = stack.push_layout("acme", &chart, "acme/charts/web", "0.1.0").await;
    assert!(ok, "push the chart: {err}");
    let (id, secret) = access_key(&stack, "acme").await;

    let output = venv_command("python")
        .arg(workspace_root().join("tests/computenest/sdk_flow.py"))
        .env("BERTH_URL", &stack.berth.url)
        .env("BERTH_TOKEN", stack.berth.dev_token("acme"))
        .env("CN_KEY_ID", &id)
        .env("CN_KEY_SECRET", &secret)
        .env("REGISTRY_HOST", &stack.registry.host)
        .env("ACCOUNT", "acme")
        .output()
        .expect("run the SDK flow");
    assert!(output.status.success(), "the SDK flow failed:\n{}", shown(&output));
    let facts: Value = serde_json::from_slice(output.stdout.trim_ascii()).expect("the flow's facts");

    // The push key GetArtifactRepositoryCredentials handed out pushes into the namespace.
    let layout = stack.dir.path().join("pushed");
    oci_image(&layout, "v1", "pushed with the Compute Nest key\n");
    let creds = format!("{}:{}", facts["push_username"].as_str().unwrap(), facts["push_password"].as_str().unwrap());
    let destination = format!("docker://{}/acme/pushed:v1", stack.registry.host);
    let source = format!("oci:{}:v1", layout.display());
    let (ok, err) = skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &creds, &source, &destination]);
    assert!(ok, "push with the handed-out key: {err}");

    // Berth's own API sees the same packages and service.
    let (status, web) = stack.call("acme", "GET", "/v1/packages/web_app", None).await;
    assert_eq!(status, 200, "{web}");
    let versions: Vec<(&str, &str)> = web["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(versions, [("v_2", "Available")], "version 1 was deleted through the SDK");
    assert_eq!(web["versions"][0]["label"], "good");
    let (status, service) = stack.call("acme", "GET", "/v1/services/sdk-shop", None).await;
    assert_eq!(status, 200, "{service}");
    assert_eq!(
        service["relations"]["computenest::acrimage::web"],
        json!({ "package": "web_app", "version": "latest" })
    );
    assert_eq!(
        service["relations"]["computenest::helmchart::web"],
        json!({ "package": "web_chart", "version": { "number": 1 } })
    );
    let (status, users) = stack.call("acme", "GET", "/v1/packages/web_app/services", None).await;
    assert_eq!((status, &users["services"]), (200, &json!(["sdk-shop"])));

    let secrets: Vec<&str> = facts["secrets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let mut all = secrets.clone();
    all.push(facts["push_password"].as_str().unwrap());
    assert_not_logged(&stack, &all);
}

/// A test-only `sitecustomize.py` that points the SDK's client at Berth (the CLI's endpoint is
/// fixed in computenestcli/client/computenest.py), leaving the CLI itself as installed.
const SITECUSTOMIZE: &str = r#"
import os
from alibabacloud_computenestsupplier20210521.client import Client

_init = Client.__init__


def _to_berth(self, config):
    config.endpoint = os.environ["BERTH_CN_ENDPOINT"]
    config.protocol = "http"
    _init(self, config)


Client.__init__ = _to_berth
"#;

/// The project `computenest-cli import` reads: one AcrImage artifact built by pulling
/// `source` and pushing it as `hello:v1`, and a service relating its placeholder to it.
fn project(dir: &Path, source: &str) {
    std::fs::create_dir_all(dir.join(".computenest/ros_templates")).unwrap();
    let config = format!(
        r#"Service:
  RegionId: cn-hangzhou
  DeployType: ros
  DeployMetadata:
    SupplierDeployMetadata:
      AcrImageArtifactRelation:
        '{{{{ computenest::acrimage::hello }}}}':
          ArtifactId: ${{Artifact.Artifact_1.ArtifactId}}
          ArtifactVersion: draft
    TemplateConfigs:
      - Name: hello
        Url: 'ros_templates/template.yaml'
        AllowedRegions:
          - cn-hangzhou
  ServiceType: private
  ServiceInfo:
    - Locale: zh-CN
      ShortDescription: hello, shipped through Berth
      Name: berth-hello
Artifact:
  Artifact_1:
    ArtifactType: AcrImage
    ArtifactName: hello_image
    Description: the hello image
    SupportRegionIds:
      - cn-hangzhou
    ArtifactProperty:
      RepoName: ${{AcrImageBuilder.AcrImage_1.RepoName}}
      Tag: ${{AcrImageBuilder.AcrImage_1.Tag}}
AcrImageBuilder:
  AcrImage_1:
    BuildType: DockerRepo
    DockerRepoUrl: {source}
    RepoName: hello
    Tag: v1
"#
    );
    std::fs::write(dir.join(".computenest/config.yaml"), config).unwrap();
    let template =
        "ROSTemplateFormatVersion: '2015-09-01'\nOutputs:\n  Image:\n    Value: '{{ computenest::acrimage::hello }}'\n";
    std::fs::write(dir.join(".computenest/ros_templates/template.yaml"), template).unwrap();
}

fn docker(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut command = Command::new("docker");
    command.env("DOCKER_CONFIG", config).args(args);
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("the docker CLI");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computenest_cli_import_pushes_the_image_and_defines_the_service() {
    let stack = Stack::start(&[]);
    let registry = stack.registry.host.clone();
    // The image the CLI's builder pulls, readable with a pull-only key: the push that follows
    // can only succeed with the push key GetArtifactRepositoryCredentials hands out.
    stack.push_image("acme", "acme/source", "v1").await;
    let docker_config = stack.dir.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let (status, pull) =
        stack.call("acme", "POST", "/v1/registry/credentials", Some(json!({ "purpose": "pull" }))).await;
    assert_eq!(status, 200, "{pull}");
    let login = docker(
        &docker_config,
        &["login", "--username", "acme", "--password-stdin", &registry],
        Some(pull["password"].as_str().unwrap()),
    );
    assert!(login.status.success(), "docker login with the pull key:\n{}", shown(&login));
    let source = format!("{registry}/acme/source:v1");

    let work = stack.dir.path().join("project");
    project(&work, &source);
    let site = stack.dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("sitecustomize.py"), SITECUSTOMIZE).unwrap();
    let (id, secret) = access_key(&stack, "acme").await;
    let endpoint = stack.berth.url.strip_prefix("http://").unwrap().to_owned();

    let import = |extra: &[&str]| {
        let output = venv_command("computenest-cli")
            .current_dir(&work)
            .env("PYTHONPATH", &site)
            .env("BERTH_CN_ENDPOINT", &endpoint)
            .env("DOCKER_CONFIG", &docker_config)
            .env("HOME", stack.dir.path())
            .args(["import", "--file_path"])
            .arg(work.join(".computenest/config.yaml"))
            .args(["--access_key_id", &id, "--access_key_secret", &secret])
            .args(extra)
            .output()
            .expect("run computenest-cli");
        assert!(output.status.success(), "computenest-cli import {extra:?} failed:\n{}", shown(&output));
    };
    import(&[]);
    let logs = stack.berth.logs();
    for action in [
        "ListArtifacts",
        "GetArtifactRepositoryCredentials",
        "ListAcrImageRepositories",
        "CreateArtifact",
        "ListArtifactVersions",
        "ListServices",
        "CreateService",
    ] {
        assert!(logs.contains(&format!("\"action\":\"{action}\"")), "computenest-cli never called {action}");
    }

    // The image is in the provider's namespace, pushed by docker with the handed-out key.
    let (status, push) =
        stack.call("acme", "POST", "/v1/registry/credentials", Some(json!({ "purpose": "pull" }))).await;
    assert_eq!(status, 200);
    let creds = format!("acme:{}", push["password"].as_str().unwrap());
    let (ok, err) =
        skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &format!("docker://{registry}/acme/hello:v1")]);
    assert!(ok, "acme/hello:v1 was not pushed: {err}");

    // Berth lists the artifact (a draft of acme/hello:v1) and the service with its relation.
    let (status, artifact) = stack.call("acme", "GET", "/v1/packages/hello_image", None).await;
    assert_eq!(status, 200, "{artifact}");
    assert_eq!(artifact["package"]["type"], "ContainerImage");
    let draft = &artifact["versions"][0];
    assert_eq!((draft["version"].as_str(), draft["status"].as_str()), (Some("draft"), Some("Draft")), "{artifact}");
    assert_eq!(draft["images"][0]["repository"], "acme/hello");
    assert_eq!(draft["images"][0]["tag"], "v1");
    let (status, service) = stack.call("acme", "GET", "/v1/services/berth-hello", None).await;
    assert_eq!(status, 200, "{service}");
    assert_eq!(
        service["relations"]["computenest::acrimage::hello"],
        json!({ "package": "hello_image", "version": "latest" })
    );
    assert_eq!(service["templates"][0]["name"], "hello");
    assert!(service["ignored"].to_string().contains("not received"), "{service}");

    // The template's body reaches Berth its own way (Berth's import of the same config.yaml);
    // a re-run of computenest-cli downloads it from the URL GetService answers, finds it
    // unchanged and keeps it, updating the draft artifact on the way.
    let config = std::fs::read_to_string(work.join(".computenest/config.yaml")).unwrap();
    let template = std::fs::read_to_string(work.join(".computenest/ros_templates/template.yaml")).unwrap();
    let body = json!({ "config": config, "templates": { "ros_templates/template.yaml": template } });
    let (status, defined) = stack.call("acme", "PUT", "/v1/services/berth-hello", Some(body)).await;
    assert_eq!(status, 200, "{defined}");
    let before = stack.berth.logs().len();
    import(&["--update_artifact", "True"]);
    import(&[]);
    let rerun = &stack.berth.logs()[before..];
    for action in ["UpdateArtifact", "GetArtifact", "GetService", "UpdateService"] {
        assert!(rerun.contains(&format!("\"action\":\"{action}\"")), "the re-runs never called {action}");
    }
    let (_, service) = stack.call("acme", "GET", "/v1/services/berth-hello", None).await;
    assert_eq!(service["templates"][0]["body"], template, "{service}");
    assert_eq!(
        service["relations"]["computenest::acrimage::hello"],
        json!({ "package": "hello_image", "version": "latest" })
    );
    let (_, artifact) = stack.call("acme", "GET", "/v1/packages/hello_image", None).await;
    let versions = artifact["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "still one draft: {artifact}");
    assert_ne!(versions[0]["updated_at"], draft["updated_at"], "the draft was updated");

    assert_not_logged(&stack, &[&secret]);
}

//! Every Compute Nest `config.yaml` of the corpus (../shared/corpus/ros) imports as a service,
//! or fails with a message that names what is missing.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_shared::names::AccountId;
use berth_shared::package::PackageType;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::in_process;
use berth_shared::service::{PutServiceRequest, package_type_for};
use serde_json::{Value, json};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/ros")
}

async fn call(context: &FunctionContext, token: &str, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let answer = in_process::send(&berth_packages::router(context.clone()), request).await;
    (answer.status, answer.json())
}

fn version_for(package_type: PackageType) -> Value {
    match package_type {
        PackageType::ContainerImage => json!({ "name": "v_1", "images": [{ "repository": "acme/app", "tag": "v1" }] }),
        PackageType::HelmChart => json!({ "name": "v_1", "chart": { "repository": "acme/chart", "tag": "1.0.0" } }),
        PackageType::File => json!({ "name": "v_1", "file_name": "payload.bin" }),
    }
}

/// `artifacts` entries mapping each relation's `ArtifactId` (or the `Artifact:` key it
/// refers to) to a valid package name: the artifact's name with `-` as `_`.
fn artifact_map(config: &str) -> BTreeMap<String, String> {
    let root: yaml_serde::Value = yaml_serde::from_str(config).unwrap();
    let sanitize = |name: &str| {
        let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        name.chars().take(128).collect::<String>()
    };
    let mut map = BTreeMap::new();
    let supplier = &root["Service"]["DeployMetadata"]["SupplierDeployMetadata"];
    for section in ["AcrImageArtifactRelation", "HelmChartArtifactRelation", "FileArtifactRelation"] {
        let Some(relations) = supplier[section].as_mapping() else { continue };
        for target in relations.values() {
            let Some(id) = target["ArtifactId"].as_str() else { continue };
            match id.strip_prefix("${Artifact.").and_then(|r| r.strip_suffix(".ArtifactId}")) {
                Some(key) => {
                    let name = root["Artifact"][key]["ArtifactName"].as_str().unwrap_or(key);
                    map.insert(key.to_owned(), sanitize(name));
                }
                None => {
                    map.insert(id.to_owned(), sanitize(id));
                }
            }
        }
    }
    map
}

#[tokio::test]
async fn every_corpus_config_imports_or_names_what_is_missing() {
    let dir = corpus();
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("__.computenest__config.yaml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 15, "the corpus has its config.yaml files");
    let (mut imported, mut refused) = (Vec::new(), Vec::new());
    for config_path in configs {
        let file = config_path.file_name().unwrap().to_string_lossy().into_owned();
        let stem = file.strip_suffix("config.yaml").unwrap();
        let config = std::fs::read_to_string(&config_path).unwrap();
        // The repository's templates, flattened into the corpus as STEM + path with '/' as '__'.
        let mut templates = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(stem)
                && rest != "config.yaml"
            {
                templates.insert(rest.replace("__", "/"), std::fs::read_to_string(dir.join(&name)).unwrap());
            }
        }
        let context = FunctionContext::ephemeral();
        let token = context.account_keys.issue(&AccountId::parse("acme").unwrap(), 600).unwrap();
        // As imported first, then with the `artifacts` map a provider would add for the ids
        // and names that are not Berth package names.
        let mut outcome = None;
        for artifacts in [BTreeMap::new(), artifact_map(&config)] {
            let request = PutServiceRequest {
                config: Some(config.clone()),
                templates: templates.clone(),
                artifacts: artifacts.clone(),
                ..Default::default()
            };
            // Make every package the config relates to, of the kind its identifier needs.
            if let Ok(plan) = request.plan() {
                for relation in plan.relations.values() {
                    let package_type = package_type_for(relation.kind).unwrap();
                    let body = json!({ "name": relation.target.package, "description": "made for the corpus test",
                        "type": package_type, "version": version_for(package_type) });
                    let (status, created) = call(&context, &token, "POST", "/v1/packages", body).await;
                    assert!(status == StatusCode::CREATED || status == StatusCode::CONFLICT, "{file}: {created}");
                }
            }
            let body = json!({ "config": config, "templates": templates, "artifacts": artifacts });
            let (status, answer) = call(&context, &token, "PUT", "/v1/services/corpus", body).await;
            match status {
                StatusCode::CREATED => {
                    assert!(!answer["templates"].as_array().unwrap().is_empty(), "{file}");
                    outcome = Some(Ok(()));
                    break;
                }
                StatusCode::BAD_REQUEST => {
                    let detail = answer["detail"].as_str().unwrap_or_default();
                    let names_something =
                        ["is missing", "was not sent", "is not a Berth package name", "does not define"]
                            .iter()
                            .any(|what| detail.contains(what));
                    assert!(names_something, "{file}: refused without naming what is missing: {answer}");
                    assert_eq!(answer["field"], "config", "{file}: {answer}");
                    outcome = Some(Err(detail.to_owned()));
                }
                other => panic!("{file}: {other}: {answer}"),
            }
        }
        match outcome.unwrap() {
            Ok(()) => imported.push(file),
            Err(detail) => {
                assert!(!detail.contains("is not a Berth package name"), "{file}: the map did not help: {detail}");
                refused.push((file, detail));
            }
        }
    }
    println!("imported {}: {imported:#?}\nrefused {}: {refused:#?}", imported.len(), refused.len());
    assert!(imported.len() >= 8, "most real configs import: {imported:?} / {refused:?}");
}

//! `berth serve` with the real `docker-registry` delegating its auth to it: the usual stack of
//! an end-to-end test, plus calling the API as a provider and pushing with a push key.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::berth::BerthServe;
use crate::client::ApiClient;
use crate::registry::{Registry, SERVICE, oci_image, skopeo};

/// A running stack in a temporary directory.
pub struct Stack {
    /// Working directory (data, logs, image layouts).
    pub dir: tempfile::TempDir,
    pub berth: BerthServe,
    pub registry: Registry,
    /// An HTTP client (the API client's).
    pub http: reqwest::Client,
    /// The API client, at `berth.url`.
    pub api: ApiClient,
}

impl Stack {
    /// Starts both, with extra environment for `berth serve`.
    pub fn start(env: &[(&str, &str)]) -> Self {
        // Berth must know the registry's port before the registry starts: a port taken
        // meanwhile by another test's server is picked again, with a new Berth.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let port = Registry::pick_port();
            let host = format!("127.0.0.1:{port}");
            let mut all = vec![("BERTH_REGISTRY_HOST", host.as_str()), ("BERTH_REGISTRY_SERVICE", SERVICE)];
            all.extend_from_slice(env);
            let berth = BerthServe::start(&dir.path().join("data"), &dir.path().join("berth.log"), 0, &all);
            let realm = format!("{}/v1/registry/token", berth.url);
            let Some(registry) = Registry::try_start(dir.path(), port, &realm, &berth.signing_certificate()) else {
                eprintln!("the registry's port {port} was taken before it started; picking another");
                continue;
            };
            let api = ApiClient::new(berth.url.clone());
            return Self { dir, berth, registry, http: api.http.clone(), api };
        }
        panic!("five ports picked for the registry were taken before it started")
    }

    /// Calls the API as `account`; returns status and JSON body.
    pub async fn call(&self, account: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.call(&self.berth.dev_token(account), method, path, body).await
    }

    /// `username:password` of a fresh push key of `account`.
    pub async fn push_creds(&self, account: &str) -> String {
        let (status, key) =
            self.call(account, "POST", "/v1/registry/credentials", Some(json!({ "purpose": "push" }))).await;
        assert_eq!(status, 200, "push key for {account}: {key}");
        format!("{}:{}", key["username"].as_str().unwrap(), key["password"].as_str().unwrap())
    }

    /// Builds a small OCI image and pushes it as `repository:tag` with a push key of `account`.
    pub async fn push_image(&self, account: &str, repository: &str, tag: &str) {
        self.push_image_as(account, repository, tag, &[]).await;
    }

    /// As [`Stack::push_image`], with extra `skopeo copy` flags (e.g. `--format v2s2` for a
    /// Docker v2 schema 2 manifest).
    pub async fn push_image_as(&self, account: &str, repository: &str, tag: &str, flags: &[&str]) {
        let layout = self.dir.path().join(format!("layout-{}-{tag}", repository.replace('/', "_")));
        oci_image(&layout, tag, &format!("{repository}:{tag}\n"));
        let creds = self.push_creds(account).await;
        let destination = format!("docker://{}/{repository}:{tag}", self.registry.host);
        let source = format!("oci:{}:{tag}", layout.display());
        let mut args = vec!["copy", "--dest-tls-verify=false", "--dest-creds", &creds];
        args.extend_from_slice(flags);
        args.extend([source.as_str(), destination.as_str()]);
        let (ok, err) = skopeo(&args);
        assert!(ok, "push {repository}:{tag}: {err}");
    }

    /// Pushes an OCI layout already written at `layout` as `repository:tag` (`skopeo copy --all`).
    pub async fn push_layout(
        &self,
        account: &str,
        layout: &std::path::Path,
        repository: &str,
        tag: &str,
    ) -> (bool, String) {
        let creds = self.push_creds(account).await;
        let destination = format!("docker://{}/{repository}:{tag}", self.registry.host);
        let source = format!("oci:{}:{tag}", layout.display());
        skopeo(&["copy", "--all", "--dest-tls-verify=false", "--dest-creds", &creds, &source, &destination])
    }

    /// Pushes a signature manifest of `digest` to `repository` (tag `sha256-<hex>.sig`), with
    /// one layer per `(payload, base64 signature)`.
    pub async fn push_signatures(
        &self,
        account: &str,
        repository: &str,
        digest: &str,
        signatures: &[(Vec<u8>, String)],
    ) {
        let tag = berth_shared::signing::sigstore::attachment_tag(digest);
        let layout = self.dir.path().join(format!("signature-{}", uuid::Uuid::new_v4()));
        crate::signing::attachment_layout(&layout, &tag, signatures);
        let (ok, err) = self.push_layout(account, &layout, repository, &tag).await;
        assert!(ok, "push {repository}:{tag}: {err}");
    }

    /// The digest the registry reports for `repository:tag` (`skopeo inspect`).
    pub async fn registry_digest(&self, account: &str, repository: &str, tag: &str) -> String {
        let creds = self.push_creds(account).await;
        let output = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds", &creds])
            .arg(format!("docker://{}/{repository}:{tag}", self.registry.host))
            .output()
            .expect("skopeo");
        assert!(output.status.success(), "inspect: {}", String::from_utf8_lossy(&output.stderr));
        let facts: Value = serde_json::from_slice(&output.stdout).expect("skopeo inspect JSON");
        facts["Digest"].as_str().expect("Digest").to_owned()
    }

    /// Polls a package version until it is no longer `Creating`, or panics after `timeout`.
    pub async fn settled_version(&self, account: &str, package: &str, version: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) =
                self.call(account, "GET", &format!("/v1/packages/{package}/versions/{version}"), None).await;
            assert_eq!(status, 200, "{body}");
            if body["status"] != "Creating" {
                return body;
            }
            assert!(start.elapsed() < timeout, "{package}/{version} still Creating after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

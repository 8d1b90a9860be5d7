//! Credentials against the real registry: Berth is the token server of the Debian
//! `docker-registry`; `skopeo` and the `docker` CLI push and pull with minted keys.

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use berth_shared::credentials::temporary_key::{KEY_AUDIENCE, KEY_TYPE, KeyGrant, KeyPurpose};
use berth_shared::names::AccountId;
use berth_shared::names::RepositoryName;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::jws::{SigningKey, SigningKeys};
use berth_tests::berth::BerthServe;
use berth_tests::registry::{Registry, SERVICE, oci_image, skopeo};
use serde_json::{Value, json};

struct Setup {
    dir: tempfile::TempDir,
    berth: BerthServe,
    registry: Registry,
    http: reqwest::Client,
    /// Every secret Berth handed out, to check the logs against.
    issued: Vec<String>,
}

impl Setup {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = Registry::pick_port();
        let host = format!("127.0.0.1:{port}");
        let berth = BerthServe::start(
            &dir.path().join("data"),
            &dir.path().join("berth.log"),
            0,
            &[("BERTH_REGISTRY_HOST", &host), ("BERTH_REGISTRY_SERVICE", SERVICE)],
        );
        let realm = format!("{}/v1/registry/token", berth.url);
        let registry = Registry::start(dir.path(), port, &realm, &berth.signing_certificate());
        Self { dir, berth, registry, http: reqwest::Client::new(), issued: Vec::new() }
    }

    async fn key(&mut self, account: &str, body: Value) -> Value {
        let token = self.berth.dev_token(account);
        let response = self
            .http
            .post(format!("{}/v1/registry/credentials", self.berth.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "key for {account}: {}", response.text().await.unwrap());
        let key: Value = response.json().await.unwrap();
        self.issued.push(key["password"].as_str().unwrap().to_owned());
        self.issued.push(key["dockerconfigjson"].as_str().unwrap().to_owned());
        self.issued.push(token);
        key
    }

    /// Calls the token endpoint directly.
    async fn token(&mut self, username: &str, password: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/registry/token", self.berth.url))
            .basic_auth(username, Some(password))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    fn image(&self, name: &str) -> String {
        let layout = self.dir.path().join(name);
        oci_image(&layout, "v1", &format!("hello from {name}\n"));
        format!("oci:{}:v1", layout.display())
    }

    fn push(&self, source: &str, creds: &str, repository: &str) -> (bool, String) {
        let destination = format!("docker://{}/{repository}", self.registry.host);
        skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", creds, source, &destination])
    }

    fn inspect(&self, creds: &str, reference: &str) -> (bool, String) {
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            creds,
            &format!("docker://{}/{reference}", self.registry.host),
        ])
    }

    fn signing_keys(&self) -> SigningKeys {
        let keys = self.berth.data.join("keys");
        SigningKeys::load(&keys.join("signing.key.pem"), &keys.join("signing.crt.pem"), &[]).unwrap()
    }
}

fn creds(key: &Value) -> String {
    format!("{}:{}", key["username"].as_str().unwrap(), key["password"].as_str().unwrap())
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn docker_login(config_dir: &Path, host: &str, username: &str, password: &str) -> bool {
    let mut child = Command::new("docker")
        .args(["login", "--username", username, "--password-stdin", host])
        .env("DOCKER_CONFIG", config_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker CLI");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    child.wait().unwrap().success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_access_follows_the_namespace() {
    let mut s = Setup::start();
    let image = s.image("app");

    // Provider A pushes into its namespace and logs in with docker.
    let a_push = s.key("acme", json!({ "purpose": "push" })).await;
    assert_eq!(a_push["registry"], s.registry.host);
    assert_eq!(a_push["namespace"], "acme");
    let (ok, err) = s.push(&image, &creds(&a_push), "acme/app:v1");
    assert!(ok, "A pushes acme/app:v1: {err}");
    let docker_config = s.dir.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    assert!(
        docker_login(
            &docker_config,
            &s.registry.host,
            a_push["username"].as_str().unwrap(),
            a_push["password"].as_str().unwrap()
        ),
        "docker login with A's push key"
    );
    assert!(
        !docker_login(&docker_config, &s.registry.host, "acme", "not-the-password"),
        "docker login with a wrong password"
    );

    // Provider B reaches its own namespace, not A's.
    let b_push = s.key("bravo", json!({ "purpose": "push" })).await;
    assert!(s.push(&image, &creds(&b_push), "bravo/app:v1").0, "B pushes to its own namespace");
    assert!(!s.push(&image, &creds(&b_push), "acme/app:v2").0, "B must not push into A");
    assert!(!s.inspect(&creds(&b_push), "acme/app:v1").0, "B must not pull from A");

    // Prefix confusion: acme is not acme12.
    let a12_push = s.key("acme12", json!({ "purpose": "push" })).await;
    assert!(s.push(&image, &creds(&a12_push), "acme12/app:v1").0, "acme12 pushes to its own namespace");
    assert!(!s.push(&image, &creds(&a_push), "acme12/app:v2").0, "acme must not push into acme12");
    assert!(!s.inspect(&creds(&a_push), "acme12/app:v1").0, "acme must not pull from acme12");
    assert!(!s.inspect(&creds(&a12_push), "acme/app:v1").0, "acme12 must not pull from acme");

    // A pull key pulls but cannot push; a repository-limited one reaches only its list.
    let a_pull = s.key("acme", json!({ "purpose": "pull", "ttl_seconds": 600 })).await;
    assert!(s.inspect(&creds(&a_pull), "acme/app:v1").0, "pull key pulls");
    assert!(!s.push(&image, &creds(&a_pull), "acme/app:v3").0, "pull key must not push");
    let limited = s.key("acme", json!({ "purpose": "pull", "repositories": ["other"] })).await;
    assert_eq!(
        limited["available_resources"],
        json!([{ "repository_name": "other", "path": format!("{}/acme/other", s.registry.host) }])
    );
    assert!(!s.inspect(&creds(&limited), "acme/app:v1").0, "a key limited to acme/other must not pull acme/app");

    // Expired, expiring and wrong keys are refused with a message.
    let now = unix_now();
    let grant = |exp: u64| KeyGrant {
        sub: AccountId::parse("acme").unwrap(),
        aud: KEY_AUDIENCE.into(),
        purpose: KeyPurpose::Push,
        repositories: None,
        iat: now - 3600,
        exp,
        jti: "test".into(),
        instance: None,
    };
    let expired = s.signing_keys().sign(KEY_TYPE, &grant(now - 5)).unwrap();
    let response = s.token("acme", &expired, &[("service", SERVICE), ("scope", "repository:acme/app:pull")]).await;
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("expired"));
    assert!(!s.inspect(&format!("acme:{expired}"), "acme/app:v1").0, "an expired key must not pull");
    let expiring = s.signing_keys().sign(KEY_TYPE, &grant(now + 30)).unwrap();
    assert_eq!(
        s.token("acme", &expiring, &[("service", SERVICE)]).await.status(),
        401,
        "a key with <60 s left gets no token"
    );
    let password = a_push["password"].as_str().unwrap();
    let tampered = format!("{}{}", &password[..password.len() - 2], if password.ends_with("AA") { "BB" } else { "AA" });
    let response = s.token("acme", &tampered, &[("service", SERVICE)]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_eq!(s.token("bravo", password, &[("service", SERVICE)]).await.status(), 401, "A's password under B's name");
    let response = s.token("acme", password, &[("service", SERVICE), ("account", "bravo")]).await;
    assert_eq!(response.status(), 401, "account must equal the Basic user");
    assert!(!s.inspect("acme:wrong", "acme/app:v1").0);

    // The dockerconfigjson of a pull key, as an auth file, lets skopeo pull.
    let auth = STANDARD.decode(a_pull["dockerconfigjson"].as_str().unwrap()).unwrap();
    let auth_file = s.dir.path().join("auth.json");
    std::fs::write(&auth_file, &auth).unwrap();
    let pulled = s.dir.path().join("pulled");
    let source = format!("docker://{}/acme/app:v1", s.registry.host);
    let (ok, err) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--authfile",
        auth_file.to_str().unwrap(),
        &source,
        &format!("oci:{}:v1", pulled.display()),
    ]);
    assert!(ok, "pull with the dockerconfigjson: {err}");
    let pulled_index: Value = serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", &creds(&a_pull), "--format", "{{.Digest}}", &source])
        .output()
        .unwrap();
    let registry_digest = String::from_utf8(output.stdout).unwrap();
    assert_eq!(pulled_index["manifests"][0]["digest"], registry_digest.trim(), "the registry's image came back");

    // Tokens obey the rules: aud a string, exp within the key, 60 <= expires_in <= exp - iat, nbf in the past.
    let response = s
        .token(
            "acme",
            a_pull["password"].as_str().unwrap(),
            &[("service", SERVICE), ("scope", "repository:acme/app:pull,push")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    s.issued.push(token.clone());
    assert_eq!(body["access_token"], body["token"]);
    let c = claims(&token);
    assert_eq!(c["aud"], SERVICE);
    assert_eq!(
        c["access"],
        json!([{ "type": "repository", "name": "acme/app", "actions": ["pull"] }]),
        "a pull key never gets push"
    );
    let (iat, exp, nbf) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap(), c["nbf"].as_u64().unwrap());
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!(expires_in >= 60 && expires_in <= exp - iat, "expires_in {expires_in}, exp-iat {}", exp - iat);
    assert!(nbf < iat);
    let key_exp = claims(a_pull["password"].as_str().unwrap())["exp"].as_u64().unwrap();
    assert!(exp <= key_exp);
    let short = s.key("acme", json!({ "purpose": "pull", "ttl_seconds": 90 })).await;
    let body: Value =
        s.token("acme", short["password"].as_str().unwrap(), &[("service", SERVICE)]).await.json().await.unwrap();
    s.issued.push(body["token"].as_str().unwrap().to_owned());
    assert_eq!(
        claims(body["token"].as_str().unwrap())["exp"],
        claims(short["password"].as_str().unwrap())["exp"],
        "token exp capped at the key's"
    );

    // No secret Berth handed out reached its log.
    let logs = s.berth.logs();
    assert!(logs.contains("temporary key minted") && logs.contains("registry token issued"), "the run was logged");
    for secret in &s.issued {
        assert!(!logs.contains(secret.as_str()), "a secret reached the log");
    }
    s.berth.stop();
}

/// The registry itself refuses tokens Berth would never sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_forged_tokens() {
    let mut s = Setup::start();
    let image = s.image("app");
    let key = s.key("acme", json!({ "purpose": "push" })).await;
    assert!(s.push(&image, &creds(&key), "acme/app:v1").0);

    let manifest = format!("http://{}/v2/acme/app/manifests/v1", s.registry.host);
    let get = |token: String| {
        let http = s.http.clone();
        let manifest = manifest.clone();
        async move {
            http.get(&manifest)
                .bearer_auth(token)
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let now = unix_now();
    let claims = |aud: Value, exp: u64| {
        json!({
            "iss": "berth", "sub": "acme", "aud": aud, "exp": exp, "nbf": now - 10, "iat": now - 10, "jti": "forged",
            "access": [{ "type": "repository", "name": "acme/app", "actions": ["pull"] }]
        })
    };
    let keys = s.signing_keys();
    let kid = keys.current().kid().to_owned();

    // Control: the same claims signed properly are accepted, so each refusal below is the forgery's.
    assert_eq!(get(keys.sign("JWT", &claims(json!(SERVICE), now + 300)).unwrap()).await, 200);

    let der =
        berth_shared::platform::pem::pem_block(&berth_shared::platform::pem::generate_private_key_pem(), "PRIVATE KEY")
            .unwrap();
    let stranger = SigningKeys::from_keys(vec![SigningKey::from_pkcs8(&der, None).unwrap()]);
    assert_eq!(get(stranger.sign("JWT", &claims(json!(SERVICE), now + 300)).unwrap()).await, 401, "unknown key");

    let header = |alg: &str| URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "typ": "JWT", "kid": kid }).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims(json!(SERVICE), now + 300).to_string());
    assert_eq!(get(format!("{}.{body}.", header("none"))).await, 401, "alg none");

    let certificate = std::fs::read(s.berth.signing_certificate()).unwrap();
    let signed = format!("{}.{body}", header("HS256"));
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &certificate),
        signed.as_bytes(),
    );
    assert_eq!(
        get(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))).await,
        401,
        "HS256 keyed with the certificate"
    );

    assert_eq!(get(keys.sign("JWT", &claims(json!([SERVICE]), now + 300)).unwrap()).await, 401, "aud as an array");
    assert_eq!(
        get(keys.sign("JWT", &claims(json!(SERVICE), now - 120)).unwrap()).await,
        401,
        "expired beyond the 60 s leeway"
    );
    assert_eq!(
        get(keys.sign("JWT", &claims(json!("another-registry"), now + 300)).unwrap()).await,
        401,
        "another service"
    );
    s.berth.stop();
}

/// Hostile scope strings and names never grant anything outside the caller's namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scopes_grant_nothing_outside_the_namespace() {
    let mut s = Setup::start();
    let key = s.key("acme", json!({ "purpose": "push" })).await;
    let password = key["password"].as_str().unwrap().to_owned();
    let long_name = format!("repository:acme/{}:pull", "a".repeat(300));
    let deep_name = format!("repository:{}x:pull,push", "acme/".repeat(60));
    let many = vec!["repository:acme/app:pull"; 70].join(" ");
    let many_outside: String = (0..40).map(|i| format!("repository:bravo/app{i}:pull ")).collect();
    let hostile: Vec<&str> = vec![
        "repository:acme12/app:pull,push",
        "repository:acme12:pull,push",
        "repository:acmeapp:push",
        "repository:acme-x/app:push",
        "repository:bravo/app:pull,push",
        "repository:bravo/acme:pull,push",
        "repository:bravo:push",
        "repository:acme/../bravo/app:push",
        "repository:acme/./app:push",
        "repository:acme/%2e%2e/bravo:pull",
        "repository:acme%2Fapp:pull",
        "repository:acme%2fapp:pull",
        "repository:ACME/app:pull",
        "repository:Acme/app:push",
        "repository:acme//app:pull",
        "repository:/acme/app:pull",
        "repository:acme/app/:pull",
        "repository:acme/app:pull:push",
        "repository:acme:app:pull",
        "repository::pull",
        "repository:acme/app:",
        ":acme/app:pull",
        "repository:acme/app",
        "repository",
        "registry:catalog:*",
        "registry:catalog:pull",
        "repository(plugin):acme/app:pull",
        "repository(plugin):bravo/app:pull",
        "repository(:acme/app:pull",
        "repository():acme/app:pull",
        "Repository:acme/app:pull",
        "repository:acme/app:*",
        "repository:acme/app:delete",
        "repository:acme/app:PUSH",
        "repository:acme/app:pull,,push",
        "repository:acme/app:pull repository:bravo/app:push",
        "repository:acme\u{0}/app:pull",
        "repository:acme/app\n:pull",
        "repository:acme/\u{ff41}pp:pull",
        "repository:acme/app%00:pull",
        "repository:127.0.0.1:5000/acme/app:pull",
        "repository:localhost/acme/app:pull",
        "repository:acme/app:pull&scope=repository:bravo/app:push",
        "repository:acme-/x:pull",
        "repository:acme./x:pull",
        "repository:acme_/x:pull",
        "repository:*:pull,push",
        "repository:acme/*:pull,push",
        "repository:bravo/app:pull,push,*,delete",
        &long_name,
        &deep_name,
        &many,
        &many_outside,
    ];
    assert!(hostile.len() >= 40);
    let acme = AccountId::parse("acme").unwrap();
    for scope in &hostile {
        let response = s.token("acme", &password, &[("service", SERVICE), ("scope", scope)]).await;
        let status = response.status().as_u16();
        match status {
            400 => {
                assert_eq!(response.headers()["content-type"], "application/problem+json", "{scope:?}");
                let problem: Value = response.json().await.unwrap();
                assert_eq!(problem["field"], "scope", "{scope:?}");
            }
            200 => {
                let body: Value = response.json().await.unwrap();
                let token = body["token"].as_str().unwrap().to_owned();
                for access in claims(&token)["access"].as_array().unwrap() {
                    let actions = access["actions"].as_array().unwrap();
                    if actions.is_empty() {
                        continue;
                    }
                    let name = access["name"].as_str().unwrap();
                    assert_eq!(access["type"], "repository", "{scope:?} granted a non-repository");
                    assert!(RepositoryName::parse(name).is_ok_and(|n| n.is_in(&acme)), "{scope:?} granted {name}");
                    assert!(actions.iter().all(|a| a == "pull" || a == "push"), "{scope:?} granted {actions:?}");
                }
                s.issued.push(token);
            }
            other => panic!("{scope:?}: status {other}"),
        }
    }
    // Several scopes in one request: each judged on its own.
    let response = s
        .token(
            "acme",
            &password,
            &[
                ("service", SERVICE),
                ("scope", "repository:acme/app:pull,push"),
                ("scope", "repository:bravo/app:pull registry:catalog:*"),
            ],
        )
        .await;
    let token = response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims(&token)["access"],
        json!([
            { "type": "repository", "name": "acme/app", "actions": ["pull", "push"] },
            { "type": "repository", "name": "bravo/app", "actions": [] },
            { "type": "registry", "name": "catalog", "actions": [] }
        ])
    );
    let response = s.token("acme", &password, &[("service", "someone-else")]).await;
    assert_eq!(response.status(), 400, "a token for another service");
    let logs = s.berth.logs();
    assert!(!logs.contains(&password) && !logs.contains(&token));
    s.berth.stop();
}

/// `berth credentials` as a provider uses it: the password piped to `docker login`, and a
/// pull key written as a docker config that `skopeo` pulls with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_hands_keys_to_real_clients() {
    let mut s = Setup::start();
    let token = s.berth.dev_token("acme");
    let berth = |args: &[&str]| {
        Command::new(berth_tests::berth_bin("berth"))
            .args(args)
            .env("BERTH_URL", &s.berth.url)
            .env("BERTH_TOKEN", &token)
            .output()
            .expect("run berth")
    };
    let push = berth(&["credentials", "push"]);
    assert!(push.status.success(), "{}", String::from_utf8_lossy(&push.stderr));
    let password = String::from_utf8(push.stdout).unwrap().trim().to_owned();
    let hint = String::from_utf8(push.stderr).unwrap();
    assert!(hint.contains(&format!("docker login --username acme --password-stdin {}", s.registry.host)), "{hint}");
    assert!(!hint.contains(&password), "the password goes to stdout only");
    s.issued.push(password.clone());
    let docker_config = s.dir.path().join("docker-cli");
    assert!(docker_login(&docker_config, &s.registry.host, "acme", &password), "berth credentials push | docker login");
    let image = s.image("cli");
    assert!(s.push(&image, &format!("acme:{password}"), "acme/cli:v1").0);

    let config_dir = s.dir.path().join("pull-config");
    let pull =
        berth(&["credentials", "pull", "--repositories", "cli", "--write-docker-config", config_dir.to_str().unwrap()]);
    assert!(pull.status.success(), "{}", String::from_utf8_lossy(&pull.stderr));
    assert!(pull.stdout.is_empty(), "nothing secret on stdout when writing a config");
    let auth_file = config_dir.join("config.json");
    let (ok, err) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--authfile",
        auth_file.to_str().unwrap(),
        &format!("docker://{}/acme/cli:v1", s.registry.host),
    ]);
    assert!(ok, "skopeo with the written docker config: {err}");

    let bad = berth(&["credentials", "pull", "--ttl-seconds", "5"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("out_of_range (ttl_seconds)"));
    s.berth.stop();
}

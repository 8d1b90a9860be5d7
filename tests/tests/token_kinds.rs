//! Token kinds never cross: each of Berth's seven credentials (account token, temporary key
//! password, registry token, download token, join token, host token, instance credential) is presented wherever
//! each other kind is expected, against `berth serve` and the real `docker-registry`. Each
//! place accepts its own kind and answers 401 to every other.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use berth_tests::registry::SERVICE;
use berth_tests::stack::Stack;
use reqwest::StatusCode;
use serde_json::json;

const KINDS: [&str; 7] = [
    "account token",
    "temporary key",
    "registry token",
    "download token",
    "join token",
    "host token",
    "instance credential",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_is_refused_where_another_kind_is_expected() {
    let stack = Stack::start(&[]);
    let url = stack.berth.url.clone();
    let http = &stack.http;
    let account = stack.berth.dev_token("acme");
    stack.push_image("acme", "acme/app", "v1").await;
    let (status, key) =
        stack.call("acme", "POST", "/v1/registry/credentials", Some(json!({ "purpose": "pull" }))).await;
    assert_eq!(status, 200, "{key}");
    let key = key["password"].as_str().unwrap().to_owned();
    let basic = |password: &str| format!("Basic {}", STANDARD.encode(format!("acme:{password}")));
    let answer: serde_json::Value = http
        .get(format!("{url}/v1/registry/token?service={SERVICE}&scope=repository:acme/app:pull"))
        .header("authorization", basic(&key))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registry_token = answer["token"].as_str().expect("a registry token").to_owned();

    // A File package and a render: its download URL carries a download token.
    let package = json!({
        "name": "bundle", "description": "a bundle of files", "type": "File",
        "version": { "name": "v_1", "file_name": "app.tar.gz" },
    });
    let (status, created) = stack.call("acme", "POST", "/v1/packages", Some(package)).await;
    assert_eq!(status, 201, "{created}");
    let uploaded = http
        .put(format!("{url}/v1/packages/bundle/versions/v_1/file"))
        .bearer_auth(&account)
        .header("content-type", "application/octet-stream")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 200, "{}", uploaded.text().await.unwrap());
    let render = json!({
        "template": "url: {{ computenest::file::bundle }}\n",
        "relations": { "computenest::file::bundle": { "package": "bundle", "version": "latest" } },
    });
    let (status, rendered) = stack.call("acme", "POST", "/v1/render", Some(render)).await;
    assert_eq!(status, 200, "{rendered}");
    let link = rendered["rendered"].as_str().unwrap().trim().strip_prefix("url: ").unwrap().to_owned();
    let download = link.split('/').nth_back(1).unwrap().to_owned();

    stack.call("acme", "POST", "/v1/applications", Some(json!({ "name": "app" }))).await;
    let (status, group) = stack.call("acme", "POST", "/v1/applications/app/groups", Some(json!({ "name": "g" }))).await;
    assert_eq!(status, 201, "{group}");
    let join = group["join_token"].as_str().unwrap().to_owned();
    let registered: serde_json::Value = http
        .post(format!("{url}/v1/agent/register"))
        .bearer_auth(&join)
        .json(&json!({ "host": "h1" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let host = registered["host_token"].as_str().unwrap().to_owned();
    let (status, _) =
        stack.call("acme", "PUT", "/v1/services/shop", Some(json!({ "templates": { "t": "a: b\n" } }))).await;
    assert_eq!(status, 201);
    let (status, instance) =
        stack.call("acme", "POST", "/v1/services/shop/instances", Some(json!({ "name": "cust" }))).await;
    assert_eq!(status, 201, "{instance}");
    let instance_user = instance["credential"]["username"].as_str().unwrap().to_owned();
    let instance = instance["credential"]["password"].as_str().unwrap().to_owned();
    let tokens = [account, key, registry_token, download, join, host, instance];
    let basic_as =
        |username: &str, password: &str| format!("Basic {}", STANDARD.encode(format!("{username}:{password}")));

    // Where each kind is expected, as a request carrying the token.
    let registry = format!("http://{}", stack.registry.host);
    let present = |place: usize, token: &str| {
        let request = match place {
            0 => http.get(format!("{url}/v1/account")).bearer_auth(token),
            1 => http.get(format!("{url}/v1/registry/token?service={SERVICE}")).header("authorization", basic(token)),
            2 => http
                .get(format!("{registry}/v2/acme/app/manifests/v1"))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .bearer_auth(token),
            3 => http.get(format!("{url}/v1/downloads/{token}/app.tar.gz")),
            4 => http.post(format!("{url}/v1/agent/register")).bearer_auth(token).json(&json!({ "host": "h2" })),
            5 => http.get(format!("{url}/v1/agent/jobs?wait_seconds=0")).bearer_auth(token),
            _ => http
                .post(format!("{url}/v1/registry/exchange"))
                .header("authorization", basic_as(&instance_user, token)),
        };
        async move { request.send().await.expect("an answer").status() }
    };
    let mut refused = 0;
    for (place, expected) in KINDS.iter().enumerate() {
        let own = present(place, &tokens[place]).await;
        assert!(own.is_success(), "{expected} where it is expected: {own}");
        for (kind, token) in tokens.iter().enumerate().filter(|(kind, _)| *kind != place) {
            let status = present(place, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} where a {expected} is expected", KINDS[kind]);
            refused += 1;
        }
    }
    println!("token kinds: {refused} (kind, place) pairs, each refused with 401; each place took its own kind");
    assert_eq!(refused, 42);
}

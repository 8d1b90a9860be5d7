//! `make bench` part: registry token minting rate against raw ES256 signing with the same key
//! (same process, so the ratio holds on a noisy machine), and the HTTP token endpoint of a
//! release `berth serve` on loopback under concurrent load.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use berth_shared::credentials::registry_token::issue;
use berth_shared::credentials::scope::parse_scopes;
use berth_shared::credentials::temporary_key::{KEY_AUDIENCE, KeyGrant, KeyPurpose};
use berth_shared::names::AccountId;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::config::RegistrySettings;
use berth_shared::platform::jws::{SigningKey, SigningKeys};
use berth_shared::platform::pem::generate_private_key_pem;
use berth_shared::platform::pem::pem_block;
use berth_tests::berth::BerthServe;

const WINDOW: Duration = Duration::from_secs(2);
const CONCURRENCY: usize = 16;

fn rate(mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < WINDOW {
        for _ in 0..64 {
            work();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn in_process() {
    let der = pem_block(&generate_private_key_pem(), "PRIVATE KEY").unwrap();
    let keys = SigningKeys::from_keys(vec![SigningKey::from_pkcs8(&der, None).unwrap()]);
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let settings = RegistrySettings {
        host: "127.0.0.1:5000".into(),
        service: "berth-registry".into(),
        issuer: "berth".into(),
        url: "http://127.0.0.1:5000".into(),
    };
    let grant = KeyGrant {
        sub: AccountId::parse("acme").unwrap(),
        aud: KEY_AUDIENCE.into(),
        purpose: KeyPurpose::Push,
        repositories: None,
        iat: unix_now(),
        exp: unix_now() + 3600,
        jti: "bench".into(),
        instance: None,
    };
    let scopes = parse_scopes(["repository:acme/app:pull,push"]).unwrap();
    let sample = issue(&keys, &settings, &grant, &scopes, unix_now()).unwrap();
    let signing_input_len = sample.token.expose().rsplit_once('.').unwrap().0.len();
    let message = vec![b'x'; signing_input_len];
    let random = SystemRandom::new();

    let raw = rate(|| {
        pair.sign(&random, &message).unwrap();
    });
    let minted = rate(|| {
        issue(&keys, &settings, &grant, &scopes, unix_now()).unwrap();
    });
    println!("registry tokens, in process (one core):");
    println!("  raw ES256 signatures/s     {raw:>10.0}   ({signing_input_len}-byte signing input)");
    println!("  tokens minted/s            {minted:>10.0}");
    println!(
        "  ratio minted/raw           {:>10.2}   goal >= 0.80 {}",
        minted / raw,
        if minted / raw >= 0.8 { "ok" } else { "UNDER" }
    );
}

async fn over_http() {
    let dir = tempfile::tempdir().unwrap();
    let binary = berth_tests::workspace_root().join("target/release/berth");
    assert!(binary.exists(), "{} is missing: run `cargo build --release --workspace --bins`", binary.display());
    let berth = BerthServe::start_binary(
        &binary,
        &dir.path().join("data"),
        &dir.path().join("berth.log"),
        0,
        &[("RUST_LOG", "warn")],
    );
    let token = berth.dev_token("acme");
    let http = reqwest::Client::new();
    let key: serde_json::Value = http
        .post(format!("{}/v1/registry/credentials", berth.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "purpose": "push" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let password = Arc::new(key["password"].as_str().unwrap().to_owned());
    let url =
        Arc::new(format!("{}/v1/registry/token?service=berth-registry&scope=repository:acme/app:pull,push", berth.url));
    let start = Instant::now();
    let workers = (0..CONCURRENCY).map(|_| {
        let (http, url, password) = (http.clone(), url.clone(), password.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < WINDOW * 2 {
                let t = Instant::now();
                let response = http.get(url.as_str()).basic_auth("acme", Some(password.as_str())).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        })
    });
    let mut latencies: Vec<Duration> = Vec::new();
    for worker in futures::future::join_all(workers).await {
        latencies.extend(worker.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "token endpoint over HTTP (release berth serve, {CONCURRENCY} concurrent clients in the same 2-core machine):"
    );
    println!("  requests/s                 {:>10.0}", latencies.len() as f64 / elapsed);
    println!("  latency p50 / p99          {:>7.2} ms / {:.2} ms", at(0.5), at(0.99));
    instance_credentials(&berth, &http, &token, &password).await;
    berth.stop();
}

/// Requests/s of the token endpoint with `username:password`, [`CONCURRENCY`] clients for `window`.
async fn endpoint_rate(url: &str, username: &str, password: &str, window: Duration) -> (f64, u64) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let workers = (0..CONCURRENCY).map(|_| {
        let (http, url, username, password) = (http.clone(), url.to_owned(), username.to_owned(), password.to_owned());
        tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < window {
                let response = http.get(url.as_str()).basic_auth(&username, Some(&password)).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                n += 1;
            }
            n
        })
    });
    let mut n = 0;
    for worker in futures::future::join_all(workers).await {
        n += worker.unwrap();
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

/// The token endpoint with an instance credential (checked against the instance document on
/// every request, pulls counted) against a temporary key (a signature check), in the same
/// process, rounds interleaved so that the machine's load falls on both alike.
async fn instance_credentials(berth: &BerthServe, http: &reqwest::Client, token: &str, key_password: &str) {
    let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{}{path}", berth.url)).bearer_auth(token).json(&body).send()
    };
    let service = serde_json::json!({ "templates": { "t.yaml": "a: b\n" } });
    assert!(call(reqwest::Method::PUT, "/v1/services/bench", service).await.unwrap().status().is_success());
    let created: serde_json::Value =
        call(reqwest::Method::POST, "/v1/services/bench/instances", serde_json::json!({ "name": "customer" }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    // A service with images needs a registry to publish them; the bench has none, so the
    // instance is given its repository in its document (the token endpoint reads the same).
    let document = berth.data.join("store/accounts/acme/instances/bench/customer.json");
    let mut instance: serde_json::Value = serde_json::from_slice(&std::fs::read(&document).unwrap()).unwrap();
    instance["repositories"] = serde_json::json!(["acme/app"]);
    std::fs::write(&document, serde_json::to_vec(&instance).unwrap()).unwrap();
    let credential = &created["credential"];
    let (username, password) = (credential["username"].as_str().unwrap(), credential["password"].as_str().unwrap());
    let exchanged: serde_json::Value = http
        .post(format!("{}/v1/registry/exchange", berth.url))
        .basic_auth(username, Some(password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exchanged = exchanged["password"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/registry/token?service=berth-registry&scope=repository:acme/app:pull", berth.url);
    let round = Duration::from_millis(1500);
    let (mut key, mut instance, mut bound) = ((0.0, 0), (0.0, 0), (0.0, 0));
    for _ in 0..3 {
        for (total, user, secret) in
            [(&mut key, "acme", key_password), (&mut instance, username, password), (&mut bound, "acme", &exchanged)]
        {
            let (rate, n) = endpoint_rate(&url, user, secret, round).await;
            total.0 += rate / 3.0;
            total.1 += n;
        }
    }
    println!(
        "token endpoint by credential kind (same berth serve, {CONCURRENCY} clients, 3 interleaved rounds of 1.5 s):"
    );
    println!("  temporary key              {:>10.0} requests/s", key.0);
    println!("  instance credential        {:>10.0} requests/s", instance.0);
    println!("  key exchanged for one      {:>10.0} requests/s", bound.0);
    println!(
        "  ratio instance/key         {:>10.2}   goal >= 0.80 {}",
        instance.0 / key.0,
        if instance.0 / key.0 >= 0.8 { "ok" } else { "UNDER" }
    );
    // Pull counts are aggregated: written once (then at most once a minute), not per token.
    let view: serde_json::Value = http
        .get(format!("{}/v1/services/bench/instances/customer", berth.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "  tokens counted in the store {:>9}   of {} issued for the instance (the first written at once, the rest within a minute)",
        view["pulls"]["repositories"]["acme/app"],
        instance.1 + bound.1
    );
}

#[tokio::main]
async fn main() {
    in_process();
    over_http().await;
}

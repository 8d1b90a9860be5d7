//! `make bench` part: registry token minting rate against raw ES256 signing with the same key
//! (same process, so the ratio holds on a noisy machine), and the HTTP token endpoint of a
//! release `berth serve` on loopback under concurrent load.

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
    berth.stop();
}

#[tokio::main]
async fn main() {
    in_process();
    over_http().await;
}

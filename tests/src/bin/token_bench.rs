//! `make bench` part: registry token minting rate against raw ES256 signing with the same key
//! (same process, so the ratio holds on a noisy machine), and the HTTP token endpoint of a
//! release `berth serve` on loopback under concurrent load against the crypto limit measured
//! in the same run (one verification and one signature per token, on every core), then with
//! 2,000 connections at once. `BENCH_BERTH` names another `berth` binary to measure.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_shared::credentials::registry_token::issue;
use berth_shared::credentials::scope::parse_scopes;
use berth_shared::credentials::temporary_key::{self, KEY_AUDIENCE, KeyGrant, KeyPurpose};
use berth_shared::credentials::verified_keys;
use berth_shared::names::AccountId;
use berth_shared::platform::clock::unix_now;
use berth_shared::platform::config::RegistrySettings;
use berth_shared::platform::jws::{SigningKey, SigningKeys};
use berth_shared::platform::pem::generate_private_key_pem;
use berth_shared::platform::pem::pem_block;
use berth_tests::attack::{self, connect_from};
use berth_tests::berth::BerthServe;
use berth_tests::goals::{self, Goal};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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

/// The crypto one token request must do, on every core at once: one ES256 verification of
/// the presented key (`presented`, a JWS, checked against `public_point`) and one ES256
/// signature of a registry token's signing input (`signing_input_len` bytes). Per second.
/// Also per CPU-second this process spent (the machine's other load takes no part in it).
fn crypto_limit(public_point: &[u8], presented: &str, signing_input_len: usize, window: Duration) -> (f64, f64) {
    let (input, signature) = presented.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    // Parsed once, as a server holding its key would: the limit is the verification itself.
    let verifier = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_point).unwrap();
    verifier.verify_sig(input.as_bytes(), &signature).expect("the presented key verifies");
    let der = pem_block(&generate_private_key_pem(), "PRIVATE KEY").unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let message = vec![b'x'; signing_input_len];
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cpu = cpu_seconds(None);
    let start = Instant::now();
    let done: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    let random = SystemRandom::new();
                    let mut n = 0u64;
                    while start.elapsed() < window {
                        for _ in 0..16 {
                            verifier.verify_sig(input.as_bytes(), &signature).unwrap();
                            pair.sign(&random, &message).unwrap();
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    (done as f64 / start.elapsed().as_secs_f64(), done as f64 / (cpu_seconds(None) - cpu))
}

/// CPU seconds (user and system) used so far by process `pid`, or this one.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |pid| format!("/proc/{pid}/stat"));
    let stat = std::fs::read_to_string(path).unwrap();
    let mut fields = stat.rsplit_once(')').unwrap().1.split_whitespace().skip(11);
    let ticks: u64 = fields.next().unwrap().parse::<u64>().unwrap() + fields.next().unwrap().parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// What a load of keep-alive connections saw.
#[derive(Default)]
struct Load {
    /// Requests answered 200.
    answered: u64,
    /// Answered with another status.
    refused: u64,
    /// Sent and never answered: the connection was reset or closed first (or could not open).
    unanswered: u64,
    latencies: Vec<Duration>,
    seconds: f64,
    /// CPU seconds the server and the client spent meanwhile.
    cpu: f64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.answered as f64 / self.seconds
    }

    /// Requests answered per CPU-second of server and client.
    fn per_cpu(&self) -> f64 {
        self.answered as f64 / self.cpu
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1).min(sorted.len().saturating_sub(1));
        sorted.get(index).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    fn add(&mut self, other: Load) {
        self.answered += other.answered;
        self.refused += other.refused;
        self.unanswered += other.unanswered;
        self.latencies.extend(other.latencies);
        self.seconds += other.seconds;
        self.cpu += other.cpu;
    }
}

/// Sends `request` on `stream` and reads the answer whole: its status, or `None` if the
/// connection ended (closed or reset) first. `buffer` keeps its capacity between calls.
async fn exchange(stream: &mut TcpStream, request: &[u8], buffer: &mut Vec<u8>) -> Option<u16> {
    stream.write_all(request).await.ok()?;
    buffer.clear();
    let mut chunk = [0u8; 4096];
    let (head, length) = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).ok()?;
            let length = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())?;
            break (end + 4, length);
        }
    };
    let status = std::str::from_utf8(&buffer[9..12]).ok()?.parse().ok()?;
    while buffer.len() < head + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(status)
}

/// `connections` keep-alive HTTP/1.1 connections to `server`, spread over the loopback
/// addresses `from`, each sending the next of `requests` (shared round-robin) as soon as the
/// last is answered, for `window` once all are open. A connection the server ends is opened
/// again. A lean client (no pool, no parsing beyond the head), so that the machine's cores go
/// to the server.
async fn load(
    pid: u32,
    server: SocketAddr,
    from: &[IpAddr],
    connections: usize,
    requests: Arc<Vec<Vec<u8>>>,
    window: Duration,
) -> Load {
    let opened = futures::future::join_all((0..connections).map(|i| connect_from(from[i % from.len()], server))).await;
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = cpu_seconds(Some(pid)) + cpu_seconds(None);
    let start = Instant::now();
    let tasks = opened.into_iter().enumerate().map(|(i, stream)| {
        let (requests, next, source) = (requests.clone(), next.clone(), from[i % from.len()]);
        tokio::spawn(async move {
            let mut seen = Load::default();
            let mut stream = stream.ok();
            let mut buffer = Vec::with_capacity(4096);
            while start.elapsed() < window {
                let Some(open) = stream.as_mut() else {
                    seen.unanswered += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    stream = connect_from(source, server).await.ok();
                    continue;
                };
                let request = &requests[next.fetch_add(1, Ordering::Relaxed) % requests.len()];
                let sent = Instant::now();
                match exchange(open, request, &mut buffer).await {
                    Some(200) => {
                        seen.answered += 1;
                        seen.latencies.push(sent.elapsed());
                    }
                    Some(_) => seen.refused += 1,
                    None => {
                        seen.unanswered += 1;
                        stream = connect_from(source, server).await.ok();
                    }
                }
            }
            seen
        })
    });
    let mut total = Load::default();
    for seen in futures::future::join_all(tasks).await {
        total.add(seen.unwrap());
    }
    total.seconds = start.elapsed().as_secs_f64();
    total.cpu = cpu_seconds(Some(pid)) + cpu_seconds(None) - cpu;
    total
}

/// A token request with Basic `username:password`, as raw HTTP/1.1.
fn token_request(server: SocketAddr, username: &str, password: &str) -> Vec<u8> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!(
        "GET /v1/registry/token?service=berth-registry&scope=repository:{username}/app:pull,push HTTP/1.1\r\nHost: {server}\r\nAuthorization: Basic {basic}\r\n\r\n"
    )
    .into_bytes()
}

/// Loopback addresses the many connections come from: 250 each, within one address's share
/// (`BERTH_HTTP_MAX_CONNECTIONS_PER_ADDRESS`, 256), as many registry clients on many hosts.
const MANY_FROM: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 20)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 22)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 23)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 24)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 25)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 26)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 27)),
];
const MANY_CONNECTIONS: usize = 2000;

async fn over_http() {
    attack::raise_open_files(8192);
    let dir = tempfile::tempdir().unwrap();
    let binary = std::env::var_os("BENCH_BERTH").map_or_else(|| berth_tests::berth_bin("berth"), Into::into);
    let berth = BerthServe::start_binary(
        &binary,
        &dir.path().join("data"),
        &dir.path().join("berth.log"),
        0,
        &[("RUST_LOG", "warn")],
    );
    let server: SocketAddr = berth.url.trim_start_matches("http://").parse().unwrap();
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
    let password = key["password"].as_str().unwrap().to_owned();
    let jwks: serde_json::Value =
        http.get(format!("{}/.well-known/jwks.json", berth.url)).send().await.unwrap().json().await.unwrap();
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwks["keys"][0][name].as_str().unwrap()).unwrap();
    let public_point = [vec![4u8], coordinate("x"), coordinate("y")].concat();
    let url = format!("{}/v1/registry/token?service=berth-registry&scope=repository:acme/app:pull,push", berth.url);
    let sample: serde_json::Value =
        http.get(&url).basic_auth("acme", Some(&password)).send().await.unwrap().json().await.unwrap();
    let signing_input_len = sample["token"].as_str().unwrap().rsplit_once('.').unwrap().0.len();

    // Keys never seen by the server, more than its cache of verified keys holds: each request a
    // verification. Minted here with the server's own signing key (from its data directory).
    let signing =
        SigningKeys::load(&berth.data.join("keys/signing.key.pem"), &berth.signing_certificate(), &[]).unwrap();
    let acme = AccountId::parse("acme").unwrap();
    let fresh: Vec<Vec<u8>> = (0..2 * verified_keys::CAPACITY + 1)
        .map(|_| {
            let key = temporary_key::mint(&signing, "bench", &acme, KeyPurpose::Push, None, 3600, unix_now()).unwrap();
            token_request(server, "acme", key.password.expose())
        })
        .collect();
    let fresh = Arc::new(fresh);
    let same = Arc::new(vec![token_request(server, "acme", &password)]);

    // Rounds interleaved, so that the machine's other load falls on each alike.
    let round = Duration::from_millis(1500);
    let (mut limit, mut limit_per_cpu, mut keyed, mut unseen) = (0.0, 0.0, Load::default(), Load::default());
    for _ in 0..3 {
        let (rate, per_cpu) = crypto_limit(&public_point, &password, signing_input_len, round);
        limit += rate / 3.0;
        limit_per_cpu += per_cpu / 3.0;
        keyed
            .add(load(berth.pid(), server, &[IpAddr::V4(Ipv4Addr::LOCALHOST)], CONCURRENCY, same.clone(), round).await);
        unseen.add(
            load(berth.pid(), server, &[IpAddr::V4(Ipv4Addr::LOCALHOST)], CONCURRENCY, fresh.clone(), round).await,
        );
    }
    println!(
        "token endpoint over HTTP (release berth serve, {CONCURRENCY} keep-alive connections, client in the same 2-core machine, 3 rounds of 1.5 s interleaved):"
    );
    // Per CPU-second as well as per second: on a machine other work loads, the wall-clock
    // rates depend on how many threads each side runs (2 crypto threads against the server's
    // and the client's), the CPU-second ones do not. The goal is on the latter.
    println!("  crypto limit (verify + ES256 sign, all cores) {limit:>8.0} /s   {limit_per_cpu:>8.0} per CPU-second");
    for (what, seen) in
        [("one key, as a registry client presents it", &keyed), ("a key never seen before, each request", &unseen)]
    {
        println!(
            "  {what:<44} {:>8.0} requests/s   {:>8.0} per CPU-second (server + client)   ratio {:.2} ({:.2} by wall clock)   p50 {:.2} ms  p99 {:.2} ms",
            seen.rate(),
            seen.per_cpu(),
            seen.per_cpu() / limit_per_cpu,
            seen.rate() / limit,
            seen.quantile_ms(0.5),
            seen.quantile_ms(0.99)
        );
    }
    for seen in [&keyed, &unseen] {
        assert_eq!((seen.refused, seen.unanswered), (0, 0), "every request answered 200");
    }
    goals::report(Goal::at_least("token-endpoint/crypto-limit ratio", keyed.per_cpu() / limit_per_cpu, 0.8, ""));

    let many = load(berth.pid(), server, &MANY_FROM, MANY_CONNECTIONS, same.clone(), Duration::from_secs(5)).await;
    println!(
        "token endpoint, {MANY_CONNECTIONS} keep-alive connections from {} addresses for 5 s: {:.0} requests/s, {} answered, {} refused, {} unanswered (reset or closed), p50 {:.1} ms, p99 {:.1} ms",
        MANY_FROM.len(),
        many.rate(),
        many.answered,
        many.refused,
        many.unanswered,
        many.quantile_ms(0.5),
        many.quantile_ms(0.99)
    );
    goals::report(Goal::at_most(
        format!("token-endpoint/{MANY_CONNECTIONS} connections unanswered"),
        (many.unanswered + many.refused) as f64,
        0.0,
        "",
    ));
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

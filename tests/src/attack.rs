//! Availability attacks on a running `berth serve`, as a hostile tenant or an anonymous client
//! would make them, from other loopback addresses than the honest clients measuring meanwhile:
//! attackers on 127.0.0.2 (and .5 to .9 where one address is not enough), honest clients on
//! 127.0.0.3. Shared by the attack tests (which assert the figures) and `stall-bench` (which
//! prints them, for any `berth` build).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The attacker's main address.
pub const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
/// The honest clients' address.
pub const HONEST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
/// Attacker addresses, for attacks spread wider than one address's share of connections.
pub const ATTACKERS: [IpAddr; 6] = [
    ATTACKER,
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 5)),
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 6)),
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 7)),
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 8)),
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9)),
];
/// How long an honest request may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The server under attack.
pub struct Target {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub address: SocketAddr,
    pub pid: u32,
    /// An account token of the honest tenant.
    pub honest_token: String,
    /// An account token of the hostile tenant.
    pub attacker_token: String,
}

/// What honest clients saw during an attack, and the server's peak memory.
#[derive(Debug)]
pub struct Figures {
    pub attack: &'static str,
    /// `GET /healthz` every 50 ms, each on a new connection.
    pub health: Latencies,
    /// An authenticated `POST /v1/render` after another, each on a new connection.
    pub render: Latencies,
    /// Peak RSS of the server during the attack (MiB).
    pub peak_rss_mib: u64,
    /// What the attack itself saw.
    pub detail: String,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<34} /healthz p99 {:>7.0?} ({} of {} failed)  render p99 {:>7.0?} ({} of {} failed)  peak RSS {:>4} MiB  {}",
            self.attack,
            self.health.p99(),
            self.health.failures,
            self.health.samples.len(),
            self.render.p99(),
            self.render.failures,
            self.render.samples.len(),
            self.peak_rss_mib,
            self.detail
        )
    }
}

/// Latencies of honest requests; a failed one (error, timeout, not a 200) counts as
/// `PROBE_TIMEOUT`.
#[derive(Debug, Default)]
pub struct Latencies {
    pub samples: Vec<Duration>,
    pub failures: usize,
}

impl Latencies {
    /// The 99th percentile (the worst of fewer than 100 samples).
    pub fn p99(&self) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
        sorted.get(index).copied().unwrap_or(PROBE_TIMEOUT)
    }
}

/// A TCP connection to `to` from the loopback address `from`.
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// An HTTP client of `from` that opens a new connection for every request.
pub fn client_from(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from)
        .pool_max_idle_per_host(0)
        .timeout(PROBE_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// Lets the process open `wanted` files (sockets) at least, raising its soft limit to at most
/// the hard one; children (the server) inherit it.
pub fn raise_open_files(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit");
        if limit.rlim_cur < wanted {
            limit.rlim_cur = limit.rlim_max.min(wanted.max(limit.rlim_cur));
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "only {} open files allowed (hard limit); the attacks need {wanted}",
        limit.rlim_cur
    );
}

/// Runs `attack` while honest clients measure, with the server's peak RSS reset first
/// (`/proc/PID/clear_refs`, root).
pub async fn during(target: &Target, attack: &'static str, run: impl Future<Output = String>) -> Figures {
    std::fs::write(format!("/proc/{}/clear_refs", target.pid), "5").expect("reset the peak RSS (root)");
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let (client, url, stop) = (client_from(HONEST), format!("{}/healthz", target.url), stop.clone());
        tokio::spawn(async move {
            let mut seen = Latencies::default();
            while !stop.load(Ordering::Relaxed) {
                probe(&mut seen, client.get(&url)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    };
    let render = {
        let (client, url, stop) = (client_from(HONEST), format!("{}/v1/render", target.url), stop.clone());
        let token = target.honest_token.clone();
        tokio::spawn(async move {
            let mut seen = Latencies::default();
            let body = serde_json::json!({ "template": "image: plain\nreplicas: 2\n", "relations": {} });
            while !stop.load(Ordering::Relaxed) {
                probe(&mut seen, client.post(&url).bearer_auth(&token).json(&body)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    };
    let detail = run.await;
    stop.store(true, Ordering::Relaxed);
    let (health, render) = (health.await.expect("health probe"), render.await.expect("render probe"));
    let peak_rss_mib = crate::peak_rss_mib_of(target.pid).expect("the server's /proc status");
    Figures { attack, health, render, peak_rss_mib, detail }
}

async fn probe(seen: &mut Latencies, request: reqwest::RequestBuilder) {
    let started = Instant::now();
    let ok = match request.send().await {
        Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
        Err(_) => false,
    };
    if ok {
        seen.samples.push(started.elapsed());
    } else {
        seen.failures += 1;
        seen.samples.push(PROBE_TIMEOUT);
    }
}

/// `a: [[[[...]]]]` nested `depth` deep, as a `config.yaml`.
pub fn nested_config(depth: usize) -> String {
    format!("a: {}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Four requests at a time, for `duration`, each a config nested `depth` deep, alternately to
/// `PUT /v1/services/{id}` and `POST /v1/render`; a request still unanswered `grace` after the
/// attack's end is given up. Answers the statuses seen.
pub async fn nested_yaml(target: &Target, depth: usize, duration: Duration, grace: Duration) -> String {
    let config = nested_config(depth);
    let until = Instant::now() + duration;
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new()));
    let workers = (0..4).map(|worker| {
        let client = reqwest::Client::builder().local_address(ATTACKER).build().expect("client");
        let (config, statuses, token, url) =
            (config.clone(), statuses.clone(), target.attacker_token.clone(), target.url.clone());
        async move {
            let mut round = 0;
            while Instant::now() < until {
                let request = match (worker + round) % 2 {
                    0 => client
                        .put(format!("{url}/v1/services/deep"))
                        .json(&serde_json::json!({ "config": config, "templates": { "t.yaml": "a: b" } })),
                    _ => client
                        .post(format!("{url}/v1/render"))
                        .json(&serde_json::json!({ "template": "a: b", "config": config })),
                };
                let request =
                    request.bearer_auth(&token).timeout(until.saturating_duration_since(Instant::now()) + grace);
                let status = match request.send().await {
                    Ok(response) => response.status().as_u16().to_string(),
                    Err(_) => "no answer in time".to_owned(),
                };
                *statuses.lock().unwrap().entry(status).or_default() += 1;
                round += 1;
            }
        }
    });
    futures::future::join_all(workers).await;
    let statuses = statuses.lock().unwrap().clone();
    format!("depth {depth}, answers {statuses:?}")
}

/// Counts what the attacks saw, shared by their tasks.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    closed: AtomicU64,
}

impl Tally {
    fn summary(&self) -> String {
        format!(
            "{} opened ({} refused at once, {} answered 408, {} closed by the server)",
            self.opened.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed)
        )
    }
}

/// Waits until the server closes `stream` or `until`; counts how it ended. True if closed.
async fn held_until_closed(stream: &mut TcpStream, until: Instant, opened: Instant, tally: &Tally) -> bool {
    let mut answer = [0u8; 16];
    match tokio::time::timeout_at(until.into(), stream.read(&mut answer)).await {
        Err(_) => false,
        Ok(read) => {
            let n = read.unwrap_or(0);
            if n == 0 && opened.elapsed() < Duration::from_millis(100) {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            } else if answer[..n].starts_with(b"HTTP/1.1 408") {
                tally.timed_out.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.closed.fetch_add(1, Ordering::Relaxed);
            }
            true
        }
    }
}

/// `count` connections, spread over `from`, each sending `POST /` (no credential needed) a
/// 60 KB body one byte every 5 s, for `duration`; a connection the server closes is opened
/// again a second later. Answers what the attackers saw.
pub async fn slow_bodies(target: &Target, count: usize, from: &[IpAddr], duration: Duration) -> String {
    let until = Instant::now() + duration;
    let tally = Arc::new(Tally::default());
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nx-acs-action: ListArtifacts\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
        target.address
    );
    let tasks = (0..count).map(|i| {
        let (tally, head, address, source) = (tally.clone(), head.clone(), target.address, from[i % from.len()]);
        tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(mut stream) = connect_from(source, address).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let opened = Instant::now();
                tally.opened.fetch_add(1, Ordering::Relaxed);
                let mut sent = stream.write_all(head.as_bytes()).await.is_ok();
                while sent && Instant::now() < until {
                    let next = (Instant::now() + Duration::from_secs(5)).min(until);
                    if held_until_closed(&mut stream, next, opened, &tally).await {
                        break;
                    }
                    sent = stream.write_all(b"{").await.is_ok();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("a slow-body connection");
    }
    format!("{count} slow bodies: {}", tally.summary())
}

/// `count` connections, spread over `from`, that send nothing, for `duration`; one the server
/// closes is opened again two seconds later (sooner, the attackers' own churn would take the
/// test machine's cores, not the server's connections). Answers what the attackers saw.
pub async fn idle_connections(target: &Target, count: usize, from: &[IpAddr], duration: Duration) -> String {
    let until = Instant::now() + duration;
    let tally = Arc::new(Tally::default());
    let tasks = (0..count).map(|i| {
        let (tally, address, source) = (tally.clone(), target.address, from[i % from.len()]);
        tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(mut stream) = connect_from(source, address).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                tally.opened.fetch_add(1, Ordering::Relaxed);
                held_until_closed(&mut stream, until, Instant::now(), &tally).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("an idle connection");
    }
    format!("{count} idle connections: {}", tally.summary())
}

/// The server's open sockets (`/proc/PID/fd`).
pub fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|link| link.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// What the unread-answers attack saw.
#[derive(Debug, Clone, Copy)]
pub struct Unread {
    pub count: usize,
    /// Answers the server ended before they were whole.
    pub dropped: usize,
    /// The server's sockets before the attack, at most while it held, and after.
    pub sockets: (usize, usize, usize),
    /// How long after the last request was sent the server's sockets were back to before.
    pub freed_after: Option<Duration>,
    /// The server's RSS before the attack and once it is over (MiB).
    pub rss_before_mib: u64,
    pub rss_after_mib: u64,
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (before, held, after) = self.sockets;
        write!(
            f,
            "{} unread answers, {} dropped by the server; its sockets {before} before, up to {held} while held, {after} after (freed after {:?}); RSS {} MiB before, {} MiB after",
            self.count, self.dropped, self.freed_after, self.rss_before_mib, self.rss_after_mib
        )
    }
}

/// `count` renders of a `template_mib` MiB template whose answers are never read, until the
/// server's sockets are back to what they were (at most `patience`); then reads each to its
/// end, counting those the server ended early (the client finds only what the socket buffers
/// held; an answer loopback's buffers took whole was written, and its connection closed once
/// idle).
pub async fn unread_answers(target: &Target, count: usize, template_mib: usize, patience: Duration) -> Unread {
    let before = open_sockets(target.pid);
    let template = format!("a: b\n{}", "# filler line of a large template\n".repeat((template_mib << 20) / 35));
    let body = serde_json::to_vec(&serde_json::json!({ "template": template, "relations": {} })).expect("JSON");
    let rss_before_mib = crate::rss_mib_of(target.pid).unwrap_or(0);
    let head = format!(
        "POST /v1/render HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        target.address,
        target.attacker_token,
        body.len()
    );
    let mut streams = Vec::new();
    for _ in 0..count {
        let mut stream = connect_from(ATTACKER, target.address).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("send the head");
        stream.write_all(&body).await.expect("send the body");
        streams.push(stream);
    }
    let sent = Instant::now();
    let (mut held, mut freed_after) = (0, None);
    while sent.elapsed() < patience {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = open_sockets(target.pid);
        held = held.max(now);
        if now <= before {
            freed_after = Some(sent.elapsed());
            break;
        }
    }
    let mut dropped = 0;
    for mut stream in streams {
        let mut total = 0usize;
        let mut buffer = vec![0u8; 1 << 20];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                total += n;
            }
        })
        .await;
        if read.is_ok() && total < template_mib << 20 {
            dropped += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Unread {
        count,
        dropped,
        sockets: (before, held, open_sockets(target.pid)),
        freed_after,
        rss_before_mib,
        rss_after_mib: crate::rss_mib_of(target.pid).unwrap_or(0),
    }
}

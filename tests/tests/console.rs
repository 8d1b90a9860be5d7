//! The web console in Debian's real Chromium (headless, through chromedriver) against a real
//! `berth serve`, the Debian `docker-registry`, the Docker engine and two `berth-agent`s: the
//! seed's console walk from sign-in to a host's logs, hostile data shown as inert text, a wrong
//! token and another tenant. Screenshots of each page are written to
//! `target/console-screenshots/` as the test's output.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::docker::{DockerLeftovers, build_image, docker};
use berth_tests::stack::Stack;
use berth_tests::webdriver::Browser;
use berth_tests::{ChildGuard, berth_bin, workspace_root};
use serde_json::{Value, json};

const LIVE: Duration = Duration::from_secs(60);
/// Markup that would run if any page inserted data as HTML.
const HOSTILE: &str = "<img src=x onerror=\"window.__xss='img'\"><script>window.__xss='script'</script>";

fn screenshots() -> PathBuf {
    let dir = workspace_root().join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn sign_in(browser: &Browser, token: &str) {
    browser.wait_for("h1", "Sign in", LIVE).await;
    browser.fill("Sign in", "token", token).await;
    browser.submit("Sign in").await;
}

/// Nothing a page showed ran as script, the page was not reloaded since `mark`, and no absent
/// value was printed as "null" or "undefined".
async fn assert_inert_and_not_reloaded(browser: &Browser) {
    let script = "const t = document.querySelector('main').innerText; \
                  return [window.__xss === undefined, window.__mark === 1, !/\\b(null|undefined)\\b/.test(t)]";
    let state = browser.run(script, vec![]).await;
    assert_eq!(state, json!([true, true, true]), "a script ran, the page reloaded, or it shows null/undefined");
}

async fn shoot(browser: &Browser, name: &str) {
    browser.screenshot(&screenshots().join(format!("{name}.png"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_walk_in_chromium() {
    let stack = Stack::start(&[]);
    let mut leftovers = DockerLeftovers { containers: vec![], images: vec![] };
    let browser = Browser::start(&stack.dir.path().join("chromedriver.log"), 1280, 800).await;
    let console = format!("{}/console/packages", stack.berth.url);

    // Sign-in: a wrong token is refused and the form stays; the right one lands on the page asked for.
    browser.go(&console).await;
    sign_in(&browser, "not-a-token").await;
    browser.wait_for(".problem", "sign in again", LIVE).await;
    assert!(!browser.url().await.contains("not-a-token"), "the token never goes into a URL");
    shoot(&browser, "sign-in").await;
    sign_in(&browser, &stack.berth.dev_token("acme")).await;
    browser.wait_for("h1", "Packages", LIVE).await;
    browser.run("window.__mark = 1", vec![]).await;
    let weight = browser
        .run(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return [n.transferSize, ...performance.getEntriesByType('resource').filter(r => r.name.includes('/console/')).map(r => r.transferSize)];",
            vec![],
        )
        .await;
    let bytes: u64 = weight.as_array().unwrap().iter().map(|v| v.as_u64().unwrap_or(0)).sum();
    println!("first page: {bytes} bytes transferred ({weight})");
    assert!(bytes > 0 && bytes < 100_000, "the first page weighs {bytes} bytes");

    // Obtain access credential: the shown command logs docker in, and the push works with it.
    browser.click(&browser.wait_for("button", "Obtain access credential", LIVE).await).await;
    let command = browser.text(&browser.wait_for("#docker-login", "docker login", LIVE).await).await;
    let config = stack.dir.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let login = Command::new("bash").arg("-c").arg(&command).env("DOCKER_CONFIG", &config).output().unwrap();
    assert!(login.status.success(), "the console's docker login: {}", String::from_utf8_lossy(&login.stderr));
    shoot(&browser, "packages").await;
    let address = format!("{}/acme/web:v1", stack.registry.host);
    build_image(stack.dir.path(), &address, "Alibaba Spring Sample!");
    docker(&["push", &address], Some(&config));
    docker(&["rmi", &address], None);
    leftovers.images.push(address.clone());

    // A package with a hostile description, created in the form; it turns Available by itself.
    browser.fill("Create a package", "name", "hello_web").await;
    browser.fill("Create a package", "description", &format!("Says hello. {HOSTILE}")).await;
    browser.fill("Create a package", "version", "v1_0").await;
    browser.fill("Create a package", "repository", "acme/web").await;
    browser.fill("Create a package", "tag", "v1").await;
    browser.submit("Create a package").await;
    browser.wait_for("h1", "Package hello_web", LIVE).await;
    browser.wait_for("#versions .badge", "Available", LIVE).await;
    browser.wait_for("#versions td", "sha256:", LIVE).await;
    browser.wait_for("dd", "<script>", LIVE).await; // shown as text, not run
    assert_inert_and_not_reloaded(&browser).await;
    shoot(&browser, "package").await;

    // A problem+json answer is shown next to the field it names.
    browser.fill("Create a version", "name", "x").await;
    browser.fill("Create a version", "repository", "acme/web").await;
    browser.fill("Create a version", "tag", "v1").await;
    browser.submit("Create a version").await;
    browser.wait_for("form[aria-label='Create a version'] .field-error", "name", LIVE).await;

    // A service: its relations, a render preview, an instance suspended, resumed and rotated.
    let template = "image: {{ computenest::acrimage::web }}\nkey: {{ computenest::acr::dockerconfigjson }}\n";
    let service = json!({ "templates": { "app.yaml": template },
        "relations": { "{{ computenest::acrimage::web }}": { "package": "hello_web", "version": "latest" } } });
    let (status, answer) = stack.call("acme", "PUT", "/v1/services/shop", Some(service)).await;
    assert!(status == 200 || status == 201, "{answer}");
    let (status, answer) =
        stack.call("acme", "POST", "/v1/services/shop/instances", Some(json!({ "name": "customer_1" }))).await;
    assert_eq!(status, 201, "{answer}");
    browser.click(&browser.wait_for("nav a", "Services", LIVE).await).await;
    browser.click(&browser.wait_for("main a", "shop", LIVE).await).await;
    browser.wait_for("td", "computenest::acrimage::web", LIVE).await;
    browser.submit("Render preview").await;
    browser.wait_for("td", &format!("{}/acme/web:v1", stack.registry.host), LIVE).await;
    browser.wait_for("td", "a fresh pull key", LIVE).await;
    browser.click(&browser.wait_for("button", "Suspend", LIVE).await).await;
    browser.wait_for("td .badge", "suspended", LIVE).await;
    browser.click(&browser.wait_for("button", "Resume", LIVE).await).await;
    browser.wait_for("td .badge", "active", LIVE).await;
    browser.click(&browser.wait_for("button", "Rotate", LIVE).await).await;
    browser.wait_for(".card p", "New credential for customer_1", LIVE).await;
    assert_inert_and_not_reloaded(&browser).await;
    shoot(&browser, "service").await;

    // A group of two hosts (their agents real), a deployment whose output holds markup and 1.5 MB.
    let (status, group) = stack.call("acme", "POST", "/v1/applications", Some(json!({ "name": "demo" }))).await;
    assert_eq!(status, 201, "{group}");
    let (status, group) = stack
        .call("acme", "POST", "/v1/applications/demo/groups", Some(json!({ "name": "web", "kind": "static" })))
        .await;
    assert_eq!(status, 201, "{group}");
    let join = group["join_token"].as_str().unwrap().to_owned();
    let work = stack.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let deployment = json!({
        "name": "web", "image": { "package": "hello_web", "version": "v1_0" },
        "working_directory": work,
        "stop_script": "echo \"stopping on $BERTH_HOST\"\n",
        "start_script": format!("echo 'started on '\"$BERTH_HOST\"' {}'\nhead -c 1500000 /dev/zero | tr '\\0' 'x'\n", HOSTILE.replace('\'', "")),
        "step_timeout_seconds": 60,
    });
    let (status, answer) = stack.call("acme", "POST", "/v1/applications/demo/deployments", Some(deployment)).await;
    assert_eq!(status, 201, "{answer}");
    let mut agents = Vec::new();
    for host in ["h1", "h2"] {
        let child = Command::new(berth_bin("berth-agent"))
            .args(["--berth-url", &stack.berth.url, "--host-id", host, "--poll-seconds", "5"])
            .arg("--state-dir")
            .arg(stack.dir.path().join(format!("agent-{host}")))
            .env("BERTH_JOIN_TOKEN", &join)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stack.dir.path().join(format!("agent-{host}.log"))).unwrap())
            .spawn()
            .expect("berth-agent");
        agents.push(ChildGuard(child));
    }
    let start = Instant::now();
    while stack.call("acme", "GET", "/v1/applications/demo/groups/web", None).await.1["instances"]
        .as_array()
        .is_none_or(|hosts| hosts.len() < 2)
    {
        assert!(start.elapsed() < LIVE, "the agents did not register");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The application page by link, a release of two batches with a manual pause, planned first.
    browser.click(&browser.wait_for("nav a", "Applications", LIVE).await).await;
    browser.click(&browser.wait_for("main a", "demo", LIVE).await).await;
    browser.wait_for("h2", "Group web", LIVE).await;
    browser.wait_for("td", "h2", LIVE).await;
    browser.fill("New release", "batches", "2").await;
    browser.choose("New release", "pause", "manual").await;
    browser.submit("New release").await;
    browser.wait_for("td", "h1", LIVE).await;
    shoot(&browser, "application").await;
    browser.click(&browser.wait_for("button", "Start release", LIVE).await).await;
    browser.wait_for("h1", "Release ", LIVE).await;
    let release_url = browser.url().await;

    // Live: batch 1 succeeds and waits for confirmation without a reload; confirm; all succeed.
    browser.wait_for("button", "Confirm next batch", LIVE).await;
    browser.wait_for("[data-batch='1'] .host", "succeeded", LIVE).await;
    assert_inert_and_not_reloaded(&browser).await;
    shoot(&browser, "release").await;
    browser.click(&browser.wait_for("button", "Confirm next batch", LIVE).await).await;
    browser.wait_for("dd .badge", "succeeded", LIVE).await;
    let succeeded = browser.run("return document.querySelectorAll('.host.s-succeeded').length", vec![]).await;
    assert_eq!(succeeded, json!(2));

    // A host's logs, a part at a time: markup shown as text, 1.5 MB never loaded whole.
    browser.click(&browser.wait_for(".host", "h1", LIVE).await).await;
    browser.wait_for("h1", "Logs of h1", LIVE).await;
    let shown = browser.run("return document.getElementById('log').textContent.length", vec![]).await;
    assert!(shown.as_u64().unwrap() <= 512 * 1024, "one part at most: {shown}");
    let mut found = false;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let text = browser.run("return document.getElementById('log').textContent", vec![]).await;
        let text = text.as_str().unwrap_or_default();
        seen.push((
            browser.text(&browser.wait_for(".pager span", "", LIVE).await).await,
            text.chars().take(80).collect::<String>(),
        ));
        if text.contains("started on h1 <img src=x") {
            found = true;
            break;
        }
        let next = browser.wait_for(".pager button", "Next", LIVE).await;
        browser.click(&next).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(found, "the start script's output is in the viewer: {seen:#?}");
    let pages = browser.text(&browser.wait_for(".pager span", "part ", LIVE).await).await;
    assert!(!pages.contains("of 1:"), "1.5 MB comes in several parts: {pages}");
    assert_inert_and_not_reloaded(&browser).await;
    shoot(&browser, "logs").await;
    browser.back().await;
    assert_eq!(browser.url().await, release_url, "the back button returns to the release");
    browser.wait_for("h1", "Release ", LIVE).await;

    // Every input of every page has a label, and a phone's width scrolls no page sideways.
    browser.resize(390, 844).await;
    for path in ["/console/packages", "/console/packages/hello_web", "/console/applications/demo"] {
        browser.go(&format!("{}{path}", stack.berth.url)).await;
        browser.wait_for("h1", "", LIVE).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let check = browser
            .run(
                "return [[...document.querySelectorAll('input, select, textarea')].every(i => i.labels.length > 0), \
                 document.documentElement.scrollWidth <= window.innerWidth + 1]",
                vec![],
            )
            .await;
        assert_eq!(check, json!([true, true]), "{path}: unlabelled input (first) or sideways scroll (second)");
    }
    shoot(&browser, "phone").await;

    // Another tenant sees none of it.
    browser.resize(1280, 800).await;
    browser.click(&browser.wait_for("button", "Sign out", LIVE).await).await;
    browser.go(&console).await;
    sign_in(&browser, &stack.berth.dev_token("other")).await;
    browser.wait_for("h1", "Packages", LIVE).await;
    let page: Value = browser.run("return document.querySelector('main').textContent", vec![]).await;
    assert!(!page.as_str().unwrap().contains("hello_web"), "{page}");
    browser.go(&format!("{}/console/packages/hello_web", stack.berth.url)).await;
    browser.wait_for(".problem", "not found", LIVE).await;
    browser.go(&release_url).await;
    browser.wait_for(".problem", "not found", LIVE).await;
    drop(agents);
}

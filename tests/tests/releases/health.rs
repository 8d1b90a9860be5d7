//! Health-checked releases with real containers: images built here that crash after their
//! first answers, answer late, answer the wrong body, or carry a Docker HEALTHCHECK; a host of
//! a finished batch killed while the next batch runs; budgets in percent.

use super::*;

/// The busybox httpd serving `/www` on 8080, in the foreground.
const HTTPD: &str = "/bin/busybox httpd -f -p 8080 -h /www";

impl Setup {
    /// Like [`Setup::push_image`], with `tail` as the Dockerfile's last lines (entrypoint,
    /// HEALTHCHECK).
    fn push_with(&self, repository: &str, tag: &str, page: &str, tail: &str) -> String {
        let context = self.dir.path().join(format!("image-{repository}-{tag}"));
        std::fs::create_dir_all(context.join("www")).unwrap();
        std::fs::copy("/bin/busybox", context.join("busybox")).expect("busybox-static is missing: run `make deps`");
        std::fs::write(context.join("www/hello"), page).unwrap();
        let dockerfile = format!("FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nEXPOSE 8080\n{tail}\n");
        std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
        let address = format!("{}/{ACCOUNT}/{repository}:{tag}", self.registry.host);
        docker(&["build", "--no-cache", "-q", "-t", &address, context.to_str().unwrap()], None);
        let config = self.dir.path().join(format!("docker-push-{repository}-{tag}"));
        std::fs::create_dir_all(&config).unwrap();
        docker_login(&config, &self.registry.host, ACCOUNT, &self.push_key());
        docker(&["push", &address], Some(&config));
        docker(&["rmi", &address], None);
        address
    }

    /// Puts `revision` as the deployment `web` of application `app` (created if missing).
    async fn put_deployment(&self, app: &str, revision: Value) {
        let path = format!("/v1/applications/{app}/deployments/web");
        let (status, answer) = self.call(reqwest::Method::PUT, &path, Some(revision.clone())).await;
        if status == 404 {
            self.post(&format!("/v1/applications/{app}/deployments"), revision).await;
        } else {
            assert_eq!(status, 200, "PUT {path}: {answer}");
        }
    }

    /// One host `h1` in group `one` of application `app`, with its agent running.
    async fn one_host(&mut self, app: &str) {
        self.post("/v1/applications", json!({ "name": app })).await;
        let group = self.post(&format!("/v1/applications/{app}/groups"), json!({ "name": "one" })).await;
        let join = group["join_token"].as_str().unwrap().to_owned();
        self.start_agent(&join, "h1");
        self.wait_for_hosts(app, "one", 1).await;
    }
}

/// A one-host deployment running `image` on `port` as `container`, with `health`.
fn single(s: &Setup, image: &str, container: &str, port: u16, health: Value) -> Value {
    json!({
        "name": "web", "image": { "address": image }, "working_directory": s.dir.path().join("work"),
        "start_script": seed_start_script(image, container, port), "stop_script": seed_stop_script(container),
        "step_timeout_seconds": 60, "health": health,
    })
}

fn http_check(port: u16, expect_body: &str, timing: Value) -> Value {
    let mut health = json!({ "http": { "url": format!("http://127.0.0.1:{port}/hello"), "expect_body": expect_body } });
    health.as_object_mut().unwrap().extend(timing.as_object().unwrap().clone());
    health
}

fn host_entry<'a>(release: &'a Value, host: &str) -> &'a Value {
    release["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["hosts"].as_array().unwrap())
        .find(|h| h["host"] == host)
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_dies_after_answering_fails_batch_1_at_health_and_rolls_back() {
    let mut s = Setup::start(&[]);
    let good = s.push_image("crashy", "v1", "Alibaba Spring Sample! v1\n");
    // Answers for three seconds, then its container exits.
    let dies = "ENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox httpd -p 8080 -h /www; /bin/busybox sleep 3; exit 1\"]";
    let crashy = s.push_with("crashy", "v2", "Alibaba Spring Sample! v2\n", dies);
    let container = Container(format!("berth-crashy-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let port = free_port();
    s.one_host("crash").await;
    let health = http_check(port, "Alibaba Spring Sample!", json!({ "interval_seconds": 1, "min_healthy_seconds": 6 }));
    s.put_deployment("crash", single(&s, &good, &container.0, port, health.clone())).await;
    let release = json!({ "application": "crash", "deployment": "web", "group": "one", "auto_rollback": true });
    let r1 = s.release(release.clone()).await;
    let done = s.finished(&r1).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(host_entry(&done, "h1")["step"], "health", "{done:#}");
    let logs = s.get(&format!("/v1/releases/{r1}/hosts/h1/logs")).await;
    let probes = logs["health"]["stdout"].as_str().unwrap_or_default();
    assert!(probes.contains("healthy | HTTP 200, body \"Alibaba Spring Sample! v1"), "{logs:#}");

    // Revision 2 answers at first, then dies: caught within min_healthy_seconds.
    s.put_deployment("crash", single(&s, &crashy, &container.0, port, health)).await;
    let r2 = s.release(release).await;
    let failed = s.finished(&r2).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["phase"]["step"], "done");
    let h1 = host_entry(&failed, "h1");
    assert_eq!((h1["state"].as_str(), h1["step"].as_str()), (Some("failed"), Some("health")), "{h1}");
    let reason = h1["reason"].as_str().unwrap();
    assert!(reason.contains("after it was healthy (min_healthy_seconds 6)"), "{reason}");
    assert!(failed["reason"].as_str().unwrap().contains("batch 1"), "{failed:#}");
    // auto_rollback puts the group back on revision 1, which answers its old body.
    let back = s.wait_release(&r2, "its rollback", |r| r["rollback"].is_string()).await["rollback"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = s.finished(&back).await;
    assert_eq!((back["status"].as_str(), back["revision"].as_u64()), (Some("succeeded"), Some(1)), "{back:#}");
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/hello")).await.as_deref(),
        Some("Alibaba Spring Sample! v1\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_passes_its_start_period_and_deadlines_bodies_and_healthchecks_decide() {
    let mut s = Setup::start(&[]);
    let late = format!("ENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep 5; exec {HTTPD}\"]");
    let late = s.push_with("checks", "late", "late but fine\n", &late);
    let checked = |check: &str| {
        format!(
            "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD [\"/bin/busybox\", {check}]\n\
             ENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]"
        )
    };
    let healthy = s.push_with(
        "checks",
        "healthy",
        "ok\n",
        &checked("\"wget\", \"-q\", \"-O\", \"-\", \"http://127.0.0.1:8080/hello\""),
    );
    let unhealthy = s.push_with("checks", "unhealthy", "ok\n", &checked("\"false\""));
    let container = Container(format!("berth-checks-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let port = free_port();
    s.one_host("checks").await;
    let release = json!({ "application": "checks", "deployment": "web", "group": "one" });
    let run = |health: Value, image: &str| single(&s, image, &container.0, port, health);

    // Answers after 5 s: within a 10 s start period it passes, and is shown verifying meanwhile.
    let patient = http_check(port, "late but fine", json!({ "start_period_seconds": 10, "interval_seconds": 1 }));
    s.put_deployment("checks", run(patient, &late)).await;
    let id = s.release(release.clone()).await;
    s.wait_release(&id, "h1 verifying", |r| state_of(r, "h1") == "verifying").await;
    let progress = berth_json(&s, &["release", "get", &id]).await;
    assert_eq!(progress["summary"]["verifying"], 1, "the CLI shows it: {progress:#}");
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let logs = s.get(&format!("/v1/releases/{id}/hosts/h1/logs")).await;
    let probes = logs["health"]["stdout"].as_str().unwrap();
    assert!(probes.contains("failed: GET") && probes.contains("healthy | HTTP 200"), "{probes}");

    // The same with a 3 s deadline fails at step: health.
    let hurried = http_check(
        port,
        "late but fine",
        json!({ "start_period_seconds": 10, "interval_seconds": 1, "deadline_seconds": 3 }),
    );
    s.put_deployment("checks", run(hurried, &late)).await;
    let id = s.release(release.clone()).await;
    let failed = s.finished(&id).await;
    let h1 = host_entry(&failed, "h1");
    assert_eq!((failed["status"].as_str(), h1["step"].as_str()), (Some("failed"), Some("health")), "{failed:#}");
    assert!(h1["reason"].as_str().unwrap().contains("deadline_seconds (3)"), "{h1}");

    // A wrong body fails expect_body.
    let wrong = http_check(
        port,
        "a body it never says",
        json!({ "interval_seconds": 1, "start_period_seconds": 10, "deadline_seconds": 8 }),
    );
    s.put_deployment("checks", run(wrong, &healthy)).await;
    let id = s.release(release.clone()).await;
    let failed = s.finished(&id).await;
    let reason = host_entry(&failed, "h1")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("(expect_body)") && reason.contains("a body it never says"), "{failed:#}");

    // The container's own HEALTHCHECK: healthy passes, unhealthy fails with its reason.
    let docker_check = json!({ "docker": { "container": container.0 }, "interval_seconds": 1, "deadline_seconds": 20 });
    s.put_deployment("checks", run(docker_check.clone(), &healthy)).await;
    let id = s.release(release.clone()).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    s.put_deployment("checks", run(docker_check, &unhealthy)).await;
    let id = s.release(release).await;
    let failed = s.finished(&id).await;
    let h1 = host_entry(&failed, "h1");
    assert_eq!((failed["status"].as_str(), h1["step"].as_str()), (Some("failed"), Some("health")), "{failed:#}");
    assert!(h1["reason"].as_str().unwrap().contains("HEALTHCHECK is unhealthy"), "{h1}");
}

/// A command probe for hosts sharing this machine: each asks its own port, in bash alone.
fn port_probe(ports: &[(&str, u16)]) -> String {
    let cases: String = ports.iter().map(|(host, port)| format!("  {host}) port={port};;\n")).collect();
    format!(
        "case \"$BERTH_HOST\" in\n{cases}esac\nexec 3<>/dev/tcp/127.0.0.1/$port || exit 1\n\
         printf 'GET /hello HTTP/1.0\\r\\n\\r\\n' >&3\ngrep -q watched <&3\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_host_killed_while_batch_2_runs_fails_the_release_and_budgets_take_percents() {
    let mut s = Setup::start(&[]);
    let image = s.push_image("watched", "v1", "watched\n");
    let ports = [("h1", free_port()), ("h2", free_port()), ("h3", free_port())];
    let _containers: Vec<Container> =
        ports.iter().map(|(host, _)| Container(format!("berth-fleet-{}-{host}", ports[0].1))).collect();
    s.post("/v1/applications", json!({ "name": "watch" })).await;
    let group = s.post("/v1/applications/watch/groups", json!({ "name": "prod" })).await;
    let join = group["join_token"].as_str().unwrap().to_owned();
    for (host, _) in &ports {
        s.start_agent(&join, host);
    }
    s.wait_for_hosts("watch", "prod", 3).await;
    // h2 takes its time starting, so that batch 2 runs while h1 is killed; `fail_on` never
    // starts a container (its probe then fails).
    let revision = |fail_on: Option<&str>| {
        let start = fleet_start_script(&image, &ports, None);
        let start = match fail_on {
            Some(host) => start.replace("docker run", &format!("[ \"$BERTH_HOST\" = {host} ] || docker run")),
            None => start.replace("docker run", "[ \"$BERTH_HOST\" != h2 ] || sleep 6\ndocker run"),
        };
        json!({
            "name": "web", "image": { "address": image }, "working_directory": s.dir.path().join("work"),
            "start_script": start, "stop_script": fleet_stop_script(ports[0].1), "step_timeout_seconds": 60,
            "health": { "command": port_probe(&ports), "interval_seconds": 1, "timeout_seconds": 2, "deadline_seconds": 10 },
        })
    };
    s.put_deployment("watch", revision(None)).await;
    let body = json!({ "application": "watch", "deployment": "web", "group": "prod", "batches": 3 });
    let id = s.release(body).await;
    s.wait_release(&id, "batch 2", |r| r["phase"]["step"] == "batch" && r["phase"]["batch"] == 1).await;
    docker(&["rm", "-f", &format!("berth-fleet-{}-h1", ports[0].1)], None);
    let failed = s.finished(&id).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("host h1 of batch 1 turned unhealthy while batch 2 ran"), "{reason}");
    let h1 = host_entry(&failed, "h1");
    assert_eq!((h1["state"].as_str(), h1["step"].as_str()), (Some("failed"), Some("health")), "{h1}");
    assert_eq!(state_of(&failed, "h3"), "skipped", "batch 3 never started");

    // "34%" of 3 hosts is 1: one host failing its check is within the budgets...
    s.put_deployment("watch", revision(Some("h3"))).await;
    let percent = |p: &str| json!({ "application": "watch", "deployment": "web", "group": "prod", "max_failures": p, "max_failures_per_batch": p });
    let plan = s.post("/v1/releases?dry_run=true", percent("34%")).await;
    assert_eq!(
        (plan["options"]["max_failures"].as_u64(), plan["options"]["batch_max_failures"].clone()),
        (Some(1), json!([1])),
        "{plan:#}"
    );
    let id = s.release(percent("34%")).await;
    let done = s.finished(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!((state_of(&done, "h3"), host_entry(&done, "h3")["step"].clone()), ("failed".into(), json!("health")));
    // ... and "33%" is 0.
    let id = s.release(percent("33%")).await;
    let failed = s.finished(&id).await;
    assert_eq!((failed["status"].as_str(), failed["options"]["max_failures"].as_u64()), (Some("failed"), Some(0)));
}

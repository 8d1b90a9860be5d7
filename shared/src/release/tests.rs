use super::*;

fn account() -> AccountId {
    AccountId::parse("acme").unwrap()
}

fn hosts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("h{i}")).collect()
}

fn request(extra: serde_json::Value) -> ReleaseRequest {
    let mut body = serde_json::json!({ "application": "app", "deployment": "web", "group": "prod" });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(body).unwrap()
}

fn deployment() -> Deployment {
    Deployment {
        name: "web".into(),
        image: ImageRef { registry: "r:5000".into(), repository: "acme/web".into(), reference: ":v1".into() },
        working_directory: "/root/deploy".into(),
        start_script: "true".into(),
        stop_script: "true".into(),
        step_timeout_seconds: 10,
        registry_endpoint: RegistryEndpoint::Public,
        created_at: 0,
        revision: 1,
        health: None,
    }
}

fn release(n: usize, extra: serde_json::Value) -> Release {
    let options = validate_options(&request(extra)).unwrap();
    let batches = plan_batches(&hosts(n), &options.batching).unwrap();
    Release {
        id: "r1".into(),
        account: account(),
        application: "app".into(),
        group: "prod".into(),
        group_kind: GroupKind::Scaling,
        deployment: deployment(),
        options,
        batches: batches.into(),
        status: ReleaseStatus::Running,
        phase: Phase::Starting,
        phase_started_at: 100,
        reason: None,
        created_at: 100,
        finished_at: None,
        host_parts: None,
        trigger: Trigger::Manual,
        stale: Vec::new(),
        stale_count: 0,
        created_ms: 0,
        load_balancer: None,
    }
}

fn ok(at: u64) -> HostResult {
    HostResult { ok: true, step: Step::Start, exit_code: Some(0), reason: None, at }
}

fn failed() -> HostResult {
    HostResult { ok: false, step: Step::Start, exit_code: Some(1), reason: None, at: 0 }
}

fn pulled(ok: bool) -> PullResult {
    PullResult { ok, exit_code: Some(if ok { 0 } else { 1 }), reason: None, output: StepOutput::default(), at: 0 }
}

fn sizes(n: usize, batching: Batching) -> Vec<usize> {
    plan_batches(&hosts(n), &batching).unwrap().iter().map(Vec::len).collect()
}

#[test]
fn batches_split_evenly_and_keep_every_host_once() {
    assert_eq!(sizes(5, Batching::Count(3)), [2, 2, 1]);
    assert_eq!(sizes(2, Batching::Count(3)), [1, 1]);
    assert_eq!(sizes(10, Batching::Size(4)), [4, 4, 2]);
    assert_eq!(sizes(3, Batching::Size(10)), [3]);
    assert_eq!(sizes(10, Batching::Percents(vec![10, 40, 50])), [1, 4, 5]);
    assert_eq!(sizes(3, Batching::Percents(vec![10, 10, 80])), [1, 2], "empty batches dropped");
    for n in 1..60 {
        for batching in [Batching::Count(7), Batching::Size(3), Batching::Percents(vec![33, 33, 34])] {
            let plan = plan_batches(&hosts(n), &batching).unwrap();
            let flat: Vec<String> = plan.concat();
            assert_eq!(flat, hosts(n), "{n} hosts, {batching:?}");
            assert!(plan.iter().all(|b| !b.is_empty()));
        }
    }
    assert!(matches!(plan_batches(&[], &Batching::Count(1)), Err(ApiError::Conflict { code: "group_empty", .. })));
}

#[test]
fn options_take_one_batching_and_valid_pauses() {
    let field = |extra| match validate_options(&request(extra)) {
        Err(ApiError::Invalid { field, .. }) => field,
        other => panic!("expected invalid, got {other:?}"),
    };
    assert_eq!(field(serde_json::json!({ "batches": 2, "batch_size": 1 })), "batches");
    assert_eq!(field(serde_json::json!({ "batches": 0 })), "batches");
    assert_eq!(field(serde_json::json!({ "batches": MAX_BATCHES + 1 })), "batches");
    assert_eq!(field(serde_json::json!({ "batch_size": 0 })), "batch_size");
    assert_eq!(field(serde_json::json!({ "percents": [50, 40] })), "percents");
    assert_eq!(field(serde_json::json!({ "percents": [0, 100] })), "percents[0]");
    assert_eq!(field(serde_json::json!({ "pause": "seconds" })), "pause_seconds");
    assert_eq!(field(serde_json::json!({ "pause_seconds": 3 })), "pause_seconds");
    let options = validate_options(&request(serde_json::json!({ "max_failures": 2 }))).unwrap();
    assert_eq!(options.batching, Batching::Count(1));
    assert_eq!(options.max_failures_per_batch, 2, "per batch defaults to the whole budget");
    assert!(options.pull_first);
}

#[test]
fn deployments_are_linux_shell_absolute_and_in_the_namespace() {
    let base = serde_json::json!({
        "name": "web", "image": { "address": "r:5000/acme/web:v1" }, "working_directory": "/root/deploy",
        "start_script": "docker run x", "stop_script": "true"
    });
    let check = |patch: serde_json::Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        let request: DeploymentRequest = serde_json::from_value(body).unwrap();
        validate_deployment(request, "r:5000", None, &account(), 0)
    };
    let code = |patch| match check(patch) {
        Err(ApiError::Invalid { code, .. }) => code,
        Err(ApiError::TooLarge { .. }) => "too_large",
        other => panic!("expected invalid, got {other:?}"),
    };
    let d = check(serde_json::json!({})).unwrap();
    assert_eq!(d.image.address(), "r:5000/acme/web:v1");
    assert_eq!(d.step_timeout_seconds, DEFAULT_STEP_TIMEOUT_SECONDS);
    let parts = check(serde_json::json!({ "image": { "namespace": "acme", "repository": "web", "version": "v2" } }));
    assert_eq!(parts.unwrap().image.address(), "r:5000/acme/web:v2");
    assert_eq!(code(serde_json::json!({ "registry_endpoint": "private" })), "private_endpoint_unavailable");
    let mut private = d.clone();
    private.registry_endpoint = RegistryEndpoint::Private;
    assert_eq!(private.pull_address(Some("vpc:5000")), ("vpc:5000".into(), "vpc:5000/acme/web:v1".into()));
    assert_eq!(d.pull_address(Some("vpc:5000")).1, "r:5000/acme/web:v1", "public unless chosen");
    assert_eq!(code(serde_json::json!({ "working_directory": "root/deploy" })), "not_absolute");
    assert_eq!(code(serde_json::json!({ "working_directory": "/root/../etc" })), "invalid_path");
    assert_eq!(code(serde_json::json!({ "platform": "windows" })), "unsupported_platform");
    assert_eq!(code(serde_json::json!({ "script_language": "powershell" })), "unsupported_script_language");
    assert_eq!(
        code(serde_json::json!({ "start_script": "#!/usr/bin/python3\nprint(1)" })),
        "unsupported_script_language"
    );
    assert!(check(serde_json::json!({ "start_script": "#!/usr/bin/env bash\necho hi" })).is_ok());
    assert_eq!(code(serde_json::json!({ "stop_script": "  " })), "required");
    assert_eq!(code(serde_json::json!({ "stop_script": "x".repeat(MAX_SCRIPT_BYTES + 1) })), "too_large");
    assert_eq!(code(serde_json::json!({ "step_timeout_seconds": 0 })), "out_of_range");
    assert_eq!(code(serde_json::json!({ "image": { "address": "r:5000/other/web:v1" } })), "image_outside_namespace");
    assert_eq!(code(serde_json::json!({ "image": { "address": "docker.io/acme/web:v1" } })), "image_outside_registry");
    assert_eq!(code(serde_json::json!({ "image": { "address": "r:5000/acme/web" } })), "invalid_image");
    assert_eq!(code(serde_json::json!({ "image": { "address": "r:5000/acme/web@sha256:12" } })), "invalid_image");
}

#[test]
fn package_images_must_be_available_container_images_and_are_pinned() {
    let version = |status: &str, kind: &str, images: serde_json::Value| -> crate::package::PackageVersion {
        serde_json::from_value(serde_json::json!({
            "package": "web", "version": "v1", "number": 1, "type": kind, "status": status,
            "images": images, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap()
    };
    let one =
        serde_json::json!([{ "repository": "acme/web", "tag": "v1", "digest": format!("sha256:{}", "a".repeat(64)) }]);
    let two = serde_json::json!([{ "repository": "acme/web", "tag": "v1" }, { "repository": "acme/api", "tag": "v1" }]);
    let code = |result: Result<DeploymentImage, ApiError>| match result {
        Err(ApiError::Invalid { code, .. }) => code,
        other => panic!("{other:?}"),
    };
    let pinned = image_from_package(&version("Available", "ContainerImage", one.clone()), None, "r:5000").unwrap();
    assert_eq!(pinned, DeploymentImage::Address { address: format!("r:5000/acme/web@sha256:{}", "a".repeat(64)) });
    assert_eq!(
        code(image_from_package(&version("Creating", "ContainerImage", one.clone()), None, "r")),
        "version_not_available"
    );
    assert_eq!(code(image_from_package(&version("Available", "HelmChart", one), None, "r")), "not_container_image");
    let several = version("Available", "ContainerImage", two);
    assert_eq!(code(image_from_package(&several, None, "r")), "required");
    assert_eq!(code(image_from_package(&several, Some("acme/db"), "r")), "not_in_version");
    assert_eq!(
        image_from_package(&several, Some("acme/api"), "r").unwrap(),
        DeploymentImage::Address { address: "r/acme/api:v1".into() },
        "no digest recorded: the tag"
    );
}

#[test]
fn budgets_in_percent_round_down_per_release_and_per_batch() {
    let plan = |extra: serde_json::Value, n: usize| {
        let mut options = validate_options(&request(extra)).unwrap();
        let batches = plan_batches(&hosts(n), &options.batching).unwrap();
        resolve_budgets(&mut options, &batches);
        options
    };
    let o = plan(serde_json::json!({ "max_failures": "34%", "max_failures_per_batch": "34%" }), 3);
    assert_eq!((o.max_failures, o.batch_max_failures.as_slice()), (1, &[1][..]), "34% of 3 is 1.02");
    let o = plan(serde_json::json!({ "max_failures": "33%" }), 3);
    assert_eq!((o.max_failures, o.batch_budget(0)), (0, 0), "33% of 3 is 0.99");
    let o = plan(serde_json::json!({ "batches": 3, "max_failures": 2, "max_failures_per_batch": "34%" }), 7);
    assert_eq!((o.max_failures, o.batch_max_failures.as_slice()), (2, &[1, 0, 0][..]), "batches of 3, 2, 2");
    assert_eq!(o.max_failures_per_batch, 1, "the largest batch's, shown");
    let o = plan(serde_json::json!({ "max_failures": "10%" }), 100);
    assert_eq!((o.max_failures, o.batch_budget(0)), (10, 10), "per batch defaults to the release's");
    let counts = plan(serde_json::json!({ "max_failures": 2 }), 3);
    assert_eq!((counts.budgets_asked.clone(), counts.batch_budget(5)), (None, 2), "counts stay as they were");
    let shown = serde_json::to_value(&o).unwrap();
    assert_eq!(shown["budgets_asked"]["max_failures"], "10%");
    let field = |extra| match validate_options(&request(extra)) {
        Err(ApiError::Invalid { field, .. }) => field,
        other => panic!("expected invalid, got {other:?}"),
    };
    assert_eq!(field(serde_json::json!({ "max_failures": "101%" })), "max_failures");
    assert_eq!(field(serde_json::json!({ "max_failures_per_batch": "ten%" })), "max_failures_per_batch");
    assert_eq!(field(serde_json::json!({ "max_failures": "5" })), "max_failures");
}

#[test]
fn a_host_that_turns_unhealthy_while_watched_fails_the_release_against_the_budgets() {
    let mut r = release(4, serde_json::json!({ "batches": 2, "pull_first": false, "max_failures": 1 }));
    r.phase = Phase::Batch { batch: 1 };
    let mut results = BTreeMap::new();
    results.insert("h0".to_owned(), ok(100));
    results.insert("h1".to_owned(), ok(100));
    let none = BTreeMap::new();
    let turned = |host: &str| {
        let u = Unhealthy { reason: "HTTP 502".into(), batch: 0, during: Phase::Batch { batch: 1 }, at: 101 };
        (host.to_owned(), u)
    };
    let one: BTreeMap<_, _> = [turned("h0")].into();
    assert_eq!(decide_watched(&r, &none, &results, &one, 101), Decision::Wait, "within max_failures 1");
    let two: BTreeMap<_, _> = [turned("h0"), turned("h1")].into();
    let Decision::Finish(ReleaseStatus::Failed, Some(reason)) = decide_watched(&r, &none, &results, &two, 101) else {
        panic!("batch 2 still runs, yet two failures are over the budget")
    };
    assert!(reason.contains("host h0 of batch 1 turned unhealthy while batch 2 ran"), "{reason}");
    assert!(reason.contains("step: health"), "{reason}");
    // Per batch: batch 1 tolerates none, whatever the release's budget.
    let mut strict = release(4, serde_json::json!({ "batches": 2, "max_failures": 3, "max_failures_per_batch": 0 }));
    strict.phase = Phase::Waiting { next: 1, until: 200 };
    assert!(matches!(decide_watched(&strict, &none, &results, &one, 150), Decision::Finish(ReleaseStatus::Failed, _)));
    // A watched failure of the current batch counts in its own batch when it ends.
    let mut current = release(4, serde_json::json!({ "batches": 2, "max_failures": 1 }));
    current.phase = Phase::Batch { batch: 0 };
    let both: BTreeMap<_, _> = [turned("h1")].into();
    assert_eq!(decide_watched(&current, &none, &results, &both, 101), Decision::Move(Phase::Batch { batch: 1 }));
}

#[test]
fn big_logs_split_at_character_boundaries_and_join_back() {
    let logs = HostLogs {
        pull: None,
        stop: Some(StepOutput { stdout: "é".repeat(10), stderr: String::new() }),
        start: Some(StepOutput { stdout: "abc".repeat(7), stderr: "x".into() }),
        health: Some(StepOutput { stdout: "+0.0s healthy\n".into(), stderr: String::new() }),
    };
    let (head, parts) = split_logs(&logs, 5);
    assert!(head.stop.as_ref().unwrap().stdout.is_empty() && head.pull.is_none());
    assert!(parts.iter().all(|p| p.text.len() <= 5 && !p.text.is_empty()));
    assert_eq!(parts.iter().filter(|p| p.step == "stop").count(), 5, "two-byte characters, four bytes a part");
    assert_eq!(join_logs(head, parts), logs);
}

#[test]
fn behind_a_load_balancer_each_batch_is_drained_first_and_runs_no_job_meanwhile() {
    let mut r = release(4, serde_json::json!({ "batches": 2, "pull_first": false }));
    r.load_balancer = Some(serde_json::from_value(serde_json::json!({ "target_group_arn": "arn:x" })).unwrap());
    let none: BTreeMap<String, HostResult> = BTreeMap::new();
    assert_eq!(decide(&r, &BTreeMap::new(), &none, 100), Decision::Move(Phase::Draining { batch: 0 }));
    r = apply(&r, &Decision::Move(Phase::Draining { batch: 0 }), 100);
    assert_eq!(decide(&r, &BTreeMap::new(), &none, 10_000), Decision::Wait, "the engine takes them out");
    assert_eq!(next_job(&r, "h0", false, false), None, "no job before the host is out");
    assert_eq!(host_state(&r, "h0", None, None), HostState::Running);
    assert_eq!(host_state(&r, "h3", None, None), HostState::Pending);
    assert_eq!(r.phase_deadline(), u64::MAX, "a drain's own patience applies, not the steps'");
    r = apply(&r, &Decision::Move(Phase::Batch { batch: 0 }), 110);
    let results: BTreeMap<_, _> = [("h0".to_owned(), ok(111)), ("h1".to_owned(), ok(111))].into();
    assert_eq!(decide(&r, &BTreeMap::new(), &results, 112), Decision::Move(Phase::Draining { batch: 1 }));
    let manual = Release {
        options: ReleaseOptions { pause: PauseMode::Manual, ..r.options.clone() },
        phase: Phase::AwaitingConfirm { next: 1 },
        ..r.clone()
    };
    assert_eq!(confirm(&manual, 120).unwrap().phase, Phase::Draining { batch: 1 });
    let convergence = Release { trigger: Trigger::Convergence { of: "r0".into(), host: "h0".into() }, ..r };
    assert!(!convergence.drains(), "a new host has nothing to drain");
}

#[test]
fn a_release_moves_through_pull_batches_and_pauses() {
    let mut r = release(5, serde_json::json!({ "batches": 3, "pause": "seconds", "pause_seconds": 5 }));
    let none: BTreeMap<String, HostResult> = BTreeMap::new();
    let d = decide(&r, &BTreeMap::new(), &none, 100);
    assert_eq!(d, Decision::Move(Phase::Pulling));
    r = apply(&r, &d, 100);
    assert_eq!(next_job(&r, "h0", false, false), Some(JobKind::Pull));
    assert_eq!(next_job(&r, "h0", true, false), None, "pulled already");
    assert_eq!(decide(&r, &BTreeMap::new(), &none, 101), Decision::Wait);
    let pulls: BTreeMap<_, _> = hosts(5).into_iter().map(|h| (h, pulled(true))).collect();
    let d = decide(&r, &pulls, &none, 102);
    assert_eq!(d, Decision::Move(Phase::Batch { batch: 0 }));
    r = apply(&r, &d, 102);
    assert_eq!(next_job(&r, "h0", true, false), Some(JobKind::Run));
    assert_eq!(next_job(&r, "h4", true, false), None, "not its batch");
    assert_eq!(host_state(&r, "h0", pulls.get("h0"), None), HostState::Running);
    assert_eq!(host_state(&r, "h4", pulls.get("h4"), None), HostState::Pulled);
    let mut results = BTreeMap::new();
    results.insert("h0".to_owned(), ok(103));
    assert_eq!(decide(&r, &pulls, &results, 103), Decision::Wait);
    results.insert("h1".to_owned(), ok(103));
    let d = decide(&r, &pulls, &results, 104);
    assert_eq!(d, Decision::Move(Phase::Waiting { next: 1, until: 109 }));
    r = apply(&r, &d, 104);
    assert_eq!(decide(&r, &pulls, &results, 108), Decision::Wait);
    let d = decide(&r, &pulls, &results, 109);
    assert_eq!(d, Decision::Move(Phase::Batch { batch: 1 }));
    r = apply(&r, &d, 109);
    for h in ["h2", "h3", "h4"] {
        results.insert(h.to_owned(), ok(110));
    }
    r = apply(&r, &decide(&r, &pulls, &results, 110), 110);
    r = apply(&r, &decide(&r, &pulls, &results, 116), 116);
    assert_eq!(r.phase, Phase::Batch { batch: 2 });
    let d = decide(&r, &pulls, &results, 117);
    assert_eq!(d, Decision::Finish(ReleaseStatus::Succeeded, None));
    r = apply(&r, &d, 117);
    assert_eq!(decide(&r, &pulls, &results, 118), Decision::Wait, "finished releases stay put");
    assert_eq!(next_job(&r, "h4", true, false), None);
}

#[test]
fn failure_budgets_stop_later_batches() {
    let none = BTreeMap::new();
    let within = release(5, serde_json::json!({ "batches": 3, "max_failures": 1, "pull_first": false }));
    let mut r = apply(&within, &Decision::Move(Phase::Batch { batch: 0 }), 100);
    let mut results = BTreeMap::from([("h0".to_owned(), failed()), ("h1".to_owned(), ok(1))]);
    assert_eq!(decide(&r, &none, &results, 101), Decision::Move(Phase::Batch { batch: 1 }));
    r = apply(&r, &Decision::Move(Phase::Batch { batch: 1 }), 101);
    results.insert("h2".into(), failed());
    results.insert("h3".into(), ok(1));
    match decide(&r, &none, &results, 102) {
        Decision::Finish(ReleaseStatus::Failed, Some(reason)) => {
            assert!(reason.contains("max_failures 1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let strict = release(5, serde_json::json!({ "batches": 3, "max_failures": 3, "max_failures_per_batch": 0 }));
    let r = apply(&strict, &Decision::Move(Phase::Batch { batch: 0 }), 100);
    let results = BTreeMap::from([("h0".to_owned(), failed()), ("h1".to_owned(), ok(1))]);
    assert!(matches!(decide(&r, &none, &results, 101), Decision::Finish(ReleaseStatus::Failed, _)));
    let skipped = apply(&r, &decide(&r, &none, &results, 101), 101);
    assert_eq!(host_state(&skipped, "h4", None, None), HostState::Skipped);
    assert_eq!(host_state(&skipped, "h0", None, results.get("h0")), HostState::Failed);
}

#[test]
fn pull_failures_beyond_the_budget_stop_before_any_host_is_stopped() {
    let r = release(3, serde_json::json!({ "max_failures": 0 }));
    let r = apply(&r, &Decision::Move(Phase::Pulling), 100);
    let pulls =
        BTreeMap::from([("h0".into(), pulled(true)), ("h1".into(), pulled(false)), ("h2".into(), pulled(true))]);
    match decide(&r, &pulls, &BTreeMap::new(), 101) {
        Decision::Finish(ReleaseStatus::Failed, Some(reason)) => assert!(reason.contains("no host was stopped")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn silent_hosts_time_out_after_the_phase_deadline() {
    let r = release(2, serde_json::json!({}));
    let r = apply(&r, &Decision::Move(Phase::Pulling), 100);
    let pulls = BTreeMap::from([("h0".into(), pulled(true))]);
    let deadline = 100 + 10 + REPORT_GRACE_SECONDS;
    assert_eq!(decide(&r, &pulls, &BTreeMap::new(), deadline - 1), Decision::Wait);
    assert_eq!(decide(&r, &pulls, &BTreeMap::new(), deadline), Decision::TimeOut(vec!["h1".into()]));
}

#[test]
fn cancel_and_confirm_follow_the_state() {
    let r = release(4, serde_json::json!({ "batches": 2, "pause": "manual" }));
    let r = apply(&r, &Decision::Move(Phase::AwaitingConfirm { next: 1 }), 100);
    let confirmed = confirm(&r, 101).unwrap();
    assert_eq!(confirmed.phase, Phase::Batch { batch: 1 });
    assert!(matches!(confirm(&confirmed, 102), Err(ApiError::Conflict { .. })));
    let cancelled = cancel(&confirmed, 103).unwrap();
    assert_eq!(cancelled.status, ReleaseStatus::Cancelled);
    assert_eq!(next_job(&cancelled, "h3", true, false), None);
    assert!(matches!(cancel(&cancelled, 104), Err(ApiError::Conflict { code: "release_finished", .. })));
}

#[test]
fn a_paused_release_waits_for_confirmation_before_its_next_batch() {
    let r = release(4, serde_json::json!({ "batches": 2 }));
    let running = apply(&r, &Decision::Move(Phase::Batch { batch: 0 }), 100);
    let paused = pause(&running, 101).unwrap();
    assert_eq!((paused.phase, paused.options.pause), (Phase::Batch { batch: 0 }, PauseMode::Manual));
    let done = BTreeMap::from([("h0".into(), ok(101)), ("h1".into(), ok(101))]);
    assert_eq!(decide(&paused, &BTreeMap::new(), &done, 102), Decision::Move(Phase::AwaitingConfirm { next: 1 }));
    // A timed wait becomes a wait for confirmation at once.
    let timed = release(4, serde_json::json!({ "batches": 2, "pause": "seconds", "pause_seconds": 600 }));
    let waiting = apply(&timed, &Decision::Move(Phase::Waiting { next: 1, until: 700 }), 100);
    assert_eq!(pause(&waiting, 101).unwrap().phase, Phase::AwaitingConfirm { next: 1 });
    let cancelled = cancel(&running, 103).unwrap();
    assert!(matches!(pause(&cancelled, 104), Err(ApiError::Conflict { code: "not_running", .. })));
}

#[test]
fn a_manual_pause_nobody_confirms_fails_the_release_after_its_timeout() {
    let r = release(4, serde_json::json!({ "batches": 2, "pause": "manual", "pause_timeout_seconds": 60 }));
    let r = apply(&r, &Decision::Move(Phase::AwaitingConfirm { next: 1 }), 100);
    let (pulls, none) = (BTreeMap::new(), BTreeMap::new());
    assert_eq!(decide(&r, &pulls, &none, 159), Decision::Wait);
    let Decision::Finish(status, Some(reason)) = decide(&r, &pulls, &none, 160) else { panic!("not finished") };
    assert_eq!(status, ReleaseStatus::Failed);
    assert!(reason.contains("pause_timeout_seconds (60)"), "{reason}");
    let default = release(4, serde_json::json!({ "batches": 2, "pause": "manual" }));
    assert_eq!(default.options.pause_timeout_seconds, DEFAULT_PAUSE_TIMEOUT_SECONDS);
    let field = |body| match validate_options(&request(body)) {
        Err(ApiError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(serde_json::json!({ "pause_timeout_seconds": 60 })), "pause_timeout_seconds");
    assert_eq!(field(serde_json::json!({ "pause": "manual", "pause_timeout_seconds": 0 })), "pause_timeout_seconds");
}

#[test]
fn a_suspend_is_confirmed_only_for_the_lease_that_asked() {
    let s = take_lease(&ScalingState::default(), "r1", None, 100).unwrap();
    assert!(s.paused && !s.suspended, "taken, not yet carried out");
    let confirmed = confirm_suspended(&s, "r1");
    assert!(confirmed.suspended);
    assert_eq!(confirm_suspended(&s, "r2"), s, "another release's confirmation changes nothing");
    assert!(take_lease(&confirmed, "r1", None, 200).unwrap().suspended, "a renewal keeps it");
    assert!(!release_lease(&confirmed, "r1", true).suspended);
    let aws = take_lease(&ScalingState::default(), "r1", Some("web-asg"), 100).unwrap();
    let failed = scaling_failed(&aws, "throttled");
    assert_eq!((failed.suspended, failed.error.as_deref()), (false, Some("throttled")), "a failure is no suspend");
    let renewed = take_lease(&confirm_suspended(&failed, "r1"), "r1", Some("web-asg"), 200).unwrap();
    assert_eq!(renewed.lease.unwrap().auto_scaling_group.as_deref(), Some("web-asg"), "a renewal keeps the group");
    assert_eq!(confirm_suspended(&failed, "r1").error, None, "a success clears the reason");
}

#[test]
fn a_large_plan_is_stored_in_parts_and_joined_back_exactly() {
    let small = release(10, serde_json::json!({ "batches": 3 }));
    assert_eq!(split_plan(&small), (small.clone(), Vec::new()), "small plans stay one document");
    let n = PLAN_PART_HOSTS * 2 + 17;
    let mut large = release(n, serde_json::json!({ "percents": [1, 9, 90] }));
    // Host ids of the full allowed length.
    for (i, host) in std::sync::Arc::make_mut(&mut large.batches).iter_mut().flatten().enumerate() {
        *host = format!("{i:0>width$}", width = crate::names::MAX_NAME_LEN);
    }
    let (head, parts) = split_plan(&large);
    assert!(head.batches.is_empty());
    assert_eq!(parts.len(), 3);
    for part in &parts {
        assert!(serde_json::to_vec(part).unwrap().len() < crate::platform::store::MAX_DOCUMENT_BYTES * 3 / 4);
    }
    let stored: Release = serde_json::from_slice(&serde_json::to_vec(&head).unwrap()).unwrap();
    assert_eq!(join_plan(stored.clone(), parts.clone()).unwrap(), large);
    assert!(join_plan(stored.clone(), parts[..2].to_vec()).is_err(), "a missing part");
    let mut short = parts.clone();
    short[2].pop();
    assert!(join_plan(stored, short).is_err(), "a part cut short");
}

#[test]
fn leases_pause_once_and_resume_once() {
    let s = ScalingState::default();
    let s = take_lease(&s, "r1", None, 100).unwrap();
    assert!(s.paused);
    let renewed = take_lease(&s, "r1", None, 200).unwrap();
    assert_eq!((renewed.pauses, renewed.lease.as_ref().unwrap().expires_at), (1, 200 + LEASE_SECONDS));
    assert!(take_lease(&renewed, "r2", None, 300).is_err(), "a live lease of another release");
    assert!(take_lease(&renewed, "r2", None, 200 + LEASE_SECONDS).is_ok(), "an expired one is taken over");
    let resumed = release_lease(&renewed, "r1", true);
    assert!(!resumed.paused);
    assert_eq!(resumed.resumes, 1);
    assert_eq!(release_lease(&resumed, "r1", true), resumed, "releasing twice changes nothing");
    assert_eq!(release_lease(&renewed, "r2", true), renewed, "another release's lease is left alone");
    // An advance that read r1 before its end (a cancel) does not pause scaling again for it;
    // a lease reaped because it expired, its release still running, is taken again.
    assert!(take_lease(&resumed, "r1", None, 300).is_err(), "an ended release pauses no more");
    let reaped = release_lease(&renewed, "r1", false);
    assert_eq!(take_lease(&reaped, "r1", None, 300).unwrap().pauses, 2);
    let mut many = resumed.clone();
    for i in 2..20 {
        let id = format!("r{i}");
        many = release_lease(&take_lease(&many, &id, None, 300).unwrap(), &id, true);
    }
    assert_eq!(many.ended.len(), MAX_ENDED_KEPT, "the remembered ends are bounded");
    assert!(take_lease(&many, "r19", None, 300).is_err() && take_lease(&many, "r1", None, 300).is_ok());
    assert!(!lease_needs_renewal(&renewed, "r1", 201));
    assert!(lease_needs_renewal(&renewed, "r1", 200 + LEASE_SECONDS / 2 + 1));
}

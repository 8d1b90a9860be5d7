//! Tests of the health block's validation and of the verification's timing rules.

use super::*;

fn check(patch: serde_json::Value) -> Result<HealthCheck, ApiError> {
    let mut body = serde_json::json!({ "http": { "url": "http://localhost:8080/hello" } });
    body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
    validate_health(serde_json::from_value(body).unwrap())
}

fn field(patch: serde_json::Value) -> String {
    match check(patch) {
        Err(ApiError::Invalid { field, .. }) | Err(ApiError::TooLarge { field, .. }) => field,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn every_field_is_validated_and_named() {
    let c = check(serde_json::json!({})).unwrap();
    assert_eq!((c.start_period_seconds, c.interval_seconds, c.timeout_seconds, c.healthy_threshold), (0, 2, 2, 1));
    assert_eq!((c.min_healthy_seconds, c.deadline_seconds), (0, 300));
    assert_eq!(field(serde_json::json!({ "tcp": { "address": "localhost:1" } })), "health");
    assert_eq!(field(serde_json::json!({ "http": null })), "health");
    assert_eq!(field(serde_json::json!({ "http": { "url": "ftp://x/" } })), "health.http.url");
    assert_eq!(field(serde_json::json!({ "http": { "url": "http://x/ y" } })), "health.http.url");
    assert_eq!(
        field(serde_json::json!({ "http": { "url": "http://x/", "expect_status": 99 } })),
        "health.http.expect_status"
    );
    assert_eq!(
        field(serde_json::json!({ "http": { "url": "http://x/", "expect_body": "" } })),
        "health.http.expect_body"
    );
    let long = "x".repeat(MAX_EXPECT_BODY_BYTES + 1);
    assert_eq!(
        field(serde_json::json!({ "http": { "url": "http://x/", "expect_body": long } })),
        "health.http.expect_body"
    );
    let tcp = |address: &str| field(serde_json::json!({ "http": null, "tcp": { "address": address } }));
    assert_eq!(tcp("localhost"), "health.tcp.address");
    assert_eq!(tcp("localhost:0"), "health.tcp.address");
    assert_eq!(tcp(":80"), "health.tcp.address");
    assert_eq!(field(serde_json::json!({ "http": null, "command": " " })), "health.command");
    let script = "x".repeat(MAX_SCRIPT_BYTES + 1);
    assert_eq!(field(serde_json::json!({ "http": null, "command": script })), "health.command");
    assert_eq!(field(serde_json::json!({ "http": null, "docker": { "container": "-x" } })), "health.docker.container");
    for (name, bad) in [
        ("start_period_seconds", 601),
        ("interval_seconds", 0),
        ("interval_seconds", 61),
        ("timeout_seconds", 0),
        ("healthy_threshold", 11),
        ("min_healthy_seconds", 3601),
        ("deadline_seconds", 0),
    ] {
        assert_eq!(field(serde_json::json!({ name: bad })), format!("health.{name}"));
    }
    let docker = check(serde_json::json!({ "http": null, "docker": { "container": "web-1" } })).unwrap();
    let shown = serde_json::to_value(&docker).unwrap();
    assert_eq!(shown["docker"]["container"], "web-1", "shown in the shape it is asked in: {shown}");
    let again: HealthRequest = serde_json::from_value(shown).unwrap();
    assert_eq!(validate_health(again).unwrap(), docker, "a check read back can be posted again");
}

fn verifier(patch: serde_json::Value) -> Verifier {
    Verifier::new(&check(patch).unwrap())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn fail() -> ProbeOutcome {
    ProbeOutcome::Fail("connection refused".into())
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    let mut v = verifier(serde_json::json!({ "start_period_seconds": 10, "interval_seconds": 1 }));
    for s in 0..5 {
        assert_eq!(v.observe(secs(s), &fail()), Verdict::Probing, "{s} s");
    }
    assert_eq!(v.observe(secs(5), &ProbeOutcome::Pass), Verdict::Healthy);
    let mut v = verifier(serde_json::json!({ "start_period_seconds": 3 }));
    assert_eq!(v.observe(secs(2), &fail()), Verdict::Probing);
    let Verdict::Failed(reason) = v.observe(secs(3), &fail()) else { panic!("counted after the period") };
    assert!(reason.contains("start_period_seconds (3)") && reason.contains("connection refused"), "{reason}");
}

#[test]
fn consecutive_passes_reach_the_threshold() {
    let mut v = verifier(serde_json::json!({ "healthy_threshold": 3, "start_period_seconds": 60 }));
    assert_eq!(v.observe(secs(0), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.observe(secs(2), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.observe(secs(4), &fail()), Verdict::Probing, "in the start period: resets the run only");
    assert_eq!(v.observe(secs(6), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.observe(secs(8), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.observe(secs(10), &ProbeOutcome::Pass), Verdict::Healthy);
}

#[test]
fn a_failure_within_min_healthy_fails_the_host_and_surviving_it_succeeds() {
    let mut v = verifier(serde_json::json!({ "min_healthy_seconds": 5, "interval_seconds": 1 }));
    assert_eq!(v.observe(secs(0), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.observe(secs(1), &ProbeOutcome::Pass), Verdict::Probing);
    let Verdict::Failed(reason) = v.observe(secs(3), &fail()) else { panic!("caught") };
    assert!(reason.contains("3 s after it was healthy"), "{reason}");
    let mut v = verifier(serde_json::json!({ "min_healthy_seconds": 5, "start_period_seconds": 100 }));
    assert_eq!(v.observe(secs(1), &ProbeOutcome::Pass), Verdict::Probing);
    assert!(matches!(v.observe(secs(2), &fail()), Verdict::Failed(_)), "the start period does not cover it");
    let mut v = verifier(serde_json::json!({ "min_healthy_seconds": 5 }));
    assert_eq!(v.observe(secs(1), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.observe(secs(4), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.observe(secs(6), &ProbeOutcome::Pass), Verdict::Healthy);
}

#[test]
fn the_deadline_fails_a_host_not_healthy_by_then_and_bounds_the_probes() {
    let mut v =
        verifier(serde_json::json!({ "start_period_seconds": 10, "deadline_seconds": 3, "interval_seconds": 2 }));
    assert_eq!(v.next_probe(secs(0)), secs(2));
    assert_eq!(v.next_probe(secs(2)), secs(3), "one last probe at the deadline");
    assert_eq!(v.observe(secs(2), &fail()), Verdict::Probing);
    let Verdict::Failed(reason) = v.observe(secs(3), &fail()) else { panic!("deadline") };
    assert!(reason.contains("deadline_seconds (3)"), "{reason}");
    let mut v = verifier(serde_json::json!({ "deadline_seconds": 3, "min_healthy_seconds": 10 }));
    assert_eq!(v.observe(secs(2), &ProbeOutcome::Pass), Verdict::Probing);
    assert_eq!(v.next_probe(secs(2)), secs(4), "healthy: the deadline no longer applies");
    assert_eq!(v.observe(secs(12), &ProbeOutcome::Pass), Verdict::Healthy);
    let mut v = verifier(serde_json::json!({ "deadline_seconds": 3 }));
    let starting = ProbeOutcome::NotYet("starting".into());
    assert_eq!(v.observe(secs(2), &starting), Verdict::Probing, "not yet is no failure");
    assert!(matches!(v.observe(secs(3), &starting), Verdict::Failed(_)));
}

#[test]
fn a_fatal_outcome_fails_at_once() {
    let mut v = verifier(serde_json::json!({ "start_period_seconds": 600 }));
    let exited = ProbeOutcome::Fatal("the container exited (code 1)".into());
    assert_eq!(v.observe(secs(0), &exited), Verdict::Failed("the container exited (code 1)".into()));
}

#[test]
fn an_unhealthy_host_reads_as_a_health_failure_naming_when() {
    let u = Unhealthy { reason: "HTTP 502".into(), batch: 0, during: Phase::Batch { batch: 1 }, at: 5 };
    let result = u.as_result();
    assert_eq!((result.ok, result.step), (false, Step::Health));
    assert!(result.reason.unwrap().contains("while batch 2 ran"));
}

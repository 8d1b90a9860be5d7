//! Gates on a release beyond its hosts' scripts: the alarms that fail it, and the load
//! balancer its hosts are drained from before they stop and put back into once healthy.

use super::*;

/// Most alarms one release may name.
pub const MAX_ALARMS: usize = 20;
/// Longest CloudWatch alarm name (CloudWatch's own limit).
pub const MAX_ALARM_NAME_BYTES: usize = 255;
/// Longest Prometheus expression.
pub const MAX_PROMETHEUS_EXPRESSION_BYTES: usize = 4096;
/// How often a running release's alarms are read at most (they are read again before each
/// batch whatever this says).
pub const ALARM_CHECK_SECONDS: u64 = 3;
/// How long an unreachable alarm source is retried before the release fails, by default.
pub const DEFAULT_ALARM_UNREACHABLE_SECONDS: u64 = 120;
/// Longest `alarm_unreachable_seconds`.
pub const MAX_ALARM_UNREACHABLE_SECONDS: u64 = 3600;
/// Longest `drain_seconds`.
pub const MAX_DRAIN_SECONDS: u64 = 3600;
/// Most hosts a release of a group behind a load balancer may plan (an AWS target group
/// holds at most 1,000 targets; the per-host drain record of a release stays small).
pub const MAX_BALANCED_HOSTS: usize = 1000;
/// Longest HAProxy name (backend or server) and runtime API address.
pub const MAX_BALANCER_FIELD_BYTES: usize = 256;
/// Longest target group ARN.
pub const MAX_TARGET_GROUP_ARN_BYTES: usize = 512;

/// Validates a release's alarms: each field at fault is named (`alarms[2]`).
pub fn validate_alarms(alarms: &[Alarm]) -> Result<(), ApiError> {
    if alarms.len() > MAX_ALARMS {
        return Err(ApiError::invalid("alarms", "too_many", format!("at most {MAX_ALARMS} alarms")));
    }
    for (i, alarm) in alarms.iter().enumerate() {
        let field = format!("alarms[{i}]");
        let (text, limit) = match alarm {
            Alarm::CloudWatch(name) => (name, MAX_ALARM_NAME_BYTES),
            Alarm::Prometheus { prometheus } => (prometheus, MAX_PROMETHEUS_EXPRESSION_BYTES),
        };
        if text.trim().is_empty() || text.len() > limit {
            return Err(ApiError::invalid(field, "out_of_range", format!("must be 1 to {limit} bytes")));
        }
        if text.chars().any(char::is_control) {
            return Err(ApiError::invalid(field, "invalid_alarm", "control characters are not allowed"));
        }
    }
    Ok(())
}

/// Validates `alarm_unreachable_seconds` (1 to [`MAX_ALARM_UNREACHABLE_SECONDS`]).
pub fn validate_alarm_unreachable(seconds: Option<u64>) -> Result<u64, ApiError> {
    match seconds {
        None => Ok(DEFAULT_ALARM_UNREACHABLE_SECONDS),
        Some(s) if (1..=MAX_ALARM_UNREACHABLE_SECONDS).contains(&s) => Ok(s),
        Some(_) => Err(ApiError::invalid(
            "alarm_unreachable_seconds",
            "out_of_range",
            format!("must be 1 to {MAX_ALARM_UNREACHABLE_SECONDS}"),
        )),
    }
}

/// HAProxy names: letters, digits, `-_.:` (its own rule); nothing that could end a runtime
/// API command.
fn haproxy_name(text: &str, extra: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_BALANCER_FIELD_BYTES
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c) || extra.contains(c))
}

/// Validates a group's `load_balancer`; fields at fault are named (`load_balancer.haproxy.backend`).
pub fn validate_load_balancer(lb: &LoadBalancer) -> Result<(), ApiError> {
    const FIELD: &str = "load_balancer";
    match (&lb.haproxy, &lb.target_group_arn) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::invalid(
                FIELD,
                "conflicting_fields",
                "give exactly one of haproxy and target_group_arn",
            ));
        }
        (Some(h), None) => {
            let api = h.runtime_api.strip_prefix("unix:").unwrap_or(&h.runtime_api);
            let socket = api.starts_with('/') && !api.split('/').any(|p| p == "..");
            if api.len() > MAX_BALANCER_FIELD_BYTES
                || !(socket && haproxy_name(api, "/") || !socket && runtime_tcp_address(api))
            {
                return Err(ApiError::invalid(
                    "load_balancer.haproxy.runtime_api",
                    "invalid_address",
                    "must be HOST:PORT or the absolute path of a unix socket",
                ));
            }
            if !haproxy_name(&h.backend, "") {
                return Err(ApiError::invalid(
                    "load_balancer.haproxy.backend",
                    "invalid_name",
                    format!("1 to {MAX_BALANCER_FIELD_BYTES} letters, digits, '-', '_', '.' or ':'"),
                ));
            }
            if let Some(server) = &h.server
                && !haproxy_name(&server.replace("{host}", "h"), "")
            {
                return Err(ApiError::invalid(
                    "load_balancer.haproxy.server",
                    "invalid_name",
                    "letters, digits, '-', '_', '.', ':' and {host}",
                ));
            }
        }
        (None, Some(arn)) => {
            let ok = arn.len() <= MAX_TARGET_GROUP_ARN_BYTES
                && arn.starts_with("arn:")
                && arn.contains(":elasticloadbalancing:")
                && arn.contains(":targetgroup/")
                && arn.chars().all(|c| c.is_ascii_graphic());
            if !ok {
                return Err(ApiError::invalid(
                    "load_balancer.target_group_arn",
                    "invalid_arn",
                    "must be a target group's ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)",
                ));
            }
        }
    }
    if lb.drain_seconds > MAX_DRAIN_SECONDS {
        return Err(ApiError::invalid(
            "load_balancer.drain_seconds",
            "out_of_range",
            format!("must be 0 to {MAX_DRAIN_SECONDS}"),
        ));
    }
    Ok(())
}

fn runtime_tcp_address(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else { return false };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// What a release did with the group's load balancer: `releases/{id}/balancer.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerState {
    /// Each host the release drained, by name.
    #[serde(default)]
    pub hosts: BTreeMap<String, Balanced>,
    /// Why the load balancer could not be reached, while Berth retries (no host is stopped
    /// meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a host that is out is put back when its release ends with `result` (or none): it
/// is on its previous revision (its stop script never ran: no result, or its pull failed) or
/// it succeeded (healthy on the new one). A host that failed at its stop or start script, its
/// health check or its report is left out.
pub fn put_back_at_end(result: Option<&HostResult>) -> bool {
    result.is_none_or(|r| r.ok || r.step == Step::Pull)
}

/// The phase that starts batch `batch`: its hosts are drained first when the release's group
/// is behind a load balancer.
pub fn enter_batch(release: &Release, batch: usize) -> Phase {
    if release.drains() { Phase::Draining { batch } } else { Phase::Batch { batch } }
}

impl Release {
    /// Whether its hosts are drained from a load balancer before they stop (a convergence
    /// brings a new host up and has nothing to drain).
    pub fn drains(&self) -> bool {
        self.load_balancer.is_some() && !matches!(self.trigger, Trigger::Convergence { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<(), ApiError>) -> (String, &'static str) {
        match result {
            Err(ApiError::Invalid { field, code, .. }) => (field, code),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn alarms_parse_as_names_or_prometheus_expressions_and_are_bounded() {
        let alarms: Vec<Alarm> =
            serde_json::from_value(serde_json::json!(["high-5xx", { "prometheus": "up == 0" }])).unwrap();
        assert_eq!(alarms[0], Alarm::CloudWatch("high-5xx".into()));
        assert_eq!(alarms[1].name(), "up == 0");
        assert!(validate_alarms(&alarms).is_ok());
        assert_eq!(code(validate_alarms(&[Alarm::CloudWatch(" ".into())])), ("alarms[0]".into(), "out_of_range"));
        let long = Alarm::Prometheus { prometheus: "x".repeat(MAX_PROMETHEUS_EXPRESSION_BYTES + 1) };
        assert_eq!(code(validate_alarms(&[alarms[0].clone(), long])), ("alarms[1]".into(), "out_of_range"));
        assert_eq!(code(validate_alarms(&[Alarm::CloudWatch("a\nb".into())])).1, "invalid_alarm");
        assert_eq!(code(validate_alarms(&vec![alarms[0].clone(); MAX_ALARMS + 1])).1, "too_many");
        assert!(serde_json::from_value::<Vec<Alarm>>(serde_json::json!([{ "cloudwatch": "x" }])).is_err());
        assert_eq!(validate_alarm_unreachable(None).unwrap(), DEFAULT_ALARM_UNREACHABLE_SECONDS);
        assert!(validate_alarm_unreachable(Some(0)).is_err());
        assert!(validate_alarm_unreachable(Some(MAX_ALARM_UNREACHABLE_SECONDS + 1)).is_err());
    }

    #[test]
    fn load_balancers_are_one_of_haproxy_and_a_target_group_with_safe_names() {
        let lb = |value: serde_json::Value| serde_json::from_value::<LoadBalancer>(value).unwrap();
        let ok = lb(serde_json::json!({ "haproxy": { "runtime_api": "127.0.0.1:9999", "backend": "web" } }));
        assert_eq!(ok.drain_seconds, DEFAULT_DRAIN_SECONDS);
        assert!(validate_load_balancer(&ok).is_ok());
        assert_eq!(ok.haproxy.as_ref().unwrap().server_of("h1"), "h1");
        let templated = HaproxyBackend { server: Some("web-{host}".into()), ..ok.haproxy.clone().unwrap() };
        assert_eq!(templated.server_of("h1"), "web-h1");
        let socket =
            lb(serde_json::json!({ "haproxy": { "runtime_api": "unix:/run/haproxy/admin.sock", "backend": "b" } }));
        assert!(validate_load_balancer(&socket).is_ok());
        let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/50dc6c495c0c9188";
        assert!(
            validate_load_balancer(&lb(serde_json::json!({ "target_group_arn": arn, "drain_seconds": 0 }))).is_ok()
        );
        let field = |value| code(validate_load_balancer(&lb(value))).0;
        assert_eq!(field(serde_json::json!({ "drain_seconds": 5 })), "load_balancer");
        assert_eq!(
            field(serde_json::json!({ "target_group_arn": arn, "haproxy": { "runtime_api": "h:1", "backend": "b" } })),
            "load_balancer"
        );
        assert_eq!(
            field(serde_json::json!({ "haproxy": { "runtime_api": "h:1", "backend": "b\nshutdown" } })),
            "load_balancer.haproxy.backend"
        );
        assert_eq!(
            field(serde_json::json!({ "haproxy": { "runtime_api": "h:1", "backend": "b", "server": "a b" } })),
            "load_balancer.haproxy.server"
        );
        assert_eq!(
            field(serde_json::json!({ "haproxy": { "runtime_api": "nohost", "backend": "b" } })),
            "load_balancer.haproxy.runtime_api"
        );
        assert_eq!(
            field(serde_json::json!({ "haproxy": { "runtime_api": "/run/../x", "backend": "b" } })),
            "load_balancer.haproxy.runtime_api"
        );
        assert_eq!(
            field(serde_json::json!({ "target_group_arn": "arn:aws:s3:::bucket" })),
            "load_balancer.target_group_arn"
        );
        assert_eq!(
            field(serde_json::json!({ "target_group_arn": arn, "drain_seconds": MAX_DRAIN_SECONDS + 1 })),
            "load_balancer.drain_seconds"
        );
    }

    #[test]
    fn hosts_go_back_at_the_end_unless_their_new_revision_failed() {
        let result = |ok, step| HostResult { ok, step, exit_code: None, reason: None, at: 0 };
        assert!(put_back_at_end(None), "never stopped: still on its previous revision");
        assert!(put_back_at_end(Some(&result(true, Step::Start))));
        assert!(put_back_at_end(Some(&result(false, Step::Pull))), "the pull failed before the stop script");
        assert!(!put_back_at_end(Some(&result(false, Step::Start))));
        assert!(!put_back_at_end(Some(&result(false, Step::Stop))));
        assert!(!put_back_at_end(Some(&result(false, Step::Report))));
    }
}

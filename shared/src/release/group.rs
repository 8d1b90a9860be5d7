//! Application groups: static or scaling, and the lease by which a release pauses scaling.

use super::*;

/// Whether a group's hosts come and go by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A fixed set of hosts.
    #[default]
    Static,
    /// A scaling group: scaling is paused during a release and resumed afterwards.
    Scaling,
}

/// Scaling state of a group as the built-in adapter records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScalingState {
    /// Whether a release holds the pause (its lease is recorded).
    pub paused: bool,
    /// Whether the adapter confirmed that scaling activities are suspended. Set only after it
    /// answered; until then no host of the release is stopped.
    #[serde(default)]
    pub suspended: bool,
    /// The lease that holds the pause, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<ScalingLease>,
    /// How many times scaling was paused (for audits and tests).
    #[serde(default)]
    pub pauses: u32,
    /// How many times scaling was resumed.
    #[serde(default)]
    pub resumes: u32,
    /// Why the adapter could not carry out the last suspend or resume (AWS refused or did not
    /// answer); cleared once one succeeds. Berth retries meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The releases whose end resumed scaling last (at most [`MAX_ENDED_KEPT`], newest
    /// last): an advance that read one of them before it ended must not pause scaling again
    /// for it (a cancel ends a release while its advance may be under way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<String>,
}

/// Ended releases a group's scaling state remembers: one group runs one release at a time,
/// so an advance that lags behind its release's end finds it among the last few.
pub const MAX_ENDED_KEPT: usize = 8;

/// A durable claim on a group's scaling pause by one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingLease {
    /// The release holding it.
    pub release: String,
    /// Seconds since the epoch after which a reaper may resume scaling.
    pub expires_at: u64,
    /// The AWS Auto Scaling group the pause is carried out on (`None`: the built-in adapter).
    /// Recorded with the lease, so a resume reaches what the suspend did whatever happens to
    /// the group's document meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<String>,
}

/// Takes (or renews) the pause for `release`, carried out on `auto_scaling_group` (if any). A
/// lease of another release that has expired is taken over; a live one of another release is
/// a conflict.
pub fn take_lease(
    state: &ScalingState,
    release: &str,
    auto_scaling_group: Option<&str>,
    now: u64,
) -> Result<ScalingState, String> {
    let mut next = state.clone();
    match &state.lease {
        Some(lease) if lease.release != release && lease.expires_at > now => {
            return Err(format!("scaling is paused by release {}", lease.release));
        }
        _ => {}
    }
    if state.ended.iter().any(|ended| ended == release) {
        return Err(format!("release {release} ended and resumed scaling; it pauses it no more"));
    }
    if !state.paused {
        next.pauses += 1;
    }
    next.paused = true;
    next.lease = Some(ScalingLease {
        release: release.to_owned(),
        expires_at: now + LEASE_SECONDS,
        auto_scaling_group: auto_scaling_group.map(str::to_owned),
    });
    Ok(next)
}

/// Records that the adapter suspended scaling for `release`'s lease; a lease that moved on
/// meanwhile is left alone.
pub fn confirm_suspended(state: &ScalingState, release: &str) -> ScalingState {
    let mut next = state.clone();
    if state.lease.as_ref().is_some_and(|l| l.release == release) {
        next.suspended = true;
        next.error = None;
    }
    next
}

/// Records why the adapter could not suspend or resume (shown on the group until one succeeds).
pub fn scaling_failed(state: &ScalingState, why: &str) -> ScalingState {
    ScalingState { error: Some(why.to_owned()), ..state.clone() }
}

/// Releases `release`'s pause; anything else (no lease, another release's lease) is left alone.
/// A release that `ended` is remembered, so that it never takes the pause again.
pub fn release_lease(state: &ScalingState, release: &str, ended: bool) -> ScalingState {
    let mut next = state.clone();
    if state.lease.as_ref().is_some_and(|l| l.release == release) {
        if ended && !next.ended.iter().any(|e| e == release) {
            if next.ended.len() >= MAX_ENDED_KEPT {
                next.ended.remove(0);
            }
            next.ended.push(release.to_owned());
        }
        next.lease = None;
        next.suspended = false;
        next.error = None;
        if state.paused {
            next.paused = false;
            next.resumes += 1;
        }
    }
    next
}

/// Whether a lease needs renewing: less than half its life is left.
pub fn lease_needs_renewal(state: &ScalingState, release: &str, now: u64) -> bool {
    match &state.lease {
        Some(lease) if lease.release == release => lease.expires_at < now + LEASE_SECONDS / 2,
        _ => true,
    }
}

/// Longest Auto Scaling group name AWS accepts.
pub const MAX_AUTO_SCALING_GROUP_NAME: usize = 255;

/// Validates `auto_scaling_group`: an AWS Auto Scaling group name, 1 to
/// [`MAX_AUTO_SCALING_GROUP_NAME`] characters. AWS allows any non-control Unicode; Berth also
/// refuses `:` (the API takes a name or an ARN in the same parameter, so a name with `:` could
/// name another group by ARN) and leading or trailing spaces (invisible in listings). Refused,
/// never trimmed: the name is passed to AWS as given.
pub fn validate_auto_scaling_group(field: &str, name: &str) -> Result<(), ApiError> {
    let bad = |code: &'static str, why: &str| {
        ApiError::invalid(field, code, format!("'{}' {why}", crate::platform::http::problem::shown(name)))
    };
    if name.is_empty() || name.chars().count() > MAX_AUTO_SCALING_GROUP_NAME {
        return Err(bad("out_of_range", &format!("must be 1 to {MAX_AUTO_SCALING_GROUP_NAME} characters")));
    }
    if name.chars().any(char::is_control) || name.contains(':') {
        return Err(bad("invalid_name", "is not an Auto Scaling group name (no control characters, no ':')"));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(bad("invalid_name", "must not start or end with a space"));
    }
    Ok(())
}

/// Validates an EC2 instance id as a host registers it: `i-` and 8 or 17 lowercase hex digits
/// (the old and the current form), which is also all a store path or a log line may get.
pub fn validate_instance_id(field: &str, id: &str) -> Result<(), ApiError> {
    let digits = id.strip_prefix("i-").unwrap_or("");
    let valid = (digits.len() == 8 || digits.len() == 17)
        && digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return Err(ApiError::invalid(
            field,
            "invalid_instance_id",
            format!(
                "'{}' is not an EC2 instance id (i- and 8 or 17 lowercase hex digits)",
                crate::platform::http::problem::shown(id)
            ),
        ));
    }
    Ok(())
}

/// The Auto Scaling processes a release suspends, and resumes afterwards: no launches,
/// terminations, health replacements, rebalancing, alarm or scheduled scaling, and no load
/// balancer registration behind the release's back.
pub const SUSPENDED_PROCESSES: [&str; 8] = [
    "Launch",
    "Terminate",
    "HealthCheck",
    "ReplaceUnhealthy",
    "AZRebalance",
    "AlarmNotification",
    "ScheduledActions",
    "AddToLoadBalancer",
];

/// An instance of an Auto Scaling group as `DescribeAutoScalingGroups` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The EC2 instance id.
    pub instance_id: String,
    /// Its lifecycle state (`InService`, `Terminating:Wait`, ...).
    pub lifecycle_state: String,
}

impl GroupMember {
    /// Whether the instance is on its way out of the group (or out already): a release has
    /// nothing to do there. Standby and pending instances stay: they serve again later.
    pub fn leaving(&self) -> bool {
        let state = self.lifecycle_state.as_str();
        state.starts_with("Terminat") || state.starts_with("Detach")
    }
}

/// The hosts a release of a group with an Auto Scaling group plans: every host whose instance
/// id is a member that is not leaving, and every host that registered without an instance id
/// (nothing says it left). `hosts` are `(host, instance id)`; their order is kept.
pub fn hosts_in_auto_scaling_group(hosts: Vec<(String, Option<String>)>, members: &[GroupMember]) -> Vec<String> {
    let staying: BTreeSet<&str> = members.iter().filter(|m| !m.leaving()).map(|m| m.instance_id.as_str()).collect();
    hosts
        .into_iter()
        .filter(|(_, instance)| instance.as_deref().is_none_or(|id| staying.contains(id)))
        .map(|(host, _)| host)
        .collect()
}

#[cfg(test)]
mod auto_scaling_tests {
    use super::*;

    fn code(result: Result<(), ApiError>) -> &'static str {
        match result {
            Err(ApiError::Invalid { code, field, .. }) => {
                assert_eq!(field, "auto_scaling_group");
                code
            }
            Ok(()) => "ok",
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn auto_scaling_group_names_follow_aws_and_are_bounded() {
        let check = |name: &str| code(validate_auto_scaling_group("auto_scaling_group", name));
        for good in ["web", "my-asg_1.prod", "Web Servers (blue)", "日本語のグループ", &"a".repeat(255)] {
            assert_eq!(check(good), "ok", "{good}");
        }
        assert_eq!(check(""), "out_of_range");
        assert_eq!(check(&"a".repeat(256)), "out_of_range");
        assert_eq!(check(&"é".repeat(255)), "ok", "characters, not bytes");
        assert_eq!(check("arn:aws:autoscaling:us-east-1:1:autoScalingGroup:x"), "invalid_name");
        assert_eq!(check("line\nbreak"), "invalid_name");
        assert_eq!(check("nul\0"), "invalid_name");
        assert_eq!(check(" web"), "invalid_name");
        assert_eq!(check("web "), "invalid_name");
    }

    #[test]
    fn instance_ids_are_ec2_ids() {
        let ok = |id: &str| validate_instance_id("instance_id", id).is_ok();
        assert!(ok("i-0123abcd"));
        assert!(ok("i-0123456789abcdef0"));
        for bad in
            ["", "i-", "i-0123abc", "i-0123abcde", "i-0123456789ABCDEF0", "x-0123abcd", "i-0123abcg", "i-../../x"]
        {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(!ok(&format!("i-{}", "a".repeat(18))));
    }

    #[test]
    fn hosts_whose_instance_left_the_auto_scaling_group_are_dropped() {
        let member = |id: &str, state: &str| GroupMember { instance_id: id.into(), lifecycle_state: state.into() };
        let members = [
            member("i-00000001", "InService"),
            member("i-00000002", "Terminating:Wait"),
            member("i-00000003", "Standby"),
            member("i-00000004", "Pending"),
            member("i-00000005", "Detaching"),
            member("i-00000006", "Terminated"),
        ];
        let hosts = [
            ("h1", Some("i-00000001")),
            ("h2", Some("i-00000002")),
            ("h3", Some("i-00000003")),
            ("h4", Some("i-00000004")),
            ("h5", Some("i-00000005")),
            ("h6", Some("i-00000006")),
            ("gone", Some("i-0000000a")),
            ("unmatched", None),
        ]
        .map(|(h, i)| (h.to_owned(), i.map(str::to_owned)))
        .to_vec();
        assert_eq!(hosts_in_auto_scaling_group(hosts.clone(), &members), ["h1", "h3", "h4", "unmatched"]);
        assert_eq!(hosts_in_auto_scaling_group(hosts, &[]), ["unmatched"], "an empty group keeps only unmatched hosts");
        assert!(hosts_in_auto_scaling_group(Vec::new(), &members).is_empty());
    }
}

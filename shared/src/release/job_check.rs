//! What an agent checks of a job before running anything: it trusts nothing Berth (or whatever
//! answers at Berth's URL) hands it. The id must be this host's job of that kind in that
//! release (the agent recomputes it, so it is also a safe path), and every other field must
//! be what Berth itself would accept from a provider.

use super::*;

/// Largest job an agent reads: two scripts, a health command, a working directory and the
/// short fields.
pub const MAX_JOB_BYTES: usize = 3 * MAX_SCRIPT_BYTES + MAX_WORKING_DIRECTORY_BYTES + 32 * 1024;
/// Longest pull key username or password an agent takes (ours are a few hundred bytes).
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;
/// Longest registry host (`host[:port]`).
const MAX_REGISTRY_BYTES: usize = 255;

/// Why an agent refuses a job: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct JobRefusal {
    /// The job's field.
    pub field: &'static str,
    /// What is wrong, without the value when it may be a secret.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> JobRefusal {
    JobRefusal { field, reason: reason.into() }
}

/// Whether `id` is a UUID as Berth writes release ids (lowercase, hyphenated).
fn is_release_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Whether `host` is a registry host, `name[:port]` (letters, digits, `.`, `-`).
fn is_registry_host(host: &str) -> bool {
    let (name, port) = host.split_once(':').map_or((host, None), |(n, p)| (n, Some(p)));
    !name.is_empty()
        && host.len() <= MAX_REGISTRY_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !name.starts_with(['.', '-'])
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks an image address `REGISTRY/REPOSITORY:TAG` or `REGISTRY/REPOSITORY@sha256:HEX`
/// against the job's registry.
fn check_image(image: &str, registry: &str) -> Result<(), JobRefusal> {
    let field = "image";
    let (host, rest) = image.split_once('/').ok_or_else(|| refuse(field, "not REGISTRY/REPOSITORY:TAG"))?;
    if host != registry {
        return Err(refuse(field, "not in the job's registry"));
    }
    let (repository, reference_ok) = match rest.split_once('@') {
        Some((repository, digest)) => (
            repository,
            digest.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        ),
        None => match rest.rsplit_once(':') {
            Some((repository, tag)) => (repository, crate::package::is_image_tag(tag)),
            None => (rest, false),
        },
    };
    RepositoryName::parse(repository).map_err(|e| refuse(field, e.to_string()))?;
    if !reference_ok {
        return Err(refuse(field, "needs a valid tag or sha256 digest"));
    }
    Ok(())
}

fn check_credential(field: &'static str, value: &str) -> Result<(), JobRefusal> {
    if value.is_empty() || value.len() > MAX_CREDENTIAL_BYTES || value.chars().any(char::is_control) {
        return Err(refuse(field, format!("must be 1 to {MAX_CREDENTIAL_BYTES} bytes without control characters")));
    }
    Ok(())
}

/// Checks a job handed to `host`, before the agent runs (or stores) anything of it.
pub fn check_handed_job(job: &Job, host: &str) -> Result<(), JobRefusal> {
    if !is_release_id(&job.release) {
        return Err(refuse("release", "not a release id"));
    }
    // Recomputed, not parsed: the id is then exactly `(pull|run)-` and 32 hex digits, a safe
    // name in the state directory, and names this host's job of this kind in this release.
    if job.job_id != job_id(&job.release, host, job.kind) {
        return Err(refuse("job_id", "not this host's job of this kind in this release"));
    }
    if job.kind == JobKind::Pull && !job.pull {
        return Err(refuse("pull", "a pull job pulls"));
    }
    if !(MIN_STEP_TIMEOUT_SECONDS..=MAX_STEP_TIMEOUT_SECONDS).contains(&job.step_timeout_seconds) {
        return Err(refuse(
            "step_timeout_seconds",
            format!("must be between {MIN_STEP_TIMEOUT_SECONDS} and {MAX_STEP_TIMEOUT_SECONDS}"),
        ));
    }
    if !is_registry_host(&job.registry) {
        return Err(refuse("registry", "not a registry host (name[:port])"));
    }
    check_image(&job.image, &job.registry)?;
    check_credential("username", &job.username)?;
    if job.username.contains(':') {
        return Err(refuse("username", "contains ':'"));
    }
    check_credential("password", &job.password)?;
    let as_refusal = |field: &'static str| {
        move |e: ApiError| match e {
            ApiError::Invalid { message, .. } => refuse(field, message),
            other => refuse(field, other.to_string()),
        }
    };
    validate_working_directory(&job.working_directory).map_err(as_refusal("working_directory"))?;
    validate_script("stop_script", &job.stop_script).map_err(as_refusal("stop_script"))?;
    validate_script("start_script", &job.start_script).map_err(as_refusal("start_script"))?;
    if let Some(health) = &job.health {
        // Valid as a provider's would be, and unchanged by validating it again.
        let again = serde_json::to_value(health)
            .and_then(serde_json::from_value::<HealthRequest>)
            .map_err(|e| refuse("health", e.to_string()))
            .and_then(|request| validate_health(request).map_err(as_refusal("health")))?;
        if &again != health {
            return Err(refuse("health", "not a health check Berth would hand out"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        let release = "0b3c3a5e-8d7f-4a59-9a51-3d2f5d8e1c01".to_owned();
        Job {
            job_id: job_id(&release, "h1", JobKind::Run),
            release,
            kind: JobKind::Run,
            pull: true,
            image: "127.0.0.1:5000/acme/app:v1".into(),
            registry: "127.0.0.1:5000".into(),
            username: "u".into(),
            password: "p".into(),
            working_directory: "/srv/app".into(),
            stop_script: "true".into(),
            start_script: "echo hi".into(),
            step_timeout_seconds: 60,
            health: None,
        }
    }

    #[test]
    fn a_job_from_berth_passes_and_every_hostile_field_is_named() {
        assert_eq!(check_handed_job(&job(), "h1"), Ok(()));
        let field = |change: fn(&mut Job)| {
            let mut j = job();
            change(&mut j);
            check_handed_job(&j, "h1").unwrap_err().field
        };
        assert_eq!(field(|j| j.job_id = "../../x".into()), "job_id");
        assert_eq!(field(|j| j.job_id = job_id(&j.release, "h2", JobKind::Run)), "job_id");
        assert_eq!(field(|j| j.kind = JobKind::Pull), "job_id", "the id names its kind");
        assert_eq!(field(|j| j.release = "../x".into()), "release");
        assert_eq!(field(|j| j.step_timeout_seconds = u64::MAX), "step_timeout_seconds");
        assert_eq!(field(|j| j.step_timeout_seconds = 0), "step_timeout_seconds");
        assert_eq!(field(|j| j.image = "127.0.0.1:5000/acme/app".into()), "image");
        assert_eq!(field(|j| j.image = "127.0.0.1:5000/../../etc:v1".into()), "image");
        assert_eq!(field(|j| j.image = "evil.example/acme/app:v1".into()), "image");
        assert_eq!(field(|j| j.image = "127.0.0.1:5000/acme/app:v1 --privileged".into()), "image");
        assert_eq!(field(|j| j.registry = "a b".into()), "registry");
        assert_eq!(field(|j| j.username = "a:b".into()), "username");
        assert_eq!(field(|j| j.password = "p\nq".into()), "password");
        assert_eq!(field(|j| j.working_directory = "/srv/../etc".into()), "working_directory");
        assert_eq!(field(|j| j.working_directory = "srv".into()), "working_directory");
        fn check(j: &mut Job, interval_seconds: u64) {
            let probe = Probe::Tcp(TcpProbe { address: "localhost:8080".into() });
            j.health = Some(HealthCheck {
                probe,
                start_period_seconds: 0,
                interval_seconds,
                timeout_seconds: 2,
                healthy_threshold: 1,
                min_healthy_seconds: 0,
                deadline_seconds: 300,
            });
        }
        let mut checked = job();
        check(&mut checked, 2);
        assert_eq!(check_handed_job(&checked, "h1"), Ok(()));
        assert_eq!(field(|j| check(j, 0)), "health", "an interval Berth would refuse");
        assert_eq!(field(|j| j.stop_script = "x".repeat(MAX_SCRIPT_BYTES + 1)), "stop_script");
        assert_eq!(field(|j| j.start_script = "#!/usr/bin/python3\nprint(1)".into()), "start_script");
        let digest = format!("127.0.0.1:5000/acme/app@sha256:{}", "a".repeat(64));
        let mut pinned = job();
        pinned.image = digest;
        assert_eq!(check_handed_job(&pinned, "h1"), Ok(()));
    }
}

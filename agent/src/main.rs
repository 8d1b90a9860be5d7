//! `berth-agent`: runs on each host of an application group. Registers once with the group's
//! join token and keeps the host token it gets, long-polls Berth for work, pulls the image
//! through the Docker engine with the job's pull key, runs the stop then the start script
//! with bash, and reports.

mod health;
mod identity;
mod run;
mod signature;
mod spool;
mod wake;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use berth_shared::signing::sigstore::{KeyFileError, VerifyingKey};
use clap::Parser;

/// The host agent of Berth releases.
#[derive(Parser)]
#[command(name = "berth-agent", version)]
struct Args {
    /// Berth's base URL.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:8080")]
    berth_url: String,
    /// A file holding the group's join token. The token may instead be in `BERTH_JOIN_TOKEN`;
    /// it is never taken on the command line, where `ps` would show it. Needed only until the
    /// host has registered: after that its own host token (in the state directory) is used.
    #[arg(long)]
    join_token_file: Option<PathBuf>,
    /// This host's id in the group (lowercase letters, digits, '.', '_', '-').
    #[arg(long, env = "BERTH_HOST_ID")]
    host_id: String,
    /// The EC2 instance this host is (`i-` and 8 or 17 hex digits), sent when registering so
    /// that a release of a group with an AWS Auto Scaling group skips it once it left the group.
    #[arg(long, env = "BERTH_INSTANCE_ID", value_parser = instance_id)]
    instance_id: Option<String>,
    /// Where the agent keeps its host token (a 0600 file), so a restart does not re-register.
    #[arg(long, env = "BERTH_AGENT_STATE_DIR", default_value = "/var/lib/berth-agent")]
    state_dir: PathBuf,
    /// Once registered (a host token saved), forget the join token and delete
    /// `--join-token-file`: the host token alone serves from then on, across restarts.
    #[arg(long, env = "BERTH_DROP_JOIN_TOKEN")]
    drop_join_token: bool,
    /// How long each poll may be held by Berth while the wake channel is down, in seconds (1
    /// to 30; Berth may hold it less: under Lambda it answers at once).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=30))]
    poll_seconds: u64,
    /// How often to poll, in seconds, while there is no working wake channel and Berth does not
    /// hold polls (with a fifth of jitter either way).
    #[arg(long, env = "BERTH_POLL_INTERVAL_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_interval_seconds: u64,
    /// Do not hold a wake channel (a WebSocket to Berth): poll only.
    #[arg(long, env = "BERTH_NO_WAKE_CHANNEL")]
    no_wake_channel: bool,
    /// The wake channel's address when Berth's WebSocket API has one of its own (on AWS:
    /// `wss://API.execute-api.REGION.amazonaws.com/STAGE`); default: Berth's URL.
    #[arg(long, env = "BERTH_CHANNEL_URL")]
    channel_url: Option<String>,
    /// How often to ping on the wake channel, in seconds (it keeps the host's `last_seen`,
    /// which Berth writes at most once a minute); a ping unanswered within 10 s reopens it.
    #[arg(long, default_value_t = berth_shared::release::HEARTBEAT_SECONDS, value_parser = clap::value_parser!(u64).range(1..=60))]
    heartbeat_seconds: u64,
    /// A file of the account's signing public keys (PEM blocks): each image is then checked
    /// to be signed by one of them (its sigstore signature, read from the registry) before
    /// anything of the job runs.
    #[arg(long, env = "BERTH_TRUSTED_KEYS")]
    trusted_keys: Option<PathBuf>,
}

/// Refused at start, not at registration: a typo would otherwise loop on Berth's 400.
fn instance_id(value: &str) -> Result<String, berth_shared::platform::http::error::ApiError> {
    berth_shared::release::validate_instance_id("--instance-id", value)?;
    Ok(value.to_owned())
}

/// Why `--trusted-keys` gives no key to trust.
#[derive(Debug, thiserror::Error)]
enum TrustedKeysError {
    #[error("--trusted-keys {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--trusted-keys {}: {source}", path.display())]
    Keys {
        path: PathBuf,
        #[source]
        source: KeyFileError,
    },
}

/// Read at start: a bad file stops the agent rather than let it run unchecked images.
fn trusted_keys(path: &std::path::Path) -> Result<Vec<VerifyingKey>, TrustedKeysError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| TrustedKeysError::Unreadable { path: path.to_path_buf(), source })?;
    VerifyingKey::from_pem_file(&text).map_err(|source| TrustedKeysError::Keys { path: path.to_path_buf(), source })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // A join token file this agent deleted (`--drop-join-token`) is not missed on restart.
    let file = args.join_token_file.as_deref().filter(|file| !args.drop_join_token || file.exists());
    let join_token = match identity::join_token(file) {
        Ok(token) => token,
        Err(error) => {
            eprintln!("berth-agent: {error}");
            return ExitCode::from(2);
        }
    };
    let trusted_keys = match args.trusted_keys.as_deref().map(trusted_keys).transpose() {
        Ok(keys) => keys,
        Err(error) => {
            eprintln!("berth-agent: {error}");
            return ExitCode::from(2);
        }
    };
    let identity = identity::Identity::new(&args.state_dir, &args.host_id, join_token)
        .with_join_token_file(args.join_token_file.clone());
    let agent = run::Agent::new(&args.berth_url, identity, args.poll_seconds, &args.state_dir)
        .with_instance_id(args.instance_id)
        .dropping_join_token(args.drop_join_token)
        .with_trusted_keys(trusted_keys)
        .with_wake(wake::Settings {
            enabled: !args.no_wake_channel,
            url: args.channel_url,
            poll_interval: std::time::Duration::from_secs(args.poll_interval_seconds),
            heartbeat: std::time::Duration::from_secs(args.heartbeat_seconds),
        });
    agent.run().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_id_is_checked_when_the_agent_starts() {
        let parse = |id: &str| Args::try_parse_from(["berth-agent", "--host-id", "h1", "--instance-id", id]);
        assert_eq!(parse("i-0123456789abcdef0").unwrap().instance_id.as_deref(), Some("i-0123456789abcdef0"));
        assert!(parse("i-xyz").is_err());
        assert!(parse("i-0123456789ABCDEF0").is_err());
        let without = Args::try_parse_from(["berth-agent", "--host-id", "h1"]).unwrap();
        assert_eq!(without.instance_id, None, "optional");
    }

    #[test]
    fn a_trusted_keys_file_without_a_key_stops_the_agent_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let Err(missing) = trusted_keys(&dir.path().join("missing.pem")) else { panic!("no file, no keys") };
        assert!(matches!(missing, TrustedKeysError::Unreadable { .. }), "{missing:?}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no key here").unwrap();
        let Err(error) = trusted_keys(&empty) else { panic!("no block, no keys") };
        assert!(matches!(error, TrustedKeysError::Keys { source: KeyFileError::NoKey, .. }), "{error:?}");
        assert!(error.to_string().starts_with("--trusted-keys ") && error.to_string().contains("no '-----BEGIN"));
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
        assert!(matches!(trusted_keys(&bad), Err(TrustedKeysError::Keys { source: KeyFileError::Key(_), .. })));
    }
}

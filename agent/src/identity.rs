//! Who this agent is to Berth: the group's join token (only to register) and the host token
//! registration hands out, kept in a 0600 file so that a restart does not register again.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest join token file read (ours are 47 bytes).
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Why the join token file gives no token. Never shows the file's content.
#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_TOKEN_FILE_BYTES} bytes: not a join token", path.display())]
    TooLarge { path: PathBuf },
}

/// The join token from `--join-token-file`, else `BERTH_JOIN_TOKEN`; `None` when neither is set.
pub fn join_token(file: Option<&Path>) -> Result<Option<String>, JoinTokenError> {
    let raw = match file {
        Some(path) => {
            let unreadable = |source| JoinTokenError::Unreadable { path: path.to_path_buf(), source };
            let size = std::fs::metadata(path).map_err(unreadable)?.len();
            if size > MAX_TOKEN_FILE_BYTES {
                return Err(JoinTokenError::TooLarge { path: path.to_path_buf() });
            }
            std::fs::read_to_string(path).map_err(unreadable)?
        }
        None => match std::env::var("BERTH_JOIN_TOKEN") {
            Ok(value) => value,
            Err(_) => return Ok(None),
        },
    };
    let token = raw.trim();
    if token.is_empty() { Ok(None) } else { Ok(Some(token.to_owned())) }
}

/// The host token file's content.
#[derive(Serialize, Deserialize)]
struct Saved {
    host: String,
    host_token: String,
}

/// This host's identity: its id, its join token if it has one, and where its host token lives.
pub struct Identity {
    /// The host id.
    pub host: String,
    /// The group's join token, needed only to register; dropped once registered when asked.
    join_token: std::sync::Mutex<Option<String>>,
    /// The file the join token came from, if any (removed when the token is dropped).
    join_token_file: Option<PathBuf>,
    dir: PathBuf,
}

impl Identity {
    /// An identity kept in `dir`.
    pub fn new(dir: &Path, host: &str, join_token: Option<String>) -> Self {
        Self { host: host.to_owned(), join_token: join_token.into(), join_token_file: None, dir: dir.to_path_buf() }
    }

    /// Says which file the join token was read from.
    pub fn with_join_token_file(mut self, file: Option<PathBuf>) -> Self {
        self.join_token_file = file;
        self
    }

    /// The join token, unless there is none or it was dropped.
    pub fn join_token(&self) -> Option<String> {
        self.join_token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the join token and removes the file it came from: a registered host needs only
    /// its host token, and a join token left on a host is one more secret to steal.
    pub fn drop_join_token(&self) -> std::io::Result<()> {
        self.join_token.lock().unwrap_or_else(|e| e.into_inner()).take();
        match &self.join_token_file {
            Some(file) => match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("host-token.json")
    }

    /// The host token saved by an earlier run for this host id, if any.
    pub fn saved(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.file()).ok()?;
        let saved: Saved = serde_json::from_str(&text).ok()?;
        (saved.host == self.host && saved.host_token.starts_with("bht_")).then_some(saved.host_token)
    }

    /// Saves the host token: written to a private temporary file, then renamed over the old
    /// one, so a crash leaves the old token or the new one, never half of either.
    pub fn save(&self, host_token: &str) -> std::io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let temporary = self.dir.join(".host-token.json.tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        let body = serde_json::to_vec(&Saved { host: self.host.clone(), host_token: host_token.to_owned() })?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&temporary, self.file())?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_host_token_is_kept_private_and_only_for_its_host() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let identity = Identity::new(&state, "h1", None);
        assert_eq!(identity.saved(), None);
        identity.save("bht_one").unwrap();
        identity.save("bht_two").unwrap();
        assert_eq!(identity.saved().as_deref(), Some("bht_two"));
        let mode = std::fs::metadata(state.join("host-token.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(Identity::new(&state, "h2", None).saved(), None, "another host id registers anew");
    }

    #[test]
    fn the_join_token_comes_from_its_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("join");
        std::fs::write(&file, "bjt_abc\n").unwrap();
        assert_eq!(join_token(Some(&file)).unwrap().as_deref(), Some("bjt_abc"));
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        assert!(matches!(join_token(Some(&file)), Err(JoinTokenError::TooLarge { .. })));
        let missing = join_token(Some(&dir.path().join("missing"))).unwrap_err();
        assert!(
            matches!(&missing, JoinTokenError::Unreadable { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(missing.to_string().starts_with("cannot read "), "{missing}");
    }
}

//! The development account key: made once in the data directory, used by `berth serve` to
//! verify account tokens and by `berth dev-token` to issue them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_shared::account::{AccountId, AccountKeys, generate_private_key_pem};

/// Where the dev account key lives, unless `BERTH_ACCOUNT_KEY_FILE` names another.
pub fn dev_key_path(data_dir: &Path) -> PathBuf {
    std::env::var_os("BERTH_ACCOUNT_KEY_FILE").map(PathBuf::from).unwrap_or_else(|| data_dir.join("keys/account.pem"))
}

/// Creates the dev key if there is none (racing creators: the first wins, the rest read it).
pub fn ensure_dev_key(data_dir: &Path) -> std::io::Result<PathBuf> {
    let path = dev_key_path(data_dir);
    if path.exists() {
        return Ok(path);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => file.write_all(generate_private_key_pem().as_bytes())?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    Ok(path)
}

/// `berth dev-token`.
pub fn print_dev_token(account: &str, ttl_seconds: u64, data_dir: &Path) -> ExitCode {
    let account = match AccountId::parse(account) {
        Ok(account) => account,
        Err(e) => return fail(&format!("--account: {e}")),
    };
    let path = dev_key_path(data_dir);
    if !path.exists() {
        return fail(&format!(
            "no account key at {}: run `berth serve` once, or set BERTH_ACCOUNT_KEY_FILE",
            path.display()
        ));
    }
    let issuer = std::env::var("BERTH_ACCOUNT_ISSUER").unwrap_or_else(|_| "berth".to_owned());
    match AccountKeys::load(&path, &issuer).and_then(|keys| keys.issue(&account, ttl_seconds)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("berth: {message}");
    ExitCode::from(2)
}

//! The development account key: made once in the data directory, used by `berth serve` to
//! verify account tokens and by `berth dev-token` to issue them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_shared::names::AccountId;

use berth_shared::platform::http::account::AccountKeys;

use crate::exit::misconfigured;
use crate::files::{FileError, write_private};
use berth_shared::platform::config::Config;
use berth_shared::platform::pem::generate_private_key_pem;

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

/// Paths of the token-signing key and its certificate.
pub struct SigningFiles {
    /// PKCS#8 private key.
    pub key: PathBuf,
    /// Self-signed certificate: the registry's `rootcertbundle`.
    pub certificate: PathBuf,
}

/// Where `berth serve` keeps its signing key, unless the environment names one.
pub fn signing_files(data_dir: &Path) -> SigningFiles {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    SigningFiles {
        key: from_env("BERTH_SIGNING_KEY_FILE").unwrap_or_else(|| data_dir.join("keys/signing.key.pem")),
        certificate: from_env("BERTH_SIGNING_CERT_FILE").unwrap_or_else(|| data_dir.join("keys/signing.crt.pem")),
    }
}

/// Why no signing key could be made.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// The new key does not load (a bug of the key generator).
    #[error("key: {0}")]
    Key(#[source] rcgen::Error),
    /// The certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The key directory or a file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// Writes a new signing key and its self-signed certificate into `dir`, unless a key is
/// already there. Returns their paths.
pub fn generate_signing_key(dir: &Path) -> Result<SigningFiles, SigningKeyError> {
    let files = SigningFiles { key: dir.join("signing.key.pem"), certificate: dir.join("signing.crt.pem") };
    if files.key.exists() && files.certificate.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(FileError::at(dir))?;
    let pem = generate_private_key_pem();
    let pair = rcgen::KeyPair::from_pem(&pem).map_err(SigningKeyError::Key)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["berth-token-signer".to_owned()]).map_err(SigningKeyError::Certificate)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Berth registry token signer");
    let certificate = params.self_signed(&pair).map_err(SigningKeyError::Certificate)?;
    write_private(&files.key, pem.as_bytes())?;
    std::fs::write(&files.certificate, certificate.pem()).map_err(FileError::at(&files.certificate))?;
    Ok(files)
}

/// The signing key `berth serve` uses: the configured one, else the data directory's,
/// made on first use.
pub fn ensure_signing_key(data_dir: &Path) -> Result<SigningFiles, SigningKeyError> {
    let files = signing_files(data_dir);
    if files.key.exists() && files.certificate.exists() {
        return Ok(files);
    }
    generate_signing_key(&data_dir.join("keys"))
}

/// `berth keys generate`.
pub fn print_generated(dir: &Path) -> ExitCode {
    match generate_signing_key(dir) {
        Ok(files) => {
            println!("signing key:  {}", files.key.display());
            println!("certificate:  {}  (the registry's auth.token.rootcertbundle)", files.certificate.display());
            ExitCode::SUCCESS
        }
        Err(e) => misconfigured(&e),
    }
}

/// `berth dev-token`: a token `berth serve` (or any function with the same environment)
/// accepts, because both read the issuer and the maximum lifetime from the same
/// configuration (`BERTH_ACCOUNT_ISSUER`, `BERTH_ACCOUNT_TOKEN_MAX_SECONDS`). Valid for
/// `ttl_seconds`, by default that maximum; more is refused.
pub fn print_dev_token(account: &str, ttl_seconds: Option<u64>, data_dir: &Path) -> ExitCode {
    let account = match AccountId::parse(account) {
        Ok(account) => account,
        Err(e) => return misconfigured(&format!("--account: {e}")),
    };
    let config = Config::from_lookup(|name| match name {
        "BERTH_DATA_DIR" => Some(data_dir.display().to_string()),
        other => std::env::var(other).ok(),
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => return misconfigured(&format!("configuration: {e}")),
    };
    let max = config.account_token_max_seconds;
    let ttl_seconds = ttl_seconds.unwrap_or(max);
    if ttl_seconds > max {
        return misconfigured(&format!(
            "--ttl-seconds: {ttl_seconds} is over the longest account token lifetime, {max} seconds (BERTH_ACCOUNT_TOKEN_MAX_SECONDS)"
        ));
    }
    let path = dev_key_path(data_dir);
    if !path.exists() {
        return misconfigured(&format!(
            "no account key at {}: run `berth serve` once, or set BERTH_ACCOUNT_KEY_FILE",
            path.display()
        ));
    }
    let keys = AccountKeys::load(&path, &config.account_issuer).map(|keys| keys.with_max_lifetime(max));
    match keys.and_then(|keys| keys.issue(&account, ttl_seconds)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => misconfigured(&e.to_string()),
    }
}

/// What `berth keys` does.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Write a new P-256 signing key and a self-signed certificate for the registry's
    /// `rootcertbundle` (kept if already there).
    Generate {
        /// Directory for signing.key.pem and signing.crt.pem.
        #[arg(long, default_value = "berth-data/keys")]
        out: PathBuf,
    },
}

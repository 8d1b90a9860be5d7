//! `berth registry-config`: a distribution config whose token auth is Berth.

use std::path::Path;
use std::process::ExitCode;

use berth_shared::platform::config::Config;

use crate::exit::misconfigured;
use crate::keys::signing_files;

/// Prints the config for a registry on `listen` trusting `berth_url`'s tokens.
pub fn print_config(listen: &str, berth_url: &str, storage: &Path, data_dir: &Path) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return misconfigured(&format!("configuration: {e}")),
    };
    let certificate = signing_files(data_dir).certificate;
    if !certificate.exists() {
        return misconfigured(&format!(
            "no signing certificate at {}: start `berth serve` once or run `berth keys generate`",
            certificate.display()
        ));
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    print!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {listen}\nauth:\n  token:\n    realm: {berth_url}/v1/registry/token\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {certificate}\n",
        storage = absolute(storage),
        berth_url = berth_url.trim_end_matches('/'),
        service = config.registry.service,
        issuer = config.registry.issuer,
        certificate = absolute(&certificate),
    );
    ExitCode::SUCCESS
}

//! `docker-credential-berth get|store|erase|list`, or `docker-credential-berth kubelet` (also
//! without an argument): see the library.

use std::io::Read;
use std::process::ExitCode;

use berth_credential_helper::{HelperError, Settings};

fn main() -> ExitCode {
    let mut input = String::new();
    let command = std::env::args().nth(1).unwrap_or_else(|| "kubelet".into());
    if command != "list" && std::io::stdin().take(1 << 20).read_to_string(&mut input).is_err() {
        eprintln!("docker-credential-berth: cannot read stdin");
        return ExitCode::FAILURE;
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let answer: Result<Option<String>, HelperError> = runtime.block_on(async {
        match command.as_str() {
            "get" => berth_credential_helper::get(&settings, &input).await.map(|c| Some(line(&c))),
            "store" => berth_credential_helper::store(&settings, &input).map(|()| None),
            "erase" => berth_credential_helper::erase(&settings, &input).map(|()| None),
            "list" => berth_credential_helper::list(&settings).map(|l| Some(line(&l))),
            "kubelet" => berth_credential_helper::kubelet(&settings, &input).await.map(|r| Some(line(&r))),
            other => Err(HelperError::UnknownCommand(other.to_owned())),
        }
    });
    match answer {
        Ok(output) => {
            if let Some(output) = output {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        // Docker reads this exact line on stdout.
        Err(HelperError::NotFound) => {
            println!("{}", berth_credential_helper::NOT_FOUND);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("docker-credential-berth: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One JSON line.
fn line(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("JSON")
}

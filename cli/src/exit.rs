//! How a command ends when it cannot do its job: one line on stderr, and an exit code that says
//! whose fault it was.

use std::fmt::Display;
use std::process::ExitCode;

/// Berth or a step refused or failed (a problem answer, a failed release): exit code 1.
pub fn fail(message: &dyn Display) -> ExitCode {
    eprintln!("berth: {message}");
    ExitCode::FAILURE
}

/// The command cannot start as configured (bad flags, keys or variables): exit code 2.
pub fn misconfigured(message: &dyn Display) -> ExitCode {
    eprintln!("berth: {message}");
    ExitCode::from(2)
}

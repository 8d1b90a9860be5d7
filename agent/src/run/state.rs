//! What the agent keeps in its state directory: the report not yet delivered, and the jobs it
//! ran.

use std::path::{Path, PathBuf};

use berth_api::agent::Report;

use super::Agent;

/// A report not yet delivered, kept in the state directory with its spooled output, so that
/// neither a refused delivery nor a restart makes the host run the job again.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub(super) report: Report,
    pub(super) spool: PathBuf,
}

/// Job ids remembered as run, newest last: a job handed out again is never run twice.
const REMEMBERED_JOBS: usize = 32;

impl Agent {
    pub(super) fn pending_file(&self) -> PathBuf {
        self.state_dir.join("pending-report.json")
    }

    fn ran_file(&self) -> PathBuf {
        self.state_dir.join("ran-jobs.json")
    }

    pub(super) fn pending(&self) -> Option<Pending> {
        serde_json::from_slice(&std::fs::read(self.pending_file()).ok()?).ok()
    }

    /// Written whole then renamed, so a crash leaves the old file or the new one.
    pub(super) fn write_state(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
        let staging = path.with_extension("tmp");
        std::fs::write(&staging, serde_json::to_vec(value)?)?;
        std::fs::rename(staging, path)
    }

    pub(super) fn ran(&self) -> Vec<String> {
        std::fs::read(self.ran_file()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub(super) fn remember_ran(&self, job_id: &str) {
        let mut ran = self.ran();
        if !ran.iter().any(|j| j == job_id) {
            ran.push(job_id.to_owned());
        }
        let keep = ran.len().saturating_sub(REMEMBERED_JOBS);
        if let Err(e) = Self::write_state(&self.ran_file(), &ran[keep..].to_vec()) {
            eprintln!("berth-agent: cannot record the job as run: {e}");
        }
    }
}

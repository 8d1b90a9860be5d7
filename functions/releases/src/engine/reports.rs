//! What hosts reported, kept as read. A report (a pull's outcome, a run's result) is created
//! once and never changes, so a process reads each at most once: a listing says which exist,
//! and only those not kept yet are read. Before, every advance at a phase's end and every view
//! of the release (`berth release --watch`, the console) read every host's documents again: at
//! 100,000 hosts, 200,000 reads a view.
//!
//! The listing stays the record: a report is shown only while it is listed (a release's
//! documents deleted are gone from the answers too), and a kept one only saves its read.

use super::*;

use std::collections::HashSet;

/// Reports kept across releases; past this they start over (each is read again once).
/// About 40 MB: two 100,000-host releases, each with its pulls and results.
const MAX_KEPT: usize = 400_000;

/// One release's reports read or written here, by host.
#[derive(Default)]
pub struct ReleaseReports {
    pulls: HashMap<String, PullResult>,
    results: HashMap<String, HostResult>,
    /// Hosts whose successful run this process recorded in their ledger.
    recorded: HashSet<String>,
}

/// Every release's [`ReleaseReports`], and how many reports they hold in all.
#[derive(Default)]
pub(super) struct Reports {
    releases: HashMap<String, ReleaseReports>,
    kept: usize,
}

impl Reports {
    /// The release's reports, making room first when the bound is reached.
    fn of(&mut self, release: &str) -> &mut ReleaseReports {
        if self.kept >= MAX_KEPT {
            self.releases.clear();
            self.kept = 0;
        }
        self.releases.entry(release.to_owned()).or_default()
    }
}

/// A kind of report, kept by host.
pub trait Kept: serde::de::DeserializeOwned + Clone + Send + Sync + 'static {
    /// The folder of a release's reports of this kind.
    fn folder(release: &str) -> String;
    #[doc(hidden)]
    fn kept(reports: &mut ReleaseReports) -> &mut HashMap<String, Self>;
    /// What is kept of one: a pull's inline output is left out (only the logs route shows it,
    /// and it reads the document).
    fn slim(self) -> Self {
        self
    }
}

impl Kept for PullResult {
    fn folder(release: &str) -> String {
        layout::pulls(release)
    }
    fn kept(reports: &mut ReleaseReports) -> &mut HashMap<String, Self> {
        &mut reports.pulls
    }
    fn slim(self) -> Self {
        Self { output: StepOutput::default(), ..self }
    }
}

impl Kept for HostResult {
    fn folder(release: &str) -> String {
        layout::results(release)
    }
    fn kept(reports: &mut ReleaseReports) -> &mut HashMap<String, Self> {
        &mut reports.results
    }
}

impl Engine {
    /// Every report of this kind a release's hosts wrote, by host, as kept (see [`Kept::slim`]):
    /// one listing, and a read of each listed report this process has not read or written yet.
    pub async fn reports<T: Kept>(&self, release: &str) -> Result<BTreeMap<String, T>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let store = self.store();
        let paths = store.list_paths(&T::folder(release)).await?;
        let mut all = BTreeMap::new();
        let mut missing = Vec::new();
        {
            let mut reports = self.reports.lock();
            let kept = reports.releases.get_mut(release).map(T::kept);
            for path in paths {
                let host = layout::stem(&path);
                match kept.as_ref().and_then(|kept| kept.get(host)) {
                    Some(report) => {
                        all.insert(host.to_owned(), report.clone());
                    }
                    None => missing.push(path),
                }
            }
        }
        let mut read = futures::stream::iter(missing)
            .map(|path| async move {
                let document = store.get::<T>(&path).await?;
                Ok::<_, StoreError>(document.map(|d| (layout::stem(&path).to_owned(), d.value)))
            })
            .buffered(16);
        // Documents deleted while listing are skipped, as `DocumentStore::list` skips them.
        while let Some(document) = read.try_next().await? {
            if let Some((host, report)) = document {
                let report = report.slim();
                self.keep_report(release, &host, report.clone());
                all.insert(host, report);
            }
        }
        Ok(all)
    }

    /// Keeps a report this process read, or wrote itself (only the write that created it: a
    /// duplicate's may differ from the one that won).
    pub fn keep_report<T: Kept>(&self, release: &str, host: &str, report: T) {
        let mut reports = self.reports.lock();
        let inserted = T::kept(reports.of(release)).insert(host.to_owned(), report.slim()).is_none();
        reports.kept += usize::from(inserted);
    }

    /// Whether this process knows the host's report of this kind exists.
    pub(crate) fn report_kept<T: Kept>(&self, release: &str, host: &str) -> bool {
        self.reports.lock().releases.get_mut(release).is_some_and(|r| T::kept(r).contains_key(host))
    }

    /// Notes that this process recorded the host's successful run in its ledger.
    pub(super) fn note_recorded(&self, release: &str, host: &str) {
        let mut reports = self.reports.lock();
        let inserted = reports.of(release).recorded.insert(host.to_owned());
        reports.kept += usize::from(inserted);
    }

    /// Whether this process recorded the host's successful run in its ledger.
    pub(super) fn recorded_here(&self, release: &str, host: &str) -> bool {
        self.reports.lock().releases.get(release).is_some_and(|r| r.recorded.contains(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(ok: bool, stdout: &str) -> PullResult {
        PullResult {
            ok,
            exit_code: Some(0),
            reason: None,
            output: StepOutput { stdout: stdout.into(), stderr: String::new() },
            at: 1,
        }
    }

    #[tokio::test]
    async fn each_report_is_read_once_and_shown_only_while_listed() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let store = engine.store();
        let id = "0b9e7c34-5d1f-4f43-9a55-3c1f0e2d8a61";
        store.put(&layout::pull(id, "h1"), &pull(true, "pulled")).await.unwrap();
        engine.keep_report(id, "h2", pull(false, ""));
        store.put(&layout::pull(id, "h2"), &pull(false, "")).await.unwrap();
        let first = engine.reports::<PullResult>(id).await.unwrap();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["h1", "h2"]);
        assert!(first.values().all(|p| p.output.stdout.is_empty()), "kept without their output");
        // Reports never change: a changed document (it cannot be, here it is) is not read again.
        store.put(&layout::pull(id, "h1"), &pull(false, "")).await.unwrap();
        store.put(&layout::pull(id, "h2"), &pull(true, "")).await.unwrap();
        store.delete(&layout::pull(id, "h2")).await.unwrap();
        let second = engine.reports::<PullResult>(id).await.unwrap();
        assert_eq!(second.keys().collect::<Vec<_>>(), ["h1"], "a report no longer listed is gone");
        assert!(second.get("h1").is_some_and(|p| p.ok), "read once, kept");
        assert!(engine.report_kept::<PullResult>(id, "h1"));
        assert!(!engine.report_kept::<HostResult>(id, "h1"));
    }

    #[test]
    fn a_kept_pull_leaves_its_output_out_and_the_bound_starts_over() {
        let mut reports = Reports::default();
        let kept = PullResult::kept(reports.of("r1"));
        kept.insert("h1".into(), pull(true, "pulled").slim());
        assert_eq!(kept.get("h1").map(|p| p.output.stdout.as_str()), Some(""));
        reports.kept = MAX_KEPT;
        assert!(PullResult::kept(reports.of("r2")).is_empty());
        assert!(!reports.releases.contains_key("r1"), "the bound clears what was kept");
        assert_eq!(reports.kept, 0);
    }
}

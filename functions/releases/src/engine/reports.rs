//! What hosts reported, kept as read. A report (a pull's outcome, a run's result) is created
//! once and never changes, so a process reads each at most once: a listing says which exist,
//! and only those not kept yet are read. Before, every advance at a phase's end and every view
//! of the release (`berth release --watch`, the console) read every host's documents again: at
//! 100,000 hosts, 200,000 reads a view.
//!
//! The listing stays the record: a report is shown only while it is listed (a release's
//! documents deleted are gone from the answers too), and a kept one only saves its read.

use super::*;

/// Hosts whose reports are kept across releases; past this they start over (each is read
/// again once). About 35 MB: a host's place takes 88 bytes, taken for every host of a
/// release's plan at its first kept report (a plan larger than this keeps none).
const MAX_KEPT: usize = 400_000;

/// What is kept of one report: what decisions and views read (not a pull's inline output,
/// which only the logs route shows, reading the document).
struct Outcome {
    at: u64,
    reason: Option<Box<str>>,
    exit_code: Option<i32>,
    ok: bool,
    /// A result's step (a pull's is none).
    step: Option<Step>,
}

impl Outcome {
    fn of(ok: bool, exit_code: Option<i32>, reason: Option<String>, at: u64, step: Option<Step>) -> Self {
        Self { at, reason: reason.map(String::into_boxed_str), exit_code, ok, step }
    }
}

/// What is kept of one host's reports in one release.
#[derive(Default)]
pub struct HostReports {
    pull: Option<Outcome>,
    result: Option<Outcome>,
    /// Whether this process recorded the host's successful run in its ledger.
    recorded: bool,
}

/// Every release's kept reports, by the host's place in its plan, and how many places are
/// taken in all.
#[derive(Default)]
pub(super) struct Reports {
    releases: HashMap<String, Box<[HostReports]>>,
    kept: usize,
}

impl Reports {
    /// The host's place in the release's kept reports, making the release's places first
    /// (and room for them, when the bound is reached).
    fn place(&mut self, plan: &Plan, host: &str) -> Option<&mut HostReports> {
        let index = plan.host(host)?.index;
        let id = &plan.release.id;
        if !self.releases.contains_key(id) {
            let hosts = plan.host_count();
            if hosts > MAX_KEPT {
                return None;
            }
            if self.kept + hosts > MAX_KEPT {
                self.releases.clear();
                self.kept = 0;
            }
            self.kept += hosts;
            self.releases.insert(id.clone(), (0..hosts).map(|_| HostReports::default()).collect());
        }
        self.releases.get_mut(id)?.get_mut(index)
    }

    fn get(&self, plan: &Plan, host: &str) -> Option<&HostReports> {
        self.releases.get(&plan.release.id)?.get(plan.host(host)?.index)
    }
}

/// A kind of report, kept by host.
pub trait Kept: serde::de::DeserializeOwned + Send + 'static {
    /// The folder of a release's reports of this kind.
    fn folder(release: &str) -> String;
    #[doc(hidden)]
    fn keep(self, host: &mut HostReports);
    /// The report as kept, if it is.
    #[doc(hidden)]
    fn kept(host: &HostReports) -> Option<Self>;
    #[doc(hidden)]
    fn is_kept(host: &HostReports) -> bool;
}

impl Kept for PullResult {
    fn folder(release: &str) -> String {
        layout::pulls(release)
    }
    fn keep(self, host: &mut HostReports) {
        let Self { ok, exit_code, reason, at, output: _ } = self;
        host.pull = Some(Outcome::of(ok, exit_code, reason, at, None));
    }
    fn kept(host: &HostReports) -> Option<Self> {
        let o = host.pull.as_ref()?;
        let reason = o.reason.as_deref().map(str::to_owned);
        Some(Self { ok: o.ok, exit_code: o.exit_code, reason, output: StepOutput::default(), at: o.at })
    }
    fn is_kept(host: &HostReports) -> bool {
        host.pull.is_some()
    }
}

impl Kept for HostResult {
    fn folder(release: &str) -> String {
        layout::results(release)
    }
    fn keep(self, host: &mut HostReports) {
        let Self { ok, step, exit_code, reason, at } = self;
        host.result = Some(Outcome::of(ok, exit_code, reason, at, Some(step)));
    }
    fn kept(host: &HostReports) -> Option<Self> {
        let o = host.result.as_ref()?;
        let reason = o.reason.as_deref().map(str::to_owned);
        Some(Self { ok: o.ok, step: o.step?, exit_code: o.exit_code, reason, at: o.at })
    }
    fn is_kept(host: &HostReports) -> bool {
        host.result.is_some()
    }
}

impl Engine {
    /// Every report of this kind a release's hosts wrote, by host, as kept (see [`Kept`]): one
    /// listing, and a read of each listed report this process has not read or written yet.
    pub async fn reports<T: Kept>(&self, release: &str) -> Result<BTreeMap<String, T>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let store = self.store();
        let plan = self.plan(release).await?;
        let paths = store.list_paths(&T::folder(release)).await?;
        let mut all = BTreeMap::new();
        let mut missing = Vec::new();
        {
            let reports = self.reports.lock();
            for path in paths {
                let host = layout::stem(&path);
                match plan.as_ref().and_then(|plan| reports.get(plan, host)).and_then(T::kept) {
                    Some(report) => {
                        all.insert(host.to_owned(), report);
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
            let Some((host, report)) = document else { continue };
            let Some(plan) = &plan else {
                all.insert(host, report);
                continue;
            };
            // As kept, so that every answer shows the same.
            let mut reports = self.reports.lock();
            match reports.place(plan, &host) {
                Some(place) => {
                    report.keep(place);
                    if let Some(kept) = T::kept(place) {
                        all.insert(host, kept);
                    }
                }
                None => {
                    all.insert(host, report);
                }
            }
        }
        Ok(all)
    }

    /// Keeps a report this process wrote (only the write that created it: a duplicate's may
    /// differ from the one that won).
    pub fn keep_report<T: Kept>(&self, plan: &Plan, host: &str, report: T) {
        if let Some(place) = self.reports.lock().place(plan, host) {
            report.keep(place);
        }
    }

    /// Keeps a report another process took, as its advance event told it (the plan is read
    /// for it if need be: the advance reads it next anyway). A host outside the plan is
    /// ignored.
    pub(super) async fn keep_told(&self, release: &str, report: &ToldReport) {
        let plan = match self.plan(release).await {
            Ok(Some(plan)) => plan,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, release, "a told report is not kept: the plan did not read");
                return;
            }
        };
        let Some(planned) = plan.host(&report.host) else { return };
        if let Some(pull) = &report.pull {
            self.keep_report(&plan, &report.host, pull.clone());
            plan.note_settled(planned, release::JobKind::Pull);
        }
        if let Some(result) = &report.result {
            self.keep_report(&plan, &report.host, result.clone());
            plan.note_settled(planned, release::JobKind::Run);
        }
        if report.recorded {
            self.note_recorded(release, &report.host);
        }
    }

    /// Whether this process knows the host's report of this kind exists.
    pub(crate) fn report_kept<T: Kept>(&self, plan: &Plan, host: &str) -> bool {
        self.reports.lock().get(plan, host).is_some_and(T::is_kept)
    }

    /// Notes that this process recorded the host's successful run in its ledger.
    pub(super) fn note_recorded(&self, release: &str, host: &str) {
        if let Some(plan) = self.cached_plan(release)
            && let Some(place) = self.reports.lock().place(&plan, host)
        {
            place.recorded = true;
        }
    }

    /// Whether this process recorded the host's successful run in its ledger.
    pub(super) fn recorded_here(&self, plan: Option<&Plan>, host: &str) -> bool {
        plan.is_some_and(|plan| self.reports.lock().get(plan, host).is_some_and(|h| h.recorded))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use berth_shared::release::{
        Deployment, GroupKind, ImageRef, Phase, RegistryEndpoint, ReleaseRequest, ReleaseStatus, Trigger, plan_batches,
        validate_options,
    };

    const ID: &str = "0b9e7c34-5d1f-4f43-9a55-3c1f0e2d8a61";

    pub(in crate::engine) fn plan(hosts: usize) -> Plan {
        let request: ReleaseRequest =
            serde_json::from_value(serde_json::json!({ "application": "app", "deployment": "web", "group": "prod" }))
                .unwrap();
        let options = validate_options(&request).unwrap();
        let names: Vec<String> = (0..hosts).map(|i| format!("h{i}")).collect();
        let batches = plan_batches(&names, &options.batching).unwrap();
        Plan::new(Release {
            id: ID.into(),
            account: AccountId::parse("acme").unwrap(),
            application: "app".into(),
            group: "prod".into(),
            group_kind: GroupKind::Scaling,
            deployment: Deployment {
                name: "web".into(),
                image: ImageRef { registry: "r:5000".into(), repository: "acme/web".into(), reference: ":v1".into() },
                working_directory: "/srv".into(),
                start_script: "true".into(),
                stop_script: "true".into(),
                step_timeout_seconds: 10,
                registry_endpoint: RegistryEndpoint::Public,
                created_at: 0,
                revision: 1,
                health: None,
            },
            options,
            batches: batches.into(),
            status: ReleaseStatus::Running,
            phase: Phase::Pulling,
            phase_started_at: 100,
            reason: None,
            created_at: 100,
            finished_at: None,
            host_parts: None,
            trigger: Trigger::Manual,
            stale: Vec::new(),
            stale_count: 0,
            created_ms: 0,
            load_balancer: None,
        })
    }

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
        let plan = engine.keep_plan(plan(3).release, false);
        store.put(&layout::pull(ID, "h0"), &pull(true, "pulled")).await.unwrap();
        engine.keep_report(&plan, "h1", pull(false, ""));
        store.put(&layout::pull(ID, "h1"), &pull(false, "")).await.unwrap();
        let first = engine.reports::<PullResult>(ID).await.unwrap();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["h0", "h1"]);
        assert!(first.values().all(|p| p.output.stdout.is_empty()), "kept without their output");
        // Reports never change: a changed document (it cannot be, here it is) is not read again.
        store.put(&layout::pull(ID, "h0"), &pull(false, "")).await.unwrap();
        store.put(&layout::pull(ID, "h1"), &pull(true, "")).await.unwrap();
        store.delete(&layout::pull(ID, "h1")).await.unwrap();
        let second = engine.reports::<PullResult>(ID).await.unwrap();
        assert_eq!(second.keys().collect::<Vec<_>>(), ["h0"], "a report no longer listed is gone");
        assert!(second.get("h0").is_some_and(|p| p.ok), "read once, kept");
        assert!(engine.report_kept::<PullResult>(&plan, "h0"));
        assert!(!engine.report_kept::<HostResult>(&plan, "h0"));
        assert!(!engine.report_kept::<PullResult>(&plan, "h2"));
    }

    /// A report another process took, told with the advance it asked for, is kept as if read:
    /// the listing shows it as told (the stored one is not read), and the host's job counts as
    /// reported. A report with a long reason is not told.
    #[tokio::test]
    async fn a_told_report_is_kept_as_if_read() {
        let engine = Engine::new(FunctionContext::ephemeral());
        let store = engine.store();
        let plan = engine.keep_plan(plan(3).release, false);
        let result = HostResult { ok: false, step: Step::Pull, exit_code: Some(1), reason: Some("no".into()), at: 1 };
        let told = ToldReport::of("h0", Some(&pull(false, "pulled")), Some(&result)).unwrap();
        assert_eq!(told.pull.as_ref().map(|p| p.output.stdout.as_str()), Some(""), "told without its output");
        // Changed behind the engine: a read would show it.
        store.put(&layout::pull(ID, "h0"), &pull(true, "")).await.unwrap();
        store.put(&layout::result(ID, "h0"), &HostResult { ok: true, ..result.clone() }).await.unwrap();
        engine.keep_told(ID, &ToldReport { host: "not-planned".into(), ..told.clone() }).await;
        engine.keep_told(ID, &told).await;
        let pulls = engine.reports::<PullResult>(ID).await.unwrap();
        assert_eq!(pulls.get("h0").map(|p| p.ok), Some(false), "as told, not read");
        assert_eq!(engine.reports::<HostResult>(ID).await.unwrap().get("h0"), Some(&result));
        let planned = plan.host("h0").unwrap();
        assert!(
            plan.known_settled(planned, release::JobKind::Pull) && plan.known_settled(planned, release::JobKind::Run)
        );
        assert!(!engine.recorded_here(Some(&plan), "h0"));
        let ran = HostResult { ok: true, step: Step::Start, exit_code: Some(0), reason: None, at: 2 };
        let recorded = ToldReport { recorded: true, ..ToldReport::of("h1", None, Some(&ran)).unwrap() };
        engine.keep_told(ID, &recorded).await;
        assert!(engine.recorded_here(Some(&plan), "h1"), "its ledger written where it was taken");
        let long = HostResult { reason: Some("x".repeat(MAX_TOLD_REASON_BYTES + 1)), ..result };
        assert!(ToldReport::of("h1", None, Some(&long)).is_none());
    }

    #[test]
    fn a_kept_pull_leaves_its_output_out_and_the_bound_starts_over() {
        let mut reports = Reports::default();
        let plan = plan(3);
        pull(true, "pulled").keep(reports.place(&plan, "h1").unwrap());
        assert_eq!(reports.get(&plan, "h1").and_then(PullResult::kept), Some(pull(true, "")));
        assert!(reports.get(&plan, "h1").and_then(HostResult::kept).is_none());
        assert!(reports.place(&plan, "not-planned").is_none());
        assert_eq!(reports.kept, 3, "a place for every host of the plan");
        reports.kept = MAX_KEPT;
        let other = Plan::new(Release { id: "other".into(), ..plan.release.clone() });
        assert!(reports.place(&other, "h1").is_some());
        assert!(reports.get(&plan, "h1").is_none(), "the bound clears what was kept");
        assert_eq!(reports.kept, 3);
    }
}

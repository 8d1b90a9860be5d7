//! How many hosts of a release's current phase reported, kept per process so that an advance
//! lists the phase's reports only when they may all be in.
//!
//! Listing is the only count that holds across processes, but it costs one read per 1,000
//! hosts on S3 and was most of the engine's time at 100,000 hosts. So a pass lists when the
//! last listing plus the reports this process took since could reach the phase's size, or when
//! the last listing is older than [`relist_after`] (reports another process took). A count
//! that is too high only brings the listing forward; the decision always uses the listing.
//!
//! With a shared queue (SQS), each report also comes through the queue as news, even while
//! an advance runs where it was taken ([`Advance::reported_in`]), to whichever process
//! receives it: news brings the listing forward to a few listings' time after the last one,
//! so the process that advances learns of the last report elsewhere within a queue trip
//! instead of a relisting timer. News counts once other processes are known to take reports
//! (another process's news came here): one process over SQS hears only its own, and lists no
//! more than it did.

use super::*;

use std::time::Instant;

/// Shortest time between two listings of a phase that are not brought forward.
const MIN_RELIST: Duration = Duration::from_secs(1);

/// Releases whose tally is kept; past this the tallies start over (each is relisted).
const MAX_TALLIES: usize = 1024;

/// One release's count for one phase.
#[derive(Debug, Clone)]
pub(super) struct Tally {
    phase: release::Phase,
    /// Reports the last listing found.
    listed: usize,
    /// When that listing started, and how long it took.
    listed_at: Instant,
    took: Duration,
    /// Reports this process took since that listing started (some may be in it too).
    since: usize,
    /// The phase's size, once a pass waits for it: a report wakes that pass only when the
    /// count may have reached it (waking it on each of 100,000 reports was a tenth of the
    /// dispatch's CPU).
    expected: Option<usize>,
    /// Reports told through the queue since that listing started (see the module's notes).
    news: usize,
}

/// How long a listing that took `took` is trusted: ten times as long, so listings take at most
/// a tenth of a pass's time however large the phase, and at least [`MIN_RELIST`].
fn relist_after(took: Duration) -> Duration {
    (took * 10).max(MIN_RELIST)
}

/// How long a listing that took `took` is trusted once news came: four times as long, so
/// listings brought forward by news take at most a fifth of a pass's time.
fn relist_on_news_after(took: Duration) -> Duration {
    took * 4
}

/// What a pass should do about the phase's reports.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Count {
    /// List them: they may all be in, or the count is too old to trust.
    List,
    /// Not all in as far as this process knows; the count is trusted for this much longer.
    Wait(Duration),
}

impl Tally {
    /// Counts one report taken here; true when a pass waiting for the phase should look.
    fn note(&mut self) -> bool {
        self.since += 1;
        self.expected.is_none_or(|e| self.listed.saturating_add(self.since) >= e)
    }

    pub(super) fn next(&self, phase: release::Phase, expected: usize, now: Instant) -> Count {
        if self.phase != phase || self.listed.saturating_add(self.since) >= expected {
            return Count::List;
        }
        let mut trusted = relist_after(self.took);
        if self.news > 0 {
            trusted = trusted.min(relist_on_news_after(self.took));
        }
        match trusted.checked_sub(now.duration_since(self.listed_at)) {
            Some(left) if !left.is_zero() => Count::Wait(left),
            _ => Count::List,
        }
    }
}

impl Engine {
    /// Records that this process wrote a report of `release` due in `phase`, and wakes a pass
    /// waiting for its count.
    pub fn note_report(&self, release: &str, phase: release::Phase) {
        let wake = {
            let mut tallies = self.tallies.lock();
            match tallies.get_mut(release) {
                Some(tally) if tally.phase == phase => tally.note(),
                _ => {
                    // The phase's first report here, maybe before any listing of it: counted
                    // from nothing listed, and listed within a second for other processes'.
                    if tallies.len() >= MAX_TALLIES {
                        tallies.clear();
                    }
                    let first = Tally {
                        phase,
                        listed: 0,
                        listed_at: Instant::now(),
                        took: Duration::ZERO,
                        since: 1,
                        expected: None,
                        news: 0,
                    };
                    tallies.insert(release.to_owned(), first);
                    true
                }
            }
        };
        if wake {
            self.reported.notify_waiters();
        }
    }

    /// Whether other processes are known to take reports (see the module's notes).
    pub(super) fn others_report(&self) -> bool {
        self.others_report.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records news through the queue of a report of `release`, taken by another process
    /// (`elsewhere`) or by this one, and wakes a pass waiting for its count once other
    /// processes are known to take reports. Without a count yet, the next pass lists anyway.
    pub fn note_news(&self, release: &str, elsewhere: bool) {
        if elsewhere {
            self.others_report.store(true, std::sync::atomic::Ordering::Relaxed);
        } else if !self.others_report() {
            // This process's own report, told back to it while it alone takes reports.
            return;
        }
        if let Some(tally) = self.tallies.lock().get_mut(release) {
            tally.news += 1;
        }
        self.reported.notify_waiters();
    }

    /// Counts the phase's reports with `list`, once the tally says they may all be in or has
    /// gone stale (waiting for that at most until it goes stale).
    pub(super) async fn counted<F, Fut>(&self, release: &Release, expected: usize, list: F) -> Result<usize, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<usize, StoreError>>,
    {
        loop {
            // Registered before looking, so a report between the look and the wait is not missed.
            let reported = self.reported.notified();
            tokio::pin!(reported);
            reported.as_mut().enable();
            let next = match self.tallies.lock().get(&release.id) {
                Some(tally) => tally.next(release.phase, expected, Instant::now()),
                None => Count::List,
            };
            match next {
                Count::List => break,
                Count::Wait(left) => {
                    tokio::select! {
                        _ = &mut reported => {}
                        _ = tokio::time::sleep(left) => {}
                        _ = self.closing.cancelled() => return Ok(0),
                    }
                }
            }
        }
        let started = Instant::now();
        let (before, news_before) = match self.tallies.lock().get(&release.id) {
            Some(t) => (if t.phase == release.phase { t.since } else { 0 }, t.news),
            None => (0, 0),
        };
        let listed = list().await?;
        let mut tallies = self.tallies.lock();
        let old = tallies.get(&release.id);
        // Reports taken while listing are kept in `since`: counted twice at worst, never missed.
        // News that came while listing is kept too.
        let since = old.filter(|t| t.phase == release.phase).map_or(0, |t| t.since - before);
        let news = old.map_or(0, |t| t.news.saturating_sub(news_before));
        if tallies.len() >= MAX_TALLIES && !tallies.contains_key(&release.id) {
            tallies.clear();
        }
        tallies.insert(
            release.id.clone(),
            Tally {
                phase: release.phase,
                listed,
                listed_at: started,
                took: started.elapsed(),
                since,
                expected: Some(expected),
                news,
            },
        );
        Ok(listed)
    }

    /// Forgets a release's tally (it ended).
    pub(super) fn forget_tally(&self, release: &str) {
        self.tallies.lock().remove(release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(listed: usize, since: usize, took: Duration, at: Instant) -> Tally {
        Tally { phase: release::Phase::Pulling, listed, listed_at: at, took, since, expected: Some(100), news: 0 }
    }

    #[test]
    fn lists_when_the_reports_may_all_be_in_or_the_count_is_stale() {
        let at = Instant::now();
        let quick = Duration::from_millis(5);
        // 90 listed and 10 taken here since: maybe all 100 are in.
        assert_eq!(tally(90, 10, quick, at).next(release::Phase::Pulling, 100, at), Count::List);
        // 90 + 5 of 100, listed just now: wait, at most until the count goes stale.
        assert_eq!(tally(90, 5, quick, at).next(release::Phase::Pulling, 100, at), Count::Wait(MIN_RELIST));
        assert_eq!(tally(90, 5, quick, at).next(release::Phase::Pulling, 100, at + MIN_RELIST), Count::List);
        // Another phase's count says nothing about this one.
        assert_eq!(tally(90, 5, quick, at).next(release::Phase::Batch { batch: 0 }, 100, at), Count::List);
        // A slow listing is trusted ten times as long as it took.
        let slow = Duration::from_millis(300);
        assert_eq!(tally(0, 0, slow, at).next(release::Phase::Pulling, 100, at), Count::Wait(slow * 10));
    }

    #[test]
    fn news_of_a_report_elsewhere_brings_the_listing_forward_to_a_few_listings_time() {
        let at = Instant::now();
        let took = Duration::from_millis(20);
        let mut shared = tally(40, 5, took, at);
        assert_eq!(shared.next(release::Phase::Pulling, 100, at), Count::Wait(MIN_RELIST));
        shared.news = 1;
        assert_eq!(shared.next(release::Phase::Pulling, 100, at), Count::Wait(took * 4));
        assert_eq!(shared.next(release::Phase::Pulling, 100, at + took * 4), Count::List);
        // A slow listing is not repeated on every piece of news: a fifth of the time at most.
        let slow = Duration::from_secs(2);
        let mut large = tally(40, 5, slow, at);
        large.news = 1000;
        assert_eq!(large.next(release::Phase::Pulling, 100, at + slow), Count::Wait(slow * 3));
    }

    #[tokio::test]
    async fn news_counts_once_other_processes_are_known_to_report_and_wakes_the_waiting_pass() {
        let engine = Engine::new(FunctionContext::ephemeral());
        engine.note_report("r", release::Phase::Pulling);
        // This process's own report, told back to it while it alone takes reports: nothing new.
        engine.note_news("r", false);
        assert_eq!(engine.tallies.lock().get("r").map(|t| t.news), Some(0));
        assert!(!engine.others_report());
        let woken = engine.reported.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        engine.note_news("r", true);
        engine.note_news("r", false);
        assert!(engine.others_report());
        assert_eq!(engine.tallies.lock().get("r").map(|t| t.news), Some(2));
        tokio::time::timeout(Duration::from_secs(1), woken).await.expect("the waiting pass is woken");
        // Without a count of the release yet, nothing is kept: its next pass lists anyway.
        engine.note_news("other", true);
        assert!(engine.tallies.lock().get("other").is_none());
    }

    #[test]
    fn a_report_wakes_the_waiting_pass_only_when_the_phase_may_be_complete() {
        let at = Instant::now();
        let mut waiting = tally(97, 0, Duration::ZERO, at);
        assert!(!waiting.note());
        assert!(!waiting.note());
        assert!(waiting.note(), "97 listed + 3 taken here may be all 100");
        // Before any listing the phase's size is not known here: every report wakes.
        let mut unlisted = Tally { expected: None, ..tally(0, 0, Duration::ZERO, at) };
        assert!(unlisted.note());
    }
}

//! What the processes of one deployment tell each other (see
//! [`berth_shared::platform::news`]): that a release moved, and that host tokens were revoked.
//! Agent polls held in a process and its wake channels hear of a move made in another within
//! a queue's round trip, not at the next re-read of the group's snapshot
//! ([`SNAPSHOT_LIFE`](super::SNAPSHOT_LIFE)); a host record kept to authenticate a token is
//! forgotten as soon as another process revokes the token.
//!
//! Only processes that hold polls and channels take part: `berth serve` and any long-running
//! function process on a shared (SQS) queue. Under Lambda no instance holds either (agents wait
//! on API Gateway's WebSocket connections, which a move reaches through its API).

use super::*;

use berth_shared::platform::news::ProcessNews;
use berth_shared::platform::queue::{Envelope, SqsQueue};
use tokio::sync::mpsc;

/// News: a release of `group` moved (its phase, its status, or it began).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMoved {
    /// The release's id.
    pub release: String,
    /// Its group.
    pub group: GroupRef,
    /// Where it moved from and to, when the mover knew both (news from before has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<StateChange>,
}

/// A release's state saved over the one it was at: a process whose snapshot of the group shows
/// `from` takes `to` without reading the release (news that only said "moved" had each of a
/// phase's held polls there read the state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The status and phase the save replaced.
    pub from: (release::ReleaseStatus, release::Phase),
    /// The state saved.
    pub to: ReleaseState,
}

impl Event for ReleaseMoved {
    const TYPE: &'static str = "release.moved";
}

/// News: host tokens that no longer act (their hosts registered again, or removed), by the
/// SHA-256 of each: a process that kept a host record for one forgets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensRevoked {
    /// Hex digests, at most 1,024 heeded (a longer list is told in several messages).
    pub digests: Vec<String>,
}

impl Event for TokensRevoked {
    const TYPE: &'static str = "host-tokens.revoked";
}

impl Engine {
    /// Starts telling and hearing news, where other processes may move releases (a shared
    /// queue) and this one holds polls (not under Lambda).
    pub fn spawn_news(&self) {
        let berth_shared::platform::config::QueueLocation::Sqs { url, .. } = &self.context.config.queue else { return };
        if tokio::runtime::Handle::try_current().is_err() || berth_shared::platform::runtime::under_lambda() {
            return;
        }
        let queues = Arc::new(SqsQueue::deferred(url.clone(), &self.context.config.s3.region, None));
        let (news, heard) = ProcessNews::start(self.store().clone(), queues, &self.process, self.closing.clone());
        if self.news.set(news).is_ok() {
            tokio::spawn(self.clone().hear(heard));
        }
    }

    /// Waits, once the engine is closing, until what it made for its life is gone (its news
    /// queue and announcement).
    pub async fn stopped(self) {
        if let Some(news) = self.news.get() {
            news.stopped().await;
        }
    }

    /// Tells the other processes that `release` moved (from `from`, when known).
    pub(super) async fn tell_moved(&self, release: &Release, from: Option<(release::ReleaseStatus, release::Phase)>) {
        let Some(news) = self.news.get() else { return };
        let change = from.map(|from| StateChange { from, to: ReleaseState::of(release) });
        let moved = ReleaseMoved { release: release.id.clone(), group: Self::group_of(release), change };
        match events::envelope(&moved, Some(release.account.clone())) {
            Ok(envelope) => news.tell_others(&envelope).await,
            Err(error) => tracing::warn!(%error, "news of a move could not be written"),
        }
    }

    /// Tells the other processes that these host tokens no longer act.
    pub(super) async fn tell_revoked(&self, digests: &[String]) {
        let Some(news) = self.news.get() else { return };
        match events::envelope(&TokensRevoked { digests: digests.to_vec() }, None) {
            Ok(envelope) => news.tell_others(&envelope).await,
            Err(error) => tracing::warn!(%error, "news of revoked host tokens could not be written"),
        }
    }

    async fn hear(self, mut heard: mpsc::Receiver<Envelope>) {
        while let Some(envelope) = heard.recv().await {
            if envelope.kind == TokensRevoked::TYPE {
                match serde_json::from_value::<TokensRevoked>(envelope.payload) {
                    Ok(revoked) => self.heard_revoked(&revoked),
                    Err(error) => tracing::warn!(%error, "news of revoked host tokens that does not read; ignored"),
                }
                continue;
            }
            if envelope.kind != ReleaseMoved::TYPE {
                continue;
            }
            match serde_json::from_value::<ReleaseMoved>(envelope.payload) {
                // The account is the envelope's too: news names only groups of its own account.
                Ok(moved) if envelope.account.as_ref() == Some(&moved.group.account) => self.heard_moved(moved).await,
                Ok(_) => tracing::warn!("news of a move in another account than its envelope's; ignored"),
                Err(error) => tracing::warn!(%error, "news of a move that does not read; ignored"),
            }
        }
    }

    /// Another process revoked host tokens: their places and kept records are forgotten.
    /// Forgetting costs at most a read again, so whatever the news names is safe to heed.
    pub(super) fn heard_revoked(&self, revoked: &TokensRevoked) {
        for digest in revoked.digests.iter().take(super::tokens::MAX_REVOCATIONS_TOLD) {
            self.forget_token_place(digest);
        }
    }

    /// Another process moved a release: the group's held polls look again when its snapshot
    /// changed (taken from the news when it follows on the snapshot, else read), and this
    /// process's wake channels of its hosts are woken.
    async fn heard_moved(&self, moved: ReleaseMoved) {
        match &moved.change {
            Some(change) if self.take_change(&moved.release, &moved.group, change) => self.changed.notify_waiters(),
            _ => self.refresh_watched(&moved.group).await,
        }
        if self.poster.is_some() || self.channels.is_empty() {
            return;
        }
        match self.load(&moved.release).await {
            Ok(Some(release)) if Self::group_of(&release.value) == moved.group => self.wake(&release.value).await,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, release = %moved.release, "reading a release moved elsewhere failed"),
        }
    }
}

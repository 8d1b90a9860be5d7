//! News between the processes that share a store and an SQS queue. A message on the shared
//! queue reaches one process, but some news must reach all of them: a release moved in one
//! process must wake the agent polls held in every other, which otherwise see the move only
//! when they next re-read the store.
//!
//! Each process makes a queue of its own when it starts, announces it in the store
//! (`processes/<id>.json`, renewed every [`RENEW`]) and listens on it; telling the others
//! sends one message to each queue announced and fresh. The queue and the announcement go when
//! the process stops; a crashed process's are removed by the others after [`FORGET_SECONDS`].
//!
//! News is a hint, never the record: the store is. A message that is lost (a process that
//! started a moment ago and is not listed yet, a full backlog) costs its receivers the delay of
//! their own periodic re-read, nothing more. An idle process costs a long poll every 20 s and
//! an announcement and a listing every minute.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::platform::clock::unix_now;
use crate::platform::queue::{Envelope, QueueError, SharedQueue, SqsQueue};
use crate::platform::store::{DocumentStore, Versioned};

/// Where processes announce their news queues.
const FOLDER: &str = "processes/";
/// How often a process renews its announcement and looks for crashed processes' leftovers.
pub const RENEW: Duration = Duration::from_secs(60);
/// An announcement not renewed for this long is a process that is gone: it is told nothing.
const STALE_SECONDS: u64 = 180;
/// A gone process's queue and announcement are removed by the others after this long.
pub const FORGET_SECONDS: u64 = 900;
/// How long a listing of the others is used before telling lists them again: a process that
/// just announced itself is told within this. Moves come in bursts, so this costs a listing
/// per burst.
const PEERS_LIFE: Duration = Duration::from_secs(2);
/// Processes told at most (the freshest): a store full of announcements cannot make one
/// piece of news cost thousands of requests.
const MAX_PEERS: usize = 64;
/// What a process that just listed the others tells them, so that they tell it at once.
const HELLO: &str = "news.hello";
/// Longest queue URL a greeting may name (SQS's are about 100 bytes).
const MAX_QUEUE_URL_BYTES: usize = 512;
/// Envelopes received and not yet taken by the listener; past this, news is dropped.
const BACKLOG: usize = 256;
/// How long a receive waits for news (SQS's longest long poll).
const RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// The pause after a failed receive or queue creation, doubling up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Makes, opens and removes the queues news travels on (SQS beside the work queue).
#[async_trait]
pub trait NewsQueues: Send + Sync {
    /// Makes the news queue of `process` (an existing one is reused) and returns its URL.
    async fn create(&self, process: &str) -> Result<String, QueueError>;
    /// The queue at `url`.
    fn open(&self, url: &str) -> SharedQueue;
    /// Removes the queue at `url`.
    async fn delete(&self, url: &str) -> Result<(), QueueError>;
}

/// News queues are made beside the work queue: `<work queue>-news-<process>`, holding news a
/// minute (SQS's least), which is all it is worth.
#[async_trait]
impl NewsQueues for SqsQueue {
    async fn create(&self, process: &str) -> Result<String, QueueError> {
        let attributes = BTreeMap::from([("MessageRetentionPeriod".to_owned(), "60".to_owned())]);
        let made = self.create_beside(&news_queue_name(self.url(), process), &attributes).await?;
        Ok(made.url().to_owned())
    }

    fn open(&self, url: &str) -> SharedQueue {
        Arc::new(self.beside(url))
    }

    async fn delete(&self, url: &str) -> Result<(), QueueError> {
        self.beside(url).delete_queue().await
    }
}

/// SQS queue names are at most 80 characters of letters, digits, `-` and `_`.
fn news_queue_name(work_url: &str, process: &str) -> String {
    let work = work_url.rsplit('/').next().unwrap_or_default();
    let keep = |c: &char| c.is_ascii_alphanumeric() || *c == '-' || *c == '_';
    let work: String = work.trim_end_matches(".fifo").chars().filter(keep).take(40).collect();
    let process: String = process.chars().filter(keep).take(32).collect();
    format!("{work}-news-{process}")
}

/// A process's announcement of its news queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Announcement {
    queue: String,
    /// Seconds since the epoch.
    renewed_at: u64,
}

/// A process's greeting: its news queue.
#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    queue: String,
}

#[derive(Clone)]
struct Peer {
    url: String,
    queue: SharedQueue,
}

/// This process's side of the news: it tells the others and hears what they tell.
pub struct ProcessNews {
    process: String,
    store: DocumentStore,
    queues: Arc<dyn NewsQueues>,
    /// The others' queues as last listed, and when.
    peers: Mutex<Option<(Instant, Arc<[Peer]>)>>,
    /// One listing at a time; tellers meanwhile use the last one.
    listing: tokio::sync::Mutex<()>,
    /// Cancelled once this process's queue and announcement are gone (or were never made).
    stopped: CancellationToken,
    /// Whether this process's queue is announced: from then on the others tell it.
    announced: std::sync::atomic::AtomicBool,
}

fn announcement_path(process: &str) -> String {
    format!("{FOLDER}{process}.json")
}

impl ProcessNews {
    /// Starts listening for news as `process` (a name no other process uses) until `closing`,
    /// then removes this process's queue and announcement. What others tell arrives on the
    /// receiver, which ends after `closing`.
    pub fn start(
        store: DocumentStore,
        queues: Arc<dyn NewsQueues>,
        process: &str,
        closing: CancellationToken,
    ) -> (Arc<Self>, mpsc::Receiver<Envelope>) {
        let (heard, receiver) = mpsc::channel(BACKLOG);
        let news = Arc::new(Self {
            process: process.to_owned(),
            store,
            queues,
            peers: Mutex::new(None),
            listing: tokio::sync::Mutex::new(()),
            stopped: CancellationToken::new(),
            announced: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(news.clone().listen(heard, closing));
        (news, receiver)
    }

    /// Whether the others tell this process their news now (its queue is made and announced).
    pub fn heard(&self) -> bool {
        self.announced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until, after `closing`, this process's queue and announcement are removed.
    pub async fn stopped(&self) {
        self.stopped.cancelled().await;
    }

    /// Tells every other process `envelope`, concurrently; failures are logged (news is a hint).
    pub async fn tell_others(self: &Arc<Self>, envelope: &Envelope) {
        let peers = self.peers().await;
        futures::stream::iter(peers.iter())
            .for_each_concurrent(16, |peer| async move {
                if let Err(error) = peer.queue.send(envelope).await {
                    tracing::debug!(%error, queue = %peer.url, "telling another process failed");
                }
            })
            .await;
    }

    /// The others' queues: the last listing, listed again behind this news once it is old (a
    /// move's news does not wait for a listing's round trips); the first listing is waited for.
    async fn peers(self: &Arc<Self>) -> Arc<[Peer]> {
        let last = self.peers.lock().clone();
        match last {
            Some((at, peers)) if at.elapsed() < PEERS_LIFE => peers,
            Some((_, peers)) => {
                let this = self.clone();
                tokio::spawn(async move { this.list_peers().await });
                peers
            }
            None => self.list_peers().await,
        }
    }

    /// Lists the others' queues now, unless another teller does (then the last listing).
    async fn list_peers(&self) -> Arc<[Peer]> {
        let Ok(_listing) = self.listing.try_lock() else {
            // Another teller lists now: use what there is rather than wait for it.
            return self.peers.lock().as_ref().map(|(_, p)| p.clone()).unwrap_or_else(|| Arc::from([]));
        };
        match self.list_others().await {
            Ok(peers) => {
                *self.peers.lock() = Some((Instant::now(), peers.clone()));
                peers
            }
            Err(error) => {
                tracing::warn!(%error, "listing the other processes failed");
                self.peers.lock().as_ref().map(|(_, p)| p.clone()).unwrap_or_else(|| Arc::from([]))
            }
        }
    }

    /// Every fresh announcement but this process's, the freshest first, reusing the queues
    /// already open.
    async fn list_others(&self) -> Result<Arc<[Peer]>, crate::platform::store::StoreError> {
        Ok(self.others_in(&self.store.list::<Announcement>(FOLDER).await?))
    }

    /// The others' queues among `announcements`, as [`Self::list_others`].
    fn others_in(&self, announcements: &[(String, Versioned<Announcement>)]) -> Arc<[Peer]> {
        let mut fresh: Vec<(u64, &str)> = announcements
            .iter()
            .filter(|(path, a)| {
                *path != announcement_path(&self.process) && a.value.renewed_at + STALE_SECONDS >= unix_now()
            })
            .map(|(_, a)| (a.value.renewed_at, a.value.queue.as_str()))
            .collect();
        fresh.sort_unstable_by(|a, b| b.cmp(a));
        fresh.truncate(MAX_PEERS);
        let open = self.peers.lock().as_ref().map(|(_, p)| p.clone()).unwrap_or_else(|| Arc::from([]));
        fresh.into_iter().map(|(_, url)| self.peer(url, &open)).collect()
    }

    fn peer(&self, url: &str, open: &[Peer]) -> Peer {
        match open.iter().find(|p| p.url == url) {
            Some(peer) => Peer { url: url.to_owned(), queue: peer.queue.clone() },
            None => Peer { queue: self.queues.open(url), url: url.to_owned() },
        }
    }

    /// A process that started after this one listed the others says so: it is told from now
    /// on, not only once a listing finds it. Only a queue beside this process's own is taken
    /// (news is never sent anywhere else, whoever could write to the queue).
    fn greeted(&self, own_url: &str, hello: &Envelope) {
        let Ok(Greeting { queue: url }) = serde_json::from_value::<Greeting>(hello.payload.clone()) else { return };
        let url = url.as_str();
        let beside = |u: &str| u.rsplit_once('/').map(|(dir, _)| dir.to_owned());
        if url == own_url || url.len() > MAX_QUEUE_URL_BYTES || beside(url).is_none() || beside(url) != beside(own_url)
        {
            return;
        }
        // Without a listing yet, the first teller's finds the greeter (it announced first).
        let mut peers = self.peers.lock();
        let Some((_, known)) = peers.as_mut() else { return };
        if known.len() >= MAX_PEERS || known.iter().any(|p| p.url == url) {
            return;
        }
        let mut more = known.to_vec();
        more.push(self.peer(url, &[]));
        *known = more.into();
    }

    async fn listen(self: Arc<Self>, heard: mpsc::Sender<Envelope>, closing: CancellationToken) {
        let _stopped = self.stopped.clone().drop_guard();
        let _silent = Silent(&self.announced);
        let Some(url) = self.create_queue(&closing).await else { return };
        let own = self.queues.open(&url);
        let renewing = tokio::spawn(self.clone().renew(url.clone(), closing.clone()));
        let mut backoff = BACKOFF;
        loop {
            let received = tokio::select! {
                _ = closing.cancelled() => break,
                received = own.receive(10, RECEIVE_WAIT) => received,
            };
            match received {
                Ok(deliveries) => {
                    backoff = BACKOFF;
                    // Handed on before it is settled: the settling is a round trip to the
                    // queue that the news need not wait for (news comes again at worst).
                    let mut settle = Vec::with_capacity(deliveries.len());
                    for delivery in deliveries {
                        if delivery.envelope.kind == HELLO {
                            self.greeted(&url, &delivery.envelope);
                        } else if heard.try_send(delivery.envelope.clone()).is_err() {
                            tracing::debug!("news backlog full; dropped");
                        }
                        settle.push(delivery);
                    }
                    for delivery in &settle {
                        if let Err(error) = own.ack(delivery).await {
                            tracing::debug!(%error, "settling news failed; it may come again");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "receiving news failed");
                    if !pause(&mut backoff, &closing).await {
                        break;
                    }
                }
            }
        }
        let _ = renewing.await;
        if let Err(error) = self.store.delete(&announcement_path(&self.process)).await {
            tracing::warn!(%error, "removing this process's announcement failed");
        }
        if let Err(error) = self.queues.delete(&url).await {
            tracing::warn!(%error, queue = %url, "removing this process's news queue failed");
        }
    }

    /// This process's queue, made with retries until `closing` (then `None`).
    async fn create_queue(&self, closing: &CancellationToken) -> Option<String> {
        let mut backoff = BACKOFF;
        loop {
            match self.queues.create(&self.process).await {
                Ok(url) => return Some(url),
                Err(error) => tracing::warn!(%error, "making this process's news queue failed"),
            }
            if !pause(&mut backoff, closing).await {
                return None;
            }
        }
    }

    /// Announces `url` now and every [`RENEW`], lists the others (whom the first listing
    /// greets: they tell this process from then on), and removes what crashed processes left.
    async fn renew(self: Arc<Self>, url: String, closing: CancellationToken) {
        let mut ticks = tokio::time::interval(RENEW);
        let mut greeted = false;
        loop {
            tokio::select! {
                _ = closing.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let announcement = Announcement { queue: url.clone(), renewed_at: unix_now() };
            match self.store.put(&announcement_path(&self.process), &announcement).await {
                Ok(_) => self.announced.store(true, std::sync::atomic::Ordering::Relaxed),
                Err(error) => tracing::warn!(%error, "announcing this process's news queue failed"),
            }
            let announcements = match self.store.list::<Announcement>(FOLDER).await {
                Ok(announcements) => announcements,
                Err(error) => {
                    tracing::warn!(%error, "listing the other processes failed");
                    continue;
                }
            };
            // The listing the renewal makes anyway: the first news told needs none of its own.
            let others = self.others_in(&announcements);
            *self.peers.lock() = Some((Instant::now(), others.clone()));
            if !greeted && self.heard() {
                greeted = true;
                let greeting = Greeting { queue: url.clone() };
                let hello = Envelope::new(HELLO, None, serde_json::to_value(&greeting).unwrap_or_default());
                for peer in others.iter() {
                    if let Err(error) = peer.queue.send(&hello).await {
                        tracing::debug!(%error, queue = %peer.url, "greeting another process failed");
                    }
                }
            }
            self.forget_gone(announcements).await;
        }
    }

    /// Removes the queues and announcements of processes gone for [`FORGET_SECONDS`].
    async fn forget_gone(&self, announcements: Vec<(String, Versioned<Announcement>)>) {
        for (path, announcement) in announcements {
            if announcement.value.renewed_at + FORGET_SECONDS >= unix_now() {
                continue;
            }
            tracing::info!(queue = %announcement.value.queue, "removing a gone process's news queue");
            if let Err(error) = self.queues.delete(&announcement.value.queue).await {
                tracing::warn!(%error, "removing a gone process's news queue failed");
            }
            if let Err(error) = self.store.delete(&path).await {
                tracing::warn!(%error, "removing a gone process's announcement failed");
            }
        }
    }
}

/// Marks this process as no longer told when its listening ends.
struct Silent<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Silent<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits out `backoff` (doubling it) unless `closing` comes first; returns whether to go on.
async fn pause(backoff: &mut Duration, closing: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = closing.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::queue::InProcessQueue;
    use std::collections::HashMap;

    #[test]
    fn news_queue_names_are_valid_sqs_names() {
        let name = news_queue_name("http://localhost:5000/123456789012/berth-events.fifo", "0f3c-9a");
        assert_eq!(name, "berth-events-news-0f3c-9a");
        let long = format!("https://sqs.eu-west-1.amazonaws.com/1/{}", "q".repeat(80));
        let name = news_queue_name(&long, &"p".repeat(40));
        assert!(name.len() <= 80, "{name}");
    }

    /// In-process queues by URL, as SQS would hold them for every process.
    #[derive(Default)]
    struct Queues(Mutex<HashMap<String, SharedQueue>>);

    #[async_trait]
    impl NewsQueues for Queues {
        async fn create(&self, process: &str) -> Result<String, QueueError> {
            let url = format!("memory://news-{process}");
            self.0
                .lock()
                .entry(url.clone())
                .or_insert_with(|| Arc::new(InProcessQueue::new(3, Duration::from_secs(30))));
            Ok(url)
        }
        fn open(&self, url: &str) -> SharedQueue {
            // A queue that is gone takes sends into a void, as a deleted SQS queue refuses them.
            self.0.lock().get(url).cloned().unwrap_or_else(|| Arc::new(InProcessQueue::new(3, Duration::from_secs(30))))
        }
        async fn delete(&self, url: &str) -> Result<(), QueueError> {
            self.0.lock().remove(url);
            Ok(())
        }
    }

    async fn heard(receiver: &mut mpsc::Receiver<Envelope>) -> Option<Envelope> {
        tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await.ok().flatten()
    }

    async fn announced(store: &DocumentStore, count: usize) {
        for _ in 0..200 {
            if store.list_paths(FOLDER).await.unwrap().len() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{count} announcements never appeared");
    }

    #[tokio::test]
    async fn news_reaches_every_other_process_and_not_the_teller() {
        let store = DocumentStore::in_memory();
        let queues: Arc<Queues> = Arc::default();
        let closing = CancellationToken::new();
        let (a, mut heard_a) = ProcessNews::start(store.clone(), queues.clone(), "a", closing.clone());
        let (_b, mut heard_b) = ProcessNews::start(store.clone(), queues.clone(), "b", closing.clone());
        let (_c, mut heard_c) = ProcessNews::start(store.clone(), queues.clone(), "c", closing.clone());
        announced(&store, 3).await;
        assert!(a.heard());
        let news = Envelope::new("test.news", None, serde_json::json!({ "n": 1 }));
        a.tell_others(&news).await;
        assert_eq!(heard(&mut heard_b).await.map(|e| e.id), Some(news.id));
        assert_eq!(heard(&mut heard_c).await.map(|e| e.id), Some(news.id));
        assert!(tokio::time::timeout(Duration::from_millis(300), heard_a.recv()).await.is_err(), "told itself");

        // Stopping removes each process's queue and announcement; the receivers end.
        closing.cancel();
        tokio::time::timeout(Duration::from_secs(5), a.stopped()).await.unwrap();
        assert!(!a.heard());
        assert!(heard(&mut heard_b).await.is_none());
        announced(&store, 0).await;
        assert!(queues.0.lock().is_empty());
    }

    /// A process that starts after another listed the others is told that one's next news,
    /// though the listing is fresh and not made again: it greeted the other.
    #[tokio::test]
    async fn a_process_that_starts_later_is_told_without_a_new_listing() {
        let store = DocumentStore::in_memory();
        let queues: Arc<Queues> = Arc::default();
        let closing = CancellationToken::new();
        let (a, _heard_a) = ProcessNews::start(store.clone(), queues.clone(), "a", closing.clone());
        for _ in 0..200 {
            if a.peers.lock().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(a.peers.lock().as_ref().is_some_and(|(_, p)| p.is_empty()), "a listed the others at start: none");
        let (_b, mut heard_b) = ProcessNews::start(store.clone(), queues.clone(), "b", closing.clone());
        for _ in 0..200 {
            if a.peers.lock().as_ref().is_some_and(|(_, p)| !p.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let news = Envelope::new("test.news", None, serde_json::json!({ "n": 1 }));
        a.tell_others(&news).await;
        assert_eq!(heard(&mut heard_b).await.map(|e| e.id), Some(news.id));
        // A greeting naming a queue anywhere but beside this process's own is not taken.
        let own = queues.create("a").await.unwrap();
        a.greeted(&own, &Envelope::new(HELLO, None, serde_json::json!({ "queue": "https://attacker.example/q" })));
        a.greeted(&own, &Envelope::new(HELLO, None, serde_json::json!({ "queue": own })));
        assert_eq!(a.peers.lock().as_ref().map(|(_, p)| p.len()), Some(1), "only b");
        closing.cancel();
    }

    #[tokio::test]
    async fn gone_processes_are_not_told_and_their_leftovers_are_removed() {
        let store = DocumentStore::in_memory();
        let queues: Arc<Queues> = Arc::default();
        let gone = queues.create("gone").await.unwrap();
        let stale = queues.create("stale").await.unwrap();
        let long_ago = unix_now() - FORGET_SECONDS - 1;
        store
            .put(&announcement_path("gone"), &Announcement { queue: gone.clone(), renewed_at: long_ago })
            .await
            .unwrap();
        let a_while_ago = unix_now() - STALE_SECONDS - 1;
        store
            .put(&announcement_path("stale"), &Announcement { queue: stale.clone(), renewed_at: a_while_ago })
            .await
            .unwrap();
        let closing = CancellationToken::new();
        let (a, _heard) = ProcessNews::start(store.clone(), queues.clone(), "a", closing.clone());
        // The first renewal announces `a` and removes `gone` (queue and announcement).
        for _ in 0..200 {
            if !queues.0.lock().contains_key(&gone)
                && store.get::<Announcement>(&announcement_path("a")).await.unwrap().is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!queues.0.lock().contains_key(&gone));
        assert!(store.get::<Announcement>(&announcement_path("gone")).await.unwrap().is_none());
        // `stale` is not told, but kept until it is gone for good.
        a.tell_others(&Envelope::new("test.news", None, serde_json::json!({}))).await;
        let stale_queue = queues.open(&stale);
        assert!(stale_queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
        assert!(store.get::<Announcement>(&announcement_path("stale")).await.unwrap().is_some());
        closing.cancel();
    }

    #[tokio::test]
    async fn tellers_reach_at_most_max_peers_freshest_first() {
        let store = DocumentStore::in_memory();
        let queues: Arc<Queues> = Arc::default();
        let now = unix_now();
        for n in 0..MAX_PEERS + 5 {
            let url = queues.create(&format!("p{n}")).await.unwrap();
            let renewed_at = now - n as u64;
            store.put(&announcement_path(&format!("p{n}")), &Announcement { queue: url, renewed_at }).await.unwrap();
        }
        let closing = CancellationToken::new();
        let (a, _heard) = ProcessNews::start(store.clone(), queues.clone(), "a", closing.clone());
        a.tell_others(&Envelope::new("test.news", None, serde_json::json!({}))).await;
        let mut told = Vec::new();
        for n in 0..MAX_PEERS + 5 {
            let queue = queues.open(&format!("memory://news-p{n}"));
            told.push(!queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
        }
        assert_eq!(told.iter().filter(|t| **t).count(), MAX_PEERS);
        assert!(told.iter().take(MAX_PEERS).all(|t| *t), "the freshest are told");
        closing.cancel();
    }
}

//! Storage conformance: the same suite against `memory://`, `file://` and S3 on moto_server.

use std::sync::Arc;

use berth_shared::platform::config::{S3Settings, StoreLocation};
use berth_shared::platform::store::{DocumentStore, StoreError};
use berth_tests::Moto;
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    round: u32,
    winner: Option<usize>,
    count: u64,
}

const UPDATERS: usize = 16;
const ROUNDS: u32 = 8;
const WRITERS: usize = 8;
const INCREMENTS: u64 = 250;

async fn suite(store: DocumentStore) {
    create_if_absent(&store).await;
    compare_and_swap(&store).await;
    listing(&store).await;
    one_winner_per_round(&store).await;
    no_lost_update(&store).await;
}

async fn create_if_absent(store: &DocumentStore) {
    let doc = Doc { round: 0, winner: None, count: 1 };
    let v1 = store.create("conf/create.json", &doc).await.expect("first create");
    let second = store.create("conf/create.json", &Doc { count: 2, ..doc.clone() }).await;
    assert!(matches!(second, Err(StoreError::AlreadyExists(_))), "second create: {second:?}");
    let read = store.get::<Doc>("conf/create.json").await.unwrap().expect("created doc");
    assert_eq!(read.value, doc, "the first create's content stays");
    assert_eq!(read.version, v1, "get reports the version create returned");
    assert!(store.get::<Doc>("conf/absent.json").await.unwrap().is_none());
}

async fn compare_and_swap(store: &DocumentStore) {
    let path = "conf/cas.json";
    let v1 = store.create(path, &Doc { round: 1, winner: None, count: 0 }).await.unwrap();
    let v2 =
        store.update(path, &Doc { round: 2, winner: None, count: 0 }, &v1).await.expect("update at current version");
    assert_ne!(v1, v2);
    let stale = store.update(path, &Doc { round: 99, winner: None, count: 0 }, &v1).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "stale update: {stale:?}");
    assert_eq!(store.get::<Doc>(path).await.unwrap().unwrap().value.round, 2, "a lost swap writes nothing");
    store.update(path, &Doc { round: 3, winner: None, count: 0 }, &v2).await.expect("update at new version");

    let missing = store.update("conf/never.json", &Doc { round: 1, winner: None, count: 0 }, &v1).await;
    assert!(missing.is_err(), "update of a missing document must fail: {missing:?}");
    assert!(store.get::<Doc>("conf/never.json").await.unwrap().is_none());

    store.delete(path).await.unwrap();
    assert!(store.get::<Doc>(path).await.unwrap().is_none());
    store.delete(path).await.expect("deleting a missing document is fine");
}

async fn listing(store: &DocumentStore) {
    for name in ["b", "a", "c"] {
        store.put(&format!("conf/list/{name}.json"), &Doc { round: 0, winner: None, count: 0 }).await.unwrap();
    }
    store.put("conf/list/sub/d.json", &Doc { round: 0, winner: None, count: 0 }).await.unwrap();
    let paths = store.list_paths("conf/list").await.unwrap();
    assert_eq!(paths, ["conf/list/a.json", "conf/list/b.json", "conf/list/c.json", "conf/list/sub/d.json"]);
    assert_eq!(store.list::<Doc>("conf/list").await.unwrap().len(), 4);
}

/// Each round, 16 updaters read the same version, then all try to swap: exactly one wins.
async fn one_winner_per_round(store: &DocumentStore) {
    let path = "conf/contended.json";
    store.create(path, &Doc { round: 0, winner: None, count: 0 }).await.unwrap();
    for round in 1..=ROUNDS {
        let barrier = Arc::new(Barrier::new(UPDATERS));
        let attempts = (0..UPDATERS).map(|id| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let current = store.get::<Doc>(path).await.unwrap().unwrap();
                assert_eq!(current.value.round, round - 1);
                barrier.wait().await;
                let next = Doc { round, winner: Some(id), count: current.value.count + 1 };
                match store.update(path, &next, &current.version).await {
                    Ok(_) => Some(id),
                    Err(StoreError::Conflict(_)) => None,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            })
        });
        let winners: Vec<usize> =
            futures::future::join_all(attempts).await.into_iter().filter_map(|r| r.unwrap()).collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = store.get::<Doc>(path).await.unwrap().unwrap().value;
        assert_eq!(
            (stored.round, stored.winner),
            (round, Some(winners[0])),
            "round {round}: the winner's write is what is stored"
        );
    }
}

/// 8 writers × 250 read-modify-write increments: the final count is exactly 2000.
async fn no_lost_update(store: &DocumentStore) {
    let path = "conf/counter.json";
    let writers = (0..WRITERS).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut done = 0;
            while done < INCREMENTS {
                let result = store
                    .modify::<Doc, StoreError, _>(path, |doc| {
                        let mut doc = doc.unwrap_or(Doc { round: 0, winner: None, count: 0 });
                        doc.count += 1;
                        Ok(doc)
                    })
                    .await;
                match result {
                    Ok(_) => done += 1,
                    // Gave up after many lost swaps: nothing was written, so try again.
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }
    let count = store.get::<Doc>(path).await.unwrap().unwrap().value.count;
    assert_eq!(count, WRITERS as u64 * INCREMENTS, "no increment may be lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    suite(DocumentStore::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::parse(&format!("file://{}", dir.path().display())).unwrap();
    let settings = S3Settings { endpoint: None, region: "us-east-1".into() };
    suite(DocumentStore::open(&location, &settings).unwrap()).await;
}

/// Two stores over one directory (as two processes would have) still swap correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_swaps_across_instances() {
    let dir = tempfile::tempdir().unwrap();
    let a = DocumentStore::local(dir.path().to_path_buf()).unwrap();
    let b = DocumentStore::local(dir.path().to_path_buf()).unwrap();
    let v = a.create("x.json", &Doc { round: 0, winner: None, count: 0 }).await.unwrap();
    b.update("x.json", &Doc { round: 1, winner: None, count: 0 }, &v).await.unwrap();
    assert!(matches!(
        a.update("x.json", &Doc { round: 2, winner: None, count: 0 }, &v).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_on_moto_conforms() {
    let moto = Moto::start_serialised();
    moto.bucket("berth-conformance").await;
    suite(DocumentStore::with_native_swap(Arc::new(moto.s3("berth-conformance")))).await;
}

//! A writer for the crash test: read-modify-writes counters in a local store, one at a time,
//! and prints `PATH VALUE` on stdout after each write was acknowledged. The test kills it
//! with SIGKILL at random points and checks that every printed write survived.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use berth_shared::platform::store::{DocumentStore, StoreError};
use serde::{Deserialize, Serialize};
use std::io::Write;

/// How many documents the writer cycles through.
const DOCUMENTS: u64 = 16;

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    value: u64,
    /// Padding, so a torn write would show as an undecodable document.
    history: Vec<u64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: store-writer DIR");
    let store = DocumentStore::local(dir.into()).expect("open the store");
    let mut stdout = std::io::stdout().lock();
    for i in 0u64.. {
        let path = format!("counters/c{}.json", i % DOCUMENTS);
        let written = store
            .modify::<Counter, StoreError, _>(&path, |current| {
                let mut counter = current.unwrap_or_default();
                counter.value += 1;
                counter.history = (0..256).map(|n| counter.value * 1000 + n).collect();
                Ok(counter)
            })
            .await
            .expect("write");
        // Printed only once the store answered: this is what an API would have acknowledged.
        writeln!(stdout, "{path} {}", written.value.value).expect("stdout");
        stdout.flush().expect("stdout");
        if i % 7 == 3 {
            // Deletes and re-creates too, so half-finished deletes are among the kill points.
            let scratch = format!("scratch/s{}.json", i % 5);
            store.delete(&scratch).await.expect("delete");
            store.create(&scratch, &Counter { value: i, history: vec![i; 64] }).await.expect("create");
            writeln!(stdout, "{scratch} {i}").expect("stdout");
            stdout.flush().expect("stdout");
        }
    }
}

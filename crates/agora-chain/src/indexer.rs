//! The accounts' histories ([`Store::index_accounts`]) kept up with the chain on a thread of
//! their own, so that committing a block never waits for them: woken after each commit (wakes
//! that arrive while it works fold into one), the indexer adds what is new in bounded writes.

use crate::{Error, Result};
use agora_store::Store;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use tracing::warn;

/// Entries written at most per write (whole blocks; one block may make more): enough to
/// amortize the index's pages, few enough that a commit never waits long for the store's one
/// writer (a few tens of milliseconds here).
const BATCH: usize = 50_000;

/// The indexing thread; stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct Indexer {
    store: Arc<Store>,
    wake: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub(crate) fn start(store: Arc<Store>) -> Result<Self> {
        let (wake, woken) = mpsc::sync_channel(1);
        let thread = {
            let store = store.clone();
            std::thread::Builder::new()
                .name("account-index".into())
                .spawn(move || run(&store, &woken))
                .map_err(|source| Error::Thread {
                    what: "account indexer",
                    source,
                })?
        };
        Ok(Self {
            store,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// A block was committed.
    pub(crate) fn wake(&self) {
        if let Some(wake) = &self.wake {
            // Full means a wake is already waiting: the indexer will see this block too.
            let _ = wake.try_send(());
        }
    }

    /// Indexes everything committed, now, on the caller's thread.
    pub(crate) fn catch_up(&self) -> Result<()> {
        while !self.store.index_accounts(BATCH)?.1 {}
        Ok(())
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        // Stop the thread and wait for it: it shares the store, whose file must be closed when
        // the node is (a node reopened at once in the same process would find it open).
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(store: &Store, woken: &mpsc::Receiver<()>) {
    loop {
        loop {
            match store.index_accounts(BATCH) {
                Ok((_, true)) => break,
                Ok((_, false)) => {
                    // Catching up (a store from before the index, or a burst): stop if asked.
                    if let Err(mpsc::TryRecvError::Disconnected) = woken.try_recv() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "indexing accounts' histories failed; retrying after the next block");
                    break;
                }
            }
        }
        if woken.recv().is_err() {
            return;
        }
    }
}

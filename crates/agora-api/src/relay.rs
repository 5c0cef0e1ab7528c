//! Transaction relay, beside the submission route it feeds. Malachite moves votes and
//! proposals, not transactions, so each validator forwards what its own clients submit to the
//! other validators' HTTP APIs (marked as relayed, so it goes one hop and never loops). Whichever
//! validator proposes next then has them in its mempool; a transaction is committed once, in the
//! block that includes it, because a repeated nonce is refused.
//!
//! One thread per peer sends batches from a bounded queue: a slow or dead peer loses batches (its
//! transactions still reach the chain through the validators that have them) and never slows the
//! node down.

use agora_chain::Node;
use std::{
    sync::{Arc, mpsc},
    thread,
    time::Duration,
};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

/// Batches waiting per peer before new ones are dropped.
const QUEUE: usize = 256;
/// Most transactions per request.
const MAX_BATCH: usize = 4_000;

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Stops relaying (the peer threads end when their queues close).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Starts forwarding the transactions `node` admits from its clients to `peers` (base URLs of
/// their APIs, e.g. `http://127.0.0.1:26658`). Call from within a tokio runtime.
pub fn spawn_relay(node: &Node, peers: Vec<String>) -> Relay {
    let mut admitted = node.subscribe_admitted();
    let senders: Vec<mpsc::SyncSender<Arc<Vec<Vec<u8>>>>> = peers
        .into_iter()
        .map(|peer| {
            let (tx, rx) = mpsc::sync_channel(QUEUE);
            thread::Builder::new()
                .name("agora-relay".into())
                .spawn(move || send_loop(&peer, rx))
                .expect("spawn a relay thread");
            tx
        })
        .collect();
    let task = tokio::spawn(async move {
        loop {
            match admitted.recv().await {
                Ok(batch) => {
                    for s in &senders {
                        if s.try_send(batch.clone()).is_err() {
                            debug!("relay queue full: a batch is not forwarded to one peer");
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(batches = n, "relay fell behind: batches not forwarded");
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    Relay { task }
}

fn send_loop(peer: &str, rx: mpsc::Receiver<Arc<Vec<Vec<u8>>>>) {
    let client = agora_node_api::NodeClient::with_timeout(peer, Duration::from_secs(5));
    while let Ok(first) = rx.recv() {
        // Everything queued meanwhile goes in the same request.
        let mut txs: Vec<String> = first.iter().map(hex::encode).collect();
        while txs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => txs.extend(more.iter().map(hex::encode)),
                Err(_) => break,
            }
        }
        if let Err(e) = client.submit_batch(txs, true) {
            debug!(%peer, error = %e, "relayed transactions not taken: dropped");
        }
    }
}

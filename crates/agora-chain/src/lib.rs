//! Block production for Agora: the node that admits transactions into a bounded mempool, builds
//! and executes blocks, and commits them atomically to the store.
//!
//! Words:
//! - **Admission**: decode (size first), check the signature (in parallel batches), then the
//!   account's next nonce, the minimum fee and the balance for everything the sender has pending.
//! - **Mempool**: bounded; when full, a higher-fee transaction evicts the lowest-fee one that is
//!   last in its sender's queue (so no sender is left with a nonce gap); duplicates are refused.
//! - **Dev engine**: one validator that proposes a block every `block_time` and finalizes it at
//!   once. The Malachite BFT engine drives the same [`Node`] in network mode.
//!
//! ```text
//!  bytes ─▶ Node::submit ─▶ Mempool ─▶ Node::produce_block ─▶ Executor ─▶ Store::stage/commit
//!                                             ▲                                 │
//!                               dev engine tick (block_time)          broadcast: new block
//! ```

#![forbid(unsafe_code)]

mod error;
mod indexer;
mod mempool;
mod metrics;
mod node;

pub use error::{BlockError, Error, Result};
pub use mempool::SenderState;
pub use mempool::{Mempool, MempoolConfig};
pub use metrics::Metrics;
pub use node::{
    CheckedBlock, CommittedBlock, Node, NodeConfig, SubmitError, now_ms, run_dev_engine,
};

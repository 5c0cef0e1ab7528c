//! Embedded storage for Agora: blocks, receipts and state in one redb file, with a sparse Merkle
//! tree over the state whose root goes into every block header.
//!
//! Words:
//! - **Commit**: one redb write transaction per block holds the state changes, the block, its
//!   receipts, the new height and the new state root. It lands whole or not at all, so a crash at
//!   any point resumes at the last committed block.
//! - **Tree**: the sparse Merkle tree's nodes live in memory. They are derived data: on open the
//!   tree is rebuilt from the state table and its root must equal the last committed root (else
//!   the state was tampered with, and opening fails). Keeping them off disk spares each block tens
//!   of thousands of B-tree writes.
//! - **Snapshot**: a read transaction; a consistent view of one committed height for queries,
//!   execution and proofs.
//!
//! ```text
//!  Executed { writes } ──▶ Store::stage ──▶ state root ──▶ block header
//!                               │
//!                               ▼
//!  Staged::commit ──▶ [state] [blocks] [txs] [results] [meta]   (one atomic redb transaction)
//!                └──▶ in-memory tree nodes updated under the same lock
//! ```

#![forbid(unsafe_code)]

mod error;
mod smt;
mod store;

pub use error::{Error, Result};
pub use smt::Proof;
pub use store::{AccountTx, BlockResults, Prepared, Snapshot, Staged, Store, TxLocation};

//! Embedded storage for Agora: blocks, receipts and state in one redb file, with a sparse Merkle
//! tree over the state whose root goes into every block header.
//!
//! Words:
//! - **Commit**: one redb write transaction per block holds the state changes, the tree nodes, the
//!   block, its receipts and the new height. It lands whole or not at all, so a crash at any point
//!   resumes at the last committed block.
//! - **Snapshot**: a read transaction; a consistent view of one committed height for queries,
//!   execution and proofs.
//!
//! ```text
//!  Executed { writes } ──▶ Store::commit ──▶ [state] [smt nodes] [blocks] [txs] [results] [meta]
//!                                 │                    (one atomic redb transaction)
//!                                 └──▶ state root ──▶ block header
//! ```

mod error;
mod smt;
mod store;

pub use error::{Error, Result};
pub use smt::Proof;
pub use store::{BlockResults, Snapshot, Store, TxLocation};

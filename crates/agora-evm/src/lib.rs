//! Ingestion of EVM chains into Agora's SQL (DESIGN.md §10, issue 21): blocks, transactions,
//! receipts, logs, decoded ERC-20 and ERC-721 transfers and contract creations, fetched over
//! JSON-RPC with alloy and written as Parquet partitioned by block range.
//!
//! Who could abuse what: the RPC node is the input, and it may be slow, broken or lying.
//! Every call has a time limit and bounded retries with backoff; every block is checked
//! before a row of it is kept — its header must hash to its hash, its transactions and
//! receipts must match the header's roots, each sender must have signed its transaction for
//! the chain the node names, and each block must be its successor's parent — so a node cannot
//! slip in rows that its own block hashes do not commit to. What these checks cannot tell is
//! a whole chain invented with self-consistent blocks: the block hashes themselves are the
//! node's word, so ingest from a node you trust or compare a block hash with another source.
//! A call's answer is bounded in time, not in size: a node that sends gigabytes fast is
//! read to the end (the transport reads an answer whole). A partition is written whole (temporary files, synced and
//! renamed, then the manifest), so a crash or Ctrl-C leaves nothing half-written, and a rerun
//! fetches only the blocks the manifest does not list: nothing is written twice.

#![forbid(unsafe_code)]

mod error;
mod fetch;
mod ingest;
mod store;
pub mod tables;

pub use error::{Error, Result};
pub use ingest::{Options, Progress, Summary, fetch_only, ingest};
pub use store::{Partition, file_tables, partitions};

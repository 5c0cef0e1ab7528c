use std::path::PathBuf;

/// What can go wrong while ingesting. Nothing half-written survives any of them: a partition's
/// files count only once the manifest lists them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The RPC URL does not parse.
    #[error("the RPC URL `{url}` is not a URL: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The node serves another chain than the one asked for.
    #[error("the node serves chain {got}, not chain {expected}")]
    WrongChain {
        /// The chain asked for.
        expected: u64,
        /// The node's.
        got: u64,
    },
    /// The output folder holds another chain's tables.
    #[error(
        "{} holds chain {stored}'s tables and the node serves chain {got}: ingest into another folder",
        dir.display()
    )]
    OtherChain {
        /// The folder.
        dir: PathBuf,
        /// The chain its tables are of.
        stored: u64,
        /// The node's.
        got: u64,
    },
    /// A call kept failing (no answer in time, a connection refused, an answer that does not
    /// parse, an error from the node).
    #[error("{call} failed after {tries} tries: {last}")]
    Rpc {
        /// The call.
        call: String,
        /// How many times it was tried.
        tries: u32,
        /// The last failure.
        last: String,
    },
    /// An answer contradicts itself: a header that does not hash to the block's hash,
    /// transactions or receipts that do not match the header's roots, a sender that did not
    /// sign its transaction.
    #[error("the node's block {number} does not check out: {what}")]
    Lie {
        /// The block.
        number: u64,
        /// What does not match.
        what: String,
    },
    /// The chain changed under the ingester: a block's parent is not the block before it.
    #[error("the chain reorganized at block {number}: {what}")]
    Reorg {
        /// The first block that no longer links.
        number: u64,
        /// What was seen.
        what: String,
    },
    /// A range that cannot be ingested.
    #[error("{0}")]
    Range(String),
    /// The folder's manifest cannot be read.
    #[error("{} is not a readable ingest manifest: {reason}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A Parquet file could not be written.
    #[error("writing {}: {reason}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    path: &std::path::Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

use thiserror::Error;

/// Storage errors.
#[derive(Debug, Error)]
pub enum Error {
    /// The database failed (I/O, corruption, or it is open in another process).
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    /// A stored record does not decode.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The block to commit does not follow the latest one.
    #[error("block {got} does not follow the latest committed block ({})", match latest {
        Some(h) => format!("height {h}"),
        None => "none: the store is empty".to_string(),
    })]
    WrongHeight { latest: Option<u64>, got: u64 },
    /// The block's state root differs from the one computed.
    #[error(
        "state root mismatch at height {height}: block says {claimed}, execution gives {computed}"
    )]
    StateRootMismatch {
        height: u64,
        claimed: String,
        computed: String,
    },
    /// The data was written by a version of Agora whose encodings differ.
    #[error(
        "the chain data was written by another version of Agora (format {found}, this one reads format {expected}): start the chain afresh (remove its data directory)"
    )]
    Format { found: u32, expected: u32 },
    /// The store belongs to another chain.
    #[error("store holds chain {stored:?}, not {expected:?}")]
    WrongChain { stored: String, expected: String },
    /// A block was committed after the snapshot was taken; proofs need a fresh one.
    #[error("the chain moved on since this snapshot was taken; retry")]
    SnapshotMoved,
    /// State execution failed.
    #[error(transparent)]
    State(#[from] agora_state::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

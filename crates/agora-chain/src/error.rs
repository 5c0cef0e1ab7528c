use thiserror::Error;

/// Node errors (not a transaction's fault: those are [`agora_state::TxError`]).
#[derive(Debug, Error)]
pub enum Error {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] agora_store::Error),
    /// State execution failed.
    #[error(transparent)]
    State(#[from] agora_state::Error),
    /// The store has no genesis block.
    #[error("the store has no genesis block: initialize the node first")]
    NoGenesis,
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

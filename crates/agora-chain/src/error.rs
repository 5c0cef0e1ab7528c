use agora_types::Hash;
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
    /// This node's key cannot prove a block's seed (a key of small order).
    #[error("cannot prove the block's seed: {0}")]
    Seed(#[from] agora_types::Error),
    /// A thread the node needs could not start.
    #[error("cannot start the {what}: {source}")]
    Thread {
        /// Which.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Accounts' histories were asked for from a node configured to keep none.
    #[error("this node keeps no index of accounts' histories (it runs with --no-account-index)")]
    NoAccountIndex,
    /// The store has no genesis block.
    #[error("the store has no genesis block: initialize the node first")]
    NoGenesis,
    /// A block from another validator that this node refuses; nothing was committed.
    #[error("invalid block {height}: {reason}")]
    InvalidBlock {
        /// Height the block claims.
        height: u64,
        /// What is wrong with it.
        reason: BlockError,
    },
}

/// What is wrong with a block.
#[derive(Debug, Error)]
pub enum BlockError {
    /// Built for another chain.
    #[error("chain id {got:?}, expected {expected:?}")]
    WrongChain { expected: String, got: String },
    /// Does not follow the latest block.
    #[error("expected height {expected}")]
    WrongHeight { expected: u64 },
    /// Names another parent.
    #[error("parent {got}, but the latest block is {expected}")]
    WrongParent { expected: Hash, got: Hash },
    /// Time does not move forward.
    #[error("time {got} ms is not after the parent's {parent} ms")]
    TimeNotMonotone { parent: u64, got: u64 },
    /// The header's transaction root does not match the transactions.
    #[error("tx root {header} does not match the transactions ({computed})")]
    TxRootMismatch { header: Hash, computed: Hash },
    /// A transaction signature does not verify.
    #[error("transaction {index} has an invalid signature")]
    BadSignature { index: usize },
    /// Its transactions are more bytes than a block may carry.
    #[error("the transactions are {bytes} bytes, a block carries at most {limit}")]
    TooLarge { bytes: usize, limit: usize },
    /// A transaction breaks a limit admission would have refused it for.
    #[error("transaction {index}: {reason}")]
    TxLimit { index: usize, reason: String },
    /// The header's proposer is not the address of its proposer key.
    #[error("proposer {proposer} is not the address of the header's key")]
    WrongProposerKey { proposer: agora_types::Address },
    /// The header's seed is not its proposer's VRF output on the parent's seed.
    #[error("the seed is not the proposer's VRF output on the parent's seed: {reason}")]
    BadSeed { reason: String },
    /// A transaction is not admissible in order.
    #[error(transparent)]
    Execution(agora_state::Error),
    /// Executing the block gives another state root.
    #[error("state root {header} does not match execution ({computed})")]
    StateRootMismatch { header: Hash, computed: Hash },
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

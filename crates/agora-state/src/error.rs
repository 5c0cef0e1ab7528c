use agora_types::{Address, Amount};
use thiserror::Error;

/// Why a transaction is rejected or fails. Each has a stable [`TxError::code`] that the API returns.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TxError {
    /// Bytes that do not decode as a transaction.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// Encoded transaction over the size limit.
    #[error("transaction is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// Signature does not verify against the sender key.
    #[error("invalid signature: the transaction was not signed by its sender key")]
    InvalidSignature,
    /// Signed for another chain.
    #[error("wrong chain id {got:?}, this chain is {expected:?}")]
    WrongChainId { expected: String, got: String },
    /// Nonce already used: a replay.
    #[error("nonce {got} already used: the account's next nonce is {expected}")]
    NonceTooLow { expected: u64, got: u64 },
    /// Nonce ahead of the account: a gap.
    #[error("nonce {got} leaves a gap: the account's next nonce is {expected}")]
    NonceTooHigh { expected: u64, got: u64 },
    /// Fee under the chain's minimum.
    #[error("fee {got} is below the minimum fee {min} for this transaction's work (base units)")]
    FeeTooLow { min: Amount, got: Amount },
    /// The sender has never received funds.
    #[error("unknown account {address}: it has never received funds")]
    UnknownAccount { address: Address },
    /// Balance too low.
    #[error("insufficient funds: need {need}, have {have} (base units)")]
    InsufficientFunds { need: Amount, have: Amount },
    /// Bonded stake too low for an unbond.
    #[error("cannot unbond {need}: only {have} is bonded (base units)")]
    InsufficientBonded { need: Amount, have: Amount },
    /// Arithmetic would overflow u128.
    #[error("amount overflow: {0}")]
    AmountOverflow(&'static str),
    /// A zero amount, which would do nothing.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// Already in the mempool or already committed.
    #[error("duplicate transaction {hash}")]
    Duplicate { hash: String },
    /// The sender is already a registered provider.
    #[error("{address} is already a registered provider (use UpdateProvider)")]
    ProviderExists { address: Address },
    /// The sender is not a registered provider.
    #[error("{address} is not a registered provider")]
    NotProvider { address: Address },
    /// Provider stake under the chain's minimum.
    #[error("provider stake {got} is below the minimum {min} (base units)")]
    StakeTooLow { min: Amount, got: Amount },
    /// A provider description that does not hold up.
    #[error("invalid provider: {0}")]
    InvalidProvider(String),
    /// A model id that is not in the registry.
    #[error("unknown model {id}")]
    UnknownModel { id: String },
    /// A model id registered already.
    #[error("model {id} is registered already")]
    ModelExists { id: String },
    /// A bad model name.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// Escrow balance too low.
    #[error("insufficient escrow: need {need}, have {have} (base units)")]
    InsufficientEscrow { need: Amount, have: Amount },
    /// A settlement batch over the limit.
    #[error("{got} jobs in one SettleJobs, at most {max}")]
    TooManyJobs { max: usize, got: usize },
    /// The sender is a registered verifier already.
    #[error("{address} is already a registered verifier")]
    VerifierExists { address: Address },
    /// The sender is not a registered verifier.
    #[error("{address} is not a registered verifier")]
    NotVerifier { address: Address },
    /// A verifier cannot leave while it holds seats on open checks, or while a check it sat on
    /// can still be reopened.
    #[error(
        "the verifier holds {seats} seats on open checks, and checks it sat on can be reopened until height {until}; it can leave after"
    )]
    VerifierBusy { seats: u32, until: u64 },
    /// A verifier description that does not hold up.
    #[error("invalid verifier: {0}")]
    InvalidVerifier(String),
    /// A provider cannot leave while its fees may still be disputed.
    #[error(
        "the provider has {open_checks} open checks and fees in their challenge window until height {until}; it can leave after"
    )]
    ProviderBusy { until: u64, open_checks: u32 },
    /// A convicted provider serves nothing more; it can only unregister.
    #[error(
        "provider {address} was convicted at height {height}: it can only unregister, once its windows pass"
    )]
    ProviderRetired { address: Address, height: u64 },
    /// No open check for that job.
    #[error("job {job_id} has no open check")]
    NoOpenCheck { job_id: String },
    /// The verifier holds no open seat on the check.
    #[error("{verifier} holds no open seat on this check")]
    NotSeated { verifier: Address },
    /// Only the job's provider reveals it.
    #[error("only the provider of job {job_id} reveals it")]
    NotJobProvider { job_id: String },
    /// A reveal part that does not fit the reveal.
    #[error("invalid reveal: {0}")]
    InvalidReveal(String),
    /// A challenge the chain cannot take.
    #[error("cannot challenge: {0}")]
    InvalidChallenge(String),
    /// A verdict before the reveal arrived.
    #[error("the provider's reveal has not arrived: nothing to judge yet")]
    NotRevealed,
    /// Mempool full and this transaction's fee is not higher than the lowest evictable one.
    #[error(
        "mempool full ({capacity} transactions): offer a fee above {lowest_fee} to replace one"
    )]
    MempoolFull { capacity: usize, lowest_fee: Amount },
    /// No subnet with that id.
    #[error("no subnet {netuid}")]
    UnknownSubnet { netuid: u16 },
    /// Only a subnet's owner changes its hyperparameters.
    #[error("only the owner of subnet {netuid} changes its hyperparameters")]
    NotSubnetOwner { netuid: u16 },
    /// A subnet that cannot be created as described.
    #[error("invalid subnet: {0}")]
    InvalidSubnet(String),
    /// The chain holds as many subnets as it allows.
    #[error("the chain already has {max} subnets, the most it allows")]
    SubnetLimit { max: u16 },
    /// The lock cost is above what the sender agreed to burn.
    #[error("creating a subnet now burns {cost}, more than the {max} offered")]
    LockCostExceeded { cost: Amount, max: Amount },
    /// The registration burn is above what the sender agreed to burn.
    #[error("registering now burns {burn}, more than the {max} offered")]
    BurnExceeded { burn: Amount, max: Amount },
    /// A hyperparameter value outside its bounds.
    #[error("{0}")]
    ParamOutOfBounds(String),
    /// The hotkey already has a UID on the subnet.
    #[error("{hotkey} is already registered on subnet {netuid}")]
    AlreadyRegistered { netuid: u16, hotkey: Address },
    /// The hotkey has no UID on the subnet.
    #[error("{hotkey} is not registered on subnet {netuid}")]
    NotRegistered { netuid: u16, hotkey: Address },
    /// A full subnet whose every neuron is still immune.
    #[error("subnet {netuid} is full and every neuron is inside its immunity period")]
    SubnetFull { netuid: u16 },
    /// The subnet took as many registrations this epoch as it allows.
    #[error(
        "subnet {netuid} took {max} registrations this epoch, the most it allows: wait for the next"
    )]
    RegistrationsFull { netuid: u16, max: u16 },
    /// A neuron's description that does not fit.
    #[error("invalid neuron: {0}")]
    InvalidNeuron(String),
    /// Less stake delegated than asked to remove.
    #[error("{have} staked on that hotkey, less than {need}")]
    InsufficientStake { need: Amount, have: Amount },
    /// A hotkey with as many delegators as it may have, none holding less than offered.
    #[error(
        "the hotkey already has {max} delegators, none with less stake than offered: offer more to take the smallest one's place"
    )]
    TooManyDelegators { max: u16 },
    /// A new delegation below the least one may hold.
    #[error("a delegation holds at least {min} base units, not {got}")]
    DelegationTooSmall { min: Amount, got: Amount },
    /// A validator committing weights again too soon.
    #[error("weights were committed at {last}: the next commit is allowed from height {next}")]
    WeightsRateLimited { last: u64, next: u64 },
    /// A validator with a commitment not yet revealed.
    #[error("a commitment made at height {height} is still waiting for its reveal")]
    CommitPending { height: u64 },
    /// A reveal with no commitment to match.
    #[error("no commitment to reveal on subnet {netuid}")]
    NoCommit { netuid: u16 },
    /// A reveal that does not match its commitment.
    #[error("the revealed weights and salt do not match the commitment")]
    RevealMismatch,
    /// A reveal before its window.
    #[error(
        "too early: this commitment is revealed after the subnet's epoch {epoch} (it has run {now})"
    )]
    RevealTooEarly { epoch: u64, now: u64 },
    /// A reveal after its window.
    #[error("too late: this commitment's reveal window closed with the subnet's epoch {closed}")]
    RevealTooLate { closed: u64 },
    /// Weights the chain cannot take.
    #[error("invalid weights: {0}")]
    InvalidWeights(String),
    /// A message that does not fit the subnet's task.
    #[error("subnet {netuid}: {reason}")]
    WrongTask { netuid: u16, reason: &'static str },
    /// A bounty whose terms the chain cannot take.
    #[error("invalid bounty: {0}")]
    InvalidBounty(String),
    /// No bounty with that id.
    #[error("no bounty {id}")]
    UnknownBounty { id: u64 },
    /// Submissions after the bounty's deadline.
    #[error("bounty {id} took items until height {deadline}")]
    BountyClosed { id: u64, deadline: u64 },
    /// An item over the bounty's size limit (or empty).
    #[error("an item of {size} bytes: bounty items are 1 to {limit} bytes")]
    ItemSize { size: u32, limit: u32 },
    /// The same bytes were submitted to the bounty already.
    #[error("the same item was submitted to this bounty already (item {of})")]
    DuplicateItem { of: u32 },
    /// What is left of the budget does not cover one more item's reward and review fees.
    #[error(
        "the bounty's budget has {available} left, less than the {need} one more item reserves"
    )]
    BountyExhausted { need: Amount, available: Amount },
    /// The bounty holds as many items as the chain allows.
    #[error("the bounty holds {max} items, the most the chain allows")]
    TooManyItems { max: u32 },
    /// No item with that index.
    #[error("bounty {bounty} has no item {item}")]
    UnknownItem { bounty: u64, item: u32 },
    /// The item is not at the step the message acts on.
    #[error("item {bounty}/{item}: {reason}")]
    WrongStage {
        bounty: u64,
        item: u32,
        reason: &'static str,
    },
    /// The sender was not drawn for this item (or is not its contributor).
    #[error("item {bounty}/{item}: {reason}")]
    NotDrawn {
        bounty: u64,
        item: u32,
        reason: &'static str,
    },
    /// A vote or verdict outside its window.
    #[error("{what} window is heights {from} to {until}")]
    OutsideWindow {
        what: &'static str,
        from: u64,
        until: u64,
    },
    /// A revealed vote that does not match its commitment.
    #[error("the revealed vote and salt do not match the commitment")]
    VoteMismatch,
    /// A screener's verdict that does not hold up.
    #[error("invalid verdict: {0}")]
    InvalidScreen(String),
    /// The sender has no review stake.
    #[error("{address} is not a reviewer")]
    NotReviewer { address: Address },
    /// Review stake locked by open votes.
    #[error(
        "only {free} of the review stake is free (the rest is locked by open votes), not {need}"
    )]
    ReviewStakeLocked { need: Amount, free: Amount },
    /// A citation the chain cannot take.
    #[error("invalid citation: {0}")]
    InvalidCitation(String),
    /// No dataset with that root.
    #[error("no dataset with root {root}")]
    UnknownDataset { root: String },
    /// The reviewer set is full, and no reviewer without open seats holds less than offered.
    #[error(
        "the chain has {max} reviewers, none without open seats holding less than {offered}: offer more stake to take the smallest one's place"
    )]
    ReviewersFull { max: u32, offered: Amount },
    /// Nothing owed to the sender.
    #[error("no royalties owed to {address} by this dataset")]
    NothingToClaim { address: Address },
    /// A provable model with that key is registered already.
    #[error("provable model {id} is registered already")]
    ZkModelExists { id: String },
    /// No provable model with that id.
    #[error("no provable model {id}")]
    UnknownZkModel { id: String },
    /// A claim, key or proof the chain cannot take before verifying anything.
    #[error("invalid zk message: {0}")]
    InvalidZk(String),
    /// The proof does not verify.
    #[error("the proof does not verify: {0}")]
    ZkProofRejected(String),
    /// The named certifier has not certified this input commitment for the sender.
    #[error("{certifier} has not certified this input commitment for the sender")]
    ZkUncertified { certifier: Address },
    /// A zk job that does not settle.
    #[error("the job does not settle: {reason}")]
    ZkJobRejected { code: &'static str, reason: String },
}

impl TxError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::Malformed(_) => "malformed_tx",
            TxError::TooLarge { .. } => "tx_too_large",
            TxError::InvalidSignature => "invalid_signature",
            TxError::WrongChainId { .. } => "wrong_chain_id",
            TxError::NonceTooLow { .. } => "nonce_too_low",
            TxError::NonceTooHigh { .. } => "nonce_too_high",
            TxError::FeeTooLow { .. } => "fee_too_low",
            TxError::UnknownAccount { .. } => "unknown_account",
            TxError::InsufficientFunds { .. } => "insufficient_funds",
            TxError::InsufficientBonded { .. } => "insufficient_bonded",
            TxError::AmountOverflow(_) => "amount_overflow",
            TxError::ZeroAmount => "zero_amount",
            TxError::Duplicate { .. } => "duplicate_tx",
            TxError::MempoolFull { .. } => "mempool_full",
            TxError::VerifierExists { .. } => "verifier_exists",
            TxError::NotVerifier { .. } => "not_verifier",
            TxError::VerifierBusy { .. } => "verifier_busy",
            TxError::InvalidVerifier(_) => "invalid_verifier",
            TxError::ProviderBusy { .. } => "provider_busy",
            TxError::ProviderRetired { .. } => "provider_retired",
            TxError::NoOpenCheck { .. } => "no_open_check",
            TxError::NotSeated { .. } => "not_seated",
            TxError::NotJobProvider { .. } => "not_job_provider",
            TxError::InvalidReveal(_) => "invalid_reveal",
            TxError::NotRevealed => "not_revealed",
            TxError::InvalidChallenge(_) => "invalid_challenge",
            TxError::ProviderExists { .. } => "provider_exists",
            TxError::NotProvider { .. } => "not_provider",
            TxError::StakeTooLow { .. } => "stake_too_low",
            TxError::InvalidProvider(_) => "invalid_provider",
            TxError::UnknownModel { .. } => "unknown_model",
            TxError::ModelExists { .. } => "model_exists",
            TxError::InvalidModel(_) => "invalid_model",
            TxError::InsufficientEscrow { .. } => "insufficient_escrow",
            TxError::TooManyJobs { .. } => "too_many_jobs",
            TxError::UnknownSubnet { .. } => "unknown_subnet",
            TxError::NotSubnetOwner { .. } => "not_subnet_owner",
            TxError::InvalidSubnet(_) => "invalid_subnet",
            TxError::SubnetLimit { .. } => "subnet_limit",
            TxError::LockCostExceeded { .. } => "lock_cost_exceeded",
            TxError::BurnExceeded { .. } => "burn_exceeded",
            TxError::ParamOutOfBounds(_) => "param_out_of_bounds",
            TxError::AlreadyRegistered { .. } => "already_registered",
            TxError::NotRegistered { .. } => "not_registered",
            TxError::SubnetFull { .. } => "subnet_full",
            TxError::RegistrationsFull { .. } => "registrations_full",
            TxError::InvalidNeuron(_) => "invalid_neuron",
            TxError::InsufficientStake { .. } => "insufficient_stake",
            TxError::TooManyDelegators { .. } => "too_many_delegators",
            TxError::DelegationTooSmall { .. } => "delegation_too_small",
            TxError::WeightsRateLimited { .. } => "weights_rate_limited",
            TxError::CommitPending { .. } => "commit_pending",
            TxError::NoCommit { .. } => "no_commit",
            TxError::RevealMismatch => "reveal_mismatch",
            TxError::RevealTooEarly { .. } => "reveal_too_early",
            TxError::RevealTooLate { .. } => "reveal_too_late",
            TxError::InvalidWeights(_) => "invalid_weights",
            TxError::WrongTask { .. } => "wrong_task",
            TxError::InvalidBounty(_) => "invalid_bounty",
            TxError::UnknownBounty { .. } => "unknown_bounty",
            TxError::BountyClosed { .. } => "bounty_closed",
            TxError::ItemSize { .. } => "item_size",
            TxError::DuplicateItem { .. } => "duplicate_item",
            TxError::BountyExhausted { .. } => "bounty_exhausted",
            TxError::TooManyItems { .. } => "too_many_items",
            TxError::UnknownItem { .. } => "unknown_item",
            TxError::WrongStage { .. } => "wrong_stage",
            TxError::NotDrawn { .. } => "not_drawn",
            TxError::OutsideWindow { .. } => "outside_window",
            TxError::VoteMismatch => "vote_mismatch",
            TxError::InvalidScreen(_) => "invalid_screen",
            TxError::NotReviewer { .. } => "not_reviewer",
            TxError::ReviewStakeLocked { .. } => "review_stake_locked",
            TxError::InvalidCitation(_) => "invalid_citation",
            TxError::UnknownDataset { .. } => "unknown_dataset",
            TxError::NothingToClaim { .. } => "nothing_to_claim",
            TxError::ReviewersFull { .. } => "reviewers_full",
            TxError::ZkModelExists { .. } => "zk_model_exists",
            TxError::UnknownZkModel { .. } => "unknown_zk_model",
            TxError::InvalidZk(_) => "invalid_zk",
            TxError::ZkProofRejected(_) => "zk_proof_rejected",
            TxError::ZkUncertified { .. } => "zk_uncertified",
            TxError::ZkJobRejected { code, .. } => code,
        }
    }
}

impl From<agora_types::Error> for TxError {
    fn from(e: agora_types::Error) -> Self {
        match e {
            agora_types::Error::TooLarge { size, limit, .. } => TxError::TooLarge { size, limit },
            agora_types::Error::InvalidSignature | agora_types::Error::InvalidPublicKey => {
                TxError::InvalidSignature
            }
            other => TxError::Malformed(other.to_string()),
        }
    }
}

/// Errors of the state machine that are not a transaction's fault.
#[derive(Debug, Error)]
pub enum Error {
    /// The underlying store failed to read.
    #[error("state read failed: {0}")]
    Read(String),
    /// A stored value does not decode: the store is corrupt.
    #[error("corrupt state value under key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A block holds a transaction that fails admission.
    #[error("invalid block: transaction {index} ({hash}) is not admissible: {error}")]
    InvalidTx {
        index: usize,
        hash: String,
        error: TxError,
    },
    /// The genesis file is inconsistent.
    #[error("invalid genesis: {0}")]
    InvalidGenesis(String),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

//! The compute market's on-chain state (DESIGN.md §5): providers, models, client escrow, settled
//! jobs and the fees waiting out their challenge window.

use agora_types::{AGR, Address, Amount, Hash, ModelKind, ProviderInfo, Verification, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// The market's chain parameters, fixed in genesis.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MarketParams {
    /// Least stake a provider registers with, in base units.
    #[serde(with = "serde_u128")]
    pub min_provider_stake: Amount,
    /// Blocks an escrow withdrawal stays claimable before it returns to the balance.
    pub escrow_unlock_period: u64,
    /// Blocks a settled fee waits (open to disputes) before the provider gets it.
    pub challenge_window: u64,
    /// Protocol share of every released fee, in basis points: into the provider's verification
    /// fund, which pays the checks of its jobs.
    pub protocol_share_bps: u32,
    /// Most blocks a job request may stay valid for settlement (its `expiry_height` at most this
    /// far past the settling block): what lets a settled job's record be forgotten, since a
    /// request past its expiry can never be settled again.
    #[serde(default = "default_max_request_lifetime")]
    pub max_request_lifetime: u64,
    /// Blocks a finished job's record (and its check's) stays readable once its request has
    /// expired and its fee is final; then it is pruned.
    #[serde(default = "default_job_retention")]
    pub job_retention: u64,
}

fn default_max_request_lifetime() -> u64 {
    MarketParams::default().max_request_lifetime
}

fn default_job_retention() -> u64 {
    MarketParams::default().job_retention
}

impl Default for MarketParams {
    fn default() -> Self {
        MarketParams {
            min_provider_stake: 100 * AGR,
            escrow_unlock_period: 100,
            challenge_window: 40,
            protocol_share_bps: 500,
            // A day at 500 ms blocks; gateways ask for 1,200 (10 minutes).
            max_request_lifetime: 172_800,
            // A day at 500 ms blocks.
            job_retention: 172_800,
        }
    }
}

impl MarketParams {
    /// Checks the values make sense together.
    pub fn check(&self) -> Result<(), String> {
        if self.escrow_unlock_period == 0 || self.challenge_window == 0 {
            return Err(
                "escrow_unlock_period and challenge_window must be at least 1 block".into(),
            );
        }
        if self.protocol_share_bps > 10_000 {
            return Err("protocol_share_bps is at most 10000".into());
        }
        if self.max_request_lifetime == 0 {
            return Err("max_request_lifetime must be at least 1 block".into());
        }
        Ok(())
    }

    /// The protocol's share of `fee` (rounded down).
    pub fn protocol_share(&self, fee: Amount) -> Amount {
        // fee ≤ total supply < 2^128 / 10^4 in any sane chain; checked anyway.
        fee.checked_mul(Amount::from(self.protocol_share_bps))
            .map(|x| x / 10_000)
            .unwrap_or(fee / 10_000 * Amount::from(self.protocol_share_bps))
    }
}

/// A registered provider.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct Provider {
    /// Models, prices, endpoint, key.
    pub info: ProviderInfo,
    /// Locked stake, in base units.
    #[serde(with = "serde_u128")]
    pub stake: Amount,
    /// Height of registration.
    pub registered_height: u64,
    /// Jobs settled so far.
    pub jobs_settled: u64,
    /// Fees settled so far (pending or released), in base units.
    #[serde(with = "serde_u128")]
    pub fees_settled: Amount,
    /// The last height at which a fee it settled is still in its challenge window: it cannot
    /// unregister (and take its stake out of reach of a dispute) before.
    pub held_until: u64,
    /// Checks of its jobs still open.
    pub open_checks: u32,
    /// Checks of its jobs that found fraud (or no reveal).
    pub frauds: u64,
    /// Set when a check convicts it: it serves and settles nothing more, but its stake stays
    /// here, within reach of every check still open and every fee still in its window, until it
    /// unregisters like any provider (each later conviction slashes it again).
    pub retired_height: Option<u64>,
}

impl Provider {
    /// Whether it may serve and settle jobs.
    pub fn active(&self) -> bool {
        self.retired_height.is_none()
    }
}

/// A registered model.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct ModelInfo {
    /// Human name.
    pub name: String,
    /// What it does.
    pub kind: ModelKind,
}

/// A client's compute escrow.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    serde::Deserialize,
)]
pub struct Escrow {
    /// Available to pay jobs.
    #[serde(with = "serde_u128")]
    pub balance: Amount,
    /// Being withdrawn: still claimable by settlements until it unlocks.
    #[serde(with = "serde_u128")]
    pub unlocking: Amount,
}

impl Escrow {
    /// What settlements can still draw on.
    pub fn claimable(&self) -> Amount {
        self.balance.saturating_add(self.unlocking)
    }
}

/// Where a settled job's fee is. Only this record says so: the queues of release heights are
/// reminders, and a fee is paid, held or refunded only by changing this state, once.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FeeState {
    /// Out of the client's escrow, waiting out the challenge window.
    Pending,
    /// Held by an open check until it is decided.
    Held,
    /// Paid to the provider (less the protocol share).
    Released,
    /// Returned to the client's escrow: a check found the job wrong.
    Refunded,
}

impl FeeState {
    /// The name the API shows.
    pub fn name(self) -> &'static str {
        match self {
            FeeState::Pending => "pending",
            FeeState::Held => "held",
            FeeState::Released => "released",
            FeeState::Refunded => "refunded",
        }
    }
}

/// A settled job, keyed by its id ([`agora_types::JobRequest::id`], the hash of what the client
/// signed): it can never be settled again.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct JobRecord {
    /// Who paid.
    pub client: Address,
    /// Who served.
    pub provider: Address,
    /// The model run.
    pub model: Hash,
    /// Hash of the client's signed request.
    pub request_hash: Hash,
    /// blake3 of the input.
    pub input_hash: Hash,
    /// blake3 of the output.
    pub output_hash: Hash,
    /// Tokens in and out.
    pub input_tokens: u32,
    /// Tokens in and out.
    pub output_tokens: u32,
    /// Fee paid, in base units.
    #[serde(with = "serde_u128")]
    pub fee: Amount,
    /// Height of settlement.
    pub settled_height: u64,
    /// Height at which the fee goes to the provider (unless a check holds it).
    pub release_height: u64,
    /// How the client asked for it to be checked.
    pub level: Verification,
    /// Where its fee is.
    pub fee_state: FeeState,
    /// What its client paid on top for a redundant check (`k` × the fee), held here until its
    /// check opens (it becomes the check's budget) or cannot (it is refunded).
    #[serde(with = "serde_u128")]
    pub surcharge: Amount,
}

/// An escrow withdrawal that unlocks at a given height.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EscrowRelease {
    /// Owner.
    pub client: Address,
    /// Base units.
    pub amount: Amount,
}

/// Why one job of a `SettleJobs` was not settled (it pays nothing; the others go on).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobRejection {
    /// The request names another chain.
    #[error("the request is for chain {got:?}")]
    WrongChain { got: String },
    /// The request stays valid for longer than the chain allows.
    #[error("the request expires at height {expiry}, more than {max} blocks ahead")]
    ExpiryTooFar { expiry: u64, max: u64 },
    /// The client's signature does not verify.
    #[error("the client's signature over the request does not verify")]
    BadClientSignature,
    /// The provider's signature does not verify.
    #[error("the provider's signature over the receipt does not verify")]
    BadProviderSignature,
    /// The receipt is signed by another provider than the request names.
    #[error("the receipt is signed by {signer}, the request names {named}")]
    WrongProvider { named: Address, signer: Address },
    /// The receipt names another request.
    #[error("the receipt is for another request")]
    RequestMismatch,
    /// Settled after the request's expiry height.
    #[error("the request expired at height {expiry}")]
    Expired { expiry: u64 },
    /// The provider is not registered.
    #[error("provider {address} is not registered")]
    UnknownProvider { address: Address },
    /// The provider was convicted of fraud and serves no more.
    #[error("provider {address} was convicted at height {height} and settles nothing more")]
    ProviderRetired { address: Address, height: u64 },
    /// The provider does not serve the model.
    #[error("the provider does not serve model {model}")]
    ModelNotServed { model: Hash },
    /// The fee is above what the client allowed.
    #[error("fee {fee} is above the request's max fee {max}")]
    FeeAboveMax { fee: Amount, max: Amount },
    /// The fee is not the provider's prices times the tokens.
    #[error("fee {fee} is not the provider's price for the tokens ({expected})")]
    WrongFee { fee: Amount, expected: Amount },
    /// The client's escrow cannot pay it.
    #[error("the client's escrow holds {have}, the fee is {need}")]
    InsufficientEscrow { need: Amount, have: Amount },
    /// This job id was settled before.
    #[error("job {job_id} is settled already")]
    AlreadySettled { job_id: Hash },
    /// A verification level the chain does not offer.
    #[error("redundant verification takes 1 to {max} verifiers, not {got}")]
    BadVerification { max: u8, got: u8 },
    /// A `zk` job settles only with its proof (`SettleZkJob`), and only a `zk` job does.
    #[error("a job of level zk settles with SettleZkJob and its proof, and only such a job does")]
    ZkProofRequired,
}

impl JobRejection {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            JobRejection::WrongChain { .. } => "wrong_chain_id",
            JobRejection::BadClientSignature => "invalid_client_signature",
            JobRejection::BadProviderSignature => "invalid_provider_signature",
            JobRejection::WrongProvider { .. } => "wrong_provider",
            JobRejection::RequestMismatch => "request_mismatch",
            JobRejection::Expired { .. } => "expired",
            JobRejection::ExpiryTooFar { .. } => "expiry_too_far",
            JobRejection::UnknownProvider { .. } => "unknown_provider",
            JobRejection::ProviderRetired { .. } => "provider_retired",
            JobRejection::ModelNotServed { .. } => "model_not_served",
            JobRejection::FeeAboveMax { .. } => "fee_above_max",
            JobRejection::WrongFee { .. } => "wrong_fee",
            JobRejection::InsufficientEscrow { .. } => "insufficient_escrow",
            JobRejection::AlreadySettled { .. } => "already_settled",
            JobRejection::BadVerification { .. } => "invalid_verification",
            JobRejection::ZkProofRequired => "zk_proof_required",
        }
    }
}

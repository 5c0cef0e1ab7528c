//! Agora's state machine: a pure function `(state, block) -> (state', receipts)`.
//!
//! Words:
//! - **State**: a key/value map read through [`StateRead`]; this crate never touches storage,
//!   clocks or randomness. Execution produces a [`WriteSet`] that the node commits atomically
//!   with the block.
//! - **Admission** ([`Executor::check_tx`]): chain id, nonce, minimum fee, a payable fee. A
//!   transaction that fails it never enters a block.
//! - **Execution** ([`Executor::apply_tx`]): the fee is charged and the nonce bumped, then all
//!   messages apply or none do.
//! - **End of block** ([`Executor::finish`]): stake whose unbonding period ends is released.
//!
//! ```text
//!   StateRead ──▶ Executor ──apply_tx × n──▶ finish ──▶ Executed { writes, receipts, events }
//!                    ▲                                        │
//!                    └──────────── overlay of writes ◀────────┘
//! ```

#![forbid(unsafe_code)]

mod data;
mod error;
mod executor;
mod genesis;
pub mod invariants;
mod keys;
mod market;
mod model;
pub mod subnet;
mod validators;
mod verify;
pub mod yuma;
mod zk;

pub use data::{
    Bounty, DataParams, DataTask, Dataset, Item, ModelOwner, PanelSeat, RECENT_CITATIONS, Reviewer,
    ScreenNote, SettleProgress, Stage,
};
pub use error::{Error, Result, TxError};
pub use executor::{
    BlockContext, CheckError, Executed, Executor, MemState, StateRead, WriteSet,
    check_chain_and_fee, read_account,
};
pub use genesis::{Genesis, GenesisAccount, GenesisModel, GenesisValidator};
pub use keys::{
    account_key, bonds_key, bounty_key, check_key, citation_key, commits_key, committee_queue_key,
    consensus_params_key, data_params_key, data_queue_key, dataset_contributors_key, dataset_key,
    deadline_queue_key, draw_queue_key, emission_key, emission_params_key, escrow_key,
    escrow_queue_key, hotkey_stake_key, hotkey_uid_key, item_hash_key, item_key, job_key,
    market_params_key, model_key, model_name_key, model_owner_key, model_source_key,
    neuron_citation_key, neuron_key, next_bounty_key, open_check_key, open_check_prefix,
    params_key, pending_key, predictions_key, provider_citation_key, provider_key, prune_queue_key,
    reveal_key, reviewer_key, reviewer_set_key, royalty_claim_key, seat_key, settle_progress_key,
    subnet_history_key, subnet_index_key, subnet_key, subnet_params_key, supply_key, unbonding_key,
    validator_candidates_key, validator_key_key, validator_set_key, verification_fund_key,
    verifier_key, verifier_pool_key, verifier_set_key, verify_params_key, weights_key,
    zk_attestation_key, zk_certification_key, zk_file_key, zk_job_key, zk_model_key, zk_seq_key,
};
pub use market::{
    Escrow, EscrowRelease, FeeState, JobRecord, JobRejection, MarketParams, ModelInfo, Provider,
};
pub use model::{Account, Params, UnbondingEntry};
pub use subnet::{
    Delegation, EmissionParams, EmissionState, EpochRecord, HotkeyStake, Neuron, Prediction,
    Subnet, SubnetHyperparams, SubnetIndex, SubnetParams, SubnetSlot, WeightCommit, WeightRow,
};
pub use validators::{ConsensusParams, ValidatorEntry, ValidatorSet, read_validator_set};
pub use verify::{Check, Outcome, Role, Seat, Verifier, VerifyParams};
pub use zk::{
    ZkAttestation, ZkCertification, ZkJobProof, ZkModelRecord, claim_statement, verify_claim,
    zk_attest_context, zk_job_context,
};

#[cfg(any(test, feature = "test-utils"))]
pub mod sim;
#[cfg(test)]
mod tests;

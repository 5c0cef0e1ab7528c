//! Agora's shared vocabulary: the types every other crate speaks, and their canonical encoding.
//!
//! Words:
//! - **Address**: the first 20 bytes of `blake3(ed25519 public key)`, shown as bech32 `agora1…`.
//! - **Amount**: base units (`u128`); 1 AGR = 10^9 base units. All arithmetic on amounts is checked.
//! - **Transaction**: `{chain_id, sender, nonce, fee, messages}` signed by the sender over its borsh
//!   encoding; executed atomically. Its hash is `blake3` of the signed encoding.
//! - **Block**: a header committing to the transactions (`tx_root`) and to the state after them
//!   (`state_root`), plus the transactions.
//!
//! ```text
//!  Keypair ──sign──▶ SignedTransaction ──borsh──▶ bytes ──blake3──▶ TxHash
//!                           │
//!                           ▼
//!                 Block { header, txs } ──header──blake3──▶ BlockHash
//! ```

#![forbid(unsafe_code)]

mod address;
mod amount;
mod block;
mod data;
pub mod durable;
mod error;
mod hash;
mod job;
mod keys;
pub mod proof;
mod receipt;
mod subnet;
mod tx;
pub mod vrf;
mod zk;

pub use address::{ADDRESS_HRP, Address};
pub use amount::{AGR, Amount, DECIMALS, format_amount, parse_amount, serde_u128};
pub use block::{
    Block, BlockHeader, MAX_BLOCK_BYTES, MAX_MERKLE_STEPS, MerkleProof, MerkleStep, merkle_root,
};
pub use data::{
    BountyId, BountySpec, CiteTarget, MAX_BOUNTY_DESCRIPTION_BYTES, MAX_BOUNTY_SCHEMA_BYTES,
    MAX_CITATIONS, MAX_SCREEN_DETAIL_BYTES, RejectReason, ScreenVerdict, dataset_leaf,
    vote_commitment,
};
pub use error::{Error, Result};
pub use hash::Hash;
pub use job::{
    EncryptionKey, Fault, JobParams, JobReceipt, JobRequest, MAX_ENDPOINT_BYTES,
    MAX_MODEL_NAME_BYTES, MAX_PENALTY_MILLI, MAX_PROVIDER_MODELS, MAX_REDUNDANCY,
    MAX_REVEAL_PART_BYTES, MAX_REVEAL_PARTS, MAX_SETTLE_JOBS, MAX_STOP_BYTES, MAX_STOP_SEQUENCES,
    MAX_TOP_LOGPROBS, ModelKind, ProviderInfo, SettledJob, SignedJobReceipt, SignedJobRequest,
    Verdict, Verification, VerifierInfo, check_model_name, job_fee,
};
pub use keys::{Keypair, PublicKey, Signature, verify_batch};
pub use receipt::{Event, Receipt, TxFailure};
pub use subnet::{
    MAX_SUBNET_NAME_BYTES, MAX_UIDS, NetUid, SubnetParam, SubnetTask, prediction_commitment,
    weights_commitment,
};
pub use tx::{
    ITEM_BYTES_PER_UNIT, MAX_MESSAGES, MAX_MODEL_SOURCE_FIELD, MAX_TX_BYTES, Message, ModelSource,
    REVEAL_BYTES_PER_UNIT, SignedTransaction, Transaction, work_units,
};
pub use zk::{
    MAX_PROOF_BYTES, MAX_PROOF_TX_BYTES, MAX_PROOF_TXS_PER_BLOCK, MAX_REGISTER_ROWS,
    MAX_REGISTER_WEIGHTS, MAX_ZK_OUTPUTS, MAX_ZK_VALUE, PROOF_BYTES_PER_UNIT,
    REGISTER_BYTES_PER_UNIT, ZK_SETTLE_UNITS, ZK_VERIFY_UNITS, ZkClaim, commitment_hash,
    commitment_words, zk_proof_fee,
};

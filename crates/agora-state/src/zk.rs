//! Zero-knowledge proofs of inference on chain (DESIGN.md §9).
//!
//! - **Models**: `RegisterZkModel` carries the model file; the state machine derives the
//!   verifying key (its shape and the Merkle commitment to its weights and wiring) itself and keeps
//!   it under the key's hash, the model's id, entered in the model registry (kind `provable`) so
//!   providers can serve it.
//! - **Jobs**: a job of verification level `zk` settles only through `SettleZkJob`, whose proof the
//!   state machine verifies; its fee is final in the same block (nothing to sample or challenge).
//! - **Attestations**: `ZkAttest` proves a claim about the sender's private input ("my risk score
//!   is below t") and records it, optionally naming an account that certified the input
//!   commitment (`CertifyZkInput`), for others to read.
//!
//! Who can abuse what, and what stops them:
//! - *A replayed proof*: every proof's Fiat–Shamir transcript starts from the chain, and from the
//!   job's id or the attester's address and attestation number, so a proof verifies in exactly one
//!   place and once (the number advances).
//! - *A key under which anything verifies*: the chain derives every key from a model file, so
//!   every committed column is the circuit's (a registrant cannot switch off the output checks).
//! - *A proof for other weights or another input*: the key pins the weights; the claim's input
//!   commitment is a public value of the proof, and a job's claim must equal its request's input
//!   hash, which the client signed.
//! - *Verification as a denial of service*: a proof's size, a transaction's proofs (one) and a
//!   block's (8) are bounded, the proof's trace sizes must be the key's before any work, and each
//!   proof pays [`agora_types::ZK_VERIFY_UNITS`] work units.

use agora_types::{Address, Hash, ZkClaim};
use agora_zk::{Context, Statement, VerifyingKey};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A registered provable model.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ZkModelRecord {
    /// Human name.
    pub name: String,
    /// The verifying key's bytes.
    #[serde(with = "hex_vec")]
    pub key: Vec<u8>,
    /// Who registered it.
    pub registrant: Address,
    /// When.
    pub height: u64,
    /// blake3 of the model file it was registered with (the chain derived the key from it).
    pub file_hash: Hash,
}

/// An account's certification of another's input commitment.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ZkCertification {
    /// The commitment certified.
    pub commitment: Hash,
    /// When.
    pub height: u64,
}

/// A verified claim about an account's private input.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ZkAttestation {
    /// What the proof showed.
    pub claim: ZkClaim,
    /// The account whose certification of the input commitment was checked, if any: without
    /// one, the input is whatever the attester chose.
    pub certifier: Option<Address>,
    /// When that certification was made.
    pub certified_height: Option<u64>,
    /// The attester's attestation number the proof was bound to.
    pub seq: u64,
    /// When it was verified.
    pub height: u64,
}

/// What the chain verified when it settled a job of level `zk` (kept beside the job's record):
/// the claim (its outputs, the input commitment the client signed, the predicate) and the proof's
/// hash and size.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ZkJobProof {
    /// What the proof showed.
    pub claim: ZkClaim,
    /// blake3 of the proof.
    pub proof_hash: Hash,
    /// The proof's size in bytes.
    pub proof_bytes: u32,
}

mod hex_vec {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

fn chain_hash(chain_id: &str) -> [u8; 32] {
    *blake3::hash(chain_id.as_bytes()).as_bytes()
}

/// What a zk job's proof is bound to: the chain and the job's id.
pub fn zk_job_context(chain_id: &str, job_id: &Hash) -> Context {
    Context {
        chain_id: chain_hash(chain_id),
        nonce: job_id.0,
    }
}

/// What an attestation's proof is bound to: the chain, the attester and its attestation number
/// (read it with `GET /v1/zk/attestations/{address}`: `next_seq`).
pub fn zk_attest_context(chain_id: &str, attester: &Address, seq: u64) -> Context {
    let mut h = blake3::Hasher::new();
    h.update(b"agora/zk-attest/v1");
    h.update(&attester.0);
    h.update(&seq.to_le_bytes());
    Context {
        chain_id: chain_hash(chain_id),
        nonce: *h.finalize().as_bytes(),
    }
}

/// The statement a claim asks the verifier to check.
pub fn claim_statement(claim: &ZkClaim) -> Statement {
    Statement {
        input_commitment: claim.commitment_words(),
        t: claim.threshold,
        below: claim.below,
        outputs: claim.outputs.clone(),
    }
}

/// Verifies `proof` of `claim` against a registered model's key bytes.
pub fn verify_claim(
    key: &[u8],
    claim: &ZkClaim,
    context: &Context,
    proof: &[u8],
) -> Result<(), agora_zk::Error> {
    let vk = VerifyingKey::from_bytes(key)?;
    agora_zk::verify(&vk, &claim_statement(claim), context, proof)
}

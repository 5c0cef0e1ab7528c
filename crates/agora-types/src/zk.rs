//! Zero-knowledge proofs of inference on chain (DESIGN.md §9): what a proof claims, and the limits
//! on the messages that carry one.

use crate::{Hash, Result};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

const CLAIM_DOMAIN: &[u8] = b"agora/zk-claim/v1";
/// Domain of a zk job's output hash.
const OUTPUT_DOMAIN: &[u8] = b"agora/zk-output/v1";

/// Largest transaction that carries a proof (a proof of a 100k-weight model is about 200 KiB).
pub const MAX_PROOF_TX_BYTES: usize = 512 * 1024;
/// Largest proof, in bytes.
pub const MAX_PROOF_BYTES: usize = 448 * 1024;
/// Most proof-carrying transactions in one block: each costs the state machine a verification.
pub const MAX_PROOF_TXS_PER_BLOCK: usize = 8;
/// Work units of verifying one proof (a transfer is one): about 10 ms of a core, against ~50 µs
/// for a signature.
pub const ZK_VERIFY_UNITS: u64 = 200;
/// Proof bytes per further work unit.
pub const PROOF_BYTES_PER_UNIT: usize = 4 * 1024;
/// Most weights of a model registered on chain: the chain commits to them itself (about a second
/// of a core for 2^17).
pub const MAX_REGISTER_WEIGHTS: u64 = 1 << 17;
/// Largest trace of a model registered on chain, in rows: 2^13 rows of products (2^17 weights
/// when dense) and 2^12 activations. The chain's setup costs what the traces' heights are.
pub const MAX_REGISTER_ROWS: (usize, usize) = (1 << 13, 1 << 12);
/// Model-file bytes per further work unit of a registration (a byte is about a weight, and 8
/// weights cost the chain's setup about what a signature check costs).
pub const REGISTER_BYTES_PER_UNIT: usize = 8;
/// Work units of the largest `SettleZkJob` (its verification, and the bytes of the largest proof):
/// what a proved job's fee adds so that its settlement pays for itself.
pub const ZK_SETTLE_UNITS: u64 = ZK_VERIFY_UNITS + (MAX_PROOF_BYTES / PROOF_BYTES_PER_UNIT) as u64;

/// What a proved job's fee adds to its tokens' price: the chain's fee for its settlement at the
/// minimum fee per unit, `min_fee` ([`ZK_SETTLE_UNITS`] units). The chain checks it exactly.
pub fn zk_proof_fee(min_fee: u128) -> u128 {
    min_fee.saturating_mul(u128::from(ZK_SETTLE_UNITS))
}

/// Largest claim threshold or output magnitude: 2^27 (the circuit's values stay below it).
pub const MAX_ZK_VALUE: i64 = 1 << 27;
/// Most outputs a claim shows.
pub const MAX_ZK_OUTPUTS: usize = 8;

/// What a proof shows: the committed model `model`, run on the private input committed as
/// `input_commitment`, gives output 0 below `threshold` (or not), and, unless hidden, exactly
/// `outputs`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ZkClaim {
    /// The provable model's id (the hash of its verifying key).
    pub model: Hash,
    /// The Poseidon2 commitment to the input and a salt: eight 31-bit field elements, little-endian.
    pub input_commitment: Hash,
    /// The predicate's threshold on output 0.
    pub threshold: i64,
    /// Whether output 0 is below the threshold.
    pub below: bool,
    /// The outputs, or `None` when they stay private.
    pub outputs: Option<Vec<i64>>,
}

impl ZkClaim {
    /// What a zk job's receipt names as its output: the hash of the claim.
    pub fn hash(&self) -> Hash {
        let mut bytes = CLAIM_DOMAIN.to_vec();
        BorshSerialize::serialize(self, &mut bytes).expect("borsh encoding into a Vec");
        Hash::digest(&bytes)
    }

    /// What a zk job's receipt names as its output: the claim and the very proof delivered
    /// (blake3 of the proof's bytes), so that the proof a provider settles with is the one its
    /// client received.
    pub fn output_hash(&self, proof: &[u8]) -> Hash {
        let mut bytes = OUTPUT_DOMAIN.to_vec();
        bytes.extend_from_slice(&self.hash().0);
        bytes.extend_from_slice(blake3::hash(proof).as_bytes());
        Hash::digest(&bytes)
    }

    /// The commitment as field words.
    pub fn commitment_words(&self) -> [u32; 8] {
        commitment_words(&self.input_commitment)
    }

    /// Shape checks that need no state: 1 to 8 outputs, every value within ±2^27.
    pub fn check(&self) -> Result<()> {
        let malformed = |reason: String| {
            Err(crate::Error::Malformed {
                what: "zk claim",
                reason,
            })
        };
        if self
            .outputs
            .as_ref()
            .is_some_and(|o| o.is_empty() || o.len() > MAX_ZK_OUTPUTS)
        {
            return malformed(format!("1 to {MAX_ZK_OUTPUTS} outputs"));
        }
        let big = |v: i64| v.unsigned_abs() > MAX_ZK_VALUE as u64;
        if big(self.threshold) || self.outputs.iter().flatten().any(|&y| big(y)) {
            return malformed(format!("values within ±{MAX_ZK_VALUE}"));
        }
        Ok(())
    }
}

/// A commitment hash as its eight little-endian words.
pub fn commitment_words(hash: &Hash) -> [u32; 8] {
    let mut words = [0u32; 8];
    for (w, chunk) in words.iter_mut().zip(hash.0.chunks(4)) {
        *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}

/// Eight words as a commitment hash.
pub fn commitment_hash(words: &[u32; 8]) -> Hash {
    let mut bytes = [0u8; 32];
    for (chunk, w) in bytes.chunks_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    Hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_with_values_the_circuit_cannot_hold_are_malformed() {
        let ok = ZkClaim {
            model: Hash([1; 32]),
            input_commitment: Hash([2; 32]),
            threshold: MAX_ZK_VALUE,
            below: true,
            outputs: Some(vec![-MAX_ZK_VALUE, 3]),
        };
        assert!(ok.check().is_ok());
        for bad in [
            ZkClaim {
                threshold: i64::MIN,
                ..ok.clone()
            },
            ZkClaim {
                threshold: MAX_ZK_VALUE + 1,
                ..ok.clone()
            },
            ZkClaim {
                outputs: Some(vec![i64::MIN]),
                ..ok.clone()
            },
            ZkClaim {
                outputs: Some(vec![]),
                ..ok.clone()
            },
            ZkClaim {
                outputs: Some(vec![0; MAX_ZK_OUTPUTS + 1]),
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        let words = [1, 2, 3, 4, 5, 6, 7, 0x7800_0000];
        assert_eq!(commitment_words(&commitment_hash(&words)), words);
    }
}

//! The model market's vocabulary (DESIGN.md §7): what a subnet does, the hyperparameters its
//! owner may change, and the commitment a validator makes to its weights before revealing them.

use crate::{Address, Amount, Hash, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Most UIDs a subnet can have.
pub const MAX_UIDS: u16 = 256;

/// Most bytes of a subnet's name or a custom task's name.
pub const MAX_SUBNET_NAME_BYTES: usize = 64;

/// The identifier of a subnet.
pub type NetUid = u16;

/// What a subnet's miners do, and so how validators score them.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SubnetTask {
    /// Chat completions, scored against reference answers of a published evaluation pool.
    Chat,
    /// Sentence embeddings.
    Embeddings,
    /// Sealed predictions of a quantity of Agora's own chain, scored by the state machine.
    Forecast,
    /// Anything else, named, with the content hash of its evaluation spec.
    Custom {
        /// At most [`MAX_SUBNET_NAME_BYTES`].
        name: String,
        /// Hash of the evaluation spec: validators and miners agree on this text.
        spec: Hash,
    },
}

impl SubnetTask {
    /// A short name: `chat`, `embeddings`, `forecast` or the custom task's name.
    pub fn label(&self) -> &str {
        match self {
            SubnetTask::Chat => "chat",
            SubnetTask::Embeddings => "embeddings",
            SubnetTask::Forecast => "forecast",
            SubnetTask::Custom { name, .. } => name,
        }
    }
}

/// One hyperparameter and its new value: what `SetSubnetParam` changes. Bounds are the state
/// machine's (`agora_state::SubnetHyperparams::set`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "name", content = "value", rename_all = "snake_case")]
pub enum SubnetParam {
    /// Blocks between epochs.
    Tempo(u64),
    /// Most UIDs.
    MaxUids(u16),
    /// Blocks a new neuron cannot be pruned.
    ImmunityPeriod(u64),
    /// Consensus quantile κ, as a fraction of `u16::MAX`.
    Kappa(u16),
    /// Bonds moving average, parts per million (the EMA rate α is 1 − this).
    BondsMovingAverage(u32),
    /// Bond penalty β, as a fraction of `u16::MAX`.
    BondPenalty(u16),
    /// Least blocks between two weight commits of one validator.
    WeightsRateLimit(u64),
    /// Epochs between a commit and its reveal.
    CommitRevealPeriod(u64),
    /// Validator permits: the top this many UIDs by stake.
    MaxValidators(u16),
    /// Blocks after which a validator's weights no longer count.
    ActivityCutoff(u64),
    /// Least registration burn.
    MinBurn(#[serde(with = "serde_u128")] Amount),
    /// Largest registration burn.
    MaxBurn(#[serde(with = "serde_u128")] Amount),
    /// Registrations per epoch the burn steers toward.
    TargetRegistrations(u16),
    /// The share of its dividends a validator keeps before its delegators, parts per million.
    ValidatorTake(u32),
}

/// Domain of weight commitments.
const WEIGHTS_DOMAIN: &[u8] = b"agora/weights/v1";

/// The commitment to a validator's weights: `blake3` of a domain tag, the subnet, the
/// validator's hotkey, its UIDs and weights, and a secret salt. The hotkey is inside, so a
/// commitment copied from another validator can never be revealed by the copier.
pub fn weights_commitment(
    netuid: NetUid,
    hotkey: &Address,
    uids: &[u16],
    weights: &[u16],
    salt: &Hash,
) -> Hash {
    let mut bytes = WEIGHTS_DOMAIN.to_vec();
    bytes.extend_from_slice(&netuid.to_le_bytes());
    bytes.extend_from_slice(&hotkey.0);
    bytes.extend_from_slice(&(uids.len() as u32).to_le_bytes());
    for u in uids {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    bytes.extend_from_slice(&(weights.len() as u32).to_le_bytes());
    for w in weights {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.extend_from_slice(&salt.0);
    Hash::digest(&bytes)
}

/// Domain of prediction commitments.
const PREDICTION_DOMAIN: &[u8] = b"agora/prediction/v1";

/// The commitment to a forecast: `blake3` of a domain tag, the subnet, the miner's hotkey, the
/// predicted value and a secret salt.
pub fn prediction_commitment(netuid: NetUid, hotkey: &Address, value: u64, salt: &Hash) -> Hash {
    let mut bytes = PREDICTION_DOMAIN.to_vec();
    bytes.extend_from_slice(&netuid.to_le_bytes());
    bytes.extend_from_slice(&hotkey.0);
    bytes.extend_from_slice(&value.to_le_bytes());
    bytes.extend_from_slice(&salt.0);
    Hash::digest(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commitment_binds_every_part() {
        let a = Address([1; 20]);
        let salt = Hash([9; 32]);
        let base = weights_commitment(1, &a, &[0, 1], &[5, 6], &salt);
        assert_ne!(base, weights_commitment(2, &a, &[0, 1], &[5, 6], &salt));
        assert_ne!(
            base,
            weights_commitment(1, &Address([2; 20]), &[0, 1], &[5, 6], &salt)
        );
        assert_ne!(base, weights_commitment(1, &a, &[1, 0], &[5, 6], &salt));
        assert_ne!(base, weights_commitment(1, &a, &[0, 1], &[6, 5], &salt));
        assert_ne!(
            base,
            weights_commitment(1, &a, &[0, 1], &[5, 6], &Hash([8; 32]))
        );
        // Lengths are inside: moving a value from one list to the other changes it.
        assert_ne!(base, weights_commitment(1, &a, &[0, 1, 5], &[6], &salt));
    }

    #[test]
    fn params_read_back_from_json() {
        for p in [
            SubnetParam::Tempo(10),
            SubnetParam::MinBurn(u128::MAX),
            SubnetParam::Kappa(32_767),
        ] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(
                serde_json::from_str::<SubnetParam>(&json).unwrap(),
                p,
                "{json}"
            );
        }
        let task = SubnetTask::Custom {
            name: "x".into(),
            spec: Hash([3; 32]),
        };
        let json = serde_json::to_string(&task).unwrap();
        assert_eq!(serde_json::from_str::<SubnetTask>(&json).unwrap(), task);
    }
}

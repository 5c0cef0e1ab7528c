//! The validator set: who takes part in consensus, with what voting power.
//!
//! A validator is an account with bonded stake; its consensus key is the account's own ed25519 key
//! (recorded the first time the account bonds, or at genesis). The set in force is stored in the
//! state and changes only at epoch boundaries: at the end of every block whose height is a multiple
//! of `epoch_length`, the set is recomputed from the bonds of that moment, so every node applies the
//! same change at the same height. Voting power is the bonded stake in whole AGR.

use crate::{Result, StateRead, validator_set_key};
use agora_types::{AGR, Address, Amount, PublicKey, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Consensus parameters (genesis `consensus`; absent in older states: the defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusParams {
    /// Blocks per epoch: the validator set changes at the end of heights that are multiples of it.
    pub epoch_length: u64,
    /// Least bonded stake (base units) for a seat in the set; at least 1 AGR.
    #[serde(with = "serde_u128")]
    pub min_validator_stake: Amount,
    /// Most validators; the largest stakes win (ties: the lower address).
    pub max_validators: u32,
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            epoch_length: 100,
            min_validator_stake: AGR,
            max_validators: 100,
        }
    }
}

impl ConsensusParams {
    /// Checks the parameters; the error says which is wrong.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.epoch_length == 0 {
            return Err("consensus.epoch_length must be at least 1 block".into());
        }
        if self.min_validator_stake < AGR {
            return Err("consensus.min_validator_stake must be at least 1 AGR".into());
        }
        if self.max_validators == 0 {
            return Err("consensus.max_validators must be at least 1".into());
        }
        Ok(())
    }

    /// Whether the validator set is recomputed at the end of block `height`.
    pub fn is_epoch_end(&self, height: u64) -> bool {
        height > 0 && height.is_multiple_of(self.epoch_length)
    }
}

/// One seat in the validator set.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct ValidatorEntry {
    /// The validator's account.
    pub address: Address,
    /// Its consensus key (the account's key).
    pub public_key: PublicKey,
    /// Voting power: bonded stake in whole AGR.
    pub power: u64,
}

/// The validators in force, sorted by address.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    serde::Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct ValidatorSet {
    /// The seats, sorted by address, each address once.
    pub validators: Vec<ValidatorEntry>,
}

impl ValidatorSet {
    /// The sum of the voting powers.
    pub fn total_power(&self) -> u64 {
        self.validators
            .iter()
            .fold(0u64, |t, v| t.saturating_add(v.power))
    }

    /// The seat of `address`.
    pub fn get(&self, address: &Address) -> Option<&ValidatorEntry> {
        self.validators
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .map(|i| &self.validators[i])
    }

    /// Builds the set from candidates `(address, key, bonded)`: those with at least the minimum
    /// stake, the `max_validators` largest, sorted by address.
    pub fn from_bonds(
        params: &ConsensusParams,
        candidates: impl IntoIterator<Item = (Address, PublicKey, Amount)>,
    ) -> ValidatorSet {
        let mut seats: Vec<ValidatorEntry> = candidates
            .into_iter()
            .filter(|(_, _, bonded)| *bonded >= params.min_validator_stake)
            .map(|(address, public_key, bonded)| ValidatorEntry {
                address,
                public_key,
                power: u64::try_from(bonded / AGR).unwrap_or(u64::MAX),
            })
            .collect();
        seats.sort_by(|a, b| b.power.cmp(&a.power).then(a.address.cmp(&b.address)));
        seats.truncate(params.max_validators as usize);
        seats.sort_by_key(|a| a.address);
        seats.dedup_by(|a, b| a.address == b.address);
        ValidatorSet { validators: seats }
    }
}

/// The validator set in force in `state` (`None`: a dev chain).
pub fn read_validator_set(state: &dyn StateRead) -> Result<Option<ValidatorSet>> {
    let key = validator_set_key();
    state
        .get(&key)?
        .map(|b| {
            borsh::from_slice(&b).map_err(|e| crate::Error::Corrupt {
                key: "vals".into(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

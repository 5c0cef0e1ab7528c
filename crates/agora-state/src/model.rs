use agora_types::{Address, Amount, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// An account: liquid balance, next nonce, and stake.
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
pub struct Account {
    /// Spendable base units.
    #[serde(with = "serde_u128")]
    pub balance: Amount,
    /// The nonce the next transaction must carry.
    pub nonce: u64,
    /// Bonded stake.
    #[serde(with = "serde_u128")]
    pub bonded: Amount,
    /// Stake being unbonded, returned to `balance` when its period ends.
    #[serde(with = "serde_u128")]
    pub unbonding: Amount,
}

impl Account {
    /// Everything the account holds: balance + bonded + unbonding.
    pub fn total(&self) -> Option<Amount> {
        self.balance
            .checked_add(self.bonded)?
            .checked_add(self.unbonding)
    }
}

/// Chain parameters, fixed in genesis.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Params {
    /// Smallest fee per unit of work ([`agora_types::work_units`]; a transfer is one unit), in
    /// base units.
    #[serde(with = "serde_u128")]
    pub min_fee: Amount,
    /// Blocks between an unbond and the release of its stake.
    pub unbonding_period: u64,
}

impl Params {
    /// The least fee a transaction of `messages` pays: the minimum fee per unit of work times
    /// its units ([`agora_types::work_units`]).
    pub fn min_fee_for(&self, messages: &[agora_types::Message]) -> Amount {
        self.min_fee
            .saturating_mul(Amount::from(agora_types::work_units(messages)))
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_fee: 1_000,
            unbonding_period: 100,
        }
    }
}

/// Stake that returns to `address` at a given height.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct UnbondingEntry {
    /// Owner.
    pub address: Address,
    /// Base units.
    pub amount: Amount,
}

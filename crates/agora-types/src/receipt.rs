use crate::{Amount, Hash, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

/// Something that happened while executing a transaction or a block, for indexers and clients.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct Event {
    /// What happened, e.g. `transfer`, `bond`, `unbond`, `unbond_released`, `fee`.
    pub kind: String,
    /// Key/value details in a fixed order.
    pub attributes: Vec<(String, String)>,
}

impl Event {
    /// An event with attributes.
    pub fn new(kind: &str, attributes: &[(&str, String)]) -> Self {
        Event {
            kind: kind.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }
}

/// Why a transaction's messages failed (the fee is still charged).
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct TxFailure {
    /// Stable machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    /// Human-readable explanation with the values involved.
    pub message: String,
    /// Index of the message that failed.
    pub message_index: u32,
}

/// The outcome of one transaction in a block.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct Receipt {
    /// The transaction.
    pub tx_hash: Hash,
    /// Height of the block that holds it.
    pub height: u64,
    /// Position in that block.
    pub index: u32,
    /// Whether all messages were applied.
    pub success: bool,
    /// Why not, when `success` is false.
    pub failure: Option<TxFailure>,
    /// Fee charged (always, success or not).
    #[serde(with = "serde_u128")]
    pub fee_paid: Amount,
    /// Events, in order; empty for a failed transaction except its fee.
    pub events: Vec<Event>,
}

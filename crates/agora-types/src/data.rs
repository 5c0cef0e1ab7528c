//! The data market's vocabulary (DESIGN.md §8): a bounty's terms, a screener's verdict on a
//! submitted item, what may cite a dataset, and a reviewer's sealed vote.

use crate::{Amount, Hash, NetUid, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Most bytes of a bounty's description.
pub const MAX_BOUNTY_DESCRIPTION_BYTES: usize = 2 * 1024;

/// Most bytes of a bounty's item schema (a JSON Schema document).
pub const MAX_BOUNTY_SCHEMA_BYTES: usize = 8 * 1024;

/// Most bytes of a screener's explanation of a rejection.
pub const MAX_SCREEN_DETAIL_BYTES: usize = 256;

/// Most dataset roots one model, neuron or job cites.
pub const MAX_CITATIONS: usize = 8;

/// The identifier of a bounty (sequential from 0).
pub type BountyId = u64;

/// What a requester posts: the terms every submission, vote and payout of the bounty follows.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BountySpec {
    /// What the requester wants, for contributors and reviewers (at most
    /// [`MAX_BOUNTY_DESCRIPTION_BYTES`]).
    pub description: String,
    /// The JSON Schema every item must satisfy (at most [`MAX_BOUNTY_SCHEMA_BYTES`]).
    pub schema: String,
    /// Paid to an accepted item's contributor, in base units.
    #[serde(with = "serde_u128")]
    pub reward_per_item: Amount,
    /// Paid to a screener for its verdict and to each vote on the winning side, in base units.
    #[serde(with = "serde_u128")]
    pub review_fee: Amount,
    /// Held in escrow from the creation on; what is not paid out returns after the deadline.
    #[serde(with = "serde_u128")]
    pub budget: Amount,
    /// Votes drawn per reviewed item (odd numbers avoid ties; a tie rejects).
    pub quorum: u8,
    /// Stake each vote puts at risk: a reviewer needs this much free review stake per vote it
    /// is drawn for, and loses a share of it on the losing side.
    #[serde(with = "serde_u128")]
    pub review_stake: Amount,
    /// A contributor's bond per item: returned when the item is accepted or nobody could judge
    /// it, burned when it is rejected (what makes spam cost something).
    #[serde(with = "serde_u128")]
    pub item_bond: Amount,
    /// Last height at which items may be submitted.
    pub deadline: u64,
    /// Largest item, in bytes.
    pub max_item_bytes: u32,
    /// Cosine similarity (basis points of 1.0) from which a screener rejects an item as a
    /// near-duplicate of an earlier one.
    pub duplicate_bps: u16,
    /// Share of a citing model's earnings paid to the dataset's contributors, in basis points.
    pub royalty_bps: u16,
}

/// Why a screener rejects an item before any vote.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not JSON, or not valid against the bounty's schema.
    Schema,
    /// The same as, or too similar to, an earlier item of the bounty (named).
    Duplicate,
    /// Obvious spam: filler, repetition, text with no content.
    Spam,
    /// Larger than the bounty allows.
    TooLarge,
    /// Its content could not be fetched from any node, or does not match its hash.
    Unavailable,
}

impl RejectReason {
    /// Stable name, as the API shows it.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Schema => "schema",
            RejectReason::Duplicate => "duplicate",
            RejectReason::Spam => "spam",
            RejectReason::TooLarge => "too_large",
            RejectReason::Unavailable => "unavailable",
        }
    }
}

/// A screener's verdict on an item it was drawn to pre-screen.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ScreenVerdict {
    /// Well-formed and new: it goes to review.
    Pass,
    /// Rejected before review; the contributor may appeal to the reviewers.
    Reject {
        /// Why.
        reason: RejectReason,
        /// For a duplicate: the earlier item of the same bounty it repeats.
        duplicate_of: Option<u32>,
        /// A short explanation (at most [`MAX_SCREEN_DETAIL_BYTES`]).
        detail: String,
    },
}

/// What cites a dataset: a registered model (its earnings pay the royalty), a subnet neuron
/// (its emission pays it), or a settled job (recorded, not charged).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CiteTarget {
    /// A model of the compute market, by id; cited by its registrant in the block that
    /// registers it, so every provider that serves it knows its royalties.
    Model {
        /// The model id.
        id: Hash,
    },
    /// The sender's own neuron on a subnet.
    Neuron {
        /// The subnet.
        netuid: NetUid,
    },
    /// A settled job, cited by its client (evaluation provenance).
    Job {
        /// The job id.
        id: Hash,
    },
}

/// Domain of a reviewer's vote commitment.
const VOTE_DOMAIN: &[u8] = b"agora/data-vote/v1";

/// What a reviewer commits to before revealing its vote on item `item` of bounty `bounty`:
/// blake3 of the domain, the bounty, the item, the reviewer, the vote and a secret salt.
pub fn vote_commitment(
    bounty: BountyId,
    item: u32,
    reviewer: &crate::Address,
    accept: bool,
    salt: &Hash,
) -> Hash {
    let mut bytes = VOTE_DOMAIN.to_vec();
    bytes.extend_from_slice(&bounty.to_le_bytes());
    bytes.extend_from_slice(&item.to_le_bytes());
    bytes.extend_from_slice(&reviewer.0);
    bytes.push(u8::from(accept));
    bytes.extend_from_slice(&salt.0);
    Hash::digest(&bytes)
}

/// Domain of a dataset's leaves.
const DATASET_LEAF_DOMAIN: &[u8] = b"agora/dataset-item/v1";

/// A dataset's leaf for item `index` of bounty `bounty`, contributed by `contributor`, whose
/// bytes hash to `item`: the dataset's root is [`crate::merkle_root`] over these leaves, in item
/// order. The bounty and index make two bounties of the same items two datasets; the
/// contributor makes an export's attribution as checkable as its bytes.
pub fn dataset_leaf(
    bounty: BountyId,
    index: u32,
    contributor: &crate::Address,
    item: &Hash,
) -> Hash {
    let mut bytes = DATASET_LEAF_DOMAIN.to_vec();
    bytes.extend_from_slice(&bounty.to_le_bytes());
    bytes.extend_from_slice(&index.to_le_bytes());
    bytes.extend_from_slice(&contributor.0);
    bytes.extend_from_slice(&item.0);
    Hash::digest(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;

    #[test]
    fn a_vote_commitment_binds_every_part() {
        let r = Address([1; 20]);
        let salt = Hash([9; 32]);
        let base = vote_commitment(1, 2, &r, true, &salt);
        assert_ne!(base, vote_commitment(2, 2, &r, true, &salt));
        assert_ne!(base, vote_commitment(1, 3, &r, true, &salt));
        assert_ne!(base, vote_commitment(1, 2, &Address([2; 20]), true, &salt));
        assert_ne!(base, vote_commitment(1, 2, &r, false, &salt));
        assert_ne!(base, vote_commitment(1, 2, &r, true, &Hash([8; 32])));
        assert_eq!(base, vote_commitment(1, 2, &r, true, &salt));
    }
}

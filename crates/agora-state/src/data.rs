//! The data market's on-chain state (DESIGN.md §8): bounties and their escrow, submitted items
//! on their way through the pre-screen and the reviewers' vote, the reviewers' stake, datasets
//! and the royalties their citations pay.
//!
//! An item's life, each step at a height fixed when the step before it ends:
//!
//! ```text
//!  SubmitItem ─▶ DrawScreener ─(next block's seed)─▶ Screening ──ScreenItem(pass)──▶ DrawPanel
//!                                                       │  └─(deadline: screener slashed)──┘ │
//!                                                       └─ScreenItem(reject)─▶ Screened      │
//!                                      Rejected ◀─(appeal window ends)──┘  └─AppealItem──────┤
//!                                                                                             ▼
//!              Accepted / Rejected ◀─(reveal deadline: tally)── Voting ◀─(next block's seed)─┘
//! ```
//!
//! Who can abuse what, and what stops them:
//! - *Spam and duplicates*: each item locks the bounty's bond, burned if the item is rejected;
//!   the chain refuses the same bytes twice; the screener rejects near-duplicates.
//! - *Friendly reviewers*: the screener and panel are drawn from the seed of the block after the
//!   one that asks for them, over the previous state's reviewers, in proportion to free stake;
//!   the contributor, the requester and (for the panel) the screener are never drawn.
//! - *Lazy or colluding reviewers*: votes are committed, then revealed; the stake-weighted
//!   majority decides (a tie rejects); every vote on the losing side, or not revealed, loses
//!   `review_slash_bps` of the bounty's review stake to the winning votes.
//! - *A screener rejecting good items*: the contributor appeals; a panel that accepts the item
//!   slashes the screener, to the contributor.
//! - *Overspending*: an item reserves its reward and every fee it can cost when it is
//!   submitted; a bounty takes no item its budget cannot cover. `budget = available + held +
//!   paid + refunded`, checked after every block.

use agora_types::{
    Address, Amount, BountyId, BountySpec, CiteTarget, Hash, RejectReason, serde_u128,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// The data market's chain parameters, fixed in genesis.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DataParams {
    /// Least review stake a reviewer holds.
    #[serde(with = "serde_u128")]
    pub min_reviewer_stake: Amount,
    /// Most votes a bounty may draw per item.
    pub max_quorum: u8,
    /// Blocks a drawn screener has for its verdict.
    pub screen_window: u64,
    /// Blocks a contributor has to appeal a screener's rejection.
    pub appeal_window: u64,
    /// Blocks a drawn panel has to commit its votes.
    pub commit_window: u64,
    /// Blocks after the commit window to reveal them.
    pub reveal_window: u64,
    /// Share of a vote's review stake lost on the losing side (or by a screener that misses its
    /// window or is overturned), in basis points.
    pub review_slash_bps: u32,
    /// Largest royalty a bounty may set, in basis points.
    pub max_royalty_bps: u16,
    /// Largest sum of the royalties of the datasets one model or neuron cites.
    pub max_royalty_total_bps: u16,
    /// Most items one bounty takes.
    pub max_items: u32,
    /// Most blocks between a bounty's creation and its deadline.
    pub max_bounty_blocks: u64,
    /// Largest item any bounty may allow, in bytes (the nodes' blob store's bound).
    pub max_item_bytes: u32,
    /// Least review fee a bounty pays: a drawn reviewer is never made to work for nothing.
    #[serde(with = "serde_u128")]
    pub min_review_fee: Amount,
    /// Least item bond a bounty asks: spam always costs something.
    #[serde(with = "serde_u128")]
    pub min_item_bond: Amount,
    /// Most reviewers: each draw reads them all. A newcomer offering more stake than the
    /// smallest reviewer with no open seat takes its place (its stake unbonds).
    pub max_reviewers: u32,
    /// Items settlements read in one block, all bounties together (a bounty goes on where it
    /// stopped in the next block).
    pub settle_items_per_block: u32,
    /// Most open seats one reviewer holds: a pick beyond it is void (a reviewer's assignments
    /// stay few enough to list and to act on).
    pub max_reviewer_seats: u32,
}

impl Default for DataParams {
    fn default() -> Self {
        DataParams {
            min_reviewer_stake: 10 * agora_types::AGR,
            max_quorum: 15,
            screen_window: 20,
            appeal_window: 20,
            commit_window: 20,
            reveal_window: 20,
            review_slash_bps: 2_000,
            max_royalty_bps: 1_000,
            max_royalty_total_bps: 3_000,
            max_items: 10_000,
            // A week at 500 ms blocks.
            max_bounty_blocks: 1_209_600,
            max_item_bytes: 1024 * 1024,
            min_review_fee: agora_types::AGR / 1_000,
            min_item_bond: agora_types::AGR / 1_000,
            max_reviewers: 1_024,
            settle_items_per_block: 4_096,
            max_reviewer_seats: 1_000,
        }
    }
}

impl DataParams {
    /// Checks the values make sense together.
    pub fn check(&self) -> Result<(), String> {
        if self.screen_window == 0
            || self.appeal_window == 0
            || self.commit_window == 0
            || self.reveal_window == 0
        {
            return Err("the data market's windows must be at least 1 block".into());
        }
        if self.review_slash_bps > 10_000 {
            return Err("review_slash_bps is at most 10000".into());
        }
        if self.max_royalty_bps > 10_000 || self.max_royalty_total_bps > 10_000 {
            return Err("royalties are at most 10000 basis points".into());
        }
        if self.max_quorum == 0 || self.max_items == 0 || self.max_item_bytes == 0 {
            return Err("max_quorum, max_items and max_item_bytes must be at least 1".into());
        }
        if self.max_bounty_blocks == 0 {
            return Err("max_bounty_blocks must be at least 1".into());
        }
        if [
            self.screen_window,
            self.appeal_window,
            self.commit_window,
            self.reveal_window,
        ]
        .iter()
        .any(|w| *w > 100_000)
            || self.max_bounty_blocks > 100_000_000
        {
            return Err("the data market's windows are at most 100000 blocks".into());
        }
        if self.max_reviewer_seats == 0 {
            return Err("max_reviewer_seats must be at least 1".into());
        }
        if self.settle_items_per_block == 0 {
            return Err("settle_items_per_block must be at least 1".into());
        }
        if self.max_reviewers == 0 {
            return Err("max_reviewers must be at least 1".into());
        }
        Ok(())
    }

    /// Blocks from a bounty's deadline to the height where it is settled: long enough for an
    /// item submitted at the deadline to pass every window (each draw waits one block).
    pub fn settle_delay(&self) -> u64 {
        self.screen_window
            .saturating_add(self.appeal_window)
            .saturating_add(self.commit_window)
            .saturating_add(self.reveal_window)
            .saturating_add(3)
    }

    /// A vote's loss on the losing side, for a bounty whose review stake is `stake`.
    pub fn slash(&self, stake: Amount) -> Amount {
        crate::VerifyParams::share(stake, self.review_slash_bps)
    }
}

/// A posted bounty and its escrow.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Bounty {
    /// Its id.
    pub id: BountyId,
    /// Who posted it, and gets the unspent budget back.
    pub requester: Address,
    /// The terms.
    pub spec: BountySpec,
    /// Height of creation.
    pub created: u64,
    /// Budget not reserved by any item.
    #[serde(with = "serde_u128")]
    pub available: Amount,
    /// Budget reserved by open items (their rewards and fees).
    #[serde(with = "serde_u128")]
    pub held: Amount,
    /// Paid to contributors and reviewers.
    #[serde(with = "serde_u128")]
    pub paid: Amount,
    /// Returned to the requester when the bounty was settled.
    #[serde(with = "serde_u128")]
    pub refunded: Amount,
    /// Items submitted.
    pub items: u32,
    /// Items not yet accepted or rejected.
    pub open: u32,
    /// Items accepted.
    pub accepted: u32,
    /// Height at which the bounty is settled: the unspent budget returns and the dataset forms.
    pub settle_at: u64,
    /// Settled.
    pub settled: bool,
    /// The dataset's root, once settled with at least one accepted item.
    pub dataset: Option<Hash>,
}

impl Bounty {
    /// What one item reserves from the budget: its reward, its screener's fee and a fee per
    /// vote (`None` past `u128`).
    pub fn item_cost(spec: &BountySpec) -> Option<Amount> {
        spec.review_fee
            .checked_mul(Amount::from(spec.quorum) + 1)?
            .checked_add(spec.reward_per_item)
    }
}

/// A reviewer drawn onto an item's panel: one vote per draw (drawn in proportion to free stake,
/// with replacement, so a reviewer with more stake may hold several votes of one panel).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PanelSeat {
    /// The reviewer.
    pub reviewer: Address,
    /// Its votes on this panel (each locks the bounty's review stake).
    pub votes: u8,
    /// Its commitment, once made.
    pub commitment: Option<Hash>,
    /// Its revealed vote.
    pub accept: Option<bool>,
}

/// Where an item is in its life (see the module's diagram).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Its screener is drawn at the next block.
    DrawScreener,
    /// The screener's verdict is due by `deadline`.
    Screening {
        /// Drawn screener.
        screener: Address,
        /// Last height for its verdict.
        deadline: u64,
    },
    /// The screener rejected it; the contributor may appeal until `appeal_deadline`.
    Screened {
        /// Last height for an appeal.
        appeal_deadline: u64,
    },
    /// Its panel is drawn at the next block.
    DrawPanel,
    /// The panel commits until `commit_deadline`, then reveals until `reveal_deadline`.
    Voting {
        /// Last height of commits.
        commit_deadline: u64,
        /// Last height of reveals; the votes are counted at its end.
        reveal_deadline: u64,
        /// The drawn reviewers.
        seats: Vec<PanelSeat>,
    },
    /// In the dataset (once the bounty settles).
    Accepted,
    /// Out, with the reason's code (a screen reason, `review`, `no_quorum`, `no_reviewers`).
    Rejected {
        /// Why.
        reason: String,
    },
}

/// A screener's rejection, kept for the item's page (and for the panel of an appeal).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ScreenNote {
    /// Why.
    pub reason: RejectReason,
    /// For a duplicate: the earlier item.
    pub duplicate_of: Option<u32>,
    /// The screener's words.
    pub detail: String,
}

/// A submitted item.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Item {
    /// Who submitted it, and is paid if it is accepted.
    pub contributor: Address,
    /// blake3 of its bytes.
    pub hash: Hash,
    /// Its length.
    pub size: u32,
    /// Height of submission.
    pub submitted: u64,
    /// The contributor's bond.
    #[serde(with = "serde_u128")]
    pub bond: Amount,
    /// What it still reserves from the bounty's budget.
    #[serde(with = "serde_u128")]
    pub hold: Amount,
    /// Its screener, while that one's review stake stays locked (until the item is decided, so
    /// an overturned rejection can slash it).
    pub screener: Option<Address>,
    /// The screener drawn for it, kept off its panel even after missing its window.
    pub screened_by: Option<Address>,
    /// The screener's rejection, if any.
    pub screen: Option<ScreenNote>,
    /// The contributor appealed the screener's rejection.
    pub appealed: bool,
    /// Where it is.
    pub stage: Stage,
}

impl Item {
    /// Accepted or rejected.
    pub fn decided(&self) -> bool {
        matches!(self.stage, Stage::Accepted | Stage::Rejected { .. })
    }
}

/// A reviewer's stake in the data market.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Reviewer {
    /// Review stake.
    #[serde(with = "serde_u128")]
    pub stake: Amount,
    /// The part locked by open votes and screenings (never above `stake`).
    #[serde(with = "serde_u128")]
    pub locked: Amount,
    /// Open votes and screenings that lock it.
    pub seats: u32,
}

impl Reviewer {
    /// Stake not locked.
    pub fn free(&self) -> Amount {
        self.stake.saturating_sub(self.locked)
    }
}

/// A step of the data market due at a height, run at the end of that height's block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum DataTask {
    /// Draw the item's screener.
    DrawScreener(BountyId, u32),
    /// The screener's window ends.
    ScreenDue(BountyId, u32),
    /// The appeal window ends.
    AppealDue(BountyId, u32),
    /// Draw the item's panel.
    DrawPanel(BountyId, u32),
    /// Count the panel's votes.
    Tally(BountyId, u32),
    /// Settle the bounty.
    Settle(BountyId),
}

/// A settled bounty's accepted items: who contributed, what cites it, what it has earned.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Dataset {
    /// Its root ([`agora_types::merkle_root`] over [`agora_types::dataset_leaf`]s).
    pub root: Hash,
    /// The bounty it came from.
    pub bounty: BountyId,
    /// Accepted items.
    pub items: u32,
    /// Distinct contributors (each with its accepted items under
    /// [`crate::dataset_contributors_key`], so a royalty payment does not re-encode them).
    pub contributors: u32,
    /// The bounty's royalty, in basis points.
    pub royalty_bps: u16,
    /// Royalties received.
    #[serde(with = "serde_u128")]
    pub received: Amount,
    /// Royalties claimed by contributors.
    #[serde(with = "serde_u128")]
    pub claimed: Amount,
    /// Citations by models' registrants, providers, neurons and jobs (each time one cites it).
    pub cited_by_models: u32,
    /// See `cited_by_models`.
    pub cited_by_providers: u32,
    /// See `cited_by_models`.
    pub cited_by_neurons: u32,
    /// See `cited_by_models`.
    pub cited_by_jobs: u64,
    /// The latest citations, newest last (at most [`RECENT_CITATIONS`]).
    pub recent: Vec<CiteTarget>,
}

/// How many of a dataset's latest citations it lists.
pub const RECENT_CITATIONS: usize = 32;

impl Dataset {
    /// What `contributor` is owed over everything received: `received × its items / items`,
    /// rounded down, computed without overflow. `contributors` is the dataset's list, sorted.
    pub fn share_of(&self, contributors: &[(Address, u32)], contributor: &Address) -> Amount {
        let Ok(i) = contributors.binary_search_by(|(a, _)| a.cmp(contributor)) else {
            return 0;
        };
        let n = Amount::from(contributors[i].1);
        let total = Amount::from(self.items.max(1));
        // received = q·total + r, so received·n/total = q·n + r·n/total with r·n < total².
        let q = self.received / total;
        let r = self.received % total;
        q * n + r * n / total
    }
}

/// A bounty's settlement under way: the items read so far (a block reads a bounded number).
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SettleProgress {
    /// The next item to read.
    pub next: u32,
    /// The accepted items' leaves so far.
    pub leaves: Vec<Hash>,
    /// Each contributor and its accepted items so far, by address.
    pub contributors: Vec<(Address, u32)>,
}

/// Who registered a model, and when: only it may cite datasets for the model, in that block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ModelOwner {
    /// The registrant.
    pub owner: Address,
    /// Height of registration.
    pub height: u64,
}

//! The data market's answers as functions of a committed state: bounties, items, datasets and
//! their proofs, reviewers and what they are drawn for. Each is what the HTTP routes, the CLI
//! and the web app show.

use agora_state::{
    Bounty, DataParams, Dataset, Item, Reviewer, Stage, StateRead, bounty_key, citation_key,
    data_params_key, dataset_contributors_key, dataset_key, item_key, next_bounty_key,
    reviewer_key,
};
use agora_store::Snapshot;
use agora_types::{Address, CiteTarget, Hash, MerkleProof, dataset_leaf, merkle_root};
use borsh::BorshDeserialize;
use serde::{Deserialize, Serialize};

/// Most bounties a list shows, newest first.
pub const LIST_LIMIT: u64 = 200;

/// Most open seats listed for a reviewer (the chain's `max_reviewer_seats` bounds them).
const SEATS_LIMIT: usize = 100_000;

/// A view failed: the store, or a value that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("reading the data market's state: {0}")]
pub struct ViewError(pub String);

type Result<T> = std::result::Result<T, ViewError>;

fn get<T: BorshDeserialize>(snap: &Snapshot, key: &[u8]) -> Result<Option<T>> {
    snap.get(key)
        .map_err(|e| ViewError(e.to_string()))?
        .map(|b| borsh::from_slice(&b).map_err(|e| ViewError(e.to_string())))
        .transpose()
}

fn height(snap: &Snapshot) -> Result<u64> {
    Ok(snap
        .height()
        .map_err(|e| ViewError(e.to_string()))?
        .unwrap_or(0))
}

/// The bounties, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BountiesResponse {
    /// Height of the state read.
    pub height: u64,
    /// The data market's parameters.
    pub params: DataParams,
    /// At most [`LIST_LIMIT`].
    pub bounties: Vec<Bounty>,
}

/// One item, as the chain has it, and whether this node holds its content.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemView {
    /// Its index in the bounty.
    pub index: u32,
    /// The chain's record.
    pub item: Item,
    /// This node's blob store holds its bytes.
    pub held: bool,
}

/// A bounty and its items.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BountyResponse {
    /// Height of the state read.
    pub height: u64,
    /// The bounty.
    pub bounty: Bounty,
    /// Its items still on chain (a settled bounty keeps only the accepted ones).
    pub items: Vec<ItemView>,
}

/// A dataset: its bounty's terms, contributors, citations and royalties.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetResponse {
    /// Height of the state read.
    pub height: u64,
    /// The dataset.
    pub dataset: Dataset,
    /// Each contributor and its accepted items.
    pub contributors: Vec<(Address, u32)>,
    /// The bounty's description.
    pub description: String,
}

/// One item of a dataset with its inclusion proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetItem {
    /// The bounty.
    pub bounty: u64,
    /// Its index in the bounty.
    pub index: u32,
    /// blake3 of its bytes.
    pub hash: Hash,
    /// Who contributed it.
    pub contributor: Address,
    /// Proof that [`dataset_leaf`]`(bounty, index, contributor, hash)` is under the root.
    pub proof: MerkleProof,
}

/// A dataset's items in order, each with its proof; the root is recomputed from the chain's
/// items and must be the dataset's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetItems {
    /// The root.
    pub root: Hash,
    /// The items.
    pub items: Vec<DatasetItem>,
}

/// What a reviewer is drawn for now.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Assignment {
    /// The bounty.
    pub bounty: u64,
    /// The item.
    pub index: u32,
    /// `screen`, `commit` or `reveal`.
    pub step: String,
    /// Last height for it.
    pub until: u64,
    /// First height for it (a reveal waits for the commit window to close).
    pub from: u64,
    /// The item's hash, to fetch and check its bytes.
    pub hash: Hash,
}

/// A reviewer's stake and open assignments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReviewerResponse {
    /// Height of the state read.
    pub height: u64,
    /// Its stake (zero when it is not a reviewer).
    pub reviewer: Reviewer,
    /// What it is drawn for.
    pub assignments: Vec<Assignment>,
}

/// The data market's parameters.
pub fn params(snap: &Snapshot) -> Result<DataParams> {
    Ok(get(snap, &data_params_key())?.unwrap_or_default())
}

/// The newest bounties.
pub fn bounties(snap: &Snapshot) -> Result<BountiesResponse> {
    let next: u64 = get(snap, &next_bounty_key())?.unwrap_or(0);
    let mut out = Vec::new();
    for id in (next.saturating_sub(LIST_LIMIT)..next).rev() {
        if let Some(b) = get::<Bounty>(snap, &bounty_key(id))? {
            out.push(b);
        }
    }
    Ok(BountiesResponse {
        height: height(snap)?,
        params: params(snap)?,
        bounties: out,
    })
}

/// A bounty's items on chain, in order.
pub fn items(snap: &Snapshot, bounty: &Bounty) -> Result<Vec<(u32, Item)>> {
    let mut out = Vec::new();
    for i in 0..bounty.items {
        if let Some(it) = get::<Item>(snap, &item_key(bounty.id, i))? {
            out.push((i, it));
        }
    }
    Ok(out)
}

/// One bounty and its items; `held` says which contents this node holds.
pub fn bounty(
    snap: &Snapshot,
    id: u64,
    held: impl Fn(&Hash) -> bool,
) -> Result<Option<BountyResponse>> {
    let Some(b) = get::<Bounty>(snap, &bounty_key(id))? else {
        return Ok(None);
    };
    let items = items(snap, &b)?
        .into_iter()
        .map(|(index, item)| ItemView {
            index,
            held: held(&item.hash),
            item,
        })
        .collect();
    Ok(Some(BountyResponse {
        height: height(snap)?,
        bounty: b,
        items,
    }))
}

/// One item.
pub fn item(snap: &Snapshot, bounty: u64, index: u32) -> Result<Option<Item>> {
    get(snap, &item_key(bounty, index))
}

/// A dataset.
pub fn dataset(snap: &Snapshot, root: &Hash) -> Result<Option<DatasetResponse>> {
    let Some(d) = get::<Dataset>(snap, &dataset_key(root))? else {
        return Ok(None);
    };
    let contributors = get(snap, &dataset_contributors_key(root))?.unwrap_or_default();
    let description = get::<Bounty>(snap, &bounty_key(d.bounty))?
        .map(|b| b.spec.description)
        .unwrap_or_default();
    Ok(Some(DatasetResponse {
        height: height(snap)?,
        dataset: d,
        contributors,
        description,
    }))
}

/// A dataset's items with their proofs, rebuilt from the chain's accepted items. `None` when
/// there is no such dataset.
pub fn dataset_items(snap: &Snapshot, root: &Hash) -> Result<Option<DatasetItems>> {
    let Some(d) = get::<Dataset>(snap, &dataset_key(root))? else {
        return Ok(None);
    };
    let Some(b) = get::<Bounty>(snap, &bounty_key(d.bounty))? else {
        return Err(ViewError(format!("dataset {root}: its bounty is missing")));
    };
    let accepted: Vec<(u32, Item)> = items(snap, &b)?
        .into_iter()
        .filter(|(_, it)| it.stage == Stage::Accepted)
        .collect();
    let leaves: Vec<Hash> = accepted
        .iter()
        .map(|(i, it)| dataset_leaf(b.id, *i, &it.contributor, &it.hash))
        .collect();
    if merkle_root(&leaves) != *root {
        return Err(ViewError(format!(
            "dataset {root}: the accepted items do not make its root"
        )));
    }
    let items = accepted
        .iter()
        .zip(MerkleProof::all(&leaves))
        .map(|((i, it), proof)| DatasetItem {
            bounty: b.id,
            index: *i,
            hash: it.hash,
            contributor: it.contributor,
            proof,
        })
        .collect();
    Ok(Some(DatasetItems { root: *root, items }))
}

/// What `target` cites (as `sender` cited it).
pub fn citations(snap: &Snapshot, target: &CiteTarget, sender: &Address) -> Result<Vec<Hash>> {
    Ok(get(snap, &citation_key(target, sender))?.unwrap_or_default())
}

/// A reviewer and what it is drawn for.
pub fn reviewer(snap: &Snapshot, who: &Address) -> Result<ReviewerResponse> {
    let reviewer: Reviewer = get(snap, &reviewer_key(who))?.unwrap_or_default();
    let height_now = height(snap)?;
    let mut assignments = Vec::new();
    let mut prefix = b"dma/".to_vec();
    prefix.extend_from_slice(&who.0);
    let seats = snap
        .scan_prefix(&prefix, SEATS_LIMIT)
        .map_err(|e| ViewError(e.to_string()))?;
    for (k, _) in seats {
        let (Some(b), Some(i)) = (
            k.get(24..32)
                .and_then(|x| x.try_into().ok())
                .map(u64::from_be_bytes),
            k.get(32..36)
                .and_then(|x| x.try_into().ok())
                .map(u32::from_be_bytes),
        ) else {
            continue;
        };
        let Some(it) = get::<Item>(snap, &item_key(b, i))? else {
            continue;
        };
        let (step, from, until) = match &it.stage {
            Stage::Screening { screener, deadline } if screener == who => {
                ("screen", it.submitted + 1, *deadline)
            }
            Stage::Voting {
                commit_deadline,
                reveal_deadline,
                seats,
            } => match seats.iter().find(|s| s.reviewer == *who) {
                // A commit is due only while its window is open.
                Some(s) if s.commitment.is_none() && height_now <= *commit_deadline => {
                    ("commit", 0, *commit_deadline)
                }
                Some(s) if s.commitment.is_some() && s.accept.is_none() => {
                    ("reveal", commit_deadline + 1, *reveal_deadline)
                }
                _ => continue,
            },
            _ => continue,
        };
        assignments.push(Assignment {
            bounty: b,
            index: i,
            step: step.into(),
            from,
            until,
            hash: it.hash,
        });
    }
    Ok(ReviewerResponse {
        height: height(snap)?,
        reviewer,
        assignments,
    })
}

/// Hashes of every item on chain not rejected (what the blob store keeps: a rejected item's
/// bytes are never needed again).
pub fn live_hashes(snap: &Snapshot) -> Result<std::collections::BTreeSet<Hash>> {
    let entries = snap
        .scan_prefix(b"dmi/", usize::MAX)
        .map_err(|e| ViewError(e.to_string()))?;
    Ok(entries
        .into_iter()
        .filter_map(|(_, v)| borsh::from_slice::<Item>(&v).ok())
        .filter(|it| !matches!(it.stage, Stage::Rejected { .. }))
        .map(|it| it.hash)
        .collect())
}

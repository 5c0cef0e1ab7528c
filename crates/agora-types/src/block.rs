use crate::vrf::{VrfOutput, VrfProof};
use crate::{Address, Hash, PublicKey, SignedTransaction};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

/// Most bytes of encoded transactions in one block: well below what a peer accepts in one
/// proposal stream (64 MiB) or one sync message (16 MiB, which holds at least one block and its
/// certificate), so that every block a proposer can build is one every peer can receive.
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// What a block commits to. Its hash is the block's hash.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct BlockHeader {
    /// The chain this block belongs to.
    pub chain_id: String,
    /// 0 for genesis, then +1 per block.
    pub height: u64,
    /// Milliseconds since the Unix epoch, from the proposer's clock; monotone.
    pub time_ms: u64,
    /// Hash of the previous block's header ([`Hash::ZERO`] for genesis).
    pub prev_hash: Hash,
    /// Merkle root of the transaction hashes, in block order.
    pub tx_root: Hash,
    /// Root of the authenticated state after executing this block.
    pub state_root: Hash,
    /// Validator that proposed the block; receives the fees.
    pub proposer: Address,
    /// The proposer's public key (`proposer` is its address).
    pub proposer_key: PublicKey,
    /// The block's randomness, from which the chain draws checks and committees: the proposer's
    /// VRF output on the parent's seed ([`BlockHeader::seed_input`]). Nobody can choose it,
    /// the proposer included: its key gives exactly one (DESIGN.md §6).
    pub seed: Hash,
    /// Proof that `seed` is that output ([`crate::vrf`]).
    pub seed_proof: VrfProof,
}

impl BlockHeader {
    /// `blake3` of the header's borsh encoding.
    pub fn hash(&self) -> Hash {
        Hash::digest(&borsh::to_vec(self).expect("borsh encoding into a Vec"))
    }

    /// What the proposer of block `height` proves its VRF on: the chain, the height and the
    /// parent's seed, and nothing a proposer chooses (not the block's contents, time or round),
    /// so that each validator has one seed per height.
    pub fn seed_input(chain_id: &str, height: u64, parent_seed: &Hash) -> Vec<u8> {
        let mut alpha = b"agora/block-seed/v1".to_vec();
        alpha.extend_from_slice(&(chain_id.len() as u64).to_le_bytes());
        alpha.extend_from_slice(chain_id.as_bytes());
        alpha.extend_from_slice(&height.to_le_bytes());
        alpha.extend_from_slice(&parent_seed.0);
        alpha
    }

    /// The seed a VRF output gives (its first 32 bytes).
    pub fn seed_of(output: &VrfOutput) -> Hash {
        Hash(output[..32].try_into().expect("32 bytes"))
    }

    /// The genesis block's seed: fixed by the genesis itself.
    pub fn genesis_seed(chain_id: &str, state_root: &Hash) -> Hash {
        let mut bytes = b"agora/genesis-seed/v1".to_vec();
        bytes.extend_from_slice(chain_id.as_bytes());
        bytes.extend_from_slice(&state_root.0);
        Hash::digest(&bytes)
    }
}

/// A header and the transactions it commits to.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// Transactions, executed in this order.
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    /// The block hash (of its header).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Merkle root of these transactions' hashes.
    pub fn compute_tx_root(txs: &[SignedTransaction]) -> Hash {
        let hashes: Vec<Hash> = txs.iter().map(SignedTransaction::hash).collect();
        merkle_root(&hashes)
    }
}

fn merkle_leaf(h: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0]);
    hasher.update(&h.0);
    Hash(*hasher.finalize().as_bytes())
}

fn merkle_node(l: &Hash, r: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[1]);
    hasher.update(&l.0);
    hasher.update(&r.0);
    Hash(*hasher.finalize().as_bytes())
}

/// The next level up: pairs hashed, an odd last node carried up unchanged.
fn merkle_up(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => merkle_node(l, r),
            [one] => *one,
            _ => unreachable!("chunks(2) yields one or two"),
        })
        .collect()
}

/// Binary Merkle root with domain-separated leaves and nodes (so a node can never pass for a
/// leaf); an odd node is carried up unchanged. The root of nothing is [`Hash::ZERO`].
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves.iter().map(merkle_leaf).collect();
    while level.len() > 1 {
        level = merkle_up(&level);
    }
    level[0]
}

/// One step of a [`MerkleProof`]: the sibling met on the way up, and on which side it is.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    serde::Deserialize,
)]
pub struct MerkleStep {
    pub sibling: Hash,
    /// The sibling is the left one.
    pub left: bool,
}

/// That a leaf is among those of a [`merkle_root`] (a dataset's item among its accepted
/// items): the siblings from the leaf up (levels where the node was carried up have none).
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
pub struct MerkleProof {
    pub steps: Vec<MerkleStep>,
}

/// Most steps a proof may hold: a tree of 2^64 leaves is 64 levels.
pub const MAX_MERKLE_STEPS: usize = 64;

impl MerkleProof {
    /// The proof for leaf `index` of `leaves`; `None` past the end.
    pub fn of(leaves: &[Hash], index: usize) -> Option<MerkleProof> {
        if index >= leaves.len() {
            return None;
        }
        let mut level: Vec<Hash> = leaves.iter().map(merkle_leaf).collect();
        let mut i = index;
        let mut steps = Vec::new();
        while level.len() > 1 {
            let sibling = i ^ 1;
            if let Some(h) = level.get(sibling) {
                steps.push(MerkleStep {
                    sibling: *h,
                    left: sibling < i,
                });
            }
            level = merkle_up(&level);
            i /= 2;
        }
        Some(MerkleProof { steps })
    }

    /// The proof of every leaf of `leaves`, in order, building the tree's levels once.
    pub fn all(leaves: &[Hash]) -> Vec<MerkleProof> {
        let mut levels: Vec<Vec<Hash>> = vec![leaves.iter().map(merkle_leaf).collect()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let up = merkle_up(levels.last().expect("a level"));
            levels.push(up);
        }
        (0..leaves.len())
            .map(|index| {
                let mut i = index;
                let mut steps = Vec::new();
                for level in &levels[..levels.len() - 1] {
                    let sibling = i ^ 1;
                    if let Some(h) = level.get(sibling) {
                        steps.push(MerkleStep {
                            sibling: *h,
                            left: sibling < i,
                        });
                    }
                    i /= 2;
                }
                MerkleProof { steps }
            })
            .collect()
    }

    /// The root this proof gives for `leaf`.
    pub fn root_of(&self, leaf: &Hash) -> Hash {
        self.steps.iter().fold(merkle_leaf(leaf), |node, step| {
            if step.left {
                merkle_node(&step.sibling, &node)
            } else {
                merkle_node(&node, &step.sibling)
            }
        })
    }

    /// Whether `leaf` is among the leaves of `root`.
    pub fn verify(&self, root: &Hash, leaf: &Hash) -> bool {
        self.steps.len() <= MAX_MERKLE_STEPS && self.root_of(leaf) == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn every_leaf_has_a_proof_and_nothing_else_passes(
            n in 1usize..70,
            seed in proptest::prelude::any::<u8>(),
            flip in proptest::prelude::any::<usize>(),
        ) {
            let leaves: Vec<Hash> = (0..n)
                .map(|i| Hash::digest(&[seed, (i % 256) as u8, (i / 256) as u8]))
                .collect();
            let root = merkle_root(&leaves);
            let all = MerkleProof::all(&leaves);
            proptest::prop_assert_eq!(all.len(), n);
            for (i, leaf) in leaves.iter().enumerate() {
                let proof = MerkleProof::of(&leaves, i).unwrap();
                // Built at once or one by one, the same proof.
                proptest::prop_assert_eq!(&all[i], &proof);
                proptest::prop_assert!(proof.verify(&root, leaf));
                // Another item, or the proof with one bit changed, does not pass.
                proptest::prop_assert!(!proof.verify(&root, &Hash::digest(b"not an item")));
                if !proof.steps.is_empty() {
                    let mut bad = proof.clone();
                    let k = flip % bad.steps.len();
                    bad.steps[k].sibling.0[flip % 32] ^= 1;
                    proptest::prop_assert!(!bad.verify(&root, leaf));
                    let mut swapped = proof.clone();
                    swapped.steps[k].left = !swapped.steps[k].left;
                    proptest::prop_assert!(!swapped.verify(&root, leaf));
                }
                // An inner node never passes for a leaf.
                if let Some(step) = proof.steps.first() {
                    let inner = if step.left {
                        merkle_node(&step.sibling, &merkle_leaf(leaf))
                    } else {
                        merkle_node(&merkle_leaf(leaf), &step.sibling)
                    };
                    let rest = MerkleProof { steps: proof.steps[1..].to_vec() };
                    proptest::prop_assert!(!rest.verify(&root, &inner));
                }
            }
            proptest::prop_assert!(MerkleProof::of(&leaves, n).is_none());
        }
    }

    #[test]
    fn merkle_root_depends_on_every_leaf_and_order() {
        let leaves: Vec<Hash> = (0..5u8).map(|i| Hash([i; 32])).collect();
        let root = merkle_root(&leaves);
        for i in 0..leaves.len() {
            let mut changed = leaves.clone();
            changed[i] = Hash([99; 32]);
            assert_ne!(merkle_root(&changed), root);
        }
        let mut swapped = leaves.clone();
        swapped.swap(0, 1);
        assert_ne!(merkle_root(&swapped), root);
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        assert_ne!(
            merkle_root(&leaves[..1]),
            leaves[0],
            "a leaf is hashed with its domain tag"
        );
    }
}

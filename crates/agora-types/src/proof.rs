//! Merkle proofs of the state tree (the sparse Merkle tree of `agora-store`), checkable by
//! anyone who knows a block's state root: a light client, a wallet, a web page.
//!
//! Hashes: `leaf = blake3(0x00 ‖ key_hash ‖ value_hash)`, `node = blake3(0x01 ‖ left ‖ right)`, and an
//! empty subtree is all zeros. Domain tags keep a leaf from passing for a node.

use crate::Hash;
use serde::Serialize;

/// A leaf's hash.
pub fn leaf_hash(key: &Hash, value_hash: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0]);
    h.update(&key.0);
    h.update(&value_hash.0);
    Hash(*h.finalize().as_bytes())
}

/// An internal node's hash.
pub fn internal_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[1]);
    h.update(&left.0);
    h.update(&right.0);
    Hash(*h.finalize().as_bytes())
}

/// Bit `depth` of `key`, from the most significant.
pub fn bit(key: &Hash, depth: usize) -> bool {
    (key.0[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

/// A Merkle proof that a key has a given value, or has none, under a state root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Proof {
    /// Sibling hashes from the root down to the leaf's depth.
    pub siblings: Vec<Hash>,
    /// The leaf where the path ends (`key_hash`, `value_hash`), or none for an empty subtree.
    pub leaf: Option<(Hash, Hash)>,
}

impl Proof {
    /// Checks that under `root` the state key `key` holds `value` (`None`: holds nothing).
    pub fn verify(&self, root: &Hash, key: &[u8], value: Option<&[u8]>) -> bool {
        let key_hash = Hash::digest(key);
        let depth = self.siblings.len();
        if depth > 256 {
            return false;
        }
        let start = match (&self.leaf, value) {
            (Some((k, v)), Some(value)) => {
                if *k != key_hash || *v != Hash::digest(value) {
                    return false;
                }
                leaf_hash(k, v)
            }
            (Some((k, v)), None) => {
                // Another key's leaf where ours would be: ours is absent if it shares the path.
                if *k == key_hash || (0..depth).any(|d| bit(k, d) != bit(&key_hash, d)) {
                    return false;
                }
                leaf_hash(k, v)
            }
            (None, None) => Hash::ZERO,
            (None, Some(_)) => return false,
        };
        let mut h = start;
        for d in (0..depth).rev() {
            h = if bit(&key_hash, d) {
                internal_hash(&self.siblings[d], &h)
            } else {
                internal_hash(&h, &self.siblings[d])
            };
        }
        h == *root
    }
}

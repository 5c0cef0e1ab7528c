//! A compact sparse Merkle tree over 256-bit key hashes.
//!
//! Each leaf sits at the shortest prefix of its key hash that no other key shares, so a tree of n
//! keys is about log2(n) deep and an update rehashes O(log n) nodes. Nodes are stored by position
//! (depth, masked prefix); only the latest version is kept, so proofs are served against the latest
//! committed root, which is the state root of the latest block.
//!
//! Hashes: `leaf = blake3(0x00 ‖ key_hash ‖ value_hash)`, `node = blake3(0x01 ‖ left ‖ right)`, and an
//! empty subtree is all zeros. Domain tags keep a leaf from passing for a node.

use agora_types::Hash;
pub use agora_types::proof::Proof;
use agora_types::proof::{bit, internal_hash, leaf_hash};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;

/// Position of a node: big-endian depth, then the key prefix with bits past `depth` zeroed.
pub(crate) type NodeKey = [u8; 34];

/// A stored node.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) enum Node {
    /// One key; `value_hash` is `blake3` of the value.
    Leaf { key: Hash, value_hash: Hash },
    /// Two subtrees (one may be empty, but together they hold at least two leaves).
    Internal { left: Hash, right: Hash },
}

impl Node {
    pub(crate) fn hash(&self) -> Hash {
        match self {
            Node::Leaf { key, value_hash } => leaf_hash(key, value_hash),
            Node::Internal { left, right } => internal_hash(left, right),
        }
    }
}

fn with_bit(key: &Hash, depth: usize, value: bool) -> Hash {
    let mut out = *key;
    let mask = 1u8 << (7 - depth % 8);
    if value {
        out.0[depth / 8] |= mask;
    } else {
        out.0[depth / 8] &= !mask;
    }
    out
}

pub(crate) fn node_key(depth: usize, key: &Hash) -> NodeKey {
    let mut out = [0u8; 34];
    out[..2].copy_from_slice(&(depth as u16).to_be_bytes());
    let full = depth / 8;
    out[2..2 + full].copy_from_slice(&key.0[..full]);
    if !depth.is_multiple_of(8) && full < 32 {
        let mask = 0xFFu8 << (8 - depth % 8);
        out[2 + full] = key.0[full] & mask;
    }
    out
}

/// Where the tree reads its committed nodes from.
pub(crate) trait NodeSource {
    type Error;
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, Self::Error>;
}

/// A subtree after an update.
enum Sub {
    Empty,
    /// A leaf not yet written anywhere: its parent decides its position.
    Leaf(Hash, Hash),
    /// An internal node already written at its position.
    Internal(Hash),
    /// A subtree the update did not touch; its root stays where it is.
    Unchanged(Hash),
}

impl Sub {
    fn hash(&self) -> Hash {
        match self {
            Sub::Empty => Hash::ZERO,
            Sub::Leaf(k, v) => leaf_hash(k, v),
            Sub::Internal(h) | Sub::Unchanged(h) => *h,
        }
    }
}

/// Computes a batch update: the node writes and the new root.
pub(crate) struct Updater<'a, S> {
    src: &'a S,
    /// Position → new node, or `None` to delete.
    pub(crate) changes: BTreeMap<NodeKey, Option<Node>>,
}

impl<'a, S: NodeSource> Updater<'a, S> {
    pub(crate) fn new(src: &'a S) -> Self {
        Updater {
            src,
            changes: BTreeMap::new(),
        }
    }

    /// Applies `updates` (sorted by key hash, unique; `None` deletes) to the tree with root `root`,
    /// returning the new root.
    pub(crate) fn apply(
        &mut self,
        root: Hash,
        updates: &[(Hash, Option<Hash>)],
    ) -> Result<Hash, S::Error> {
        if updates.is_empty() {
            return Ok(root);
        }
        let existing = if root == Hash::ZERO {
            None
        } else {
            self.src.node(&node_key(0, &Hash::ZERO))?
        };
        let sub = self.update(0, &Hash::ZERO, existing, updates)?;
        if let Sub::Leaf(k, v) = sub {
            self.changes.insert(
                node_key(0, &Hash::ZERO),
                Some(Node::Leaf {
                    key: k,
                    value_hash: v,
                }),
            );
        }
        Ok(sub.hash())
    }

    fn update(
        &mut self,
        depth: usize,
        path: &Hash,
        existing: Option<Node>,
        updates: &[(Hash, Option<Hash>)],
    ) -> Result<Sub, S::Error> {
        if existing.is_some() {
            self.changes.insert(node_key(depth, path), None);
        }
        match existing {
            None => {
                let leaves: Vec<(Hash, Hash)> = updates
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| (*k, v)))
                    .collect();
                Ok(self.build(depth, path, &leaves))
            }
            Some(Node::Leaf { key, value_hash }) => {
                let mut leaves: Vec<(Hash, Hash)> = updates
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| (*k, v)))
                    .collect();
                if updates.binary_search_by(|(k, _)| k.cmp(&key)).is_err() {
                    let pos = leaves.partition_point(|(k, _)| *k < key);
                    leaves.insert(pos, (key, value_hash));
                }
                Ok(self.build(depth, path, &leaves))
            }
            Some(Node::Internal { left, right }) => {
                let split = updates.partition_point(|(k, _)| !bit(k, depth));
                let (lu, ru) = updates.split_at(split);
                let l = self.child(depth, path, false, left, lu)?;
                let r = self.child(depth, path, true, right, ru)?;
                self.join(depth, path, l, r)
            }
        }
    }

    fn child(
        &mut self,
        depth: usize,
        path: &Hash,
        side: bool,
        hash: Hash,
        updates: &[(Hash, Option<Hash>)],
    ) -> Result<Sub, S::Error> {
        if updates.is_empty() {
            return Ok(if hash == Hash::ZERO {
                Sub::Empty
            } else {
                Sub::Unchanged(hash)
            });
        }
        let child_path = with_bit(path, depth, side);
        let existing = if hash == Hash::ZERO {
            None
        } else {
            self.src.node(&node_key(depth + 1, &child_path))?
        };
        self.update(depth + 1, &child_path, existing, updates)
    }

    /// Combines two updated children into the subtree at (depth, path).
    fn join(&mut self, depth: usize, path: &Hash, l: Sub, r: Sub) -> Result<Sub, S::Error> {
        let lp = with_bit(path, depth, false);
        let rp = with_bit(path, depth, true);
        match (l, r) {
            (Sub::Empty, Sub::Empty) => Ok(Sub::Empty),
            (Sub::Empty, Sub::Leaf(k, v)) | (Sub::Leaf(k, v), Sub::Empty) => Ok(Sub::Leaf(k, v)),
            (Sub::Empty, Sub::Unchanged(h)) => self.lift(depth, path, &rp, h, false),
            (Sub::Unchanged(h), Sub::Empty) => self.lift(depth, path, &lp, h, true),
            (l, r) => {
                for (sub, child) in [(&l, &lp), (&r, &rp)] {
                    if let Sub::Leaf(k, v) = sub {
                        self.changes.insert(
                            node_key(depth + 1, child),
                            Some(Node::Leaf {
                                key: *k,
                                value_hash: *v,
                            }),
                        );
                    }
                }
                let node = Node::Internal {
                    left: l.hash(),
                    right: r.hash(),
                };
                let hash = node.hash();
                self.changes.insert(node_key(depth, path), Some(node));
                Ok(Sub::Internal(hash))
            }
        }
    }

    /// The other side became empty: a lone untouched leaf moves up; an untouched internal node
    /// stays where it is under a new parent.
    fn lift(
        &mut self,
        depth: usize,
        path: &Hash,
        child: &Hash,
        hash: Hash,
        child_is_left: bool,
    ) -> Result<Sub, S::Error> {
        let child_key = node_key(depth + 1, child);
        match self.src.node(&child_key)? {
            Some(Node::Leaf { key, value_hash }) => {
                self.changes.insert(child_key, None);
                Ok(Sub::Leaf(key, value_hash))
            }
            _ => {
                let node = if child_is_left {
                    Node::Internal {
                        left: hash,
                        right: Hash::ZERO,
                    }
                } else {
                    Node::Internal {
                        left: Hash::ZERO,
                        right: hash,
                    }
                };
                let h = node.hash();
                self.changes.insert(node_key(depth, path), Some(node));
                Ok(Sub::Internal(h))
            }
        }
    }

    /// Builds a fresh subtree from sorted leaves.
    fn build(&mut self, depth: usize, path: &Hash, leaves: &[(Hash, Hash)]) -> Sub {
        match leaves {
            [] => Sub::Empty,
            [(k, v)] => Sub::Leaf(*k, *v),
            _ => {
                let split = leaves.partition_point(|(k, _)| !bit(k, depth));
                let l = self.build(depth + 1, &with_bit(path, depth, false), &leaves[..split]);
                let r = self.build(depth + 1, &with_bit(path, depth, true), &leaves[split..]);
                // Neither side is `Unchanged`, so `join` never reads the source.
                match self.join(depth, path, l, r) {
                    Ok(sub) => sub,
                    Err(_) => unreachable!("join reads nothing for fresh subtrees"),
                }
            }
        }
    }
}

/// Walks from the root towards `key_hash`, collecting siblings.
pub(crate) fn prove<S: NodeSource>(
    src: &S,
    root: Hash,
    key_hash: &Hash,
) -> Result<Proof, S::Error> {
    let mut siblings = Vec::new();
    if root == Hash::ZERO {
        return Ok(Proof {
            siblings,
            leaf: None,
        });
    }
    let mut node = src.node(&node_key(0, key_hash))?;
    let mut depth = 0;
    loop {
        match node {
            None => {
                return Ok(Proof {
                    siblings,
                    leaf: None,
                });
            }
            Some(Node::Leaf { key, value_hash }) => {
                return Ok(Proof {
                    siblings,
                    leaf: Some((key, value_hash)),
                });
            }
            Some(Node::Internal { left, right }) => {
                let (next, sibling) = if bit(key_hash, depth) {
                    (right, left)
                } else {
                    (left, right)
                };
                siblings.push(sibling);
                if next == Hash::ZERO {
                    return Ok(Proof {
                        siblings,
                        leaf: None,
                    });
                }
                depth += 1;
                node = src.node(&node_key(depth, key_hash))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::{cell::RefCell, collections::BTreeMap, convert::Infallible};

    #[derive(Default)]
    struct Mem(RefCell<BTreeMap<NodeKey, Node>>, RefCell<Hash>);

    impl NodeSource for Mem {
        type Error = Infallible;
        fn node(&self, key: &NodeKey) -> Result<Option<Node>, Infallible> {
            Ok(self.0.borrow().get(key).cloned())
        }
    }

    impl Mem {
        fn apply(&self, updates: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Hash {
            let hashed: BTreeMap<Hash, Option<Hash>> = updates
                .iter()
                .map(|(k, v)| (Hash::digest(k), v.as_ref().map(|v| Hash::digest(v))))
                .collect();
            let hashed: Vec<_> = hashed.into_iter().collect();
            let root = *self.1.borrow();
            let mut up = Updater::new(self);
            let new_root = up.apply(root, &hashed).unwrap();
            let changes = up.changes;
            for (k, v) in changes {
                match v {
                    Some(n) => self.0.borrow_mut().insert(k, n),
                    None => self.0.borrow_mut().remove(&k),
                };
            }
            *self.1.borrow_mut() = new_root;
            new_root
        }
    }

    /// Reference: the root of a tree built from scratch over all live keys.
    fn fresh_root(map: &BTreeMap<Vec<u8>, Vec<u8>>) -> Hash {
        let m = Mem::default();
        m.apply(
            &map.iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Incremental updates give the same root as building from scratch (the root is a function
        /// of the contents, not of history), no stale nodes are left behind, and every key has a
        /// valid inclusion or exclusion proof.
        #[test]
        fn incremental_equals_fresh_and_proofs_verify(
            batches in proptest::collection::vec(
                proptest::collection::btree_map(0u8..40, proptest::option::of(any::<u8>()), 0..12),
                1..8,
            )
        ) {
            let tree = Mem::default();
            let mut live: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for batch in batches {
                let updates: BTreeMap<Vec<u8>, Option<Vec<u8>>> = batch
                    .into_iter()
                    .map(|(k, v)| (vec![k], v.map(|v| vec![v])))
                    .collect();
                for (k, v) in &updates {
                    match v { Some(v) => { live.insert(k.clone(), v.clone()); } None => { live.remove(k); } }
                }
                let root = tree.apply(&updates);
                prop_assert_eq!(root, fresh_root(&live));
                let leaves = tree.0.borrow().values().filter(|n| matches!(n, Node::Leaf { .. })).count();
                prop_assert_eq!(leaves, live.len(), "no stale leaves");
                for k in 0u8..40 {
                    let key = vec![k];
                    let proof = prove(&tree, root, &Hash::digest(&key)).unwrap();
                    let value = live.get(&key).map(Vec::as_slice);
                    prop_assert!(proof.verify(&root, &key, value));
                    // The same proof must not prove anything else.
                    prop_assert!(!proof.verify(&root, &key, Some(b"forged")));
                    if value.is_some() {
                        prop_assert!(!proof.verify(&root, &key, None));
                    }
                }
            }
        }
    }

    #[test]
    fn empty_tree_and_single_leaf() {
        let tree = Mem::default();
        assert_eq!(tree.apply(&BTreeMap::new()), Hash::ZERO);
        let root = tree.apply(&[(b"a".to_vec(), Some(b"1".to_vec()))].into_iter().collect());
        assert_eq!(root, leaf_hash(&Hash::digest(b"a"), &Hash::digest(b"1")));
        let root = tree.apply(&[(b"a".to_vec(), None)].into_iter().collect());
        assert_eq!(root, Hash::ZERO);
        assert!(tree.0.borrow().is_empty());
    }
}

use crate::{
    Error, Result,
    smt::{self, Node, NodeKey, NodeSource, Proof, Updater},
};
use agora_state::{Executed, Genesis, StateRead, WriteSet};
use agora_types::vrf::VrfProof;
use agora_types::{Address, Block, BlockHeader, Event, Hash, PublicKey, Receipt};
use borsh::{BorshDeserialize, BorshSerialize};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use std::{
    collections::BTreeMap,
    convert::Infallible,
    path::Path,
    sync::{Arc, RwLock},
};

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_HASHES: TableDefinition<'_, &[u8], u64> = TableDefinition::new("block_hashes");
const TXS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("txs");
const RESULTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("results");
/// Height → the consensus engine's commit certificate of that block (network mode only; opaque
/// bytes here), so that lagging peers can be served decided blocks with their proof.
const CERTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("certificates");
/// An account's history: address ‖ height (big-endian) ‖ index (big-endian) → the transaction's
/// hash, for every account a transaction concerns ([`agora_types::Transaction::parties`]). Kept
/// beside the chain's data, not in the state: it is derived from the blocks and proves nothing.
const ACCOUNT_TXS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("account_txs");

const META_HEIGHT: &str = "height";
/// The version of the stored encodings (state values, blocks); bumped when they change.
const META_FORMAT: &str = "format";
/// Format 2: verification (checks, verifiers, job verification levels, block context seed).
/// Format 3: jobs keyed by their request's hash with their fee's state, checks with budgets,
/// convicted providers kept.
/// Format 4: block headers carry the proposer's key and the VRF seed with its proof.
const FORMAT_VERSION: u32 = 4;
const META_ROOT: &str = "state_root";
const META_CHAIN: &str = "chain_id";
/// The height through which [`ACCOUNT_TXS`] holds every block (absent: none yet). The index is
/// written after the blocks, in batches, off the commit's path ([`Store::index_accounts`]).
const META_ACCOUNT_INDEX: &str = "account_index_height";

fn account_tx_key(address: &Address, height: u64, index: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..20].copy_from_slice(&address.0);
    key[20..28].copy_from_slice(&height.to_be_bytes());
    key[28..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The history entries of `block`'s transactions.
fn account_entries(block: &Block) -> impl Iterator<Item = ([u8; 32], Hash)> + '_ {
    let height = block.header.height;
    block.txs.iter().enumerate().flat_map(move |(i, tx)| {
        let hash = tx.hash();
        tx.tx
            .parties()
            .into_iter()
            .map(move |a| (account_tx_key(&a, height, i as u32), hash))
    })
}

/// A transaction in an account's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountTx {
    /// Its block's height.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// Its hash.
    pub hash: Hash,
}

/// Where a committed transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxLocation {
    /// Block height.
    pub height: u64,
    /// Index in the block.
    pub index: u32,
}

/// Receipts and block-level events of one block.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockResults {
    /// One per transaction.
    pub receipts: Vec<Receipt>,
    /// Events of the block itself.
    pub block_events: Vec<Event>,
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        table,
        reason: e.to_string(),
    }
}

fn decode<T: BorshDeserialize>(table: &'static str, bytes: &[u8]) -> Result<T> {
    borsh::from_slice(bytes).map_err(|e| corrupt(table, e))
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec")
}

/// The sparse Merkle tree's nodes, kept in memory: they are derived from the state table (rebuilt
/// on open), so the per-block write to disk holds only the state itself. Written under a lock
/// together with each redb commit, so that a reader sees a tree and a state of the same height.
#[derive(Debug, Default)]
struct Tree {
    // Lookups only, never iterated: the map's order cannot reach consensus.
    #[allow(clippy::disallowed_types)]
    nodes: std::collections::HashMap<NodeKey, Node>,
    root: Hash,
    height: Option<u64>,
}

impl NodeSource for Tree {
    type Error = Infallible;
    fn node(&self, key: &NodeKey) -> std::result::Result<Option<Node>, Infallible> {
        Ok(self.nodes.get(key).cloned())
    }
}

impl Tree {
    fn apply(&mut self, changes: BTreeMap<NodeKey, Option<Node>>, root: Hash, height: u64) {
        for (k, node) in changes {
            match node {
                Some(node) => self.nodes.insert(k, node),
                None => self.nodes.remove(&k),
            };
        }
        self.root = root;
        self.height = Some(height);
    }
}

fn never<T>(r: std::result::Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => match e {},
    }
}

/// The node's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    tree: Arc<RwLock<Tree>>,
}

impl Store {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        for def in [STATE, TXS] {
            txn.open_table(def)?;
        }
        txn.open_table(META)?;
        txn.open_table(BLOCKS)?;
        txn.open_table(BLOCK_HASHES)?;
        txn.open_table(RESULTS)?;
        txn.open_table(CERTS)?;
        txn.open_table(ACCOUNT_TXS)?;
        {
            let mut meta = txn.open_table(META)?;
            let found = match meta.get(META_FORMAT)? {
                Some(v) => Some(decode::<u32>("meta", v.value())?),
                None => None,
            };
            let has_blocks = meta.get(META_HEIGHT)?.is_some();
            match found {
                Some(v) if v == FORMAT_VERSION => {}
                Some(v) => {
                    return Err(Error::Format {
                        found: v,
                        expected: FORMAT_VERSION,
                    });
                }
                // Data from before formats were recorded.
                None if has_blocks => {
                    return Err(Error::Format {
                        found: 1,
                        expected: FORMAT_VERSION,
                    });
                }
                None => {
                    let bytes = borsh::to_vec(&FORMAT_VERSION).expect("encode");
                    meta.insert(META_FORMAT, bytes.as_slice())?;
                }
            }
        }
        txn.commit()?;
        let tree = Self::rebuild_tree(&db)?;
        Ok(Store {
            db,
            tree: Arc::new(RwLock::new(tree)),
        })
    }

    /// Builds the Merkle tree from the state table and checks it against the committed root.
    fn rebuild_tree(db: &Database) -> Result<Tree> {
        let txn = db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let mut leaves = Vec::new();
        for item in state.iter()? {
            let (k, v) = item?;
            leaves.push((Hash::digest(k.value()), Some(Hash::digest(v.value()))));
        }
        leaves.sort_unstable_by_key(|l| l.0);
        let meta = txn.open_table(META)?;
        let stored_root = match meta.get(META_ROOT)? {
            Some(v) => decode::<Hash>("meta", v.value())?,
            None => Hash::ZERO,
        };
        let height = match meta.get(META_HEIGHT)? {
            Some(v) => Some(decode::<u64>("meta", v.value())?),
            None => None,
        };
        let mut tree = Tree::default();
        let mut up = Updater::new(&tree);
        let root = never(up.apply(Hash::ZERO, &leaves));
        let changes = up.changes;
        tree.apply(changes, root, 0);
        tree.height = height;
        if root != stored_root {
            return Err(corrupt(
                "state",
                format!(
                    "the state hashes to root {root}, but the last block committed {stored_root}"
                ),
            ));
        }
        Ok(tree)
    }

    /// Adds committed blocks, after the last one indexed, to the accounts' histories in one
    /// write: whole blocks until they make `max_entries` entries (at least one block, however
    /// many entries it makes), so that the write holds the store's one writer briefly. Returns
    /// the height the index now reaches (`None`: no block yet) and whether it has caught up with
    /// the chain. Many blocks per write: their entries are sorted together, so each page of the
    /// index is written once per batch.
    pub fn index_accounts(&self, max_entries: usize) -> Result<(Option<u64>, bool)> {
        let mut txn = self.db.begin_write()?;
        // Not synced on its own: the next block's commit (which is) persists it. A crash before
        // that loses this write whole (entries and height together), and it is done again.
        txn.set_durability(redb::Durability::None)
            .map_err(redb::Error::from)?;
        let (reached, done) = {
            let mut meta = txn.open_table(META)?;
            let indexed = match meta.get(META_ACCOUNT_INDEX)? {
                Some(v) => Some(decode::<u64>("meta", v.value())?),
                None => None,
            };
            let latest = match meta.get(META_HEIGHT)? {
                Some(v) => Some(decode::<u64>("meta", v.value())?),
                None => None,
            };
            let Some(latest) = latest else {
                return Ok((None, true));
            };
            let from = indexed.map_or(0, |h| h + 1);
            if from > latest {
                return Ok((indexed, true));
            }
            let blocks = txn.open_table(BLOCKS)?;
            let mut entries = Vec::new();
            let mut to = from;
            for item in blocks.range(from..=latest)? {
                let (h, v) = item?;
                let block: Block = decode("blocks", v.value())?;
                entries.extend(account_entries(&block));
                to = h.value();
                if entries.len() >= max_entries {
                    break;
                }
            }
            entries.sort_unstable_by_key(|(k, _)| *k);
            let mut index = txn.open_table(ACCOUNT_TXS)?;
            for (k, hash) in entries {
                index.insert(k.as_slice(), hash.0.as_slice())?;
            }
            meta.insert(META_ACCOUNT_INDEX, encode(&to).as_slice())?;
            (Some(to), to == latest)
        };
        txn.commit()?;
        Ok((reached, done))
    }

    /// A consistent read view of the latest committed block.
    pub fn snapshot(&self) -> Result<Snapshot> {
        // Opened under the tree's lock, so the tree and this view are of the same height.
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        let txn = self.db.begin_read()?;
        let height = tree.height;
        drop(tree);
        let state = txn.open_table(STATE)?;
        Ok(Snapshot {
            txn,
            state,
            tree: self.tree.clone(),
            height,
        })
    }

    /// Commits genesis as block 0 if the store is empty; otherwise checks that it holds the same
    /// chain. Returns block 0.
    pub fn init_genesis(&self, genesis: &Genesis) -> Result<Block> {
        let snap = self.snapshot()?;
        if let Some(stored) = snap.chain_id()? {
            if stored != genesis.chain_id {
                return Err(Error::WrongChain {
                    stored,
                    expected: genesis.chain_id.clone(),
                });
            }
            return snap
                .block(0)?
                .ok_or_else(|| corrupt("blocks", "genesis block missing"));
        }
        drop(snap);
        let writes = genesis.initial_writes()?;
        let staged = self.stage(&writes)?;
        let block = Block {
            header: BlockHeader {
                chain_id: genesis.chain_id.clone(),
                height: 0,
                time_ms: genesis.genesis_time_ms,
                prev_hash: Hash::ZERO,
                tx_root: Hash::ZERO,
                state_root: staged.state_root(),
                proposer: Address::default(),
                proposer_key: PublicKey([0; 32]),
                seed: BlockHeader::genesis_seed(&genesis.chain_id, &staged.state_root()),
                seed_proof: VrfProof::ZERO,
            },
            txs: Vec::new(),
        };
        staged.commit(&block, &Executed::default())?;
        Ok(block)
    }

    /// Computes the state root that `writes` would give over the latest committed state, without
    /// writing anything: how a proposed block is checked before it is decided. The result can be
    /// handed to [`Store::stage_prepared`] so the commit does not compute the tree again.
    pub fn prepare(&self, writes: &WriteSet) -> Prepared {
        let updates = leaf_updates(writes);
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        let mut up = Updater::new(&*tree);
        let root = never(up.apply(tree.root, &updates));
        Prepared {
            base_root: tree.root,
            base_height: tree.height,
            root,
            changes: up.changes,
        }
    }

    /// Starts the atomic write of a block: applies its state changes and computes the new state
    /// root. Nothing is visible to readers until [`Staged::commit`].
    pub fn stage(&self, writes: &WriteSet) -> Result<Staged> {
        self.stage_prepared(writes, None)
    }

    /// [`Store::stage`], reusing the tree changes of a [`Store::prepare`] of the same writes when
    /// they were computed over the state still committed (otherwise they are computed again).
    pub fn stage_prepared(&self, writes: &WriteSet, prepared: Option<Prepared>) -> Result<Staged> {
        let txn = self.db.begin_write()?;
        let updates = {
            let mut state = txn.open_table(STATE)?;
            let mut updates: Vec<(Hash, Option<Hash>)> = Vec::with_capacity(writes.len());
            for (k, v) in writes {
                match v {
                    Some(v) => {
                        state.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        state.remove(k.as_slice())?;
                    }
                }
                updates.push((Hash::digest(k), v.as_ref().map(|v| Hash::digest(v))));
            }
            updates.sort_unstable_by_key(|u| u.0);
            updates
        };
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        let (root, changes) = match prepared {
            Some(p) if p.base_root == tree.root && p.base_height == tree.height => {
                (p.root, p.changes)
            }
            _ => {
                let mut up = Updater::new(&*tree);
                let root = never(up.apply(tree.root, &updates));
                (root, up.changes)
            }
        };
        drop(tree);
        Ok(Staged {
            txn,
            root,
            changes,
            tree: self.tree.clone(),
            certificate: None,
        })
    }
}

/// The tree changes and root of a block's writes, computed over one committed state.
#[derive(Debug)]
pub struct Prepared {
    base_root: Hash,
    base_height: Option<u64>,
    root: Hash,
    changes: BTreeMap<NodeKey, Option<Node>>,
}

impl Prepared {
    /// The state root after the writes.
    pub fn state_root(&self) -> Hash {
        self.root
    }
}

/// The SMT leaf updates of a write set, sorted by key hash.
fn leaf_updates(writes: &WriteSet) -> Vec<(Hash, Option<Hash>)> {
    let mut updates: Vec<(Hash, Option<Hash>)> = writes
        .iter()
        .map(|(k, v)| (Hash::digest(k), v.as_ref().map(|v| Hash::digest(v))))
        .collect();
    updates.sort_unstable_by_key(|u| u.0);
    updates
}

/// A block's write in progress: state applied, root known, not yet committed.
#[allow(missing_debug_implementations)]
pub struct Staged {
    txn: WriteTransaction,
    root: Hash,
    changes: BTreeMap<NodeKey, Option<Node>>,
    tree: Arc<RwLock<Tree>>,
    certificate: Option<Vec<u8>>,
}

impl Staged {
    /// Stores the consensus commit certificate of the block with it, in the same atomic write.
    pub fn with_certificate(mut self, certificate: Vec<u8>) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// The state root after the staged writes.
    pub fn state_root(&self) -> Hash {
        self.root
    }

    /// Adds the block and its results and commits everything at once. The block must follow the
    /// latest committed one and carry the computed state root. Dropping a `Staged` instead aborts.
    pub fn commit(self, block: &Block, executed: &Executed) -> Result<()> {
        let height = block.header.height;
        if block.header.state_root != self.root {
            return Err(Error::StateRootMismatch {
                height,
                claimed: block.header.state_root.to_hex(),
                computed: self.root.to_hex(),
            });
        }
        {
            let mut meta = self.txn.open_table(META)?;
            let latest = match meta.get(META_HEIGHT)? {
                Some(v) => Some(decode::<u64>("meta", v.value())?),
                None => None,
            };
            let expected = latest.map_or(0, |h| h + 1);
            if height != expected {
                return Err(Error::WrongHeight {
                    latest,
                    got: height,
                });
            }
            meta.insert(META_HEIGHT, encode(&height).as_slice())?;
            meta.insert(META_ROOT, encode(&self.root).as_slice())?;
            meta.insert(META_CHAIN, block.header.chain_id.as_bytes())?;

            let hash = block.hash();
            self.txn
                .open_table(BLOCKS)?
                .insert(height, encode(block).as_slice())?;
            self.txn
                .open_table(BLOCK_HASHES)?
                .insert(hash.0.as_slice(), height)?;
            // Sorted inserts touch each B-tree page once instead of once per random hash.
            let mut index: Vec<(Hash, TxLocation)> = block
                .txs
                .iter()
                .enumerate()
                .map(|(i, tx)| {
                    let hash = executed
                        .receipts
                        .get(i)
                        .map(|r| r.tx_hash)
                        .unwrap_or_else(|| tx.hash());
                    (
                        hash,
                        TxLocation {
                            height,
                            index: i as u32,
                        },
                    )
                })
                .collect();
            index.sort_unstable_by_key(|(h, _)| *h);
            let mut txs = self.txn.open_table(TXS)?;
            for (hash, loc) in index {
                txs.insert(hash.0.as_slice(), encode(&loc).as_slice())?;
            }
            // Encodes exactly as `BlockResults` (borsh writes a struct as its fields in order)
            // without cloning every receipt.
            let results = encode(&(&executed.receipts, &executed.block_events));
            self.txn
                .open_table(RESULTS)?
                .insert(height, results.as_slice())?;
            if let Some(cert) = &self.certificate {
                self.txn
                    .open_table(CERTS)?
                    .insert(height, cert.as_slice())?;
            }
        }
        // The tree changes under its lock together with the commit: a snapshot sees both or
        // neither.
        let mut tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        self.txn.commit()?;
        tree.apply(self.changes, self.root, height);
        Ok(())
    }
}

/// A consistent read view of one committed height.
#[allow(missing_debug_implementations)]
pub struct Snapshot {
    txn: ReadTransaction,
    state: ReadOnlyTable<&'static [u8], &'static [u8]>,
    tree: Arc<RwLock<Tree>>,
    /// Height of the tree when this view was opened.
    height: Option<u64>,
}

impl StateRead for Snapshot {
    fn get(&self, key: &[u8]) -> agora_state::Result<Option<Vec<u8>>> {
        match self.state.get(key) {
            Ok(v) => Ok(v.map(|v| v.value().to_vec())),
            Err(e) => Err(agora_state::Error::Read(e.to_string())),
        }
    }
}

impl Snapshot {
    /// State entries whose key starts with `prefix`, in key order, at most `limit` of them.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for entry in self.state.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let meta = self.txn.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Latest committed height, or `None` before genesis.
    pub fn height(&self) -> Result<Option<u64>> {
        self.meta(META_HEIGHT)?
            .map(|b| decode("meta", &b))
            .transpose()
    }

    /// State root of the latest committed block.
    pub fn state_root(&self) -> Result<Hash> {
        Ok(self
            .meta(META_ROOT)?
            .map(|b| decode("meta", &b))
            .transpose()?
            .unwrap_or(Hash::ZERO))
    }

    /// The chain this store holds.
    pub fn chain_id(&self) -> Result<Option<String>> {
        self.meta(META_CHAIN)?
            .map(|b| String::from_utf8(b).map_err(|e| corrupt("meta", e)))
            .transpose()
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        let blocks = self.txn.open_table(BLOCKS)?;
        blocks
            .get(height)?
            .map(|v| decode("blocks", v.value()))
            .transpose()
    }

    /// The latest block.
    pub fn latest_block(&self) -> Result<Option<Block>> {
        match self.height()? {
            Some(h) => self.block(h),
            None => Ok(None),
        }
    }

    /// The height of the block with this hash.
    pub fn block_height(&self, hash: &Hash) -> Result<Option<u64>> {
        let hashes = self.txn.open_table(BLOCK_HASHES)?;
        Ok(hashes.get(hash.0.as_slice())?.map(|v| v.value()))
    }

    /// Where a committed transaction is.
    pub fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>> {
        let txs = self.txn.open_table(TXS)?;
        txs.get(hash.0.as_slice())?
            .map(|v| decode("txs", v.value()))
            .transpose()
    }

    /// The height through which accounts' histories are indexed (`None`: not yet any block).
    pub fn accounts_indexed_to(&self) -> Result<Option<u64>> {
        self.meta(META_ACCOUNT_INDEX)?
            .map(|b| decode("meta", &b))
            .transpose()
    }

    /// The transactions that concern `address` ([`agora_types::Transaction::parties`]), newest
    /// first: at most `limit`, and only those before `before` (height, index) when given. Blocks
    /// past [`Snapshot::accounts_indexed_to`] are not in it yet.
    pub fn account_txs(
        &self,
        address: &Address,
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Vec<AccountTx>> {
        let table = self.txn.open_table(ACCOUNT_TXS)?;
        let low = account_tx_key(address, 0, 0);
        let mut out = Vec::new();
        let mut read = |k: &[u8], v: &[u8]| -> Result<()> {
            let height = u64::from_be_bytes(k[20..28].try_into().expect("8 bytes"));
            let index = u32::from_be_bytes(k[28..32].try_into().expect("4 bytes"));
            let hash = Hash(
                v.try_into()
                    .map_err(|_| corrupt("account_txs", "a hash of the wrong length"))?,
            );
            out.push(AccountTx {
                height,
                index,
                hash,
            });
            Ok(())
        };
        let range = match before {
            Some((h, i)) => {
                table.range(low.as_slice()..account_tx_key(address, h, i).as_slice())?
            }
            None => table
                .range(low.as_slice()..=account_tx_key(address, u64::MAX, u32::MAX).as_slice())?,
        };
        for item in range.rev().take(limit) {
            let (k, v) = item?;
            read(k.value(), v.value())?;
        }
        Ok(out)
    }

    /// The commit certificate stored with the block at `height` (network mode).
    pub fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>> {
        let certs = self.txn.open_table(CERTS)?;
        Ok(certs.get(height)?.map(|v| v.value().to_vec()))
    }

    /// Receipts and events of the block at `height`.
    pub fn results(&self, height: u64) -> Result<Option<BlockResults>> {
        let results = self.txn.open_table(RESULTS)?;
        results
            .get(height)?
            .map(|v| decode("results", v.value()))
            .transpose()
    }

    /// The value under a state key with a Merkle proof against [`Snapshot::state_root`]. Fails
    /// with [`Error::SnapshotMoved`] if a block was committed since this view was opened: take a
    /// new snapshot and ask again.
    pub fn prove(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, Proof)> {
        let value = self.get(key)?;
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        if tree.height != self.height {
            return Err(Error::SnapshotMoved);
        }
        let proof = never(smt::prove(&*tree, tree.root, &Hash::digest(key)));
        Ok((value, proof))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_state::{Account, BlockContext, Executor, GenesisAccount, MemState, account_key};
    use agora_types::{AGR, Keypair, Message, Transaction};

    fn genesis() -> Genesis {
        Genesis::new("store-test")
            .with_time(1)
            .with_accounts((0..3).map(|i| GenesisAccount {
                address: Keypair::from_seed_label(&format!("u{i}")).address(),
                balance: 100 * AGR,
                bonded: 0,
            }))
    }

    fn next_block(store: &Store, txs: Vec<agora_types::SignedTransaction>) -> Block {
        let (mut block, executed) = executed_next(store, txs);
        let staged = store.stage(&executed.writes).unwrap();
        block.header.state_root = staged.state_root();
        staged.commit(&block, &executed).unwrap();
        block
    }

    fn transfer(i: usize, nonce: u64) -> agora_types::SignedTransaction {
        let key = Keypair::from_seed_label(&format!("u{i}"));
        Transaction {
            chain_id: "store-test".into(),
            sender: key.public(),
            nonce,
            fee: 1_000,
            messages: vec![Message::Transfer {
                to: Address([7; 20]),
                amount: AGR,
            }],
        }
        .sign(&key)
    }

    /// The next block over the committed state, executed; its state root left zero.
    fn executed_next(store: &Store, txs: Vec<agora_types::SignedTransaction>) -> (Block, Executed) {
        let snap = store.snapshot().unwrap();
        let prev = snap.latest_block().unwrap().unwrap();
        let ctx = BlockContext {
            chain_id: prev.header.chain_id.clone(),
            height: prev.header.height + 1,
            time_ms: prev.header.time_ms + 500,
            proposer: Address([9; 20]),
            seed: Hash::digest(&prev.header.seed.0),
        };
        let executed = Executor::execute_block(&snap, ctx.clone(), &txs).unwrap();
        let block = Block {
            header: BlockHeader {
                chain_id: ctx.chain_id,
                height: ctx.height,
                time_ms: ctx.time_ms,
                prev_hash: prev.hash(),
                tx_root: Block::compute_tx_root(&txs),
                state_root: Hash::ZERO,
                proposer: ctx.proposer,
                proposer_key: PublicKey([9; 32]),
                seed: ctx.seed,
                seed_proof: VrfProof::ZERO,
            },
            txs,
        };
        (block, executed)
    }

    #[test]
    fn an_account_history_lists_what_concerns_it_newest_first_and_is_built_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.redb");
        let store = Store::open(&path).unwrap();
        store.init_genesis(&genesis()).unwrap();
        let b1 = next_block(&store, vec![transfer(0, 0), transfer(1, 0)]);
        let b2 = next_block(&store, vec![transfer(0, 1)]);
        // Nothing is indexed until the indexer runs; then in batches, up to the chain's head.
        assert_eq!(
            store.snapshot().unwrap().accounts_indexed_to().unwrap(),
            None
        );
        // Block 0 has no entries and block 1 four: a cap of 3 stops after block 1.
        assert_eq!(store.index_accounts(3).unwrap(), (Some(1), false));
        // A block is never split, whatever the cap.
        assert_eq!(store.index_accounts(1).unwrap(), (Some(2), true));
        assert_eq!(store.index_accounts(1).unwrap(), (Some(2), true));
        let u0 = Keypair::from_seed_label("u0").address();
        let history = |store: &Store, who: &Address, before, limit| {
            store
                .snapshot()
                .unwrap()
                .account_txs(who, before, limit)
                .unwrap()
                .iter()
                .map(|t| (t.height, t.index, t.hash))
                .collect::<Vec<_>>()
        };
        let (t10, t11, t20) = (b1.txs[0].hash(), b1.txs[1].hash(), b2.txs[0].hash());
        // The sender sees its own; the recipient sees all three; others nothing.
        assert_eq!(
            history(&store, &u0, None, 10),
            vec![(2, 0, t20), (1, 0, t10)]
        );
        let to = Address([7; 20]);
        let all = vec![(2, 0, t20), (1, 1, t11), (1, 0, t10)];
        assert_eq!(history(&store, &to, None, 10), all);
        assert!(history(&store, &Address([8; 20]), None, 10).is_empty());
        // Pages: the newest two, then what comes before the second.
        assert_eq!(history(&store, &to, None, 2), all[..2]);
        assert_eq!(history(&store, &to, Some((1, 1)), 10), all[2..]);
        drop(store);

        // A store from before the index (no table, no height): it is built from the blocks.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(ACCOUNT_TXS).unwrap();
        txn.open_table(META)
            .unwrap()
            .remove(META_ACCOUNT_INDEX)
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let store = Store::open(&path).unwrap();
        assert!(history(&store, &to, None, 10).is_empty());
        assert_eq!(store.index_accounts(100).unwrap(), (Some(2), true));
        assert_eq!(history(&store, &to, None, 10), all);
    }

    #[test]
    fn a_prepared_root_commits_with_its_certificate_and_a_stale_one_is_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.redb");
        let store = Store::open(&path).unwrap();
        store.init_genesis(&genesis()).unwrap();

        // Prepared over the committed state: the same root as staging, certificate stored with it.
        let (mut block, executed) = executed_next(&store, vec![transfer(0, 0)]);
        let prepared = store.prepare(&executed.writes);
        block.header.state_root = prepared.state_root();
        assert_eq!(
            store.snapshot().unwrap().height().unwrap(),
            Some(0),
            "preparing writes nothing"
        );
        let staged = store
            .stage_prepared(&executed.writes, Some(prepared))
            .unwrap()
            .with_certificate(b"cert-1".to_vec());
        staged.commit(&block, &executed).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(
            snap.certificate(1).unwrap().as_deref(),
            Some(&b"cert-1"[..])
        );
        assert_eq!(snap.certificate(0).unwrap(), None);
        drop(snap);

        // Prepared, then another block commits first: the stale changes are not used.
        let (_, stale_exec) = executed_next(&store, vec![transfer(0, 1)]);
        let stale = store.prepare(&stale_exec.writes);
        let (mut b2, e2) = executed_next(&store, vec![transfer(0, 1)]);
        b2.header.state_root = store.stage(&e2.writes).unwrap().state_root();
        store.stage(&e2.writes).unwrap().commit(&b2, &e2).unwrap();
        let (mut b3, e3) = executed_next(&store, vec![transfer(0, 2)]);
        let staged = store.stage_prepared(&e3.writes, Some(stale)).unwrap();
        b3.header.state_root = staged.state_root();
        assert_eq!(staged.state_root(), store.prepare(&e3.writes).state_root());
        staged.commit(&b3, &e3).unwrap();
        drop(store);
        // Reopening rebuilds the tree from the state and checks it against the stored root.
        let store = Store::open(&path).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.height().unwrap(), Some(3));
        assert_eq!(snap.state_root().unwrap(), b3.header.state_root);
        assert_eq!(
            snap.certificate(1).unwrap().as_deref(),
            Some(&b"cert-1"[..])
        );
    }

    #[test]
    fn commits_survive_reopen_and_proofs_check_against_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.redb");
        let tx_hash;
        {
            let store = Store::open(&path).unwrap();
            store.init_genesis(&genesis()).unwrap();
            let t = transfer(0, 0);
            tx_hash = t.hash();
            next_block(&store, vec![t, transfer(1, 0)]);
        }
        let store = Store::open(&path).unwrap();
        store.init_genesis(&genesis()).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.height().unwrap(), Some(1));
        let loc = snap.tx_location(&tx_hash).unwrap().unwrap();
        assert_eq!(
            loc,
            TxLocation {
                height: 1,
                index: 0
            }
        );
        let results = snap.results(1).unwrap().unwrap();
        assert!(results.receipts.iter().all(|r| r.success));

        let header = snap.block(1).unwrap().unwrap().header;
        let key = account_key(&Address([7; 20]));
        let (value, proof) = snap.prove(&key).unwrap();
        let account: Account = borsh::from_slice(value.as_ref().unwrap()).unwrap();
        assert_eq!(account.balance, 2 * AGR);
        assert!(proof.verify(&header.state_root, &key, value.as_deref()));
        assert!(!proof.verify(&header.state_root, &key, Some(b"other")));
        let absent = account_key(&Address([8; 20]));
        let (none, proof) = snap.prove(&absent).unwrap();
        assert!(none.is_none());
        assert!(proof.verify(&header.state_root, &absent, None));
    }

    #[test]
    fn tampered_state_is_detected_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let store = Store::open(&path).unwrap();
            store.init_genesis(&genesis()).unwrap();
            next_block(&store, vec![transfer(0, 0)]);
        }
        {
            // Someone edits a balance behind the node's back.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut state = txn.open_table(STATE).unwrap();
                let key = account_key(&Address([7; 20]));
                let forged = encode(&Account {
                    balance: 1_000_000 * AGR,
                    ..Account::default()
                });
                state.insert(key.as_slice(), forged.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("hashes to root"), "{err}");
        let garbage = dir.path().join("garbage.redb");
        std::fs::write(&garbage, vec![0xAB; 8192]).unwrap();
        assert!(
            Store::open(&garbage).is_err(),
            "a file that is not a database is refused"
        );
    }

    #[test]
    fn wrong_chain_wrong_height_and_wrong_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.redb")).unwrap();
        store.init_genesis(&genesis()).unwrap();
        let mut other = genesis();
        other.chain_id = "other".into();
        assert!(matches!(
            store.init_genesis(&other),
            Err(Error::WrongChain { .. })
        ));

        let block0 = store.snapshot().unwrap().block(0).unwrap().unwrap();
        let staged = store.stage(&WriteSet::new()).unwrap();
        assert!(matches!(
            staged.commit(&block0, &Executed::default()),
            Err(Error::WrongHeight {
                latest: Some(0),
                got: 0
            })
        ));
        let mut bad = block0.clone();
        bad.header.height = 1;
        bad.header.state_root = Hash([1; 32]);
        let staged = store.stage(&WriteSet::new()).unwrap();
        assert!(matches!(
            staged.commit(&bad, &Executed::default()),
            Err(Error::StateRootMismatch { .. })
        ));
        assert_eq!(
            store.snapshot().unwrap().height().unwrap(),
            Some(0),
            "nothing committed"
        );
    }

    #[test]
    fn replaying_the_same_blocks_gives_the_same_roots() {
        // Chain A through the store; chain B replays A's blocks into memory and into a second store.
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(&dir.path().join("a.redb")).unwrap();
        a.init_genesis(&genesis()).unwrap();
        let mut blocks = Vec::new();
        for n in 0..5u64 {
            blocks.push(next_block(&a, vec![transfer(0, n), transfer(2, n)]));
        }
        let b = Store::open(&dir.path().join("b.redb")).unwrap();
        b.init_genesis(&genesis()).unwrap();
        let mut mem = MemState::default();
        mem.apply(&genesis().initial_writes().unwrap());
        for block in &blocks {
            let ctx = BlockContext {
                chain_id: block.header.chain_id.clone(),
                height: block.header.height,
                time_ms: block.header.time_ms,
                proposer: block.header.proposer,
                seed: block.header.seed,
            };
            let snap = b.snapshot().unwrap();
            let executed = Executor::execute_block(&snap, ctx.clone(), &block.txs).unwrap();
            let again = Executor::execute_block(&mem, ctx, &block.txs).unwrap();
            assert_eq!(executed.writes, again.writes);
            mem.apply(&again.writes);
            let staged = b.stage(&executed.writes).unwrap();
            assert_eq!(staged.state_root(), block.header.state_root);
            staged.commit(block, &executed).unwrap();
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn data_of_another_format_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.redb");
        // A fresh store records its format and opens again.
        drop(Store::open(&path).unwrap());
        drop(Store::open(&path).unwrap());
        let set_meta = |key: &str, value: Option<&[u8]>| {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                match value {
                    Some(v) => {
                        meta.insert(key, v).unwrap();
                    }
                    None => {
                        meta.remove(key).unwrap();
                    }
                }
            }
            txn.commit().unwrap();
        };
        set_meta(META_FORMAT, Some(&borsh::to_vec(&7u32).unwrap()));
        let Err(err) = Store::open(&path) else {
            panic!("data of another format was opened");
        };
        assert!(
            matches!(
                err,
                Error::Format {
                    found: 7,
                    expected: FORMAT_VERSION
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("start the chain afresh"), "{err}");
        // Data from before formats were recorded: blocks but no format.
        set_meta(META_FORMAT, None);
        set_meta(META_HEIGHT, Some(&borsh::to_vec(&5u64).unwrap()));
        assert!(matches!(
            Store::open(&path).err(),
            Some(Error::Format { found: 1, .. })
        ));
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    #[test]
    fn borrowed_results_encode_like_block_results() {
        let results = BlockResults {
            receipts: vec![],
            block_events: vec![Event::new("x", &[("k", "v".to_string())])],
        };
        assert_eq!(
            encode(&(&results.receipts, &results.block_events)),
            encode(&results)
        );
    }
}

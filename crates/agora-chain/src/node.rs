use crate::indexer::Indexer;
use crate::{BlockError, Error, Mempool, MempoolConfig, Metrics, Result, mempool::SenderState};
use agora_state::{
    Account, BlockContext, CheckError, Executor, Genesis, Params, StateRead, TxError, account_key,
    check_chain_and_fee, params_key, read_account,
};
use agora_store::{BlockResults, Prepared, Snapshot, Store};
use agora_types::{
    Address, Block, BlockHeader, Hash, Keypair, MAX_BLOCK_BYTES, MAX_PROOF_TXS_PER_BLOCK,
    SignedTransaction, merkle_root, verify_batch, vrf,
};
use parking_lot::Mutex;
use rayon::prelude::*;
use std::{collections::BTreeSet, future::Future, path::Path, sync::Arc, time::Duration};
use tokio::sync::broadcast;
use tracing::{debug, error, info, warn};

/// How the node builds blocks.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Time between blocks in dev mode.
    pub block_time: Duration,
    /// Most transactions per block.
    pub max_block_txs: usize,
    /// Mempool limits.
    pub mempool: MempoolConfig,
    /// Keep accounts' histories (the explorer's account pages, a provider's jobs, `GET
    /// /v1/accounts/{a}/txs`), indexed off the commit's path. A validator that serves no pages
    /// may turn it off and save its cost (like CometBFT's `tx_index = "null"`).
    pub account_index: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            block_time: Duration::from_millis(500),
            max_block_txs: 20_000,
            mempool: MempoolConfig::default(),
            account_index: true,
        }
    }
}

/// A block just committed, with its results: what subscribers receive.
#[derive(Clone, Debug)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Its hash.
    pub hash: Hash,
    /// Its receipts and events.
    pub results: BlockResults,
}

/// A block on top of the latest committed one, executed and with its state root computed: built
/// by this node ([`Node::build_block`]) or checked ([`Node::check_block`]), committed by
/// [`Node::commit_block`] once decided.
#[derive(Debug)]
pub struct CheckedBlock {
    /// The block.
    pub block: Block,
    /// Its hash.
    pub hash: Hash,
    executed: agora_state::Executed,
    prepared: Prepared,
    tx_hashes: Vec<Hash>,
    dropped: Vec<Hash>,
}

/// A full node: store, mempool, block production.
#[derive(Debug)]
pub struct Node {
    store: Arc<Store>,
    chain_id: String,
    params: Params,
    /// Signs the seeds of the blocks this node proposes; its address receives their fees.
    key: Keypair,
    proposer: Address,
    config: NodeConfig,
    mempool: Mutex<Mempool>,
    produce: Mutex<()>,
    events: broadcast::Sender<Arc<CommittedBlock>>,
    admitted: broadcast::Sender<Arc<Vec<Vec<u8>>>>,
    metrics: Metrics,
    /// Keeps the accounts' histories up with the chain, off the commit's path (unless turned
    /// off in the configuration).
    indexer: Option<Indexer>,
}

impl Node {
    /// Opens the store at `db_path`, committing `genesis` as block 0 if it is new. `key` is the
    /// validator key of the blocks this node builds (their proposer and seed).
    pub fn open(
        db_path: &Path,
        genesis: &Genesis,
        key: Keypair,
        config: NodeConfig,
    ) -> Result<Self> {
        let store = Store::open(db_path)?;
        store.init_genesis(genesis)?;
        let snap = store.snapshot()?;
        let params: Params = match snap.get(&params_key())? {
            Some(b) => borsh::from_slice(&b).map_err(|e| agora_state::Error::Corrupt {
                key: "params".into(),
                reason: e.to_string(),
            })?,
            None => return Err(Error::NoGenesis),
        };
        let height = snap.height()?.ok_or(Error::NoGenesis)?;
        drop(snap);
        let metrics = Metrics::default();
        metrics.height.set(height as i64);
        info!(chain_id = %genesis.chain_id, height, "store opened");
        let (events, _) = broadcast::channel(256);
        let (admitted, _) = broadcast::channel(1024);
        let store = Arc::new(store);
        let indexer = config
            .account_index
            .then(|| Indexer::start(store.clone()))
            .transpose()?;
        Ok(Node {
            indexer,
            store,
            chain_id: genesis.chain_id.clone(),
            params,
            proposer: key.address(),
            key,
            mempool: Mutex::new(Mempool::new(config.mempool.clone())),
            config,
            produce: Mutex::new(()),
            events,
            admitted,
            metrics,
        })
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The chain parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The address that receives this node's block fees.
    pub fn proposer(&self) -> Address {
        self.proposer
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Brings the accounts' histories up to the latest block now, rather than when the indexer
    /// gets to it (tools and tests that read a history right after a commit).
    pub fn index_accounts_now(&self) -> Result<()> {
        match &self.indexer {
            Some(indexer) => indexer.catch_up(),
            None => Err(Error::NoAccountIndex),
        }
    }

    /// A consistent view of the latest committed block.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.store.snapshot()?)
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// New committed blocks, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommittedBlock>> {
        self.events.subscribe()
    }

    /// Transactions admitted from clients (not relayed from peers), in batches, encoded: what a
    /// network node forwards to the other validators so that any proposer can include them.
    pub fn subscribe_admitted(&self) -> broadcast::Receiver<Arc<Vec<Vec<u8>>>> {
        self.admitted.subscribe()
    }

    /// A transaction waiting in the mempool.
    pub fn pending(&self, hash: &Hash) -> Option<SignedTransaction> {
        self.mempool.lock().get(hash).cloned()
    }

    /// Number of transactions waiting.
    pub fn mempool_len(&self) -> usize {
        self.mempool.lock().len()
    }

    /// Admits one encoded transaction. See [`Node::submit_batch`].
    pub fn submit(&self, bytes: &[u8]) -> std::result::Result<Hash, SubmitError> {
        self.submit_batch(vec![bytes.to_vec()])
            .pop()
            .expect("one result per input")
    }

    /// Admits encoded transactions: decodes and checks signatures in parallel (batch
    /// verification), then checks each against the committed state and the mempool, in order.
    /// Returns one result per input.
    pub fn submit_batch(&self, items: Vec<Vec<u8>>) -> Vec<std::result::Result<Hash, SubmitError>> {
        self.submit_batch_from(items, true)
    }

    /// [`Node::submit_batch`]; `relay` says whether admitted transactions are announced to
    /// [`Node::subscribe_admitted`] (false for those a peer relayed, which it sent everywhere).
    pub fn submit_batch_from(
        &self,
        items: Vec<Vec<u8>>,
        relay: bool,
    ) -> Vec<std::result::Result<Hash, SubmitError>> {
        let relay = relay && self.admitted.receiver_count() > 0;
        let decoded: Vec<std::result::Result<(SignedTransaction, Hash), TxError>> = items
            .par_iter()
            .map(|bytes| {
                let tx = SignedTransaction::decode(bytes)?;
                let hash = Hash::digest(bytes);
                Ok((tx, hash))
            })
            .collect();
        let t0 = std::time::Instant::now();
        let sig_ok = verify_signatures(&decoded);
        let t_sig = t0.elapsed();
        let mut pool = self.mempool.lock();
        let snap = match self.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let e = Arc::new(e);
                return (0..items.len())
                    .map(|_| Err(SubmitError::Node(e.clone())))
                    .collect();
            }
        };
        let results: Vec<_> = decoded
            .into_iter()
            .zip(sig_ok)
            .map(|(d, sig_ok)| {
                let (tx, hash) = d?;
                if !sig_ok {
                    return Err(TxError::InvalidSignature.into());
                }
                self.admit(&mut pool, &snap, tx, hash)
            })
            .collect();
        debug!(
            txs = results.len(),
            verify_ms = t_sig.as_millis() as u64,
            admit_ms = (t0.elapsed() - t_sig).as_millis() as u64,
            "admission timings"
        );
        self.metrics.mempool_size.set(pool.len() as i64);
        drop(pool);
        if relay {
            let accepted: Vec<Vec<u8>> = items
                .into_iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(b, _)| b)
                .collect();
            if !accepted.is_empty() {
                let _ = self.admitted.send(Arc::new(accepted));
            }
        }
        for r in &results {
            match r {
                Ok(_) => self.metrics.txs_accepted.inc(),
                Err(_) => self.metrics.txs_rejected.inc(),
            };
        }
        results
    }

    fn admit(
        &self,
        pool: &mut Mempool,
        snap: &Snapshot,
        tx: SignedTransaction,
        hash: Hash,
    ) -> std::result::Result<Hash, SubmitError> {
        let body = &tx.tx;
        check_chain_and_fee(body, &self.chain_id, &self.params)?;
        if pool.contains(&hash) {
            return Err(TxError::Duplicate {
                hash: hash.to_hex(),
            }
            .into());
        }
        let address = body.sender_address();
        let account = read_account(snap, &address)
            .map_err(SubmitError::node)?
            .ok_or(TxError::UnknownAccount { address })?;
        let state = SenderState {
            nonce: account.nonce,
            balance: account.balance,
            bonded: account.bonded,
        };
        match pool.insert(tx, hash, state) {
            Ok(()) => Ok(hash),
            // A committed transaction always fails on its used nonce; only then is it worth
            // looking it up to say that it is a replay of a committed one.
            Err(e @ TxError::NonceTooLow { .. }) => {
                if snap
                    .tx_location(&hash)
                    .map_err(SubmitError::node)?
                    .is_some()
                {
                    Err(TxError::Duplicate {
                        hash: hash.to_hex(),
                    }
                    .into())
                } else {
                    Err(e.into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Builds, commits and announces the next block from the mempool (dev mode: the only
    /// validator, so the block is final at once). `time_ms` is clamped to move forward.
    pub fn produce_block(&self, time_ms: u64) -> Result<Arc<CommittedBlock>> {
        let _producing = self.produce.lock();
        let checked = self.build_block(time_ms)?;
        self.commit_locked(checked, None)
    }

    /// Builds the next block from the mempool on top of the latest committed one, without
    /// committing it: what a proposer offers to consensus. Transactions that are no longer
    /// admissible are left out (and dropped from the mempool when a block commits).
    /// Its proposer is this node's key, which also proves the block's seed.
    pub fn build_block(&self, time_ms: u64) -> Result<CheckedBlock> {
        let t_start = std::time::Instant::now();
        let snap = self.snapshot()?;
        let prev = snap.latest_block()?.ok_or(Error::NoGenesis)?;
        let height = prev.header.height + 1;
        let (output, seed_proof) = vrf::prove(
            &self.key,
            &BlockHeader::seed_input(&self.chain_id, height, &prev.header.seed),
        )?;
        let ctx = BlockContext {
            chain_id: self.chain_id.clone(),
            height,
            time_ms: time_ms.max(prev.header.time_ms + 1),
            proposer: self.proposer,
            seed: BlockHeader::seed_of(&output),
        };
        let candidates = self.mempool.lock().reap(self.config.max_block_txs);
        let mut exec = Executor::new(&snap, ctx.clone())?;
        let mut included = Vec::with_capacity(candidates.len());
        let mut tx_hashes = Vec::with_capacity(candidates.len());
        let mut dropped = Vec::new();
        let mut bytes = 0;
        let mut proofs = 0;
        let mut waiting = std::collections::BTreeSet::new();
        for (hash, tx) in candidates {
            // The block is full: the rest wait in the mempool, in order, for the next one.
            let size = borsh::object_length(&tx).unwrap_or(usize::MAX);
            if bytes + size > MAX_BLOCK_BYTES {
                break;
            }
            // As many proofs as a block verifies: the others wait for the next block, and so do
            // their senders' later transactions (which would find a nonce gap); everyone else's
            // still go in.
            let sender = tx.tx.sender_address();
            if waiting.contains(&sender) {
                continue;
            }
            let carried = tx.zk_weight();
            if proofs + carried > MAX_PROOF_TXS_PER_BLOCK {
                waiting.insert(sender);
                continue;
            }
            match exec.apply_tx(&tx, hash) {
                Ok(_) => {
                    bytes += size;
                    proofs += carried;
                    included.push(tx);
                    tx_hashes.push(hash);
                }
                Err(CheckError::Tx(e)) => {
                    debug!(%hash, error = %e, "dropping transaction that is no longer admissible");
                    dropped.push(hash);
                }
                Err(CheckError::State(e)) => return Err(e.into()),
            }
        }
        let executed = exec.finish()?;
        drop(snap);
        let t_exec = t_start.elapsed();
        let prepared = self.store.prepare(&executed.writes);
        let block = Block {
            header: BlockHeader {
                chain_id: ctx.chain_id,
                height: ctx.height,
                time_ms: ctx.time_ms,
                prev_hash: prev.hash(),
                tx_root: merkle_root(&tx_hashes),
                state_root: prepared.state_root(),
                proposer: ctx.proposer,
                proposer_key: self.key.public(),
                seed: ctx.seed,
                seed_proof,
            },
            txs: included,
        };
        debug!(
            height = block.header.height,
            txs = block.txs.len(),
            execute_ms = t_exec.as_millis() as u64,
            state_ms = (t_start.elapsed() - t_exec).as_millis() as u64,
            "block built"
        );
        Ok(CheckedBlock {
            hash: block.hash(),
            block,
            executed,
            prepared,
            tx_hashes,
            dropped,
        })
    }

    /// Checks and commits a block made elsewhere (a follower replaying the chain).
    pub fn import_block(&self, block: Block) -> Result<Arc<CommittedBlock>> {
        let _producing = self.produce.lock();
        let checked = self.check_block(block)?;
        self.commit_locked(checked, None)
    }

    /// Checks a block made elsewhere against the latest committed one — chain, height, parent,
    /// time, transaction root, every signature, execution of every transaction, state root —
    /// without committing it. An error names what is wrong; nothing changes.
    pub fn check_block(&self, block: Block) -> Result<CheckedBlock> {
        let height = block.header.height;
        let invalid = |reason| Error::InvalidBlock { height, reason };
        let snap = self.snapshot()?;
        let prev = snap.latest_block()?.ok_or(Error::NoGenesis)?;
        let h = &block.header;
        if h.chain_id != self.chain_id {
            return Err(invalid(BlockError::WrongChain {
                expected: self.chain_id.clone(),
                got: h.chain_id.clone(),
            }));
        }
        if h.height != prev.header.height + 1 {
            return Err(invalid(BlockError::WrongHeight {
                expected: prev.header.height + 1,
            }));
        }
        let parent = prev.hash();
        if h.prev_hash != parent {
            return Err(invalid(BlockError::WrongParent {
                expected: parent,
                got: h.prev_hash,
            }));
        }
        if h.time_ms <= prev.header.time_ms {
            return Err(invalid(BlockError::TimeNotMonotone {
                parent: prev.header.time_ms,
                got: h.time_ms,
            }));
        }
        // Every limit admission applies, again: a Byzantine proposer skips admission.
        let sized: Vec<(Hash, usize)> = block
            .txs
            .par_iter()
            .map(|tx| {
                let bytes = tx.encode();
                (Hash::digest(&bytes), bytes.len())
            })
            .collect();
        let bytes: usize = sized.iter().map(|(_, n)| n).sum();
        if bytes > MAX_BLOCK_BYTES {
            return Err(invalid(BlockError::TooLarge {
                bytes,
                limit: MAX_BLOCK_BYTES,
            }));
        }
        for (index, (tx, (_, n))) in block.txs.iter().zip(&sized).enumerate() {
            if let Err(e) = tx.check_limits(*n) {
                return Err(invalid(BlockError::TxLimit {
                    index,
                    reason: e.to_string(),
                }));
            }
        }
        let proofs: usize = block.txs.iter().map(SignedTransaction::zk_weight).sum();
        if proofs > MAX_PROOF_TXS_PER_BLOCK {
            return Err(invalid(BlockError::TxLimit {
                index: block.txs.len().saturating_sub(1),
                reason: format!(
                    "{proofs} proofs' worth of zero-knowledge work in one block, at most {MAX_PROOF_TXS_PER_BLOCK}"
                ),
            }));
        }
        let tx_hashes: Vec<Hash> = sized.into_iter().map(|(h, _)| h).collect();
        let computed = merkle_root(&tx_hashes);
        if computed != h.tx_root {
            return Err(invalid(BlockError::TxRootMismatch {
                header: h.tx_root,
                computed,
            }));
        }
        // The seed: the proposer's own, on the parent's; the proposer could not choose it.
        if h.proposer_key.address() != h.proposer {
            return Err(invalid(BlockError::WrongProposerKey {
                proposer: h.proposer,
            }));
        }
        let alpha = BlockHeader::seed_input(&self.chain_id, height, &prev.header.seed);
        match vrf::verify(&h.proposer_key, &alpha, &h.seed_proof) {
            Ok(output) if BlockHeader::seed_of(&output) == h.seed => {}
            Ok(_) => {
                return Err(invalid(BlockError::BadSeed {
                    reason: "it is not the output its proof gives".into(),
                }));
            }
            Err(e) => {
                return Err(invalid(BlockError::BadSeed {
                    reason: e.to_string(),
                }));
            }
        }
        let ctx = BlockContext {
            chain_id: h.chain_id.clone(),
            height,
            time_ms: h.time_ms,
            proposer: h.proposer,
            seed: h.seed,
        };
        // Signatures are checked on the pool while this thread executes: execution does not
        // depend on them, and a bad signature discards the whole block.
        let txs: Vec<&SignedTransaction> = block.txs.iter().collect();
        let (sig_ok, executed) = rayon::join(
            || verify_batched(&txs),
            || -> Result<std::result::Result<agora_state::Executed, BlockError>> {
                let mut exec = Executor::new(&snap, ctx)?;
                for (index, (tx, hash)) in block.txs.iter().zip(&tx_hashes).enumerate() {
                    match exec.apply_tx(tx, *hash) {
                        Ok(_) => {}
                        Err(CheckError::Tx(error)) => {
                            return Ok(Err(BlockError::Execution(agora_state::Error::InvalidTx {
                                index,
                                hash: hash.to_hex(),
                                error,
                            })));
                        }
                        Err(CheckError::State(e)) => return Err(e.into()),
                    }
                }
                Ok(Ok(exec.finish()?))
            },
        );
        if let Some(index) = sig_ok.iter().position(|ok| !ok) {
            return Err(invalid(BlockError::BadSignature { index }));
        }
        let executed = executed?.map_err(invalid)?;
        drop(snap);
        let prepared = self.store.prepare(&executed.writes);
        if prepared.state_root() != block.header.state_root {
            return Err(invalid(BlockError::StateRootMismatch {
                header: block.header.state_root,
                computed: prepared.state_root(),
            }));
        }
        Ok(CheckedBlock {
            hash: block.hash(),
            block,
            executed,
            prepared,
            tx_hashes,
            dropped: Vec::new(),
        })
    }

    /// Commits a block built or checked on top of the latest committed one, with the consensus
    /// certificate that decided it (network mode), in one atomic write; then announces it. Fails,
    /// changing nothing, if another block was committed since it was checked.
    pub fn commit_block(
        &self,
        checked: CheckedBlock,
        certificate: Option<Vec<u8>>,
    ) -> Result<Arc<CommittedBlock>> {
        let _producing = self.produce.lock();
        self.commit_locked(checked, certificate)
    }

    fn commit_locked(
        &self,
        checked: CheckedBlock,
        certificate: Option<Vec<u8>>,
    ) -> Result<Arc<CommittedBlock>> {
        let t_start = std::time::Instant::now();
        let CheckedBlock {
            block,
            executed,
            prepared,
            tx_hashes,
            dropped,
            ..
        } = checked;
        let mut staged = self
            .store
            .stage_prepared(&executed.writes, Some(prepared))?;
        if let Some(cert) = certificate {
            staged = staged.with_certificate(cert);
        }
        // Admission goes on during the commit: the mempool copes with a queue that still holds
        // the transactions just committed (see `Mempool::insert`).
        staged.commit(&block, &executed)?;
        debug!(
            height = block.header.height,
            txs = block.txs.len(),
            commit_ms = t_start.elapsed().as_millis() as u64,
            "block committed"
        );
        #[cfg(debug_assertions)]
        self.check_invariants(block.header.height);
        if let Some(indexer) = &self.indexer {
            indexer.wake();
        }
        Ok(self.after_commit(block, executed, &tx_hashes, &dropped))
    }

    /// Debug builds (every test that runs a node) check every invariant of the whole state
    /// (`agora_state::invariants`) after each block, and stop at the first broken one.
    #[cfg(debug_assertions)]
    fn check_invariants(&self, height: u64) {
        let Ok(snap) = self.snapshot() else {
            return;
        };
        let Ok(entries) = snap.scan_prefix(b"", usize::MAX) else {
            return;
        };
        let state = entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
        if let Err(broken) = agora_state::invariants::check(height, state) {
            panic!("the state after block {height} breaks an invariant: {broken}");
        }
    }

    fn after_commit(
        &self,
        block: Block,
        executed: agora_state::Executed,
        tx_hashes: &[Hash],
        dropped: &[Hash],
    ) -> Arc<CommittedBlock> {
        {
            let mut pool = self.mempool.lock();
            for h in tx_hashes.iter().chain(dropped) {
                pool.remove(h);
            }
            // Every sender's new nonce is in the block's writes: no need to read the store.
            let senders: BTreeSet<Address> =
                block.txs.iter().map(|t| t.tx.sender_address()).collect();
            for sender in senders {
                if let Some(Some(bytes)) = executed.writes.get(&account_key(&sender))
                    && let Ok(acc) = borsh::from_slice::<Account>(bytes)
                {
                    pool.prune_sender(&sender, acc.nonce);
                }
            }
            self.metrics.mempool_size.set(pool.len() as i64);
        }
        self.metrics.height.set(block.header.height as i64);
        self.metrics.blocks_committed.inc();
        self.metrics.txs_committed.inc_by(block.txs.len() as u64);
        let committed = Arc::new(CommittedBlock {
            hash: block.hash(),
            results: BlockResults {
                receipts: executed.receipts,
                block_events: executed.block_events,
            },
            block,
        });
        // No subscribers is fine.
        let _ = self.events.send(committed.clone());
        committed
    }
}

/// Checks signatures in parallel chunks with batch verification; a failing chunk is re-checked
/// one by one to find the culprits. Undecodable entries come out `false` (they fail anyway).
fn verify_signatures(
    decoded: &[std::result::Result<(SignedTransaction, Hash), TxError>],
) -> Vec<bool> {
    let txs: Vec<Option<&SignedTransaction>> = decoded
        .iter()
        .map(|d| d.as_ref().ok().map(|(t, _)| t))
        .collect();
    let present: Vec<&SignedTransaction> = txs.iter().flatten().copied().collect();
    let mut ok = verify_batched(&present).into_iter();
    txs.iter()
        .map(|t| t.is_some() && ok.next().unwrap_or(false))
        .collect()
}

/// Whether each transaction's signature verifies: batches of 1024 on every core, one by one
/// only inside a batch that fails.
fn verify_batched(txs: &[&SignedTransaction]) -> Vec<bool> {
    txs.par_chunks(1024)
        .flat_map_iter(|chunk| {
            let msgs: Vec<Vec<u8>> = chunk.iter().map(|t| t.tx.sign_bytes()).collect();
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            let sigs: Vec<_> = chunk.iter().map(|t| t.signature).collect();
            let keys: Vec<_> = chunk.iter().map(|t| t.tx.sender).collect();
            let all_ok = verify_batch(&refs, &sigs, &keys).is_ok();
            chunk
                .iter()
                .map(|t| all_ok || t.verify_signature().is_ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The transaction's fault.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The node's fault (its storage): shared by every transaction of a batch it failed.
    #[error("node error: {0}")]
    Node(#[source] Arc<Error>),
}

impl SubmitError {
    fn node(e: impl Into<Error>) -> Self {
        SubmitError::Node(Arc::new(e.into()))
    }
}

/// Milliseconds since the Unix epoch. The engine, not the state machine, reads the clock: the
/// time goes into the header and the state machine only ever sees that.
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The single-validator dev engine: proposes and finalizes a block every `block_time` until
/// `shutdown` resolves, then commits what waits in the mempool in one last block.
///
/// A block the store cannot write (a full disk, an I/O error) stops production with that error:
/// the store refuses every write after a failed one until it is opened again, so the node must
/// restart, and loses nothing committed. Nothing half-written is ever visible.
pub async fn run_dev_engine(node: Arc<Node>, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut tick = tokio::time::interval(node.config.block_time);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let n = node.clone();
                match tokio::task::spawn_blocking(move || n.produce_block(now_ms())).await {
                    Ok(Ok(b)) => debug!(height = b.block.header.height, txs = b.block.txs.len(), "committed block"),
                    Ok(Err(Error::Store(e))) => {
                        error!(error = %e, "the store cannot commit blocks: production stops");
                        return Err(Error::Store(e));
                    }
                    Ok(Err(e)) => warn!(error = %e, "block production failed"),
                    Err(e) => warn!(error = %e, "block production task failed"),
                }
            }
        }
    }
    // What was accepted is committed before stopping (a provider's last settlement, say).
    if node.mempool_len() > 0 {
        let n = node.clone();
        match tokio::task::spawn_blocking(move || n.produce_block(now_ms())).await {
            Ok(Ok(b)) => info!(
                height = b.block.header.height,
                txs = b.block.txs.len(),
                "committed the last block"
            ),
            Ok(Err(e)) => warn!(error = %e, "the last block failed"),
            Err(e) => warn!(error = %e, "the last block's task failed"),
        }
    }
    info!("dev engine stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_state::GenesisAccount;
    use agora_types::{AGR, Keypair, MAX_TX_BYTES, Message, Transaction};

    fn key(name: &str) -> Keypair {
        Keypair::from_seed_label(name)
    }

    fn node(dir: &Path) -> Node {
        let genesis = Genesis::new("chain-test")
            .with_params(Params {
                min_fee: 100,
                unbonding_period: 2,
            })
            .with_accounts(vec![
                GenesisAccount {
                    address: key("alice").address(),
                    balance: 10 * AGR,
                    bonded: 0,
                },
                GenesisAccount {
                    address: key("bob").address(),
                    balance: 10 * AGR,
                    bonded: 0,
                },
            ]);
        Node::open(
            &dir.join("db.redb"),
            &genesis,
            key("validator"),
            NodeConfig::default(),
        )
        .unwrap()
    }

    fn transfer(from: &str, nonce: u64, fee: u128, amount: u128) -> SignedTransaction {
        Transaction {
            chain_id: "chain-test".into(),
            sender: key(from).public(),
            nonce,
            fee,
            messages: vec![Message::Transfer {
                to: key("carol").address(),
                amount,
            }],
        }
        .sign(&key(from))
    }

    fn code(r: std::result::Result<Hash, SubmitError>) -> String {
        match r {
            Err(SubmitError::Tx(e)) => e.code().to_string(),
            other => panic!("expected a tx error, got {other:?}"),
        }
    }

    #[test]
    fn bad_submissions_get_clear_codes_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let good = transfer("alice", 0, 100, AGR);
        let mut forged = good.clone();
        forged.tx.messages = vec![Message::Transfer {
            to: key("mallory").address(),
            amount: AGR,
        }];
        assert_eq!(code(n.submit(&forged.encode())), "invalid_signature");
        assert_eq!(code(n.submit(&[1, 2, 3])), "malformed_tx");
        assert_eq!(
            code(n.submit(&vec![0; agora_types::MAX_PROOF_TX_BYTES + 1])),
            "tx_too_large"
        );
        let mut other_chain = good.tx.clone();
        other_chain.chain_id = "elsewhere".into();
        assert_eq!(
            code(n.submit(&other_chain.sign(&key("alice")).encode())),
            "wrong_chain_id"
        );
        assert_eq!(
            code(n.submit(&transfer("alice", 0, 99, AGR).encode())),
            "fee_too_low"
        );
        assert_eq!(
            code(n.submit(&transfer("alice", 1, 100, AGR).encode())),
            "nonce_too_high"
        );
        assert_eq!(
            code(n.submit(&transfer("alice", 0, 100, 10 * AGR).encode())),
            "insufficient_funds"
        );
        assert_eq!(
            code(n.submit(&transfer("zed", 0, 100, 1).encode())),
            "unknown_account"
        );
        let stake = |msg: Message| {
            Transaction {
                chain_id: "chain-test".into(),
                sender: key("alice").public(),
                nonce: 0,
                fee: 100,
                messages: vec![msg],
            }
            .sign(&key("alice"))
            .encode()
        };
        assert_eq!(
            code(n.submit(&stake(Message::Bond { amount: 10 * AGR }))),
            "insufficient_funds",
            "bond plus fee exceeds the balance"
        );
        assert_eq!(
            code(n.submit(&stake(Message::Unbond { amount: 1 }))),
            "insufficient_bonded"
        );
        let overflow = Transaction {
            chain_id: "chain-test".into(),
            sender: key("alice").public(),
            nonce: 0,
            // Two messages: two units of work.
            fee: 200,
            messages: vec![
                Message::Transfer {
                    to: key("bob").address(),
                    amount: u128::MAX,
                },
                Message::Transfer {
                    to: key("bob").address(),
                    amount: u128::MAX,
                },
            ],
        }
        .sign(&key("alice"));
        assert_eq!(code(n.submit(&overflow.encode())), "amount_overflow");
        assert_eq!(n.mempool_len(), 0);
        let snap = n.snapshot().unwrap();
        let alice = read_account(&snap, &key("alice").address())
            .unwrap()
            .unwrap();
        assert_eq!(
            (alice.balance, alice.nonce),
            (10 * AGR, 0),
            "nothing charged"
        );

        n.submit(&good.encode()).unwrap();
        assert_eq!(code(n.submit(&good.encode())), "duplicate_tx");
        let b = n.produce_block(1_000).unwrap();
        assert_eq!(b.block.txs.len(), 1);
        assert!(b.results.receipts[0].success);
        // Replays of a committed transaction, or of its nonce, are refused.
        assert_eq!(code(n.submit(&good.encode())), "duplicate_tx");
        assert_eq!(
            code(n.submit(&transfer("alice", 0, 101, AGR).encode())),
            "nonce_too_low"
        );
        assert_eq!(n.mempool_len(), 0);
        let snap = n.snapshot().unwrap();
        let alice = read_account(&snap, &key("alice").address())
            .unwrap()
            .unwrap();
        assert_eq!((alice.balance, alice.nonce), (9 * AGR - 100, 1));
    }

    #[test]
    fn batches_commit_in_order_and_blocks_chain_up() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let mut rx = n.subscribe();
        let txs: Vec<Vec<u8>> = (0..50)
            .map(|i| transfer("bob", i, 100, 1_000).encode())
            .collect();
        let results = n.submit_batch(txs);
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        let b1 = n.produce_block(10).unwrap();
        let b2 = n.produce_block(5).unwrap();
        assert_eq!(b1.block.txs.len(), 50);
        assert_eq!(b2.block.header.prev_hash, b1.hash);
        assert!(
            b2.block.header.time_ms > b1.block.header.time_ms,
            "time stays monotone"
        );
        assert_eq!(rx.try_recv().unwrap().hash, b1.hash);
        let snap = n.snapshot().unwrap();
        assert_eq!(
            read_account(&snap, &key("carol").address())
                .unwrap()
                .unwrap()
                .balance,
            50_000
        );
        assert_eq!(
            read_account(&snap, &key("validator").address())
                .unwrap()
                .unwrap()
                .balance,
            5_000
        );
    }

    fn import_error(n: &Node, block: Block) -> BlockError {
        match n.import_block(block) {
            Err(Error::InvalidBlock { reason, .. }) => reason,
            other => panic!("expected an invalid block, got {other:?}"),
        }
    }

    /// A second node that only imports the first one's blocks ends with the same blocks and
    /// the same state; tampered blocks are refused and change nothing.
    #[test]
    fn imported_blocks_reproduce_the_chain_and_tampering_is_refused() {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let a = node(dir_a.path());
        let b = node(dir_b.path());
        let mut blocks = Vec::new();
        for round in 0..4u64 {
            let txs: Vec<Vec<u8>> = (0..5)
                .map(|i| {
                    if i % 2 == 0 {
                        transfer("alice", round * 3 + i / 2, 100, 7).encode()
                    } else {
                        transfer("bob", round * 2 + i / 2, 100, 7).encode()
                    }
                })
                .collect();
            for r in a.submit_batch(txs) {
                r.unwrap();
            }
            blocks.push(a.produce_block(1_000 * (round + 1)).unwrap().block.clone());
        }
        let next = blocks[0].clone();

        let mut forged = next.clone();
        forged.header.state_root = Hash([7; 32]);
        assert!(matches!(
            import_error(&b, forged),
            BlockError::StateRootMismatch { .. }
        ));
        let mut forged = next.clone();
        forged.txs[1].tx.messages = vec![Message::Transfer {
            to: key("mallory").address(),
            amount: 7,
        }];
        assert!(matches!(
            import_error(&b, forged.clone()),
            BlockError::TxRootMismatch { .. }
        ));
        let hashes: Vec<Hash> = forged.txs.iter().map(SignedTransaction::hash).collect();
        forged.header.tx_root = merkle_root(&hashes);
        assert!(matches!(
            import_error(&b, forged),
            BlockError::BadSignature { index: 1 }
        ));
        let mut forged = next.clone();
        forged.txs.swap(0, 2);
        let hashes: Vec<Hash> = forged.txs.iter().map(SignedTransaction::hash).collect();
        forged.header.tx_root = merkle_root(&hashes);
        assert!(
            matches!(import_error(&b, forged), BlockError::Execution(_)),
            "nonce order broken"
        );
        // Seeds: only the proposer's VRF output on the parent's seed.
        let mut forged = next.clone();
        forged.header.seed.0[0] ^= 1;
        assert!(matches!(
            import_error(&b, forged),
            BlockError::BadSeed { .. }
        ));
        let mut forged = next.clone();
        forged.header.seed_proof.0[40] ^= 1;
        assert!(matches!(
            import_error(&b, forged),
            BlockError::BadSeed { .. }
        ));
        let mut forged = next.clone();
        forged.header.proposer_key = key("mallory").public();
        assert!(matches!(
            import_error(&b, forged),
            BlockError::WrongProposerKey { .. }
        ));
        // Another key's seed, with its own valid proof, but on another parent seed (a proposer
        // trying seeds by varying what it proves on).
        let mallory = key("mallory");
        let (output, proof) = vrf::prove(
            &mallory,
            &BlockHeader::seed_input("chain-test", 1, &Hash([5; 32])),
        )
        .unwrap();
        let mut forged = next.clone();
        forged.header.proposer = mallory.address();
        forged.header.proposer_key = mallory.public();
        forged.header.seed = BlockHeader::seed_of(&output);
        forged.header.seed_proof = proof;
        assert!(matches!(
            import_error(&b, forged),
            BlockError::BadSeed { .. }
        ));
        let mut forged = next.clone();
        forged.header.prev_hash = Hash([1; 32]);
        assert!(matches!(
            import_error(&b, forged),
            BlockError::WrongParent { .. }
        ));
        assert!(matches!(
            import_error(&b, blocks[1].clone()),
            BlockError::WrongHeight { expected: 1 }
        ));
        assert_eq!(
            b.snapshot().unwrap().height().unwrap(),
            Some(0),
            "nothing committed"
        );

        for block in &blocks {
            let imported = b.import_block(block.clone()).unwrap();
            assert_eq!(imported.hash, block.hash());
        }
        assert!(matches!(
            import_error(&b, blocks[3].clone()),
            BlockError::WrongHeight { expected: 5 }
        ));
        let (sa, sb) = (a.snapshot().unwrap(), b.snapshot().unwrap());
        assert_eq!(sa.state_root().unwrap(), sb.state_root().unwrap());
        assert_eq!(sa.results(3).unwrap(), sb.results(3).unwrap());
    }

    /// A proposer cannot try seeds: whatever it puts in its block, and whenever it proposes it,
    /// its key gives one seed per height; another key gives another.
    #[test]
    fn a_block_seed_depends_on_its_proposer_and_parent_only() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (node(da.path()), node(db.path()));
        a.submit(&transfer("alice", 0, 100, 5).encode()).unwrap();
        let full = a.produce_block(1_000).unwrap();
        let empty = b.produce_block(9_000).unwrap();
        assert_ne!(full.hash, empty.hash);
        assert_eq!(full.block.txs.len(), 1);
        assert_eq!(full.block.header.seed, empty.block.header.seed);
        // The next height's seed chains on this one, and differs.
        let next = a.produce_block(2_000).unwrap();
        assert_ne!(next.block.header.seed, full.block.header.seed);
        // Another validator key, same parent: another seed, and no way to choose it either.
        let genesis_seed = a.snapshot().unwrap().block(0).unwrap().unwrap().header.seed;
        let (output, _) = vrf::prove(
            &key("other-validator"),
            &BlockHeader::seed_input("chain-test", 1, &genesis_seed),
        )
        .unwrap();
        assert_ne!(BlockHeader::seed_of(&output), full.block.header.seed);
    }

    /// A proposer that skips admission cannot make a block peers cannot carry or a
    /// transaction admission would refuse: the block's check applies every limit again, before
    /// any signature or execution.
    #[test]
    fn blocks_over_the_byte_limit_or_with_inadmissible_shapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let block_of = |txs: Vec<SignedTransaction>| {
            let hashes: Vec<Hash> = txs.iter().map(SignedTransaction::hash).collect();
            let snap = n.snapshot().unwrap();
            let prev = snap.latest_block().unwrap().unwrap();
            let validator = key("validator");
            let (output, seed_proof) = vrf::prove(
                &validator,
                &BlockHeader::seed_input("chain-test", 1, &prev.header.seed),
            )
            .unwrap();
            Block {
                header: BlockHeader {
                    chain_id: "chain-test".into(),
                    height: 1,
                    time_ms: 1_000,
                    prev_hash: prev.hash(),
                    tx_root: merkle_root(&hashes),
                    state_root: Hash::ZERO,
                    proposer: validator.address(),
                    proposer_key: validator.public(),
                    seed: BlockHeader::seed_of(&output),
                    seed_proof,
                },
                txs,
            }
        };
        // 150 transactions of ~30 KiB each: under the per-transaction limit, 4.3 MiB in all.
        let big = |nonce: u64| {
            Transaction {
                chain_id: "chain-test".into(),
                sender: key("alice").public(),
                nonce,
                fee: 100,
                messages: vec![Message::RegisterModel {
                    id: Hash([1; 32]),
                    name: "x".repeat(30_000),
                    kind: agora_types::ModelKind::Chat,
                }],
            }
            .sign(&key("alice"))
        };
        let txs: Vec<SignedTransaction> = (0..150).map(big).collect();
        assert!(matches!(
            import_error(&n, block_of(txs)),
            BlockError::TooLarge { limit, .. } if limit == MAX_BLOCK_BYTES
        ));
        // One transaction with no message and one over the size limit.
        let mut empty = transfer("alice", 0, 100, 1);
        empty.tx.messages.clear();
        let empty = empty.tx.sign(&key("alice"));
        assert!(matches!(
            import_error(&n, block_of(vec![empty])),
            BlockError::TxLimit { index: 0, .. }
        ));
        let mut huge = big(0);
        if let Message::RegisterModel { name, .. } = &mut huge.tx.messages[0] {
            *name = "x".repeat(MAX_TX_BYTES);
        }
        let huge = huge.tx.sign(&key("alice"));
        assert!(matches!(
            import_error(&n, block_of(vec![transfer("alice", 0, 100, 1), huge])),
            BlockError::TxLimit { index: 1, .. }
        ));
        assert_eq!(n.snapshot().unwrap().height().unwrap(), Some(0));

        // A proposer fills blocks up to the limit; the rest wait, in order, for the next.
        for r in n.submit_batch((0..150).map(|i| big(i).encode()).collect()) {
            r.unwrap();
        }
        let first = n.produce_block(1_000).unwrap();
        let bytes: usize = first.block.txs.iter().map(|t| t.encode().len()).sum();
        assert!(bytes <= MAX_BLOCK_BYTES, "{bytes}");
        assert!(first.block.txs.len() < 150);
        let second = n.produce_block(2_000).unwrap();
        assert_eq!(first.block.txs.len() + second.block.txs.len(), 150);
    }
}

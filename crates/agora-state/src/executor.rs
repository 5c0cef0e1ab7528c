use crate::{
    Account, ConsensusParams, Error, Escrow, EscrowRelease, FeeState, JobRecord, JobRejection,
    MarketParams, ModelInfo, Params, Provider, Result, TxError, UnbondingEntry, VerifyParams,
    account_key, check_key, committee_queue_key, consensus_params_key, deadline_queue_key,
    draw_queue_key, escrow_key, escrow_queue_key, job_key, market_params_key, model_key,
    model_name_key, model_owner_key, model_source_key, params_key, pending_key, provider_key,
    prune_queue_key, unbonding_key, verification_fund_key, verify_params_key,
};

mod accounts;
mod checks;
mod data;
mod epoch;
mod market;
mod staking;
mod subnets;
mod zk;
use agora_types::{
    Address, Amount, Event, Hash, MAX_REDUNDANCY, MAX_SETTLE_JOBS, Message, ProviderInfo,
    PublicKey, Receipt, SettledJob, SignedTransaction, Transaction, TxFailure, Verification,
    job_fee,
};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, BTreeSet};
pub(crate) use subnets::genesis_writes;

/// Pending changes: key → new value, or `None` for a deletion. Ordered, so applying it is
/// deterministic.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Read access to committed state.
pub trait StateRead {
    /// The value under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// An in-memory state: for tests and for replaying blocks.
#[derive(Clone, Debug, Default)]
pub struct MemState(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl MemState {
    /// Applies a write set.
    pub fn apply(&mut self, writes: &WriteSet) {
        for (k, v) in writes {
            match v {
                Some(v) => self.0.insert(k.clone(), v.clone()),
                None => self.0.remove(k),
            };
        }
    }
}

impl StateRead for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key).cloned())
    }
}

/// What the block gives the state machine: never a clock, never randomness of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    /// The chain id transactions must carry.
    pub chain_id: String,
    /// Height of the block being executed.
    pub height: u64,
    /// The block's time (from consensus).
    pub time_ms: u64,
    /// Receives the fees.
    pub proposer: Address,
    /// The block's seed (its proposer's VRF output, checked before execution): the randomness
    /// of the checks and committees drawn in this block (DESIGN.md §6).
    pub seed: Hash,
}

/// The result of executing a block.
#[derive(Clone, Debug, Default)]
pub struct Executed {
    /// Changes to commit with the block.
    pub writes: WriteSet,
    /// One per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Events of the block itself (e.g. released stake).
    pub block_events: Vec<Event>,
}

/// Executes one block's transactions over a base state.
///
/// Accounts are kept decoded in an overlay for the whole block and encoded once, at
/// [`Executor::finish`]; other keys go through a raw write overlay.
#[allow(missing_debug_implementations)]
pub struct Executor<'a> {
    base: &'a dyn StateRead,
    ctx: BlockContext,
    params: Params,
    market: MarketParams,
    /// Accounts read or changed in this block (`None`: does not exist).
    accounts: BTreeMap<Address, Option<Account>>,
    /// Accounts changed in this block.
    dirty: BTreeSet<Address>,
    /// Non-account changes.
    writes: WriteSet,
    receipts: Vec<Receipt>,
    /// Fees charged so far in this block, paid to the proposer at the end.
    fees: Amount,
    /// The part of `fees` paid by others than the proposer (what forecasts predict: a proposer's
    /// own fees come back to it, so they would cost it nothing to inflate).
    fees_from_others: Amount,
    /// Entries this block adds to the release queues, by release height (written once, at
    /// [`Executor::finish`], so a block of many settlements does not re-encode a queue per job).
    pending_adds: BTreeMap<u64, Vec<Hash>>,
    unbonding_adds: BTreeMap<u64, Vec<UnbondingEntry>>,
    escrow_adds: BTreeMap<u64, Vec<EscrowRelease>>,
    draw_adds: BTreeMap<u64, Vec<Hash>>,
    committee_adds: BTreeMap<u64, Vec<Hash>>,
    prune_adds: BTreeMap<u64, Vec<Hash>>,
    deadline_adds: BTreeMap<u64, BTreeSet<Hash>>,
    verify: VerifyParams,
    consensus: ConsensusParams,
    emission: crate::EmissionParams,
    subnet_params: crate::SubnetParams,
    data: crate::DataParams,
    data_adds: BTreeMap<u64, Vec<crate::DataTask>>,
    /// Items settlements may still read in this block.
    settle_budget: u32,
}

/// A transaction's pending changes, applied to the block only if all its messages succeed.
#[derive(Clone, Default)]
struct Scratch {
    accounts: BTreeMap<Address, Account>,
    writes: WriteSet,
    /// Jobs whose fee's challenge window ends at a height.
    pending: Vec<(u64, Hash)>,
    /// Stake that returns to its owner at a height.
    unbondings: Vec<(u64, UnbondingEntry)>,
    escrow_releases: Vec<(u64, EscrowRelease)>,
    /// Jobs whose check is drawn at a height.
    draws: Vec<(u64, Hash)>,
    /// Disputes whose committee is drawn at a height.
    committee_draws: Vec<(u64, Hash)>,
    /// Checks with a deadline at a height.
    deadlines: Vec<(u64, Hash)>,
    /// Job records pruned at a height.
    prunes: Vec<(u64, Hash)>,
    /// Data-market steps due at a height.
    data_tasks: Vec<(u64, crate::DataTask)>,
}

fn decode<T: BorshDeserialize>(key: &[u8], bytes: &[u8]) -> Result<T> {
    borsh::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: String::from_utf8_lossy(key).into(),
        reason: e.to_string(),
    })
}

fn encode<T: borsh::BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec")
}

/// Reads through an overlay of pending writes to the base state.
fn read(base: &dyn StateRead, layers: &[&WriteSet], key: &[u8]) -> Result<Option<Vec<u8>>> {
    for layer in layers.iter().rev() {
        if let Some(v) = layer.get(key) {
            return Ok(v.clone());
        }
    }
    base.get(key)
}

/// Reads and decodes an account.
pub fn read_account(base: &dyn StateRead, address: &Address) -> Result<Option<Account>> {
    let key = account_key(address);
    base.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

impl<'a> Executor<'a> {
    /// Starts a block over `base`.
    pub fn new(base: &'a dyn StateRead, ctx: BlockContext) -> Result<Self> {
        let key = params_key();
        let params = match base.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            None => {
                return Err(Error::Corrupt {
                    key: "params".into(),
                    reason: "missing".into(),
                });
            }
        };
        let key = market_params_key();
        let market = match base.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            // A state from before the market existed: the defaults, the same on every node.
            None => MarketParams::default(),
        };
        let key = verify_params_key();
        let verify = match base.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            None => VerifyParams::default(),
        };
        let key = consensus_params_key();
        let consensus = match base.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            None => ConsensusParams::default(),
        };
        let key = crate::emission_params_key();
        let emission = match base.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            // A state from before emission: the defaults, the same on every node.
            None => crate::EmissionParams::default(),
        };
        let key = crate::subnet_params_key();
        let subnet_params = match base.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            None => crate::SubnetParams::default(),
        };
        let key = crate::data_params_key();
        let data = match base.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            // A state from before the data market: the defaults, the same on every node.
            None => crate::DataParams::default(),
        };
        Ok(Executor {
            settle_budget: data.settle_items_per_block,
            data,
            data_adds: BTreeMap::new(),
            base,
            ctx,
            emission,
            subnet_params,
            params,
            market,
            verify,
            consensus,
            pending_adds: BTreeMap::new(),
            unbonding_adds: BTreeMap::new(),
            escrow_adds: BTreeMap::new(),
            draw_adds: BTreeMap::new(),
            committee_adds: BTreeMap::new(),
            prune_adds: BTreeMap::new(),
            deadline_adds: BTreeMap::new(),
            accounts: BTreeMap::new(),
            dirty: BTreeSet::new(),
            writes: WriteSet::new(),
            receipts: Vec::new(),
            fees: 0,
            fees_from_others: 0,
        })
    }

    /// The chain parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The market's parameters.
    pub fn market_params(&self) -> &MarketParams {
        &self.market
    }

    /// Reads and decodes `key` through this block's and this transaction's pending writes.
    fn get<T: BorshDeserialize>(&self, scratch: &Scratch, key: &[u8]) -> Result<Option<T>> {
        read(self.base, &[&self.writes, &scratch.writes], key)?
            .map(|b| decode(key, &b))
            .transpose()
    }

    /// Reads an account as of the changes of this block so far, keeping what it read for the
    /// rest of the block.
    fn load(&mut self, address: &Address) -> Result<Option<Account>> {
        if let Some(acc) = self.accounts.get(address) {
            return Ok(acc.clone());
        }
        let acc = read_account(self.base, address)?;
        self.accounts.insert(*address, acc.clone());
        Ok(acc)
    }

    /// An account as of this block's changes so far, without keeping it.
    fn peek_account(&self, address: &Address) -> Result<Option<Account>> {
        match self.accounts.get(address) {
            Some(acc) => Ok(acc.clone()),
            None => read_account(self.base, address),
        }
    }

    fn store(&mut self, address: Address, account: Account) {
        self.accounts.insert(address, Some(account));
        self.dirty.insert(address);
    }

    /// Admission: the checks a transaction must pass to enter a block (signature excepted, checked
    /// in parallel beforehand). Returns the sender's account.
    pub fn check_tx(&mut self, tx: &SignedTransaction) -> std::result::Result<Account, CheckError> {
        self.check(tx, &tx.tx.sender_address())
    }

    fn check(
        &mut self,
        tx: &SignedTransaction,
        address: &Address,
    ) -> std::result::Result<Account, CheckError> {
        let body = &tx.tx;
        check_chain_and_fee(body, &self.ctx.chain_id, &self.params)?;
        let account = self
            .load(address)?
            .ok_or(TxError::UnknownAccount { address: *address })?;
        if body.nonce < account.nonce {
            return Err(TxError::NonceTooLow {
                expected: account.nonce,
                got: body.nonce,
            }
            .into());
        }
        if body.nonce > account.nonce {
            return Err(TxError::NonceTooHigh {
                expected: account.nonce,
                got: body.nonce,
            }
            .into());
        }
        if account.balance < body.fee {
            return Err(TxError::InsufficientFunds {
                need: body.fee,
                have: account.balance,
            }
            .into());
        }
        Ok(account)
    }

    /// Admits and executes one transaction: charges the fee, bumps the nonce, then applies all
    /// messages or none. A transaction that fails admission changes nothing.
    ///
    /// `tx_hash` must be `tx.hash()`; callers have it already and hashing again costs a re-encode.
    pub fn apply_tx(
        &mut self,
        tx: &SignedTransaction,
        tx_hash: Hash,
    ) -> std::result::Result<&Receipt, CheckError> {
        let body = &tx.tx;
        let sender_addr = body.sender_address();
        let mut sender = self.check(tx, &sender_addr)?;

        // The fee and nonce stick even when the messages fail.
        sender.balance -= body.fee;
        sender.nonce += 1;
        self.store(sender_addr, sender);
        // Cannot overflow: every fee came out of the conserved total supply.
        self.fees += body.fee;
        if sender_addr != self.ctx.proposer {
            // Up to the minimum: a fee above it adds nothing a forecast could be scored on.
            self.fees_from_others += body.fee.min(self.params.min_fee_for(&body.messages));
        }

        let mut scratch = Scratch::default();
        let mut events = Vec::new();
        let mut failure = None;
        for (i, msg) in body.messages.iter().enumerate() {
            if let Err(e) =
                self.apply_message(&mut scratch, &sender_addr, &body.sender, msg, &mut events)?
            {
                failure = Some(TxFailure {
                    code: e.code().into(),
                    message: e.to_string(),
                    message_index: i as u32,
                });
                break;
            }
        }
        if failure.is_none() {
            self.commit_scratch(scratch);
        } else {
            events.clear();
        }
        self.receipts.push(Receipt {
            tx_hash,
            height: self.ctx.height,
            index: self.receipts.len() as u32,
            success: failure.is_none(),
            failure,
            fee_paid: body.fee,
            events,
        });
        Ok(self.receipts.last().expect("just pushed"))
    }

    /// Applies a transaction's (or the end of block's) pending changes to the block.
    fn commit_scratch(&mut self, scratch: Scratch) {
        for (address, account) in scratch.accounts {
            self.store(address, account);
        }
        for (k, v) in scratch.writes {
            self.writes.insert(k, v);
        }
        for (height, job) in scratch.pending {
            self.pending_adds.entry(height).or_default().push(job);
        }
        for (height, entry) in scratch.unbondings {
            self.unbonding_adds.entry(height).or_default().push(entry);
        }
        for (height, entry) in scratch.escrow_releases {
            self.escrow_adds.entry(height).or_default().push(entry);
        }
        for (height, job) in scratch.draws {
            self.draw_adds.entry(height).or_default().push(job);
        }
        for (height, job) in scratch.committee_draws {
            self.committee_adds.entry(height).or_default().push(job);
        }
        for (height, job) in scratch.deadlines {
            self.deadline_adds.entry(height).or_default().insert(job);
        }
        for (height, job) in scratch.prunes {
            self.prune_adds.entry(height).or_default().push(job);
        }
        for (height, task) in scratch.data_tasks {
            self.data_adds.entry(height).or_default().push(task);
        }
    }

    /// The verification parameters.
    pub fn verify_params(&self) -> &VerifyParams {
        &self.verify
    }

    /// Pays the block's fees to the proposer, once per block.
    fn credit_fees(&mut self, events: &mut Vec<Event>) -> Result<()> {
        if self.fees == 0 {
            return Ok(());
        }
        let proposer = self.ctx.proposer;
        let mut acc = self.load(&proposer)?.unwrap_or_default();
        acc.balance = acc
            .balance
            .checked_add(self.fees)
            .ok_or_else(|| Error::Corrupt {
                key: format!("acct/{proposer}"),
                reason: "balance exceeds total supply".into(),
            })?;
        self.store(proposer, acc);
        events.push(Event::new(
            "fees_paid",
            &[
                ("proposer", proposer.to_string()),
                ("amount", self.fees.to_string()),
            ],
        ));
        Ok(())
    }

    fn scratch_account(&mut self, scratch: &Scratch, address: &Address) -> Result<Account> {
        match scratch.accounts.get(address) {
            Some(acc) => Ok(acc.clone()),
            None => Ok(self.load(address)?.unwrap_or_default()),
        }
    }

    /// Applies one message into `scratch`. The outer `Result` is a storage failure; the inner one
    /// is the message's own failure.
    fn apply_message(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        sender_key: &PublicKey,
        msg: &Message,
        events: &mut Vec<Event>,
    ) -> Result<std::result::Result<(), TxError>> {
        let from = self.scratch_account(scratch, sender)?;
        match msg {
            Message::Transfer { to, amount } => {
                self.transfer(scratch, sender, from, to, amount, events)
            }
            Message::Bond { amount } => {
                self.bond(scratch, sender, sender_key, from, amount, events)
            }
            Message::Unbond { amount } => self.unbond(scratch, sender, from, amount, events),
            Message::RegisterProvider { stake, info } => {
                self.register_provider(scratch, sender, from, stake, info, events)
            }
            Message::UpdateProvider { info } => self.update_provider(scratch, sender, info, events),
            Message::UnregisterProvider => self.unregister_provider(scratch, sender, from, events),
            // A provable model's id is its verifying key's hash: it registers with its key.
            Message::RegisterModel {
                kind: agora_types::ModelKind::Provable,
                ..
            } => Ok(Err(TxError::InvalidModel(
                "a provable model registers with RegisterZkModel and its model file".into(),
            ))),
            Message::PublishModelSource { id, source } => {
                self.publish_model_source(scratch, sender, id, source, events)
            }
            Message::RegisterModel { id, name, kind } => {
                let done = self.register_model(scratch, id, name, kind, events)?;
                if done.is_ok() {
                    self.record_model_owner(scratch, id, sender);
                }
                Ok(done)
            }
            Message::EscrowDeposit { amount } => {
                self.escrow_deposit(scratch, sender, from, amount, events)
            }
            Message::EscrowWithdraw { amount } => {
                self.escrow_withdraw(scratch, sender, amount, events)
            }
            Message::RegisterVerifier { stake, info } => {
                self.register_verifier(scratch, sender, from, *stake, info, events)
            }
            Message::UnregisterVerifier => self.unregister_verifier(scratch, sender, from, events),
            Message::RevealJob {
                job_id,
                verifier,
                part,
                parts,
                data,
            } => self.reveal(
                scratch, sender, job_id, verifier, *part, *parts, data, events,
            ),
            Message::ChallengeJob { job_id } => {
                self.challenge(scratch, sender, from, job_id, events)
            }
            Message::PostVerdict { job_id, verdict } => {
                self.post_verdict(scratch, sender, job_id, *verdict, events)
            }
            Message::SettleJobs { jobs } => self.settle_jobs(scratch, jobs, events),
            Message::CreateSubnet {
                name,
                task,
                max_lock,
            } => self.create_subnet(scratch, sender, from, name, task, *max_lock, events),
            Message::SetSubnetParam { netuid, param } => {
                self.set_subnet_param(scratch, sender, *netuid, param, events)
            }
            Message::RegisterNeuron {
                netuid,
                endpoint,
                max_burn,
            } => self.register_neuron(scratch, sender, from, *netuid, endpoint, *max_burn, events),
            Message::AddSubnetStake {
                netuid,
                hotkey,
                amount,
            } => self.add_subnet_stake(scratch, sender, from, *netuid, hotkey, *amount, events),
            Message::RemoveSubnetStake {
                netuid,
                hotkey,
                amount,
            } => self.remove_subnet_stake(scratch, sender, from, *netuid, hotkey, *amount, events),
            Message::CommitWeights { netuid, commitment } => {
                self.commit_weights(scratch, sender, *netuid, commitment, events)
            }
            Message::RevealWeights {
                netuid,
                uids,
                weights,
                salt,
            } => self.reveal_weights(scratch, sender, *netuid, uids, weights, salt, events),
            Message::CommitPrediction { netuid, commitment } => {
                self.commit_prediction(scratch, sender, *netuid, commitment, events)
            }
            Message::RevealPrediction {
                netuid,
                value,
                salt,
            } => self.reveal_prediction(scratch, sender, *netuid, *value, salt, events),
            Message::CreateBounty { spec } => {
                self.create_bounty(scratch, sender, from, spec, events)
            }
            Message::SubmitItem { bounty, hash, size } => {
                self.submit_item(scratch, sender, from, *bounty, hash, *size, events)
            }
            Message::ScreenItem {
                bounty,
                item,
                verdict,
            } => self.screen_item(scratch, sender, *bounty, *item, verdict, events),
            Message::AppealItem { bounty, item } => {
                self.appeal_item(scratch, sender, *bounty, *item, events)
            }
            Message::CommitVote {
                bounty,
                item,
                commitment,
            } => self.commit_vote(scratch, sender, *bounty, *item, commitment, events),
            Message::RevealVote {
                bounty,
                item,
                accept,
                salt,
            } => self.reveal_vote(scratch, sender, *bounty, *item, *accept, salt, events),
            Message::JoinReviewers { amount } => {
                self.join_reviewers(scratch, sender, from, *amount, events)
            }
            Message::LeaveReviewers { amount } => {
                self.leave_reviewers(scratch, sender, from, *amount, events)
            }
            Message::CiteDatasets { target, datasets } => {
                self.cite_datasets(scratch, sender, target, datasets, events)
            }
            Message::ClaimRoyalties { dataset } => {
                self.claim_royalties(scratch, sender, dataset, events)
            }
            Message::RegisterZkModel { name, model } => {
                self.register_zk_model(scratch, sender, name, model, events)
            }
            Message::CertifyZkInput {
                subject,
                commitment,
            } => self.certify_zk_input(scratch, sender, subject, commitment, events),
            Message::ZkAttest {
                claim,
                certifier,
                proof,
            } => self.zk_attest(scratch, sender, claim, certifier, proof, events),
            Message::SettleZkJob { job, claim, proof } => {
                self.settle_zk_job(scratch, job, claim, proof, events)
            }
        }
    }

    /// End of block: pays the fees, releases stake whose unbonding period ends at this height, and
    /// encodes every changed account.
    pub fn finish(mut self) -> Result<Executed> {
        let mut block_events = Vec::new();
        self.credit_fees(&mut block_events)?;
        self.flush_queues()?;
        self.release_escrow(&mut block_events)?;
        // A check that opens takes its job's fee out of the pending queue until it is decided.
        self.draw_checks(&mut block_events)?;
        self.draw_committees(&mut block_events)?;
        self.enforce_deadlines(&mut block_events)?;
        self.release_fees(&mut block_events)?;
        self.prune_jobs(&mut block_events)?;
        self.flush_queues()?;
        let qkey = unbonding_key(self.ctx.height);
        if let Some(bytes) = read(self.base, &[&self.writes], &qkey)? {
            let queue: Vec<UnbondingEntry> = decode(&qkey, &bytes)?;
            for entry in queue {
                let mut acc = self.load(&entry.address)?.unwrap_or_default();
                // Cannot fail: the entry's amount was moved out of `bonded` into `unbonding`.
                acc.unbonding =
                    acc.unbonding
                        .checked_sub(entry.amount)
                        .ok_or_else(|| Error::Corrupt {
                            key: format!("acct/{}", entry.address),
                            reason: "unbonding entry larger than the account's unbonding total"
                                .into(),
                        })?;
                acc.balance += entry.amount;
                self.store(entry.address, acc);
                block_events.push(Event::new(
                    "unbond_released",
                    &[
                        ("account", entry.address.to_string()),
                        ("amount", entry.amount.to_string()),
                    ],
                ));
            }
            self.writes.insert(qkey, None);
        }
        // The data market's draws, deadlines, tallies and settlements.
        self.run_data_tasks(&mut block_events)?;
        self.flush_queues()?;
        // Emission and subnet epochs.
        self.emit(&mut block_events)?;
        // Whatever an epoch queued (nothing today) lands in the queues.
        self.flush_queues()?;
        if self.consensus.is_epoch_end(self.ctx.height) {
            self.rotate_validators(&mut block_events)?;
        }
        let mut writes = self.writes;
        for address in &self.dirty {
            if let Some(Some(acc)) = self.accounts.get(address) {
                writes.insert(account_key(address), Some(encode(acc)));
            }
        }
        Ok(Executed {
            writes,
            receipts: self.receipts,
            block_events,
        })
    }

    /// Takes the job ids queued under `key` (deleting the queue), if any.
    fn take_queue(&mut self, key: Vec<u8>) -> Result<Option<Vec<Hash>>> {
        let Some(bytes) = read(self.base, &[&self.writes], &key)? else {
            return Ok(None);
        };
        let queue = decode(&key, &bytes)?;
        self.writes.insert(key, None);
        Ok(Some(queue))
    }

    /// Appends this block's new entries to the release queues (one write per queue).
    fn flush_queues(&mut self) -> Result<()> {
        for (height, adds) in std::mem::take(&mut self.pending_adds) {
            append_queue(self.base, &mut self.writes, pending_key(height), adds)?;
        }
        for (height, adds) in std::mem::take(&mut self.unbonding_adds) {
            append_queue(self.base, &mut self.writes, unbonding_key(height), adds)?;
        }
        for (height, adds) in std::mem::take(&mut self.escrow_adds) {
            append_queue(self.base, &mut self.writes, escrow_queue_key(height), adds)?;
        }
        for (height, adds) in std::mem::take(&mut self.draw_adds) {
            append_queue(self.base, &mut self.writes, draw_queue_key(height), adds)?;
        }
        for (height, adds) in std::mem::take(&mut self.data_adds) {
            append_queue(
                self.base,
                &mut self.writes,
                crate::data_queue_key(height),
                adds,
            )?;
        }
        for (height, adds) in std::mem::take(&mut self.prune_adds) {
            append_queue(self.base, &mut self.writes, prune_queue_key(height), adds)?;
        }
        for (height, adds) in std::mem::take(&mut self.committee_adds) {
            append_queue(
                self.base,
                &mut self.writes,
                committee_queue_key(height),
                adds,
            )?;
        }
        for (height, adds) in std::mem::take(&mut self.deadline_adds) {
            let key = deadline_queue_key(height);
            let mut queue: BTreeSet<Hash> = read(self.base, &[&self.writes], &key)?
                .map(|b| decode::<Vec<Hash>>(&key, &b))
                .transpose()?
                .unwrap_or_default()
                .into_iter()
                .collect();
            queue.extend(adds);
            let queue: Vec<Hash> = queue.into_iter().collect();
            self.writes.insert(key, Some(encode(&queue)));
        }
        Ok(())
    }

    /// Pays a job's fee to its provider, less the protocol share (into the provider's
    /// verification fund; none for a job its client chose not to have checked), and marks it
    /// released. The caller writes the record.
    fn pay_fee(
        &self,
        scratch: &mut Scratch,
        job_id: &Hash,
        record: &mut JobRecord,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        // No verifier checks an unchecked or a proved job: no protocol share.
        let share = if matches!(record.level, Verification::None | Verification::Zk) {
            0
        } else {
            self.market.protocol_share(record.fee)
        };
        let paid = record.fee - share;
        // The model's cited datasets take their royalties out of the provider's part.
        let royalty = self.pay_royalties(
            scratch,
            &crate::provider_citation_key(&record.model, &record.provider),
            paid,
            &record.provider,
            events,
        )?;
        let mut acc = self.scratch_account_ro(scratch, &record.provider)?;
        acc.balance = acc
            .balance
            .checked_add(paid - royalty)
            .ok_or_else(|| Error::Corrupt {
                key: format!("acct/{}", record.provider),
                reason: "balance exceeds total supply".into(),
            })?;
        scratch.accounts.insert(record.provider, acc);
        // The share goes to the provider's own verification fund, which pays for checks of its
        // jobs.
        self.add_to_fund(scratch, &record.provider, share)?;
        record.fee_state = FeeState::Released;
        events.push(Event::new(
            "fee_released",
            &[
                ("job_id", job_id.to_hex()),
                ("provider", record.provider.to_string()),
                ("amount", paid.to_string()),
                ("protocol_share", share.to_string()),
            ],
        ));
        Ok(())
    }

    /// Executes a whole block whose signatures were already checked; any inadmissible transaction
    /// makes the block invalid.
    pub fn execute_block(
        base: &'a dyn StateRead,
        ctx: BlockContext,
        txs: &[SignedTransaction],
    ) -> Result<Executed> {
        let mut exec = Executor::new(base, ctx)?;
        for (index, tx) in txs.iter().enumerate() {
            let hash = tx.hash();
            match exec.apply_tx(tx, hash) {
                Ok(_) => {}
                Err(CheckError::Tx(error)) => {
                    return Err(Error::InvalidTx {
                        index,
                        hash: hash.to_hex(),
                        error,
                    });
                }
                Err(CheckError::State(e)) => return Err(e),
            }
        }
        exec.finish()
    }
}

/// Checks that `amount` is not zero and that `balance` covers it.
fn check_spend(balance: Amount, amount: Amount) -> std::result::Result<(), TxError> {
    if amount == 0 {
        return Err(TxError::ZeroAmount);
    }
    if balance < amount {
        return Err(TxError::InsufficientFunds {
            need: amount,
            have: balance,
        });
    }
    Ok(())
}

/// Appends `adds` to the queue stored under `key`.
fn append_queue<T: BorshSerialize + BorshDeserialize>(
    base: &dyn StateRead,
    writes: &mut WriteSet,
    key: Vec<u8>,
    adds: Vec<T>,
) -> Result<()> {
    let mut queue: Vec<T> = read(base, &[writes], &key)?
        .map(|b| decode(&key, &b))
        .transpose()?
        .unwrap_or_default();
    queue.extend(adds);
    writes.insert(key, Some(encode(&queue)));
    Ok(())
}

fn transfer_event(from: &Address, to: &Address, amount: Amount) -> Event {
    Event::new(
        "transfer",
        &[
            ("from", from.to_string()),
            ("to", to.to_string()),
            ("amount", amount.to_string()),
        ],
    )
}

/// The checks that need no account: the chain id and the minimum fee for the transaction's
/// work ([`Params::min_fee_for`]).
pub fn check_chain_and_fee(
    tx: &Transaction,
    chain_id: &str,
    params: &Params,
) -> std::result::Result<(), TxError> {
    if tx.chain_id != chain_id {
        return Err(TxError::WrongChainId {
            expected: chain_id.to_string(),
            got: tx.chain_id.clone(),
        });
    }
    let min = params.min_fee_for(&tx.messages);
    if tx.fee < min {
        return Err(TxError::FeeTooLow { min, got: tx.fee });
    }
    Ok(())
}

/// Admission failure: the transaction's fault, or the store's.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The transaction is not admissible.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// Reading state failed.
    #[error(transparent)]
    State(#[from] Error),
}

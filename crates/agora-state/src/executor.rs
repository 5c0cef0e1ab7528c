use crate::{
    Account, ConsensusParams, Error, Escrow, EscrowRelease, FeeState, JobRecord, JobRejection,
    MarketParams, ModelInfo, Params, Provider, Result, TxError, UnbondingEntry, VerifyParams,
    account_key, check_key, committee_queue_key, consensus_params_key, deadline_queue_key,
    draw_queue_key, escrow_key, escrow_queue_key, job_key, market_params_key, model_key,
    params_key, pending_key, provider_key, prune_queue_key, unbonding_key, verification_fund_key,
    verify_params_key,
};

mod checks;
mod epoch;
use agora_types::{
    Address, Amount, Event, Hash, MAX_MODEL_NAME_BYTES, MAX_REDUNDANCY, MAX_SETTLE_JOBS, Message,
    ProviderInfo, PublicKey, Receipt, SettledJob, SignedTransaction, Transaction, TxFailure,
    Verification, job_fee,
};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, BTreeSet};

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
}

/// A transaction's pending changes, applied to the block only if all its messages succeed.
#[derive(Default)]
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
        Ok(Executor {
            base,
            ctx,
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
        let mut from = self.scratch_account(scratch, sender)?;
        match msg {
            Message::Transfer { to, amount } => {
                let amount = *amount;
                if let Err(e) = check_spend(from.balance, amount) {
                    return Ok(Err(e));
                }
                if to == sender {
                    events.push(transfer_event(sender, to, amount));
                    return Ok(Ok(()));
                }
                let mut dest = self.scratch_account(scratch, to)?;
                if dest.total().and_then(|t| t.checked_add(amount)).is_none() {
                    return Ok(Err(TxError::AmountOverflow(
                        "recipient total would exceed u128",
                    )));
                }
                from.balance -= amount;
                dest.balance += amount;
                scratch.accounts.insert(*sender, from);
                scratch.accounts.insert(*to, dest);
                events.push(transfer_event(sender, to, amount));
            }
            Message::Bond { amount } => {
                let amount = *amount;
                if let Err(e) = check_spend(from.balance, amount) {
                    return Ok(Err(e));
                }
                from.balance -= amount;
                from.bonded += amount;
                scratch.accounts.insert(*sender, from);
                self.record_validator_key(scratch, sender, sender_key)?;
                events.push(Event::new(
                    "bond",
                    &[
                        ("account", sender.to_string()),
                        ("amount", amount.to_string()),
                    ],
                ));
            }
            Message::Unbond { amount } => {
                let amount = *amount;
                if amount == 0 {
                    return Ok(Err(TxError::ZeroAmount));
                }
                if from.bonded < amount {
                    return Ok(Err(TxError::InsufficientBonded {
                        need: amount,
                        have: from.bonded,
                    }));
                }
                from.bonded -= amount;
                from.unbonding += amount;
                let release = self.queue_unbonding(scratch, *sender, amount);
                scratch.accounts.insert(*sender, from);
                events.push(Event::new(
                    "unbond",
                    &[
                        ("account", sender.to_string()),
                        ("amount", amount.to_string()),
                        ("release_height", release.to_string()),
                    ],
                ));
            }
            Message::RegisterProvider { stake, info } => {
                let stake = *stake;
                match self.get::<Provider>(scratch, &provider_key(sender))? {
                    Some(Provider {
                        retired_height: Some(height),
                        ..
                    }) => {
                        return Ok(Err(TxError::ProviderRetired {
                            address: *sender,
                            height,
                        }));
                    }
                    Some(_) => return Ok(Err(TxError::ProviderExists { address: *sender })),
                    None => {}
                }
                if stake < self.market.min_provider_stake {
                    return Ok(Err(TxError::StakeTooLow {
                        min: self.market.min_provider_stake,
                        got: stake,
                    }));
                }
                if let Err(e) = self.check_provider_info(scratch, info)? {
                    return Ok(Err(e));
                }
                if from.balance < stake {
                    return Ok(Err(TxError::InsufficientFunds {
                        need: stake,
                        have: from.balance,
                    }));
                }
                from.balance -= stake;
                scratch.accounts.insert(*sender, from);
                let provider = Provider {
                    info: info.clone(),
                    stake,
                    registered_height: self.ctx.height,
                    jobs_settled: 0,
                    fees_settled: 0,
                    held_until: 0,
                    open_checks: 0,
                    frauds: 0,
                    retired_height: None,
                };
                scratch
                    .writes
                    .insert(provider_key(sender), Some(encode(&provider)));
                events.push(Event::new(
                    "provider_registered",
                    &[
                        ("provider", sender.to_string()),
                        ("stake", stake.to_string()),
                        ("endpoint", info.endpoint.clone()),
                    ],
                ));
            }
            Message::UpdateProvider { info } => {
                let Some(mut provider) = self.get::<Provider>(scratch, &provider_key(sender))?
                else {
                    return Ok(Err(TxError::NotProvider { address: *sender }));
                };
                if let Some(height) = provider.retired_height {
                    return Ok(Err(TxError::ProviderRetired {
                        address: *sender,
                        height,
                    }));
                }
                if let Err(e) = self.check_provider_info(scratch, info)? {
                    return Ok(Err(e));
                }
                provider.info = info.clone();
                scratch
                    .writes
                    .insert(provider_key(sender), Some(encode(&provider)));
                events.push(Event::new(
                    "provider_updated",
                    &[
                        ("provider", sender.to_string()),
                        ("endpoint", info.endpoint.clone()),
                    ],
                ));
            }
            Message::UnregisterProvider => {
                let Some(provider) = self.get::<Provider>(scratch, &provider_key(sender))? else {
                    return Ok(Err(TxError::NotProvider { address: *sender }));
                };
                // A convicted provider that left already: only its record is left.
                if provider.retired_height.is_some() && provider.stake == 0 {
                    return Ok(Err(TxError::NotProvider { address: *sender }));
                }
                // Its stake must stay within reach while any of its fees can still be disputed.
                if provider.open_checks > 0 || self.ctx.height <= provider.held_until {
                    return Ok(Err(TxError::ProviderBusy {
                        until: provider.held_until,
                        open_checks: provider.open_checks,
                    }));
                }
                // The stake unbonds like validator stake; fees still pending are paid later.
                let Some(unbonding) = from.unbonding.checked_add(provider.stake) else {
                    return Ok(Err(TxError::AmountOverflow("unbonding total exceeds u128")));
                };
                from.unbonding = unbonding;
                let release = self.queue_unbonding(scratch, *sender, provider.stake);
                if provider.retired_height.is_some() {
                    // A convicted provider's record stays, without stake, so that its address
                    // cannot register again.
                    let tombstone = Provider {
                        stake: 0,
                        ..provider.clone()
                    };
                    scratch
                        .writes
                        .insert(provider_key(sender), Some(encode(&tombstone)));
                } else {
                    scratch.writes.insert(provider_key(sender), None);
                }
                // What its fund holds no longer pays for its checks (it has none left).
                let fund = self.fund(scratch, sender)?;
                if fund > 0 {
                    self.add_to_pool(scratch, fund)?;
                    scratch.writes.insert(verification_fund_key(sender), None);
                }
                scratch.accounts.insert(*sender, from);
                events.push(Event::new(
                    "provider_unregistered",
                    &[
                        ("provider", sender.to_string()),
                        ("stake", provider.stake.to_string()),
                        ("release_height", release.to_string()),
                    ],
                ));
            }
            Message::RegisterModel { id, name, kind } => {
                if name.trim().is_empty() || name.len() > MAX_MODEL_NAME_BYTES {
                    return Ok(Err(TxError::InvalidModel(format!(
                        "the name must be 1 to {MAX_MODEL_NAME_BYTES} bytes"
                    ))));
                }
                if self.get::<ModelInfo>(scratch, &model_key(id))?.is_some() {
                    return Ok(Err(TxError::ModelExists { id: id.to_hex() }));
                }
                let info = ModelInfo {
                    name: name.clone(),
                    kind: *kind,
                };
                scratch.writes.insert(model_key(id), Some(encode(&info)));
                events.push(Event::new(
                    "model_registered",
                    &[("model", id.to_hex()), ("name", name.clone())],
                ));
            }
            Message::EscrowDeposit { amount } => {
                let amount = *amount;
                if let Err(e) = check_spend(from.balance, amount) {
                    return Ok(Err(e));
                }
                let key = escrow_key(sender);
                let mut escrow: Escrow = self.get(scratch, &key)?.unwrap_or_default();
                let Some(balance) = escrow.balance.checked_add(amount) else {
                    return Ok(Err(TxError::AmountOverflow("escrow exceeds u128")));
                };
                escrow.balance = balance;
                from.balance -= amount;
                scratch.accounts.insert(*sender, from);
                scratch.writes.insert(key, Some(encode(&escrow)));
                events.push(Event::new(
                    "escrow_deposit",
                    &[
                        ("client", sender.to_string()),
                        ("amount", amount.to_string()),
                    ],
                ));
            }
            Message::EscrowWithdraw { amount } => {
                let amount = *amount;
                if amount == 0 {
                    return Ok(Err(TxError::ZeroAmount));
                }
                let key = escrow_key(sender);
                let mut escrow: Escrow = self.get(scratch, &key)?.unwrap_or_default();
                if escrow.balance < amount {
                    return Ok(Err(TxError::InsufficientEscrow {
                        need: amount,
                        have: escrow.balance,
                    }));
                }
                escrow.balance -= amount;
                let Some(unlocking) = escrow.unlocking.checked_add(amount) else {
                    return Ok(Err(TxError::AmountOverflow("escrow exceeds u128")));
                };
                escrow.unlocking = unlocking;
                let release = self
                    .ctx
                    .height
                    .saturating_add(self.market.escrow_unlock_period);
                scratch.writes.insert(key, Some(encode(&escrow)));
                scratch.escrow_releases.push((
                    release,
                    EscrowRelease {
                        client: *sender,
                        amount,
                    },
                ));
                events.push(Event::new(
                    "escrow_withdraw",
                    &[
                        ("client", sender.to_string()),
                        ("amount", amount.to_string()),
                        ("release_height", release.to_string()),
                    ],
                ));
            }
            Message::RegisterVerifier { stake, info } => {
                return self.register_verifier(scratch, sender, from, *stake, info, events);
            }
            Message::UnregisterVerifier => {
                return self.unregister_verifier(scratch, sender, from, events);
            }
            Message::RevealJob {
                job_id,
                verifier,
                part,
                parts,
                data,
            } => {
                return self.reveal(
                    scratch, sender, job_id, verifier, *part, *parts, data, events,
                );
            }
            Message::ChallengeJob { job_id } => {
                return self.challenge(scratch, sender, from, job_id, events);
            }
            Message::PostVerdict { job_id, verdict } => {
                return self.post_verdict(scratch, sender, job_id, *verdict, events);
            }
            Message::SettleJobs { jobs } => {
                if jobs.len() > MAX_SETTLE_JOBS {
                    return Ok(Err(TxError::TooManyJobs {
                        max: MAX_SETTLE_JOBS,
                        got: jobs.len(),
                    }));
                }
                for job in jobs {
                    let id = job.request.request.id();
                    match self.settle(scratch, job)? {
                        Ok(event) => events.push(event),
                        Err(why) => events.push(Event::new(
                            "job_rejected",
                            &[
                                ("job_id", id.to_hex()),
                                ("code", why.code().to_string()),
                                ("reason", why.to_string()),
                            ],
                        )),
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Checks a provider description against the registry of models.
    fn check_provider_info(
        &self,
        scratch: &Scratch,
        info: &ProviderInfo,
    ) -> Result<std::result::Result<(), TxError>> {
        if let Err(why) = info.check() {
            return Ok(Err(TxError::InvalidProvider(why)));
        }
        self.models_registered(scratch, &info.models)
    }

    /// Every model in the registry, or the first that is not.
    fn models_registered(
        &self,
        scratch: &Scratch,
        models: &[Hash],
    ) -> Result<std::result::Result<(), TxError>> {
        for model in models {
            if self.get::<ModelInfo>(scratch, &model_key(model))?.is_none() {
                return Ok(Err(TxError::UnknownModel { id: model.to_hex() }));
            }
        }
        Ok(Ok(()))
    }

    /// Settles one job into `scratch`, or says why not (and changes nothing).
    fn settle(
        &mut self,
        scratch: &mut Scratch,
        job: &SettledJob,
    ) -> Result<std::result::Result<Event, JobRejection>> {
        let (req, rec) = (&job.request.request, &job.receipt.receipt);
        if req.chain_id != self.ctx.chain_id {
            return Ok(Err(JobRejection::WrongChain {
                got: req.chain_id.clone(),
            }));
        }
        let signer = job.receipt.provider.address();
        if signer != req.provider {
            return Ok(Err(JobRejection::WrongProvider {
                named: req.provider,
                signer,
            }));
        }
        if rec.request_hash != req.hash() {
            return Ok(Err(JobRejection::RequestMismatch));
        }
        if self.ctx.height > req.expiry_height {
            return Ok(Err(JobRejection::Expired {
                expiry: req.expiry_height,
            }));
        }
        // A request valid for ever could never be forgotten: its id must stay refused.
        let max = self.market.max_request_lifetime;
        if req.expiry_height - self.ctx.height > max {
            return Ok(Err(JobRejection::ExpiryTooFar {
                expiry: req.expiry_height,
                max,
            }));
        }
        // The request's hash, which the receipt names (checked above).
        let job_id = rec.request_hash;
        let jkey = job_key(&job_id);
        if read(self.base, &[&self.writes, &scratch.writes], &jkey)?.is_some() {
            return Ok(Err(JobRejection::AlreadySettled { job_id }));
        }
        let pkey = provider_key(&req.provider);
        let Some(mut provider) = self.get::<Provider>(scratch, &pkey)? else {
            return Ok(Err(JobRejection::UnknownProvider {
                address: req.provider,
            }));
        };
        if let Some(height) = provider.retired_height {
            return Ok(Err(JobRejection::ProviderRetired {
                address: req.provider,
                height,
            }));
        }
        if !provider.info.models.contains(&req.model) {
            return Ok(Err(JobRejection::ModelNotServed { model: req.model }));
        }
        let level = req.params.verification;
        let checkers = match level {
            Verification::Redundant(k) if k == 0 || k > MAX_REDUNDANCY => {
                return Ok(Err(JobRejection::BadVerification {
                    max: MAX_REDUNDANCY,
                    got: k,
                }));
            }
            Verification::Redundant(k) => Amount::from(k),
            _ => 0,
        };
        if rec.fee > req.max_fee {
            return Ok(Err(JobRejection::FeeAboveMax {
                fee: rec.fee,
                max: req.max_fee,
            }));
        }
        let expected = job_fee(
            provider.info.price_input_per_1k,
            provider.info.price_output_per_1k,
            rec.input_tokens,
            rec.output_tokens,
        );
        if expected != Some(rec.fee) {
            return Ok(Err(JobRejection::WrongFee {
                fee: rec.fee,
                expected: expected.unwrap_or(Amount::MAX),
            }));
        }
        // Signatures last: the checks above are cheaper.
        if job.request.verify().is_err() {
            return Ok(Err(JobRejection::BadClientSignature));
        }
        if job.receipt.verify().is_err() {
            return Ok(Err(JobRejection::BadProviderSignature));
        }
        let client = req.client.address();
        let ekey = escrow_key(&client);
        let mut escrow: Escrow = self.get(scratch, &ekey)?.unwrap_or_default();
        // A redundant job also pays each of its verifiers the fee: held by its record for its check.
        let surcharge = rec.fee.checked_mul(checkers).unwrap_or(Amount::MAX);
        let need = rec.fee.saturating_add(surcharge);
        if escrow.claimable() < need {
            return Ok(Err(JobRejection::InsufficientEscrow {
                need,
                have: escrow.claimable(),
            }));
        }
        // From the balance first, then from what is being withdrawn.
        let from_balance = need.min(escrow.balance);
        escrow.balance -= from_balance;
        escrow.unlocking -= need - from_balance;
        scratch.writes.insert(ekey, Some(encode(&escrow)));
        // The surcharge waits in the job's record for the job's own check.

        let release = self.ctx.height.saturating_add(self.market.challenge_window);
        provider.jobs_settled += 1;
        provider.fees_settled = provider.fees_settled.saturating_add(rec.fee);
        provider.held_until = provider.held_until.max(release);
        scratch.writes.insert(pkey, Some(encode(&provider)));
        let record = JobRecord {
            client,
            provider: req.provider,
            model: req.model,
            request_hash: rec.request_hash,
            input_hash: req.input_hash,
            output_hash: rec.output_hash,
            input_tokens: rec.input_tokens,
            output_tokens: rec.output_tokens,
            fee: rec.fee,
            settled_height: self.ctx.height,
            release_height: release,
            level,
            fee_state: FeeState::Pending,
            surcharge,
        };
        scratch.writes.insert(jkey, Some(encode(&record)));
        scratch.pending.push((release, job_id));
        // Forgotten once nobody can settle its request again and its fee is final (kept a while
        // for readers): see `prune_jobs`. Queued by the settling height, not by the expiry the
        // client chose, so one prune queue holds one block's settlements, never a pile-up of
        // jobs that all name the same expiry.
        let unsettleable = self
            .ctx
            .height
            .saturating_add(self.market.max_request_lifetime)
            .max(release);
        scratch
            .prunes
            .push((self.prune_height(unsettleable), job_id));
        if level != Verification::None {
            // Whether it is checked, and by whom, is drawn in the next block, from that block's
            // seed (its proposer's VRF output): unknown when the provider settles.
            scratch
                .draws
                .push((self.ctx.height.saturating_add(1), job_id));
        }
        Ok(Ok(Event::new(
            "job_settled",
            &[
                ("job_id", job_id.to_hex()),
                ("client", client.to_string()),
                ("provider", req.provider.to_string()),
                ("model", req.model.to_hex()),
                ("fee", rec.fee.to_string()),
                ("release_height", release.to_string()),
            ],
        )))
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

    /// Returns to their owners the escrow withdrawals that unlock at this height (less what
    /// settlements drew from them meanwhile).
    fn release_escrow(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let qkey = escrow_queue_key(self.ctx.height);
        let Some(bytes) = read(self.base, &[&self.writes], &qkey)? else {
            return Ok(());
        };
        let queue: Vec<EscrowRelease> = decode(&qkey, &bytes)?;
        for entry in queue {
            let ekey = escrow_key(&entry.client);
            let mut escrow: Escrow = read(self.base, &[&self.writes], &ekey)?
                .map(|b| decode(&ekey, &b))
                .transpose()?
                .unwrap_or_default();
            let amount = entry.amount.min(escrow.unlocking);
            escrow.unlocking -= amount;
            self.writes.insert(ekey, Some(encode(&escrow)));
            let mut acc = self.load(&entry.client)?.unwrap_or_default();
            acc.balance = acc
                .balance
                .checked_add(amount)
                .ok_or_else(|| Error::Corrupt {
                    key: format!("acct/{}", entry.client),
                    reason: "balance exceeds total supply".into(),
                })?;
            self.store(entry.client, acc);
            events.push(Event::new(
                "escrow_released",
                &[
                    ("client", entry.client.to_string()),
                    ("amount", amount.to_string()),
                ],
            ));
        }
        self.writes.insert(qkey, None);
        Ok(())
    }

    /// Pays providers the fees whose challenge window ends at this height and that no check
    /// holds or refunded.
    fn release_fees(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let Some(queue) = self.take_queue(pending_key(self.ctx.height))? else {
            return Ok(());
        };
        let mut scratch = Scratch::default();
        for job_id in queue {
            let jkey = job_key(&job_id);
            let Some(mut record) = self.get::<JobRecord>(&scratch, &jkey)? else {
                continue;
            };
            if record.fee_state != FeeState::Pending {
                continue;
            }
            self.pay_fee(&mut scratch, &job_id, &mut record, events)?;
            scratch.writes.insert(jkey, Some(encode(&record)));
        }
        self.commit_scratch(scratch);
        Ok(())
    }

    /// The height at which a job record that can be forgotten after `after` is pruned.
    fn prune_height(&self, after: u64) -> u64 {
        after
            .max(self.ctx.height)
            .saturating_add(self.market.job_retention)
            .saturating_add(1)
    }

    /// Forgets the records of jobs whose request has expired (so their id can never be settled
    /// again: settlement refuses an expired request before it looks for a record) and whose fee
    /// is final, with their decided check. A job still in play (a fee pending or held, a check
    /// open) is looked at again later.
    fn prune_jobs(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let Some(queue) = self.take_queue(prune_queue_key(self.ctx.height))? else {
            return Ok(());
        };
        let mut scratch = Scratch::default();
        for job_id in queue {
            let jkey = job_key(&job_id);
            let Some(record) = self.get::<JobRecord>(&scratch, &jkey)? else {
                continue;
            };
            let check: Option<crate::Check> = self.get(&scratch, &check_key(&job_id))?;
            let final_fee = matches!(record.fee_state, FeeState::Released | FeeState::Refunded);
            let open = check
                .as_ref()
                .is_some_and(|c| c.outcome == crate::Outcome::Open);
            if !final_fee || open {
                let later = self.prune_height(self.ctx.height);
                scratch.prunes.push((later, job_id));
                continue;
            }
            scratch.writes.insert(jkey, None);
            if check.is_some() {
                scratch.writes.insert(check_key(&job_id), None);
            }
            events.push(Event::new("job_pruned", &[("job_id", job_id.to_hex())]));
        }
        self.commit_scratch(scratch);
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
        let share = if record.level == Verification::None {
            0
        } else {
            self.market.protocol_share(record.fee)
        };
        let paid = record.fee - share;
        let mut acc = self.scratch_account_ro(scratch, &record.provider)?;
        acc.balance = acc
            .balance
            .checked_add(paid)
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

use crate::{
    Account, Error, Params, Result, TxError, UnbondingEntry, account_key, params_key, unbonding_key,
};
use agora_types::{
    Address, Amount, Event, Hash, Message, Receipt, SignedTransaction, Transaction, TxFailure,
};
use borsh::BorshDeserialize;
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
    /// Accounts read or changed in this block (`None`: does not exist).
    accounts: BTreeMap<Address, Option<Account>>,
    /// Accounts changed in this block.
    dirty: BTreeSet<Address>,
    /// Non-account changes.
    writes: WriteSet,
    receipts: Vec<Receipt>,
    /// Fees charged so far in this block, paid to the proposer at the end.
    fees: Amount,
}

/// A transaction's pending changes, applied to the block only if all its messages succeed.
#[derive(Default)]
struct Scratch {
    accounts: BTreeMap<Address, Account>,
    writes: WriteSet,
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
        Ok(Executor {
            base,
            ctx,
            params,
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
            if let Err(e) = self.apply_message(&mut scratch, &sender_addr, msg, &mut events)? {
                failure = Some(TxFailure {
                    code: e.code().into(),
                    message: e.to_string(),
                    message_index: i as u32,
                });
                break;
            }
        }
        if failure.is_none() {
            for (address, account) in scratch.accounts {
                self.store(address, account);
            }
            for (k, v) in scratch.writes {
                self.writes.insert(k, v);
            }
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
        msg: &Message,
        events: &mut Vec<Event>,
    ) -> Result<std::result::Result<(), TxError>> {
        let mut from = self.scratch_account(scratch, sender)?;
        match msg {
            Message::Transfer { to, amount } => {
                let amount = *amount;
                if amount == 0 {
                    return Ok(Err(TxError::ZeroAmount));
                }
                if from.balance < amount {
                    return Ok(Err(TxError::InsufficientFunds {
                        need: amount,
                        have: from.balance,
                    }));
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
                if amount == 0 {
                    return Ok(Err(TxError::ZeroAmount));
                }
                if from.balance < amount {
                    return Ok(Err(TxError::InsufficientFunds {
                        need: amount,
                        have: from.balance,
                    }));
                }
                from.balance -= amount;
                from.bonded += amount;
                scratch.accounts.insert(*sender, from);
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
                let release = self.ctx.height.saturating_add(self.params.unbonding_period);
                let qkey = unbonding_key(release);
                let mut queue: Vec<UnbondingEntry> =
                    read(self.base, &[&self.writes, &scratch.writes], &qkey)?
                        .map(|b| decode(&qkey, &b))
                        .transpose()?
                        .unwrap_or_default();
                queue.push(UnbondingEntry {
                    address: *sender,
                    amount,
                });
                scratch.writes.insert(qkey, Some(encode(&queue)));
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
        }
        Ok(Ok(()))
    }

    /// End of block: pays the fees, releases stake whose unbonding period ends at this height, and
    /// encodes every changed account.
    pub fn finish(mut self) -> Result<Executed> {
        let mut block_events = Vec::new();
        self.credit_fees(&mut block_events)?;
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

/// The checks that need no account: the chain id and the minimum fee.
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
    if tx.fee < params.min_fee {
        return Err(TxError::FeeTooLow {
            min: params.min_fee,
            got: tx.fee,
        });
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

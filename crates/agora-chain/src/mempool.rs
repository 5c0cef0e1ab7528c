use agora_state::TxError;
use agora_types::{Address, Amount, Hash, SignedTransaction};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, VecDeque},
};

/// Mempool limits.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Most transactions held at once.
    pub capacity: usize,
    /// Most pending transactions per sender.
    pub per_sender: usize,
    /// Most proof-sized transactions held at once (each up to 512 KiB, where others are at most
    /// 32 KiB), and per sender: a block takes 8.
    pub proof_capacity: usize,
    pub proofs_per_sender: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            capacity: 50_000,
            per_sender: 1_000,
            proof_capacity: 64,
            proofs_per_sender: 4,
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: SignedTransaction,
    seq: u64,
}

impl Entry {
    /// Its place among the queues' last transactions.
    fn tail_key(&self, hash: &Hash) -> (Amount, Reverse<u64>, Hash) {
        (fee_rate(&self.tx), Reverse(self.seq), *hash)
    }
}

/// Pending transactions: bounded, per-sender nonce queues, FIFO across senders.
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    by_hash: BTreeMap<Hash, Entry>,
    /// Per sender, pending hashes in nonce order (contiguous from the account's nonce).
    by_sender: BTreeMap<Address, VecDeque<Hash>>,
    /// Arrival order.
    order: BTreeMap<u64, Hash>,
    /// The last transaction of every sender's queue, cheapest (fee per unit of work) and then
    /// newest first: what a full mempool evicts, found without scanning every sender.
    tails: BTreeSet<(Amount, Reverse<u64>, Hash)>,
    next_seq: u64,
    /// Proof-sized transactions held, cheapest (fee per unit of work) and then newest first: a
    /// full proof pool evicts the first of another sender's for a better-paying one.
    proofs: BTreeSet<(Amount, Reverse<u64>, Hash)>,
}

/// A transaction's fee per unit of work ([`agora_types::work_units`]): what it bids for room.
fn fee_rate(tx: &SignedTransaction) -> Amount {
    tx.tx.fee / Amount::from(agora_types::work_units(&tx.tx.messages))
}

/// What the mempool needs to know about a sender's committed account.
#[derive(Clone, Copy, Debug)]
pub struct SenderState {
    /// Committed next nonce.
    pub nonce: u64,
    /// Committed liquid balance.
    pub balance: Amount,
    /// Committed bonded stake.
    pub bonded: Amount,
}

impl Mempool {
    /// An empty mempool.
    pub fn new(config: MempoolConfig) -> Self {
        Mempool {
            config,
            by_hash: BTreeMap::new(),
            by_sender: BTreeMap::new(),
            order: BTreeMap::new(),
            tails: BTreeSet::new(),
            next_seq: 0,
            proofs: BTreeSet::new(),
        }
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Whether `hash` is pending.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// A pending transaction.
    pub fn get(&self, hash: &Hash) -> Option<&SignedTransaction> {
        self.by_hash.get(hash).map(|e| &e.tx)
    }

    /// Admits a signature-checked transaction whose chain id and minimum fee were checked, given
    /// its sender's committed account. Checks nonce order, the balance for everything pending
    /// from this sender, duplicates and capacity (evicting a lower-fee transaction if full).
    pub fn insert(
        &mut self,
        tx: SignedTransaction,
        hash: Hash,
        sender_state: SenderState,
    ) -> Result<(), TxError> {
        if self.by_hash.contains_key(&hash) {
            return Err(TxError::Duplicate {
                hash: hash.to_hex(),
            });
        }
        let sender = tx.tx.sender_address();
        let queue = self.by_sender.get(&sender);
        let pending = queue.map_or(0, VecDeque::len);
        // The queue may still hold transactions that a block just committed (they are removed
        // right after the commit): the next nonce follows the queue's last one either way.
        let expected = match queue.and_then(|q| q.back()) {
            Some(last) => (self.by_hash[last].tx.tx.nonce + 1).max(sender_state.nonce),
            None => sender_state.nonce,
        };
        if tx.tx.nonce < expected {
            return Err(TxError::NonceTooLow {
                expected,
                got: tx.tx.nonce,
            });
        }
        if tx.tx.nonce > expected {
            return Err(TxError::NonceTooHigh {
                expected,
                got: tx.tx.nonce,
            });
        }
        if pending >= self.config.per_sender {
            return Err(TxError::MempoolFull {
                capacity: self.config.per_sender,
                lowest_fee: tx.tx.fee,
            });
        }
        // Everything this sender has pending must be payable from the committed balance.
        let mut need = cost(&tx)?;
        for h in queue.into_iter().flatten() {
            need = need
                .checked_add(cost(&self.by_hash[h].tx)?)
                .ok_or(TxError::AmountOverflow(
                    "pending spending of this sender exceeds u128",
                ))?;
        }
        if need > sender_state.balance {
            return Err(TxError::InsufficientFunds {
                need,
                have: sender_state.balance,
            });
        }
        // Likewise every pending unbond must be covered by stake bonded now.
        let mut unbond = unbonding(&tx)?;
        if unbond > 0 {
            for h in queue.into_iter().flatten() {
                unbond = unbond.checked_add(unbonding(&self.by_hash[h].tx)?).ok_or(
                    TxError::AmountOverflow("pending unbonds of this sender exceed u128"),
                )?;
            }
        }
        if unbond > sender_state.bonded {
            return Err(TxError::InsufficientBonded {
                need: unbond,
                have: sender_state.bonded,
            });
        }
        // Proof-sized transactions have a small pool of their own: it holds a few blocks' worth.
        let carries = tx.proofs() > 0;
        if carries {
            let mine = queue
                .into_iter()
                .flatten()
                .filter(|h| self.by_hash[*h].tx.proofs() > 0)
                .count();
            if mine >= self.config.proofs_per_sender {
                return Err(TxError::MempoolFull {
                    capacity: self.config.proofs_per_sender,
                    lowest_fee: tx.tx.fee,
                });
            }
            // A full pool makes room for a better-paying proof: squatting it costs what the
            // squatters bid, and whoever outbids them gets in. The cheapest proof of another
            // sender goes, with its sender's later transactions (which could not run without
            // it): the newcomer must pay more per unit than it, and more in all than everything
            // it evicts, so that no one clears another's queue for less than that queue pays.
            if self.proofs.len() >= self.config.proof_capacity {
                let units = Amount::from(agora_types::work_units(&tx.tx.messages));
                let victim = self
                    .proofs
                    .iter()
                    .find(|(_, _, h)| self.by_hash[h].tx.tx.sender_address() != sender)
                    .map(|(rate, _, h)| (*h, *rate));
                let Some((victim, rate)) = victim else {
                    return Err(TxError::MempoolFull {
                        capacity: self.config.proof_capacity,
                        lowest_fee: Amount::MAX,
                    });
                };
                let evicted = self.fees_from(&victim);
                let least = rate
                    .saturating_add(1)
                    .saturating_mul(units)
                    .max(evicted.saturating_add(1));
                if tx.tx.fee < least {
                    return Err(TxError::MempoolFull {
                        capacity: self.config.proof_capacity,
                        lowest_fee: least,
                    });
                }
                self.remove_from(&victim);
            }
        }
        if self.by_hash.len() >= self.config.capacity {
            let units = Amount::from(agora_types::work_units(&tx.tx.messages));
            let (victim, victim_rate) =
                self.eviction_candidate(&sender)
                    .ok_or(TxError::MempoolFull {
                        capacity: self.config.capacity,
                        lowest_fee: Amount::MAX,
                    })?;
            if victim_rate >= fee_rate(&tx) {
                return Err(TxError::MempoolFull {
                    capacity: self.config.capacity,
                    lowest_fee: victim_rate.saturating_mul(units),
                });
            }
            self.remove(&victim);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, hash);
        let queue = self.by_sender.entry(sender).or_default();
        if let Some(old) = queue.back() {
            let old = self.by_hash[old].tail_key(old);
            self.tails.remove(&old);
        }
        queue.push_back(hash);
        let entry = Entry { tx, seq };
        self.tails.insert(entry.tail_key(&hash));
        if carries {
            self.proofs.insert(entry.tail_key(&hash));
        }
        self.by_hash.insert(hash, entry);
        Ok(())
    }

    /// The fees of `hash` and every later transaction of its sender.
    fn fees_from(&self, hash: &Hash) -> Amount {
        let Some(sender) = self.by_hash.get(hash).map(|e| e.tx.tx.sender_address()) else {
            return 0;
        };
        self.by_sender
            .get(&sender)
            .into_iter()
            .flatten()
            .skip_while(|h| *h != hash)
            .map(|h| self.by_hash[h].tx.tx.fee)
            .fold(0, Amount::saturating_add)
    }

    /// Removes `hash` and every later transaction of its sender (which could not run without it).
    fn remove_from(&mut self, hash: &Hash) {
        let Some(sender) = self.by_hash.get(hash).map(|e| e.tx.tx.sender_address()) else {
            return;
        };
        let doomed: Vec<Hash> = self
            .by_sender
            .get(&sender)
            .map(|q| q.iter().skip_while(|h| *h != hash).copied().collect())
            .unwrap_or_default();
        for h in doomed.iter().rev() {
            self.remove(h);
        }
    }

    /// The cheapest transaction (by fee per unit of work, the newest among equals) that is last
    /// in its sender's queue, other than `except`'s, so that evicting it leaves no sender with
    /// a gap. Looks at two entries at most.
    fn eviction_candidate(&self, except: &Address) -> Option<(Hash, Amount)> {
        self.tails
            .iter()
            .find(|(_, _, h)| self.by_hash[h].tx.tx.sender_address() != *except)
            .map(|(rate, _, h)| (*h, *rate))
    }

    /// Removes one transaction (no-op if absent).
    pub fn remove(&mut self, hash: &Hash) -> Option<SignedTransaction> {
        let entry = self.by_hash.remove(hash)?;
        if entry.tx.proofs() > 0 {
            self.proofs.remove(&entry.tail_key(hash));
        }
        self.order.remove(&entry.seq);
        self.tails.remove(&entry.tail_key(hash));
        let sender = entry.tx.tx.sender_address();
        if let Some(q) = self.by_sender.get_mut(&sender) {
            let was_last = q.back() == Some(hash);
            q.retain(|h| h != hash);
            if was_last && let Some(new) = q.back() {
                self.tails.insert(self.by_hash[new].tail_key(new));
            }
            if q.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        Some(entry.tx)
    }

    /// Up to `max` transactions in arrival order (which is nonce order per sender).
    pub fn reap(&self, max: usize) -> Vec<(Hash, SignedTransaction)> {
        self.order
            .values()
            .take(max)
            .map(|h| (*h, self.by_hash[h].tx.clone()))
            .collect()
    }

    /// Drops every pending transaction of `sender` with a nonce below `committed_nonce`, and the
    /// whole queue if what is left no longer starts at it.
    pub fn prune_sender(&mut self, sender: &Address, committed_nonce: u64) {
        let Some(queue) = self.by_sender.get(sender) else {
            return;
        };
        let stale: Vec<Hash> = queue
            .iter()
            .filter(|h| self.by_hash[*h].tx.tx.nonce < committed_nonce)
            .copied()
            .collect();
        for h in stale {
            self.remove(&h);
        }
        if let Some(first) = self.by_sender.get(sender).and_then(|q| q.front())
            && self.by_hash[first].tx.tx.nonce != committed_nonce
        {
            let all: Vec<Hash> = self.by_sender[sender].iter().copied().collect();
            for h in all {
                self.remove(&h);
            }
        }
    }
}

/// Stake the messages unbond.
fn unbonding(tx: &SignedTransaction) -> Result<Amount, TxError> {
    tx.tx
        .messages
        .iter()
        .map(|m| match m {
            agora_types::Message::Unbond { amount } => *amount,
            _ => 0,
        })
        .try_fold(0u128, |acc, a| acc.checked_add(a))
        .ok_or(TxError::AmountOverflow("unbond amounts exceed u128"))
}

/// Fee plus everything the messages may spend.
fn cost(tx: &SignedTransaction) -> Result<Amount, TxError> {
    tx.tx
        .messages
        .iter()
        .try_fold(tx.tx.fee, |acc, m| acc.checked_add(m.spend()))
        .ok_or(TxError::AmountOverflow("fee plus amounts exceeds u128"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::{Keypair, Message, Transaction};

    fn tx(who: &str, nonce: u64, fee: u128, amount: u128) -> (SignedTransaction, Hash) {
        let key = Keypair::from_seed_label(who);
        let t = Transaction {
            chain_id: "c".into(),
            sender: key.public(),
            nonce,
            fee,
            messages: vec![Message::Transfer {
                to: Address([1; 20]),
                amount,
            }],
        }
        .sign(&key);
        let h = t.hash();
        (t, h)
    }

    /// A transaction carrying a (junk) proof.
    fn proof_tx(who: &str, nonce: u64) -> (SignedTransaction, Hash) {
        proof_tx_paying(who, nonce, 1_000)
    }

    /// A transaction carrying a (junk) proof, paying `fee`.
    fn proof_tx_paying(who: &str, nonce: u64, fee: Amount) -> (SignedTransaction, Hash) {
        let key = Keypair::from_seed_label(who);
        let t = Transaction {
            chain_id: "c".into(),
            sender: key.public(),
            nonce,
            fee,
            messages: vec![Message::ZkAttest {
                claim: agora_types::ZkClaim {
                    model: Hash([1; 32]),
                    input_commitment: Hash([2; 32]),
                    threshold: 0,
                    below: false,
                    outputs: None,
                },
                certifier: None,
                proof: vec![nonce as u8; 100_000],
            }],
        }
        .sign(&key);
        let h = t.hash();
        (t, h)
    }

    #[test]
    fn proof_sized_transactions_have_a_small_pool_of_their_own() {
        let mut m = Mempool::new(MempoolConfig {
            capacity: 100,
            per_sender: 100,
            proof_capacity: 6,
            proofs_per_sender: 4,
        });
        // Four per sender: the fifth is refused, while the sender's plain transactions still go in.
        for n in 0..4 {
            let (t, h) = proof_tx("a", n);
            m.insert(t, h, RICH).unwrap();
        }
        let (t, h) = proof_tx("a", 4);
        assert!(matches!(
            m.insert(t, h, RICH),
            Err(TxError::MempoolFull { .. })
        ));
        let (t, h) = tx("a", 4, 10, 1);
        m.insert(t, h, RICH).unwrap();
        // Six in all.
        for n in 0..2 {
            let (t, h) = proof_tx("b", n);
            m.insert(t, h, RICH).unwrap();
        }
        let (t, h) = proof_tx("c", 0);
        let (t2, h2) = (t.clone(), h);
        assert!(matches!(
            m.insert(t, h, RICH),
            Err(TxError::MempoolFull { .. })
        ));
        // Room again once one leaves.
        let first = proof_tx("a", 0).1;
        assert!(m.remove(&first).is_some());
        m.insert(t2, h2, RICH).unwrap();
    }

    #[test]
    fn a_full_proof_pool_makes_room_for_a_better_paying_proof() {
        let mut m = Mempool::new(MempoolConfig {
            capacity: 100,
            per_sender: 100,
            proof_capacity: 6,
            proofs_per_sender: 4,
        });
        // Squatters fill the pool at the least fee: four from a (then a plain one), two from b.
        for n in 0..4 {
            let (t, h) = proof_tx("a", n);
            m.insert(t, h, RICH).unwrap();
        }
        let (t, a_plain) = tx("a", 4, 5_000, 1);
        m.insert(t, a_plain, RICH).unwrap();
        let b: Vec<Hash> = (0..2)
            .map(|n| {
                let (t, h) = proof_tx("b", n);
                m.insert(t, h, RICH).unwrap();
                h
            })
            .collect();
        // The same bid gets nothing, and is told what would get in.
        let (t, h) = proof_tx("c", 0);
        let Err(TxError::MempoolFull { lowest_fee, .. }) = m.insert(t, h, RICH) else {
            panic!("a full pool takes no equal bid");
        };
        // A better one evicts the newest of the cheapest, then the next.
        let (t, h) = proof_tx_paying("c", 0, lowest_fee);
        m.insert(t, h, RICH).unwrap();
        assert!(m.contains(&h) && !m.contains(&b[1]) && m.contains(&b[0]));
        let (t, h) = proof_tx_paying("d", 0, 10_000);
        m.insert(t, h, RICH).unwrap();
        assert!(!m.contains(&b[0]));
        // A proof in the middle of a sender's queue goes with everything after it, for a bid
        // above the rate and above all they pay together (a's last proof and its plain
        // transaction: 1,000 + 5,000).
        let (t, h) = proof_tx_paying("e", 0, 2_000);
        let Err(TxError::MempoolFull { lowest_fee, .. }) = m.insert(t, h, RICH) else {
            panic!("a bid above the rate but below the queue's fees takes nothing");
        };
        assert_eq!(lowest_fee, 6_001);
        let (t, h) = proof_tx_paying("e", 0, 6_001);
        m.insert(t, h, RICH).unwrap();
        assert!(!m.contains(&proof_tx("a", 3).1) && !m.contains(&a_plain));
        assert!(m.contains(&proof_tx("a", 2).1));
        assert_eq!(m.len(), 6);
        // Nobody is evicted for its own sender's proof.
        let (t, h) = proof_tx_paying("a", 3, 100_000);
        m.insert(t, h, RICH).unwrap();
        assert!(
            m.contains(&h) && m.contains(&proof_tx("a", 0).1),
            "c's proof made room"
        );
    }

    const RICH: SenderState = SenderState {
        nonce: 0,
        balance: 1_000_000,
        bonded: 0,
    };

    fn pool(capacity: usize) -> Mempool {
        Mempool::new(MempoolConfig {
            capacity,
            per_sender: 100,
            ..MempoolConfig::default()
        })
    }

    #[test]
    fn duplicates_replays_and_gaps_are_refused() {
        let mut m = pool(10);
        let (t0, h0) = tx("a", 0, 10, 1);
        m.insert(t0.clone(), h0, RICH).unwrap();
        assert_eq!(m.insert(t0, h0, RICH).unwrap_err().code(), "duplicate_tx");
        let (t, h) = tx("a", 0, 11, 1);
        assert_eq!(m.insert(t, h, RICH).unwrap_err().code(), "nonce_too_low");
        let (t, h) = tx("a", 2, 10, 1);
        assert_eq!(m.insert(t, h, RICH).unwrap_err().code(), "nonce_too_high");
        let (t, h) = tx("a", 1, 10, 1);
        m.insert(t, h, RICH).unwrap();
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn balance_covers_everything_pending_and_overflow_is_refused() {
        let mut m = pool(10);
        let poor = SenderState {
            nonce: 0,
            balance: 100,
            bonded: 0,
        };
        let (t, h) = tx("a", 0, 10, 60);
        m.insert(t, h, poor).unwrap();
        let (t, h) = tx("a", 1, 10, 31);
        let err = m.insert(t, h, poor).unwrap_err();
        assert_eq!(
            err,
            TxError::InsufficientFunds {
                need: 111,
                have: 100
            }
        );
        let (t, h) = tx("b", 0, 10, u128::MAX);
        assert_eq!(m.insert(t, h, RICH).unwrap_err().code(), "amount_overflow");
    }

    #[test]
    fn unbonds_beyond_bonded_stake_are_refused() {
        let mut m = pool(10);
        let key = Keypair::from_seed_label("staker");
        let unbond = |nonce, amount| {
            let t = Transaction {
                chain_id: "c".into(),
                sender: key.public(),
                nonce,
                fee: 10,
                messages: vec![Message::Unbond { amount }],
            }
            .sign(&key);
            let h = t.hash();
            (t, h)
        };
        let staker = SenderState {
            nonce: 0,
            balance: 100,
            bonded: 50,
        };
        let (t, h) = unbond(0, 30);
        m.insert(t, h, staker).unwrap();
        let (t, h) = unbond(1, 21);
        let err = m.insert(t, h, staker).unwrap_err();
        assert_eq!(err, TxError::InsufficientBonded { need: 51, have: 50 });
    }

    #[test]
    fn full_pool_evicts_the_lowest_fee_tail_or_refuses() {
        let mut m = pool(3);
        for (who, fee) in [("a", 50), ("b", 20), ("c", 30)] {
            let (t, h) = tx(who, 0, fee, 1);
            m.insert(t, h, RICH).unwrap();
        }
        let (cheap, ch) = tx("d", 0, 20, 1);
        assert_eq!(
            m.insert(cheap, ch, RICH).unwrap_err().code(),
            "mempool_full"
        );
        let (rich, rh) = tx("d", 0, 21, 1);
        m.insert(rich, rh, RICH).unwrap();
        assert_eq!(m.len(), 3);
        assert!(!m.contains(&tx("b", 0, 20, 1).1), "lowest fee evicted");
        assert!(m.contains(&rh));
        assert_eq!(m.tails.len(), m.by_sender.len());
    }

    /// Room goes to the higher fee per unit of work, not the higher fee: a transaction of two
    /// messages paying 40 bids 20 a unit.
    #[test]
    fn a_full_pool_compares_fees_per_unit_of_work() {
        let mut m = pool(2);
        for (who, fee) in [("a", 30), ("b", 25)] {
            let (t, h) = tx(who, 0, fee, 1);
            m.insert(t, h, RICH).unwrap();
        }
        let key = Keypair::from_seed_label("two");
        let two = Transaction {
            chain_id: "c".into(),
            sender: key.public(),
            nonce: 0,
            fee: 40,
            messages: vec![
                Message::Transfer {
                    to: Address([1; 20]),
                    amount: 1,
                },
                Message::Transfer {
                    to: Address([2; 20]),
                    amount: 1,
                },
            ],
        }
        .sign(&key);
        let err = m.insert(two.clone(), two.hash(), RICH).unwrap_err();
        assert_eq!(
            err,
            TxError::MempoolFull {
                capacity: 2,
                lowest_fee: 50
            }
        );
        // Many senders, removals from the middle and the end: the index of queue tails stays
        // the queues' last transactions.
        let mut m = pool(1_000);
        for who in 0..20 {
            for n in 0..5 {
                let (t, h) = tx(&format!("s{who}"), n, 10 + who as u128, 1);
                m.insert(t, h, RICH).unwrap();
            }
        }
        m.remove(&tx("s3", 4, 13, 1).1);
        m.remove(&tx("s4", 2, 14, 1).1);
        m.prune_sender(&Keypair::from_seed_label("s5").address(), 5);
        assert_eq!(m.tails.len(), m.by_sender.len());
        for h in m.by_sender.values().filter_map(|q| q.back()) {
            assert!(m.tails.contains(&m.by_hash[h].tail_key(h)));
        }
    }

    #[test]
    fn reap_is_fifo_and_prune_drops_stale_and_gapped() {
        let mut m = pool(10);
        let txs: Vec<_> = (0..3).map(|n| tx("a", n, 10, 1)).collect();
        for (t, h) in &txs {
            m.insert(t.clone(), *h, RICH).unwrap();
        }
        let (tb, hb) = tx("b", 0, 10, 1);
        m.insert(tb, hb, RICH).unwrap();
        let order: Vec<Hash> = m.reap(10).into_iter().map(|(h, _)| h).collect();
        assert_eq!(order, vec![txs[0].1, txs[1].1, txs[2].1, hb]);
        let a = Keypair::from_seed_label("a").address();
        m.prune_sender(&a, 1);
        assert!(!m.contains(&txs[0].1));
        assert!(m.contains(&txs[1].1));
        m.remove(&txs[1].1);
        m.prune_sender(&a, 1);
        assert!(!m.contains(&txs[2].1), "nonce 2 cannot run without nonce 1");
        assert_eq!(m.len(), 1);
    }
}

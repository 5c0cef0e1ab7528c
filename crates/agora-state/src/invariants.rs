//! The state's invariants, checked over a whole state after a block (in tests after every block,
//! and by the node in debug builds). Each one stops a class of bug that mints, loses or locks
//! tokens:
//!
//! - **Supply**: everything held anywhere — balances, bonded and unbonding stake, escrows,
//!   provider and verifier stakes, the verifiers' pool, fees pending or held, what open checks
//!   hold (budgets, challenge bonds) — adds up to the recorded supply, exactly.
//! - **Parts**: an account's `unbonding` is the sum of its entries in the unbonding queues; an
//!   escrow's `unlocking` is covered by its withdrawal queue entries; a provider's `open_checks`
//!   and a verifier's `open_seats` are the open checks and seats that name them; the verifier
//!   set is the registered verifiers.
//! - **Windows**: after block `h` no queue (unbonding, escrow, fees, draws, deadlines) holds an
//!   entry at or below `h`; a pending fee's window ends after `h` and its reminder is queued; a
//!   held fee has an open check, and every open check's job is held; every seat still owed a
//!   reveal or a verdict is inside its window, and an open check with no such seat has its
//!   committee's draw queued. So nothing stays locked past its windows.
//! - **Growth**: every job record has its pruning queued, so settled jobs do not pile up.

use crate::{
    Account, Check, Escrow, EscrowRelease, FeeState, JobRecord, Outcome, Provider, UnbondingEntry,
    Verifier,
};
use agora_types::{Address, Amount, Hash};
use borsh::BorshDeserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Where the supply is, by kind of holding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Balances, bonded and unbonding stake of accounts.
    pub accounts: Amount,
    /// Client escrows, balance and unlocking.
    pub escrows: Amount,
    /// Stake locked by providers (active or convicted).
    pub provider_stakes: Amount,
    /// Stake locked by verifiers.
    pub verifier_stakes: Amount,
    /// The verifiers' pool.
    pub pool: Amount,
    /// Providers' verification funds.
    pub funds: Amount,
    /// Fees waiting out their challenge window.
    pub fees_pending: Amount,
    /// Fees held by open checks.
    pub fees_held: Amount,
    /// Budgets and challenge bonds held by open checks.
    pub checks: Amount,
    /// Redundancy surcharges held by jobs until their check opens.
    pub surcharges: Amount,
    /// The recorded total supply.
    pub supply: Amount,
}

impl Holdings {
    /// The sum of every holding (`None` past `u128`).
    pub fn total(&self) -> Option<Amount> {
        [
            self.escrows,
            self.provider_stakes,
            self.verifier_stakes,
            self.pool,
            self.funds,
            self.fees_pending,
            self.fees_held,
            self.checks,
            self.surcharges,
        ]
        .into_iter()
        .try_fold(self.accounts, Amount::checked_add)
    }
}

/// The invariants a state broke (empty: none).
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("{} invariant(s) broken: {}", .0.len(), .0.join("; "))]
pub struct Violations(pub Vec<String>);

fn height_of(suffix: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(suffix.try_into().ok()?))
}

fn address_of(suffix: &[u8]) -> Option<Address> {
    Some(Address(suffix.try_into().ok()?))
}

fn hash_of(suffix: &[u8]) -> Option<Hash> {
    Some(Hash(suffix.try_into().ok()?))
}

/// Checks every invariant of a whole state as left by block `height` (every key and value, in
/// any order). Returns where the supply is, or every invariant broken.
pub fn check<'a>(
    height: u64,
    state: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Holdings, Violations> {
    let mut bad = Vec::new();
    let mut held = Holdings::default();
    let mut accounts: BTreeMap<Address, Account> = BTreeMap::new();
    let mut escrows: BTreeMap<Address, Escrow> = BTreeMap::new();
    let mut providers: BTreeMap<Address, Provider> = BTreeMap::new();
    let mut verifiers: BTreeMap<Address, Verifier> = BTreeMap::new();
    let mut jobs: BTreeMap<Hash, JobRecord> = BTreeMap::new();
    let mut checks: BTreeMap<Hash, Check> = BTreeMap::new();
    let mut unbonding: BTreeMap<Address, Amount> = BTreeMap::new();
    let mut withdrawing: BTreeMap<Address, Amount> = BTreeMap::new();
    let mut pending: BTreeSet<(u64, Hash)> = BTreeSet::new();
    let mut committees_due: BTreeSet<Hash> = BTreeSet::new();
    let mut prunes_due: BTreeSet<Hash> = BTreeSet::new();
    let mut open_index: BTreeSet<(Address, Hash)> = BTreeSet::new();
    let mut verifier_set: Option<Vec<Address>> = None;
    let mut supply = None;

    fn decode<T: BorshDeserialize>(bad: &mut Vec<String>, key: &[u8], value: &[u8]) -> Option<T> {
        match borsh::from_slice(value) {
            Ok(v) => Some(v),
            Err(e) => {
                bad.push(format!(
                    "{}: undecodable: {e}",
                    String::from_utf8_lossy(key)
                ));
                None
            }
        }
    }
    let add =
        |bad: &mut Vec<String>, slot: &mut Amount, amount: Amount| match slot.checked_add(amount) {
            Some(v) => *slot = v,
            None => bad.push("holdings exceed u128".into()),
        };

    for (key, value) in state {
        let queue_height = |prefix: &[u8]| key.strip_prefix(prefix).and_then(height_of);
        if let Some(a) = key.strip_prefix(b"acct/").and_then(address_of) {
            if let Some(acc) = decode::<Account>(&mut bad, key, value) {
                match acc.total() {
                    Some(t) => add(&mut bad, &mut held.accounts, t),
                    None => bad.push(format!("account {a}: total exceeds u128")),
                }
                accounts.insert(a, acc);
            }
        } else if let Some(a) = key.strip_prefix(b"escr/").and_then(address_of) {
            if let Some(e) = decode::<Escrow>(&mut bad, key, value) {
                add(&mut bad, &mut held.escrows, e.claimable());
                escrows.insert(a, e);
            }
        } else if let Some(a) = key.strip_prefix(b"prov/").and_then(address_of) {
            if let Some(p) = decode::<Provider>(&mut bad, key, value) {
                add(&mut bad, &mut held.provider_stakes, p.stake);
                providers.insert(a, p);
            }
        } else if let Some(a) = key.strip_prefix(b"vrfr/").and_then(address_of) {
            if let Some(v) = decode::<Verifier>(&mut bad, key, value) {
                add(&mut bad, &mut held.verifier_stakes, v.stake);
                verifiers.insert(a, v);
            }
        } else if let Some(id) = key.strip_prefix(b"job/").and_then(hash_of) {
            if let Some(j) = decode::<JobRecord>(&mut bad, key, value) {
                match j.fee_state {
                    FeeState::Pending => add(&mut bad, &mut held.fees_pending, j.fee),
                    FeeState::Held => add(&mut bad, &mut held.fees_held, j.fee),
                    FeeState::Released | FeeState::Refunded => {}
                }
                add(&mut bad, &mut held.surcharges, j.surcharge);
                // Drawn (or challenged) the block after settlement: then it is spent or refunded.
                if j.surcharge > 0 && j.settled_height < height {
                    bad.push(format!("job {id}: surcharge still held after its draw"));
                }
                jobs.insert(id, j);
            }
        } else if let Some(id) = key.strip_prefix(b"chk/").and_then(hash_of) {
            if let Some(c) = decode::<Check>(&mut bad, key, value) {
                if c.outcome == Outcome::Open {
                    let bond = c.challenger.map_or(0, |(_, b)| b);
                    add(&mut bad, &mut held.checks, c.budget);
                    add(&mut bad, &mut held.checks, bond);
                } else if c.budget != 0 || c.challenger.is_some() {
                    bad.push(format!("check {id}: decided but still holds funds"));
                }
                checks.insert(id, c);
            }
        } else if let Some(rest) = key.strip_prefix(b"chko/") {
            match (
                rest.get(..20).and_then(address_of),
                rest.get(20..).and_then(hash_of),
            ) {
                (Some(a), Some(j)) => {
                    open_index.insert((a, j));
                }
                _ => bad.push("chko/: malformed key".into()),
            }
        } else if key.starts_with(b"vfnd/") {
            if let Some(f) = decode::<Amount>(&mut bad, key, value) {
                add(&mut bad, &mut held.funds, f);
            }
        } else if key == b"pool/verifiers" {
            if let Some(p) = decode::<Amount>(&mut bad, key, value) {
                held.pool = p;
            }
        } else if key == b"supply" {
            supply = decode::<Amount>(&mut bad, key, value);
        } else if key == b"vset" {
            verifier_set = decode(&mut bad, key, value);
        } else if let Some(h) = queue_height(b"unbq/") {
            if h <= height {
                bad.push(format!("unbonding queue at {h} left behind at {height}"));
            }
            for e in decode::<Vec<UnbondingEntry>>(&mut bad, key, value).unwrap_or_default() {
                let slot = unbonding.entry(e.address).or_default();
                add(&mut bad, slot, e.amount);
            }
        } else if let Some(h) = queue_height(b"escq/") {
            if h <= height {
                bad.push(format!("escrow queue at {h} left behind at {height}"));
            }
            for e in decode::<Vec<EscrowRelease>>(&mut bad, key, value).unwrap_or_default() {
                let slot = withdrawing.entry(e.client).or_default();
                add(&mut bad, slot, e.amount);
            }
        } else if let Some(h) = queue_height(b"pend/") {
            if h <= height {
                bad.push(format!("fee queue at {h} left behind at {height}"));
            }
            for j in decode::<Vec<Hash>>(&mut bad, key, value).unwrap_or_default() {
                pending.insert((h, j));
            }
        } else if let Some(h) = queue_height(b"prnq/") {
            if h <= height {
                bad.push(format!("prune queue at {h} left behind at {height}"));
            }
            prunes_due.extend(decode::<Vec<Hash>>(&mut bad, key, value).unwrap_or_default());
        } else if let Some(h) = queue_height(b"cmtq/") {
            if h <= height {
                bad.push(format!("committee queue at {h} left behind at {height}"));
            }
            committees_due.extend(decode::<Vec<Hash>>(&mut bad, key, value).unwrap_or_default());
        } else if let Some(h) = queue_height(b"drw/").or_else(|| queue_height(b"ddl/"))
            && h <= height
        {
            bad.push(format!("queue {key:?} at {h} left behind at {height}"));
        }
    }

    held.supply = supply.unwrap_or_else(|| {
        bad.push("no recorded supply".into());
        0
    });
    match held.total() {
        Some(t) if t == held.supply => {}
        t => bad.push(format!(
            "supply {} but holdings {t:?}: {held:?}",
            held.supply
        )),
    }

    for (a, acc) in &accounts {
        let queued = unbonding.remove(a).unwrap_or(0);
        if acc.unbonding != queued {
            bad.push(format!(
                "account {a}: unbonding {} but {queued} queued",
                acc.unbonding
            ));
        }
    }
    for (a, queued) in unbonding {
        bad.push(format!(
            "{queued} queued to unbond for {a}, which has no account"
        ));
    }
    for (a, e) in &escrows {
        let queued = withdrawing.get(a).copied().unwrap_or(0);
        if e.unlocking > queued {
            bad.push(format!(
                "escrow {a}: unlocking {} but {queued} queued",
                e.unlocking
            ));
        }
    }

    // Jobs and their fees.
    for (id, j) in &jobs {
        // Every record is forgotten some day: none is left without its reminder.
        if !prunes_due.contains(id) {
            bad.push(format!("job {id}: its record is never pruned"));
        }
        let open = checks.get(id).is_some_and(|c| c.outcome == Outcome::Open);
        match j.fee_state {
            FeeState::Pending => {
                if j.release_height <= height {
                    bad.push(format!("job {id}: fee pending past its window"));
                }
                if !pending.contains(&(j.release_height, *id)) {
                    bad.push(format!("job {id}: fee pending but not queued for release"));
                }
            }
            FeeState::Held if !open => bad.push(format!("job {id}: fee held by no open check")),
            _ if open && j.fee_state != FeeState::Held => {
                bad.push(format!("job {id}: open check but fee {:?}", j.fee_state));
            }
            _ => {}
        }
    }

    // Checks, seats and the indexes that count them.
    let mut provider_checks: BTreeMap<Address, u32> = BTreeMap::new();
    let mut verifier_seats: BTreeMap<Address, u32> = BTreeMap::new();
    let mut expected_index: BTreeSet<(Address, Hash)> = BTreeSet::new();
    for id in checks.keys() {
        if !jobs.contains_key(id) {
            bad.push(format!("check {id}: its job has no record"));
        }
    }
    for (id, c) in checks.iter().filter(|(_, c)| c.outcome == Outcome::Open) {
        // Every seat of an open check, judged or not, counts for its verifier.
        for s in &c.seats {
            *verifier_seats.entry(s.verifier).or_default() += 1;
        }
        *provider_checks.entry(c.provider).or_default() += 1;
        expected_index.insert((c.provider, *id));
        // Something must still happen: a seat owes a reveal or verdict, or a committee is due.
        if c.seats.iter().all(|s| s.verdict.is_some()) && !committees_due.contains(id) {
            bad.push(format!("check {id}: open with nothing left to wait for"));
        }
        for s in c.seats.iter().filter(|s| s.verdict.is_none()) {
            expected_index.insert((s.verifier, *id));
            if !s.revealed() && s.reveal_deadline <= height {
                bad.push(format!("check {id}: reveal to {} overdue", s.verifier));
            }
            if s.verdict_deadline <= height {
                bad.push(format!("check {id}: verdict of {} overdue", s.verifier));
            }
        }
    }
    if expected_index != open_index {
        let extra: Vec<_> = open_index.difference(&expected_index).collect();
        let missing: Vec<_> = expected_index.difference(&open_index).collect();
        bad.push(format!(
            "open-check index: {} stale, {} missing",
            extra.len(),
            missing.len()
        ));
    }
    for (a, p) in &providers {
        let n = provider_checks.remove(a).unwrap_or(0);
        if p.open_checks != n {
            bad.push(format!(
                "provider {a}: open_checks {} but {n} open",
                p.open_checks
            ));
        }
    }
    // Checks of providers that left: only possible if the provider left with a check open.
    for (a, n) in provider_checks {
        bad.push(format!("{n} open checks of {a}, which is not registered"));
    }
    for (a, v) in &verifiers {
        let n = verifier_seats.remove(a).unwrap_or(0);
        if v.open_seats != n {
            bad.push(format!(
                "verifier {a}: open_seats {} but {n} open",
                v.open_seats
            ));
        }
    }
    for (a, n) in verifier_seats {
        bad.push(format!("{n} open seats of {a}, which is not registered"));
    }
    let registered: Vec<Address> = verifiers.keys().copied().collect();
    if verifier_set.unwrap_or_default() != registered {
        bad.push("the verifier set is not the registered verifiers".into());
    }

    if bad.is_empty() {
        Ok(held)
    } else {
        Err(Violations(bad))
    }
}

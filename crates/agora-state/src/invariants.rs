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
//! - **Emission**: supply = genesis + minted − burned; emission waiting for its subnet's epoch
//!   and stake delegated on subnets are holdings like any other.
//! - **Subnets**: each subnet's stake is the sum of its delegations; its neurons are exactly
//!   UIDs `0..n`, each hotkey mapped to its UID and back; weights and bonds only for UIDs in
//!   use; a commitment only from a registered hotkey, one each, and never past its window;
//!   forecasts only for the window running or the next, revealed only in the window they
//!   predict.
//! - **Data market**: each bounty's budget = available + held + paid + refunded, and what it
//!   holds is what its open items reserve; an open item has the step that moves it on queued
//!   inside its window; a reviewer's locked stake is what its open seats lock, never above its
//!   stake; a dataset never pays out more royalties than it received, and its claims add up.

use crate::{
    Account, Check, EmissionState, Escrow, EscrowRelease, FeeState, HotkeyStake, JobRecord, Neuron,
    Outcome, Prediction, Provider, Subnet, SubnetIndex, UnbondingEntry, Verifier, WeightCommit,
};
use agora_types::{Address, Amount, Hash};
use borsh::BorshDeserialize;
use std::collections::{BTreeMap, BTreeSet};

mod data;
use data::DataSeen;

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
    /// Stake delegated on subnets.
    pub subnet_stakes: Amount,
    /// Emission waiting for its subnet's epoch.
    pub emission_pending: Amount,
    /// The data market: bounty budgets, item bonds, review stakes, unclaimed royalties.
    pub data: Amount,
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
            self.subnet_stakes,
            self.emission_pending,
            self.data,
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

fn netuid_of(suffix: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(suffix.try_into().ok()?))
}

/// The subnets' invariants (see the module's documentation).
#[allow(clippy::too_many_arguments)]
fn check_subnets(
    bad: &mut Vec<String>,
    height: u64,
    index: SubnetIndex,
    subnets: &BTreeMap<u16, Subnet>,
    stake: &BTreeMap<u16, Amount>,
    neurons: &BTreeMap<(u16, u16), Address>,
    hotkeys: &BTreeMap<(u16, Address), u16>,
    rows: &[(&str, u16, u16)],
    commits: &BTreeMap<u16, Vec<WeightCommit>>,
) {
    let indexed: BTreeSet<u16> = index.subnets.iter().map(|s| s.netuid).collect();
    let stored: BTreeSet<u16> = subnets.keys().copied().collect();
    if indexed != stored || indexed.len() != index.subnets.len() {
        bad.push("the subnet index is not the subnets".into());
    }
    for slot in &index.subnets {
        let delegated = stake.get(&slot.netuid).copied().unwrap_or(0);
        if slot.stake != delegated {
            bad.push(format!(
                "subnet {}: stake {} but {delegated} delegated",
                slot.netuid, slot.stake
            ));
        }
        if slot.next_epoch <= height {
            bad.push(format!(
                "subnet {}: its next epoch ({}) is not ahead",
                slot.netuid, slot.next_epoch
            ));
        }
        if let Some(sn) = subnets.get(&slot.netuid)
            && slot.next_epoch > height + sn.params.tempo
        {
            bad.push(format!("subnet {}: next epoch beyond a tempo", slot.netuid));
        }
        if slot.netuid >= index.next_netuid {
            bad.push(format!("subnet {}: at or past next_netuid", slot.netuid));
        }
    }
    for netuid in stake.keys() {
        if !stored.contains(netuid) {
            bad.push(format!("stake on subnet {netuid}, which does not exist"));
        }
    }
    for (netuid, sn) in subnets {
        let uids: Vec<u16> = neurons
            .range((*netuid, 0)..=(*netuid, u16::MAX))
            .map(|((_, u), _)| *u)
            .collect();
        if uids != (0..sn.n).collect::<Vec<_>>() {
            bad.push(format!("subnet {netuid}: neurons are not UIDs 0..{}", sn.n));
        }
        if sn.n > sn.params.max_uids {
            bad.push(format!("subnet {netuid}: more UIDs than max_uids"));
        }
        if sn.burn < sn.params.min_burn || sn.burn > sn.params.max_burn {
            bad.push(format!("subnet {netuid}: burn outside its bounds"));
        }
        for p in std::iter::once(&sn.params).chain(&sn.pending) {
            if let Err(e) = p.check() {
                bad.push(format!(
                    "subnet {netuid}: hyperparameters break a rule: {e}"
                ));
            }
        }
    }
    for ((netuid, uid), hotkey) in neurons {
        if hotkeys.get(&(*netuid, *hotkey)) != Some(uid) {
            bad.push(format!(
                "subnet {netuid}: UID {uid}'s hotkey maps elsewhere"
            ));
        }
    }
    for ((netuid, hotkey), uid) in hotkeys {
        if neurons.get(&(*netuid, *uid)) != Some(hotkey) {
            bad.push(format!(
                "subnet {netuid}: {hotkey} maps to UID {uid}, not its own"
            ));
        }
    }
    for (what, netuid, uid) in rows {
        if subnets.get(netuid).is_none_or(|sn| *uid >= sn.n) {
            bad.push(format!("subnet {netuid}: {what} of UID {uid}, not in use"));
        }
    }
    for (netuid, list) in commits {
        let Some(sn) = subnets.get(netuid) else {
            bad.push(format!(
                "commitments on subnet {netuid}, which does not exist"
            ));
            continue;
        };
        let mut seen = BTreeSet::new();
        for c in list {
            if !hotkeys.contains_key(&(*netuid, c.hotkey)) {
                bad.push(format!(
                    "subnet {netuid}: a commitment of unregistered {}",
                    c.hotkey
                ));
            }
            if !seen.insert(c.hotkey) {
                bad.push(format!("subnet {netuid}: two commitments of {}", c.hotkey));
            }
            if c.reveal_epoch < sn.epochs {
                bad.push(format!(
                    "subnet {netuid}: a commitment past its reveal window"
                ));
            }
        }
    }
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
    let mut emission: Option<EmissionState> = None;
    let mut index: Option<SubnetIndex> = None;
    let mut subnets: BTreeMap<u16, Subnet> = BTreeMap::new();
    let mut subnet_stake: BTreeMap<u16, Amount> = BTreeMap::new();
    let mut neurons: BTreeMap<(u16, u16), Address> = BTreeMap::new();
    let mut hotkeys: BTreeMap<(u16, Address), u16> = BTreeMap::new();
    let mut rows: Vec<(&'static str, u16, u16)> = Vec::new();
    let mut commits: BTreeMap<u16, Vec<WeightCommit>> = BTreeMap::new();
    let mut predictions: BTreeMap<u16, Vec<Prediction>> = BTreeMap::new();
    let mut stake_by_hotkey: Vec<(u16, Address, Amount)> = Vec::new();
    let mut data = DataSeen::default();

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
        } else if key == b"emis" {
            emission = decode(&mut bad, key, value);
        } else if key == b"snet" {
            index = decode(&mut bad, key, value);
        } else if let Some(netuid) = key.strip_prefix(b"sn/").and_then(netuid_of) {
            if let Some(sn) = decode::<Subnet>(&mut bad, key, value) {
                subnets.insert(netuid, sn);
            }
        } else if let Some(rest) = key.strip_prefix(b"sns/") {
            match (
                rest.get(..2).and_then(netuid_of),
                rest.get(2..).and_then(address_of),
            ) {
                (Some(netuid), Some(hotkey)) => {
                    if let Some(st) = decode::<HotkeyStake>(&mut bad, key, value) {
                        let sorted = st
                            .delegations
                            .windows(2)
                            .all(|w| w[0].delegator < w[1].delegator);
                        if !sorted || st.delegations.iter().any(|d| d.total() == 0) {
                            bad.push(format!(
                                "stake on {hotkey} in subnet {netuid}: delegations unsorted, repeated or empty"
                            ));
                        }
                        let total = st.total();
                        add(&mut bad, &mut held.subnet_stakes, total);
                        add(&mut bad, subnet_stake.entry(netuid).or_default(), total);
                        stake_by_hotkey.push((netuid, hotkey, total));
                    }
                }
                _ => bad.push("sns/: malformed key".into()),
            }
        } else if let Some(rest) = key.strip_prefix(b"snn/") {
            match (
                rest.get(..2).and_then(netuid_of),
                rest.get(2..).and_then(netuid_of),
            ) {
                (Some(netuid), Some(uid)) => {
                    if let Some(nr) = decode::<Neuron>(&mut bad, key, value) {
                        neurons.insert((netuid, uid), nr.hotkey);
                    }
                }
                _ => bad.push("snn/: malformed key".into()),
            }
        } else if let Some(rest) = key.strip_prefix(b"snu/") {
            match (
                rest.get(..2).and_then(netuid_of),
                rest.get(2..).and_then(address_of),
            ) {
                (Some(netuid), Some(hotkey)) => {
                    if let Some(uid) = decode::<u16>(&mut bad, key, value) {
                        hotkeys.insert((netuid, hotkey), uid);
                    }
                }
                _ => bad.push("snu/: malformed key".into()),
            }
        } else if let Some((what, rest)) = key
            .strip_prefix(b"snw/")
            .map(|r| ("weights", r))
            .or_else(|| key.strip_prefix(b"snb/").map(|r| ("bonds", r)))
        {
            match (
                rest.get(..2).and_then(netuid_of),
                rest.get(2..).and_then(netuid_of),
            ) {
                (Some(netuid), Some(uid)) => rows.push((what, netuid, uid)),
                _ => bad.push(format!("{what}: malformed key")),
            }
        } else if let Some(netuid) = key.strip_prefix(b"snp/").and_then(netuid_of) {
            if let Some(p) = decode::<Vec<Prediction>>(&mut bad, key, value) {
                predictions.insert(netuid, p);
            }
        } else if let Some(netuid) = key.strip_prefix(b"snc/").and_then(netuid_of) {
            if let Some(c) = decode::<Vec<WeightCommit>>(&mut bad, key, value) {
                commits.insert(netuid, c);
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
        } else if key.starts_with(b"dm") {
            data.collect(&mut bad, height, key, value);
        } else if let Some(h) = queue_height(b"drw/").or_else(|| queue_height(b"ddl/"))
            && h <= height
        {
            bad.push(format!("queue {key:?} at {h} left behind at {height}"));
        }
    }

    if let Some(index) = &index {
        for slot in &index.subnets {
            add(&mut bad, &mut held.emission_pending, slot.pending);
        }
    }
    held.data = data.check(&mut bad, height);
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

    if let Some(e) = &emission {
        let expected = e
            .genesis_supply
            .checked_add(e.minted)
            .and_then(|x| x.checked_sub(e.burned));
        if expected != Some(held.supply) {
            bad.push(format!(
                "supply {} but genesis {} + minted {} - burned {}",
                held.supply, e.genesis_supply, e.minted, e.burned
            ));
        }
    }
    check_subnets(
        &mut bad,
        height,
        index.clone().unwrap_or_default(),
        &subnets,
        &subnet_stake,
        &neurons,
        &hotkeys,
        &rows,
        &commits,
    );
    if let Some(index) = &index {
        for slot in &index.subnets {
            let registered: Amount = stake_by_hotkey
                .iter()
                .filter(|(n, h, _)| *n == slot.netuid && hotkeys.contains_key(&(*n, *h)))
                .fold(0, |a, (_, _, t)| a.saturating_add(*t));
            if slot.registered_stake != registered {
                bad.push(format!(
                    "subnet {}: registered stake {} but {registered} on registered hotkeys",
                    slot.netuid, slot.registered_stake
                ));
            }
        }
    }
    for (netuid, list) in &predictions {
        let Some(sn) = subnets.get(netuid) else {
            bad.push(format!(
                "predictions on subnet {netuid}, which does not exist"
            ));
            continue;
        };
        let mut seen = BTreeSet::new();
        for p in list {
            if !hotkeys.contains_key(&(*netuid, p.hotkey)) {
                bad.push(format!(
                    "subnet {netuid}: a prediction of unregistered {}",
                    p.hotkey
                ));
            }
            if !seen.insert((p.hotkey, p.epoch)) {
                bad.push(format!(
                    "subnet {netuid}: two predictions of {} for one window",
                    p.hotkey
                ));
            }
            if p.epoch + 1 < sn.epochs || p.epoch > sn.epochs {
                bad.push(format!(
                    "subnet {netuid}: a prediction outside the open windows"
                ));
            }
            if p.value.is_some() && p.epoch + 1 != sn.epochs {
                bad.push(format!(
                    "subnet {netuid}: a prediction revealed before its window"
                ));
            }
        }
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

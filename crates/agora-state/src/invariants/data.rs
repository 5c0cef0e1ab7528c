//! The data market's invariants (see the parent module's documentation).

use crate::{Bounty, DataTask, Dataset, Item, Reviewer, Stage};
use agora_types::{Address, Amount, Hash};
use borsh::BorshDeserialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the data market holds in a state, gathered key by key.
#[derive(Default)]
pub(super) struct DataSeen {
    bounties: BTreeMap<u64, Bounty>,
    items: BTreeMap<(u64, u32), Item>,
    hashes: Vec<(u64, Hash, u32)>,
    reviewers: BTreeMap<Address, Reviewer>,
    set: Option<Vec<Address>>,
    datasets: BTreeMap<Hash, Dataset>,
    contributors: BTreeMap<Hash, Vec<(Address, u32)>>,
    claims: BTreeMap<Hash, Amount>,
    tasks: BTreeSet<(u64, DataTaskKey)>,
    settling: BTreeSet<u64>,
    seats: BTreeSet<(Address, u64, u32)>,
}

/// A queued task, comparable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DataTaskKey {
    DrawScreener(u64, u32),
    ScreenDue(u64, u32),
    AppealDue(u64, u32),
    DrawPanel(u64, u32),
    Tally(u64, u32),
    Settle(u64),
}

impl From<&DataTask> for DataTaskKey {
    fn from(t: &DataTask) -> Self {
        match *t {
            DataTask::DrawScreener(b, i) => DataTaskKey::DrawScreener(b, i),
            DataTask::ScreenDue(b, i) => DataTaskKey::ScreenDue(b, i),
            DataTask::AppealDue(b, i) => DataTaskKey::AppealDue(b, i),
            DataTask::DrawPanel(b, i) => DataTaskKey::DrawPanel(b, i),
            DataTask::Tally(b, i) => DataTaskKey::Tally(b, i),
            DataTask::Settle(b) => DataTaskKey::Settle(b),
        }
    }
}

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

fn u64_at(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

impl DataSeen {
    /// Takes one `dm…` key of the state.
    pub(super) fn collect(&mut self, bad: &mut Vec<String>, height: u64, key: &[u8], value: &[u8]) {
        if let Some(rest) = key.strip_prefix(b"dmb/") {
            if let (Some(id), Some(b)) = (u64_at(rest), decode::<Bounty>(bad, key, value)) {
                if b.id != id {
                    bad.push(format!("bounty {id} is stored under another id"));
                }
                self.bounties.insert(id, b);
            }
        } else if let Some(rest) = key.strip_prefix(b"dmi/") {
            let index = rest
                .get(8..12)
                .and_then(|x| x.try_into().ok())
                .map(u32::from_be_bytes);
            if let (Some(b), Some(i), Some(it)) = (u64_at(rest), index, decode(bad, key, value)) {
                self.items.insert((b, i), it);
            }
        } else if let Some(rest) = key.strip_prefix(b"dmh/") {
            let hash = rest.get(8..40).and_then(|x| x.try_into().ok()).map(Hash);
            if let (Some(b), Some(h), Some(i)) = (u64_at(rest), hash, decode(bad, key, value)) {
                self.hashes.push((b, h, i));
            }
        } else if let Some(rest) = key.strip_prefix(b"dma/") {
            let who = rest.get(..20).and_then(|x| x.try_into().ok()).map(Address);
            let b = rest.get(20..).and_then(u64_at);
            let i = rest
                .get(28..32)
                .and_then(|x| x.try_into().ok())
                .map(u32::from_be_bytes);
            if let (Some(who), Some(b), Some(i)) = (who, b, i) {
                self.seats.insert((who, b, i));
            }
        } else if let Some(id) = key.strip_prefix(b"dms/").and_then(u64_at) {
            self.settling.insert(id);
        } else if let Some(rest) = key.strip_prefix(b"dmr/") {
            let addr = rest.try_into().ok().map(Address);
            if let (Some(a), Some(r)) = (addr, decode(bad, key, value)) {
                self.reviewers.insert(a, r);
            }
        } else if key == b"dmrs" {
            self.set = decode(bad, key, value);
        } else if let Some(rest) = key.strip_prefix(b"dmd/") {
            let root = rest.try_into().ok().map(Hash);
            if let (Some(r), Some(d)) = (root, decode::<Dataset>(bad, key, value)) {
                if d.root != r {
                    bad.push(format!("dataset {r} is stored under another root"));
                }
                self.datasets.insert(r, d);
            }
        } else if let Some(rest) = key.strip_prefix(b"dmk/") {
            let root = rest.try_into().ok().map(Hash);
            if let (Some(r), Some(list)) = (root, decode(bad, key, value)) {
                self.contributors.insert(r, list);
            }
        } else if let Some(rest) = key.strip_prefix(b"dmc/") {
            let root = rest.get(..32).and_then(|x| x.try_into().ok()).map(Hash);
            if let (Some(r), Some(c)) = (root, decode::<Amount>(bad, key, value)) {
                let slot = self.claims.entry(r).or_default();
                *slot = slot.saturating_add(c);
            }
        } else if let Some(h) = key.strip_prefix(b"dmq/").and_then(u64_at) {
            if h <= height {
                bad.push(format!("data-market queue at {h} left behind at {height}"));
            }
            for t in decode::<Vec<DataTask>>(bad, key, value).unwrap_or_default() {
                self.tasks.insert((h, DataTaskKey::from(&t)));
            }
        }
    }

    fn queued(&self, task: DataTaskKey) -> bool {
        self.tasks.iter().any(|(_, t)| *t == task)
    }

    /// Checks what was gathered; returns what the data market holds.
    pub(super) fn check(&self, bad: &mut Vec<String>, height: u64) -> Amount {
        let mut holds: Amount = 0;
        let mut add = |bad: &mut Vec<String>, x: Amount| match holds.checked_add(x) {
            Some(v) => holds = v,
            None => bad.push("data-market holdings exceed u128".into()),
        };
        let mut expected_locks: BTreeMap<Address, (Amount, u32)> = BTreeMap::new();
        let mut expected_seats: BTreeSet<(Address, u64, u32)> = BTreeSet::new();
        let mut lock = |who: Address, amount: Amount, b: u64, i: u32| {
            let e = expected_locks.entry(who).or_default();
            e.0 = e.0.saturating_add(amount);
            e.1 += 1;
            expected_seats.insert((who, b, i));
        };
        for (id, b) in &self.bounties {
            let sum = [b.held, b.paid, b.refunded]
                .into_iter()
                .try_fold(b.available, Amount::checked_add);
            if sum != Some(b.spec.budget) {
                bad.push(format!(
                    "bounty {id}: budget {} but available {} + held {} + paid {} + refunded {}",
                    b.spec.budget, b.available, b.held, b.paid, b.refunded
                ));
            }
            add(bad, b.available);
            add(bad, b.held);
            let items: Vec<(&u32, &Item)> = self
                .items
                .range((*id, 0)..=(*id, u32::MAX))
                .map(|((_, i), it)| (i, it))
                .collect();
            let open: Vec<&(&u32, &Item)> = items.iter().filter(|(_, it)| !it.decided()).collect();
            let held: Amount = open.iter().map(|(_, it)| it.hold).sum();
            if held != b.held {
                bad.push(format!(
                    "bounty {id}: holds {} but its open items reserve {held}",
                    b.held
                ));
            }
            if open.len() != b.open as usize {
                bad.push(format!(
                    "bounty {id}: {} open items counted, {} open",
                    b.open,
                    open.len()
                ));
            }
            let accepted = items
                .iter()
                .filter(|(_, it)| it.stage == Stage::Accepted)
                .count();
            if accepted != b.accepted as usize {
                bad.push(format!(
                    "bounty {id}: {} accepted counted, {accepted} accepted",
                    b.accepted
                ));
            }
            if b.settled {
                if b.open != 0 || b.available != 0 || b.held != 0 {
                    bad.push(format!("bounty {id}: settled with budget or items left"));
                }
                match (b.accepted, b.dataset) {
                    (0, None) => {}
                    (n, Some(root)) if n > 0 => match self.datasets.get(&root) {
                        Some(d) if d.items == n && d.bounty == *id => {}
                        _ => bad.push(format!("bounty {id}: its dataset does not match it")),
                    },
                    _ => bad.push(format!("bounty {id}: accepted items and dataset disagree")),
                }
            } else {
                // A settlement under way has removed the rejected items it read.
                if !self.settling.contains(id)
                    && (items.len() != b.items as usize
                        || items
                            .iter()
                            .enumerate()
                            .any(|(k, (i, _))| **i as usize != k))
                {
                    bad.push(format!("bounty {id}: items are not 0..{}", b.items));
                }
                if b.settle_at <= height || !self.queued(DataTaskKey::Settle(*id)) {
                    bad.push(format!("bounty {id}: its settlement is not queued ahead"));
                }
            }
            for (i, it) in &items {
                let i = **i;
                if it.decided() {
                    if it.hold != 0 || it.screener.is_some() {
                        bad.push(format!("item {id}/{i}: decided but still holds"));
                    }
                    continue;
                }
                add(bad, it.bond);
                let rs = b.spec.review_stake;
                if let Some(s) = it.screener {
                    lock(s, rs, *id, i);
                }
                let due = match &it.stage {
                    Stage::DrawScreener => Some(DataTaskKey::DrawScreener(*id, i)),
                    Stage::DrawPanel => Some(DataTaskKey::DrawPanel(*id, i)),
                    Stage::Screening { deadline, screener } => {
                        if *deadline <= height || it.screener != Some(*screener) {
                            bad.push(format!("item {id}/{i}: screening past due or unlocked"));
                        }
                        Some(DataTaskKey::ScreenDue(*id, i))
                    }
                    Stage::Screened { appeal_deadline } => {
                        if *appeal_deadline <= height {
                            bad.push(format!("item {id}/{i}: appeal window past due"));
                        }
                        Some(DataTaskKey::AppealDue(*id, i))
                    }
                    Stage::Voting {
                        reveal_deadline,
                        seats,
                        ..
                    } => {
                        if *reveal_deadline <= height {
                            bad.push(format!("item {id}/{i}: vote past due"));
                        }
                        for s in seats {
                            lock(s.reviewer, rs.saturating_mul(Amount::from(s.votes)), *id, i);
                        }
                        Some(DataTaskKey::Tally(*id, i))
                    }
                    Stage::Accepted | Stage::Rejected { .. } => None,
                };
                if let Some(t) = due
                    && !self.queued(t)
                {
                    bad.push(format!("item {id}/{i}: its next step is not queued"));
                }
            }
        }
        for id in &self.settling {
            if self
                .bounties
                .get(id)
                .is_none_or(|b| b.settled || b.open != 0)
            {
                bad.push(format!(
                    "bounty {id}: a settlement under way but not settling"
                ));
            }
        }
        for (b, i) in self.items.keys() {
            if !self.bounties.contains_key(b) {
                bad.push(format!("item {b}/{i} of no bounty"));
            }
        }
        for (b, h, i) in &self.hashes {
            if self.items.get(&(*b, *i)).is_none_or(|it| it.hash != *h) {
                bad.push(format!("item hash index {b}/{h} names no such item"));
            }
        }
        for (a, r) in &self.reviewers {
            add(bad, r.stake);
            let (locked, seats) = expected_locks.remove(a).unwrap_or_default();
            if r.locked != locked || r.seats != seats {
                bad.push(format!(
                    "reviewer {a}: locks {} in {} seats, its seats lock {locked} in {seats}",
                    r.locked, r.seats
                ));
            }
            if r.locked > r.stake || r.stake == 0 {
                bad.push(format!(
                    "reviewer {a}: stake {} locked {}",
                    r.stake, r.locked
                ));
            }
        }
        if expected_seats != self.seats {
            bad.push(format!(
                "the seat index holds {} seats, the open items {}",
                self.seats.len(),
                expected_seats.len()
            ));
        }
        for (a, _) in expected_locks {
            bad.push(format!("seats of {a}, which has no review stake"));
        }
        let registered: Vec<Address> = self.reviewers.keys().copied().collect();
        if self.set.clone().unwrap_or_default() != registered {
            bad.push("the reviewer set is not the reviewers".into());
        }
        for (r, d) in &self.datasets {
            if d.claimed > d.received {
                bad.push(format!("dataset {r}: claimed beyond received"));
            }
            if self.claims.get(r).copied().unwrap_or(0) != d.claimed {
                bad.push(format!("dataset {r}: claims do not add up"));
            }
            let list = self.contributors.get(r).cloned().unwrap_or_default();
            let n: u64 = list.iter().map(|(_, n)| u64::from(*n)).sum();
            if n != u64::from(d.items)
                || list.len() != d.contributors as usize
                || !list.is_sorted_by(|a, b| a.0 < b.0)
            {
                bad.push(format!("dataset {r}: contributors do not add up"));
            }
            add(bad, d.received - d.claimed.min(d.received));
        }
        for r in self.contributors.keys() {
            if !self.datasets.contains_key(r) {
                bad.push(format!("contributors of no dataset {r}"));
            }
        }
        for r in self.claims.keys() {
            if !self.datasets.contains_key(r) {
                bad.push(format!("royalty claims on no dataset {r}"));
            }
        }
        holds
    }
}

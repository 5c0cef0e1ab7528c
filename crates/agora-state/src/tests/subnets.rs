//! The model market on the chain: emission, subnets, neurons, stake, commit-reveal weights and
//! epochs, with every invariant checked after every block.

use super::*;
use crate::subnet::{EpochRecord, Neuron, Subnet, WeightCommit, WeightRow};
use agora_types::{Hash, Receipt, SubnetParam, SubnetTask, weights_commitment};
use std::collections::BTreeMap;

/// A chain of `n` funded users, driven block by block.
pub(super) struct Chain {
    pub(super) s: MemState,
    pub(super) height: u64,
    nonces: BTreeMap<usize, u64>,
}

impl Chain {
    pub(super) fn new(n: usize) -> Chain {
        Chain {
            s: state(n),
            height: 0,
            nonces: BTreeMap::new(),
        }
    }

    pub(super) fn from_genesis(g: Genesis) -> Chain {
        let mut s = MemState::default();
        s.apply(&g.initial_writes().unwrap());
        Chain {
            s,
            height: 0,
            nonces: BTreeMap::new(),
        }
    }

    /// One block holding one transaction per entry; returns their receipts.
    pub(super) fn block(&mut self, txs: Vec<(usize, Vec<Message>)>) -> Vec<Receipt> {
        let txs: Vec<SignedTransaction> = txs
            .into_iter()
            .map(|(from, msgs)| {
                let nonce = self.nonces.entry(from).or_insert(0);
                *nonce += 1;
                tx(from, *nonce - 1, 10, msgs)
            })
            .collect();
        self.height += 1;
        run_block(&mut self.s, self.height, &txs).receipts
    }

    /// One transaction in its own block; panics with its failure if it fails.
    #[track_caller]
    pub(super) fn ok(&mut self, from: usize, msgs: Vec<Message>) -> Receipt {
        let r = self.block(vec![(from, msgs)]).remove(0);
        assert!(r.success, "{:?}", r.failure);
        r
    }

    /// One transaction that must fail with `code`: the state after its block is the state
    /// after a block holding a transaction of the same sender and fee that fails doing nothing
    /// (a transfer of zero).
    #[track_caller]
    pub(super) fn fails(&mut self, from: usize, msgs: Vec<Message>, code: &str) {
        let mut expected = self.s.clone();
        let noop = Transaction {
            chain_id: CHAIN.into(),
            sender: key(from).public(),
            nonce: self.nonces.get(&from).copied().unwrap_or(0),
            fee: 10 * u128::from(agora_types::work_units(&msgs)),
            // As many units of work, so it counts the same in what forecasts predict.
            messages: vec![
                Message::Transfer {
                    to: key(from).address(),
                    amount: 0,
                };
                agora_types::work_units(&msgs) as usize
            ],
        }
        .sign(&key(from));
        let r = self.block(vec![(from, msgs)]).remove(0);
        let Some(failure) = r.failure else {
            panic!("the transaction succeeded, expected {code}")
        };
        assert_eq!(failure.code, code, "{}", failure.message);
        run_block(&mut expected, self.height, &[noop]);
        assert!(expected.0 == self.s.0, "a failed {code} changed the state");
    }

    /// Empty blocks up to and including `height`.
    pub(super) fn run_to(&mut self, height: u64) {
        while self.height < height {
            self.block(vec![]);
        }
    }

    /// Empty blocks through the next epoch of subnet `netuid`.
    pub(super) fn next_epoch(&mut self, netuid: u16) {
        let index: SubnetIndex = self.get(&subnet_index_key()).expect("an index");
        let due = index
            .subnets
            .iter()
            .find(|s| s.netuid == netuid)
            .expect("the subnet")
            .next_epoch;
        self.run_to(due);
    }

    pub(super) fn get<T: borsh::BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        self.s
            .get(key)
            .unwrap()
            .map(|b| borsh::from_slice(&b).unwrap())
    }

    pub(super) fn subnet(&self, netuid: u16) -> Subnet {
        self.get(&subnet_key(netuid)).expect("the subnet exists")
    }

    pub(super) fn neuron(&self, netuid: u16, uid: u16) -> Neuron {
        self.get(&neuron_key(netuid, uid))
            .expect("the neuron exists")
    }

    pub(super) fn balance(&self, user: usize) -> u128 {
        account(&self.s, &key(user).address()).balance
    }

    pub(super) fn emission(&self) -> EmissionState {
        self.get(&emission_key()).expect("emission state")
    }
}

pub(super) fn create(name: &str, task: SubnetTask) -> Message {
    Message::CreateSubnet {
        name: name.into(),
        task,
        max_lock: u128::MAX,
    }
}

pub(super) fn set(netuid: u16, param: SubnetParam) -> Message {
    Message::SetSubnetParam { netuid, param }
}

pub(super) fn register(netuid: u16) -> Message {
    Message::RegisterNeuron {
        netuid,
        endpoint: "http://127.0.0.1:1".into(),
        max_burn: u128::MAX,
    }
}

pub(super) fn stake(netuid: u16, hotkey: usize, amount: u128) -> Message {
    Message::AddSubnetStake {
        netuid,
        hotkey: key(hotkey).address(),
        amount,
    }
}

pub(super) fn salt(i: usize) -> Hash {
    Hash::digest(&i.to_le_bytes())
}

pub(super) fn commit(netuid: u16, user: usize, uids: &[u16], weights: &[u16]) -> Message {
    Message::CommitWeights {
        netuid,
        commitment: weights_commitment(netuid, &key(user).address(), uids, weights, &salt(user)),
    }
}

pub(super) fn reveal(netuid: u16, user: usize, uids: &[u16], weights: &[u16]) -> Message {
    Message::RevealWeights {
        netuid,
        uids: uids.to_vec(),
        weights: weights.to_vec(),
        salt: salt(user),
    }
}

const TEMPO: u64 = 10;

/// Subnet 0 owned by user 0 with tempo 10, no immunity, no rate limit; user 1 a validator
/// with 100 AGR staked on itself; users 2 and 3 miners (UIDs 1 and 2).
fn subnet_with_neurons() -> Chain {
    let mut c = Chain::new(6);
    c.ok(0, vec![create("chat", SubnetTask::Chat)]);
    c.ok(
        0,
        vec![
            set(0, SubnetParam::Tempo(TEMPO)),
            set(0, SubnetParam::ImmunityPeriod(TEMPO)),
            set(0, SubnetParam::WeightsRateLimit(0)),
        ],
    );
    c.ok(1, vec![register(0)]);
    c.ok(2, vec![register(0)]);
    c.ok(3, vec![register(0)]);
    c.ok(1, vec![stake(0, 1, 100 * AGR)]);
    c
}

#[test]
fn a_better_miner_earns_more_and_every_epoch_pays_exactly_what_accrued() {
    let mut c = subnet_with_neurons();
    let genesis = c.emission().genesis_supply;
    // The validator rates miner UID 1 three times miner UID 2, through commit-reveal.
    let (uids, weights) = ([1u16, 2], [3u16, 1]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    c.ok(
        1,
        vec![reveal(0, 1, &uids, &weights), commit(0, 1, &uids, &weights)],
    );
    let (m1, m2, owner) = (c.balance(2), c.balance(3), c.balance(0));
    c.next_epoch(0);
    let history: Vec<EpochRecord> = c.get(&subnet_history_key(0)).unwrap();
    let last = history.last().unwrap();
    assert!(last.emission > 0);
    let earned1 = c.balance(2) - m1;
    let earned2 = c.balance(3) - m2;
    assert!(earned1 > 2 * earned2, "{earned1} vs {earned2}");
    assert!(earned2 > 0);
    // The owner's cut is 18 % (plus rounding): within a few base units.
    let cut = c.balance(0) - owner;
    assert!(
        cut >= last.emission * 18 / 100 && cut <= last.emission * 18 / 100 + 10,
        "{cut}"
    );
    assert_eq!(c.neuron(0, 1).incentive, 3 * c.neuron(0, 2).incentive);
    assert!(c.neuron(0, 0).validator_permit);
    assert!(c.neuron(0, 0).dividends > 0);
    // Supply = genesis + minted - burned (the invariants check it after every block too).
    let e = c.emission();
    assert_eq!(supply(&c.s), genesis + e.minted - e.burned);
    assert!(e.burned >= 100 * AGR, "the lock and the burns are burned");
}

#[test]
fn nothing_is_minted_without_stake_on_a_subnet() {
    let mut c = Chain::new(2);
    c.run_to(5);
    assert_eq!(c.emission().minted, 0);
    c.ok(0, vec![create("chat", SubnetTask::Chat)]);
    c.run_to(10);
    assert_eq!(
        c.emission().minted,
        0,
        "a subnet with no stake draws no emission"
    );
}

#[test]
fn the_lock_cost_doubles_then_decays() {
    let mut c = Chain::new(3);
    let before = c.balance(0);
    c.ok(0, vec![create("a", SubnetTask::Chat)]);
    // 100 AGR the first time (and the fee).
    assert_eq!(before - c.balance(0), 100 * AGR + 10);
    c.fails(
        1,
        vec![Message::CreateSubnet {
            name: "b".into(),
            task: SubnetTask::Forecast,
            max_lock: 150 * AGR,
        }],
        "lock_cost_exceeded",
    );
    let before = c.balance(1);
    c.ok(1, vec![create("b", SubnetTask::Forecast)]);
    assert!(
        before - c.balance(1) > 199 * AGR,
        "about twice the last lock"
    );
    let index: SubnetIndex = c.get(&subnet_index_key()).unwrap();
    assert_eq!(index.subnets.len(), 2);
    // After the reduction interval it is back to the last lock, then to the minimum.
    let p = SubnetParams::default();
    assert_eq!(
        p.lock_cost(200 * AGR, 0, p.lock_reduction_interval),
        200 * AGR
    );
    assert_eq!(
        p.lock_cost(200 * AGR, 0, 2 * p.lock_reduction_interval),
        p.min_lock
    );
    c.fails(2, vec![create("", SubnetTask::Chat)], "invalid_subnet");
    c.fails(
        2,
        vec![create(
            "c",
            SubnetTask::Custom {
                name: "x".repeat(65),
                spec: Hash([1; 32]),
            },
        )],
        "invalid_subnet",
    );
}

#[test]
fn only_the_owner_changes_hyperparameters_and_only_within_bounds() {
    let mut c = Chain::new(3);
    c.ok(0, vec![create("a", SubnetTask::Chat)]);
    c.fails(1, vec![set(0, SubnetParam::Tempo(20))], "not_subnet_owner");
    c.fails(0, vec![set(7, SubnetParam::Tempo(20))], "unknown_subnet");
    for bad in [
        SubnetParam::Tempo(1),
        SubnetParam::Kappa(100),
        SubnetParam::Kappa(49_152),
        SubnetParam::MaxUids(300),
        SubnetParam::CommitRevealPeriod(0),
        SubnetParam::ValidatorTake(500_000),
        SubnetParam::MinBurn(0),
        SubnetParam::BondsMovingAverage(1_000_000),
    ] {
        c.fails(0, vec![set(0, bad)], "param_out_of_bounds");
    }
    // With no neuron yet, a change applies at once and reschedules the first epoch.
    c.ok(0, vec![set(0, SubnetParam::Tempo(20))]);
    assert_eq!(c.subnet(0).params.tempo, 20);
    let index: SubnetIndex = c.get(&subnet_index_key()).unwrap();
    assert_eq!(index.subnets[0].next_epoch, c.height + 20);
    // Rules between parameters: weights must outlive a commit-reveal round trip, a neuron an
    // epoch.
    c.fails(
        0,
        vec![set(0, SubnetParam::ActivityCutoff(59))],
        "param_out_of_bounds",
    );
    c.fails(
        0,
        vec![set(0, SubnetParam::ImmunityPeriod(19))],
        "param_out_of_bounds",
    );
    c.fails(
        0,
        vec![set(0, SubnetParam::MaxValidators(7))],
        "param_out_of_bounds",
    );
    // Once a neuron is registered, changes wait for the next epoch: the owner can neither move
    // an epoch nor change the rules in the middle of one.
    c.ok(1, vec![register(0)]);
    let due = index.subnets[0].next_epoch;
    c.ok(0, vec![set(0, SubnetParam::Tempo(50))]);
    let sn = c.subnet(0);
    assert_eq!(
        (sn.params.tempo, sn.pending.map(|p| p.tempo)),
        (20, Some(50))
    );
    c.next_epoch(0);
    assert_eq!(c.height, due, "the epoch already scheduled stayed");
    let index: SubnetIndex = c.get(&subnet_index_key()).unwrap();
    assert_eq!(index.subnets[0].next_epoch, due + 50);
    assert_eq!(c.subnet(0).params.tempo, 50);
    assert!(c.subnet(0).pending.is_none());
}

#[test]
fn commit_reveal_refuses_early_late_mismatched_and_repeated_reveals() {
    let mut c = subnet_with_neurons();
    let (uids, weights) = ([1u16, 2], [3u16, 1]);
    // Start right after an epoch, so the next blocks are all in one window.
    c.next_epoch(0);
    c.fails(1, vec![reveal(0, 1, &uids, &weights)], "no_commit");
    // A new commitment replaces one not yet revealed: only the latest can be revealed.
    c.ok(1, vec![commit(0, 1, &uids, &[9, 9])]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    let commits: Vec<WeightCommit> = c.get(&commits_key(0)).unwrap();
    assert_eq!(commits.len(), 1);
    // The same epoch: too early.
    c.fails(1, vec![reveal(0, 1, &uids, &weights)], "reveal_too_early");
    c.next_epoch(0);
    // Another salt, other weights, or someone else revealing: refused.
    c.fails(
        1,
        vec![Message::RevealWeights {
            netuid: 0,
            uids: uids.to_vec(),
            weights: weights.to_vec(),
            salt: salt(9),
        }],
        "reveal_mismatch",
    );
    c.fails(1, vec![reveal(0, 1, &uids, &[1, 3])], "reveal_mismatch");
    c.fails(2, vec![reveal(0, 1, &uids, &weights)], "no_commit");
    c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
    let row: WeightRow = c.get(&weights_key(0, 0)).unwrap();
    assert_eq!(
        row.entries,
        vec![(1, 65_535), (2, 21_845)],
        "the largest is u16::MAX"
    );
    c.fails(1, vec![reveal(0, 1, &uids, &weights)], "no_commit");
    // A commitment left unrevealed past its window is refused, then forgotten.
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    c.next_epoch(0);
    let commits: Option<Vec<WeightCommit>> = c.get(&commits_key(0));
    assert!(commits.is_none(), "expired: {commits:?}");
    c.fails(1, vec![reveal(0, 1, &uids, &weights)], "no_commit");
}

#[test]
fn a_late_reveal_is_refused_in_the_epoch_before_it_expires() {
    let mut c = subnet_with_neurons();
    c.ok(0, vec![set(0, SubnetParam::CommitRevealPeriod(1))]);
    let (uids, weights) = ([1u16], [1u16]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    // Skip the window: the epoch that closes it has run, the commitment is gone.
    c.next_epoch(0);
    c.fails(1, vec![reveal(0, 1, &uids, &weights)], "no_commit");
    // With a period of two (in force from the next epoch), a reveal after one epoch is early.
    c.ok(0, vec![set(0, SubnetParam::CommitRevealPeriod(2))]);
    c.next_epoch(0);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    c.fails(1, vec![reveal(0, 1, &uids, &weights)], "reveal_too_early");
    c.next_epoch(0);
    c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
}

#[test]
fn malformed_weights_are_refused_with_their_reason() {
    let mut c = subnet_with_neurons();
    for (uids, weights) in [
        (vec![1u16, 2], vec![1u16]),
        (vec![], vec![]),
        (vec![1, 7], vec![1, 1]),
        (vec![1, 1], vec![1, 2]),
        (vec![1, 2], vec![0, 0]),
        (vec![0, 1, 2, 0], vec![1, 1, 1, 1]),
    ] {
        c.ok(1, vec![commit(0, 1, &uids, &weights)]);
        c.next_epoch(0);
        c.fails(1, vec![reveal(0, 1, &uids, &weights)], "invalid_weights");
        // The commitment stays until its window closes.
        c.next_epoch(0);
    }
    assert!(c.get::<WeightRow>(&weights_key(0, 0)).is_none());
}

#[test]
fn the_weights_rate_limit_holds() {
    let mut c = subnet_with_neurons();
    // At most the tempo: a validator must be able to commit every epoch.
    c.fails(
        0,
        vec![set(0, SubnetParam::WeightsRateLimit(11))],
        "param_out_of_bounds",
    );
    c.ok(0, vec![set(0, SubnetParam::WeightsRateLimit(8))]);
    c.next_epoch(0);
    let (uids, weights) = ([1u16], [1u16]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    let last = c.height;
    c.fails(
        1,
        vec![commit(0, 1, &uids, &weights)],
        "weights_rate_limited",
    );
    c.run_to(last + 6);
    c.fails(
        1,
        vec![commit(0, 1, &uids, &weights)],
        "weights_rate_limited",
    );
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    assert_eq!(c.height, last + 8);
}

#[test]
fn registration_refusals_and_the_burn_that_follows_demand() {
    let mut c = Chain::new(12);
    c.ok(0, vec![create("a", SubnetTask::Chat)]);
    c.ok(0, vec![set(0, SubnetParam::Tempo(TEMPO))]);
    c.fails(1, vec![register(3)], "unknown_subnet");
    c.fails(
        1,
        vec![Message::RegisterNeuron {
            netuid: 0,
            endpoint: "ftp://x".into(),
            max_burn: u128::MAX,
        }],
        "invalid_neuron",
    );
    c.fails(
        1,
        vec![Message::RegisterNeuron {
            netuid: 0,
            endpoint: "http://x".into(),
            max_burn: 1,
        }],
        "burn_exceeded",
    );
    c.next_epoch(0);
    c.ok(1, vec![register(0)]);
    c.fails(1, vec![register(0)], "already_registered");
    let burn = c.subnet(0).burn;
    // Target 2 per epoch: 6 at most. Users 2..=6 register (5 more, 6 in all), user 7 is refused.
    let receipts = c.block((2..=7).map(|u| (u, vec![register(0)])).collect());
    assert!(receipts[..5].iter().all(|r| r.success));
    assert_eq!(
        receipts[5].failure.as_ref().unwrap().code,
        "registrations_full"
    );
    c.next_epoch(0);
    // Six registrations against a target of two: the burn doubles.
    assert_eq!(c.subnet(0).burn, burn * (6 + 2) / 4);
    c.ok(7, vec![register(0)]);
    assert_eq!(c.subnet(0).n, 7);
}

#[test]
fn a_full_subnet_prunes_its_lowest_earner_outside_immunity() {
    let mut c = subnet_with_neurons();
    c.ok(
        0,
        vec![
            set(0, SubnetParam::MaxUids(3)),
            set(0, SubnetParam::ImmunityPeriod(1_000)),
        ],
    );
    c.next_epoch(0);
    c.fails(4, vec![register(0)], "subnet_full");
    c.ok(0, vec![set(0, SubnetParam::ImmunityPeriod(TEMPO))]);
    c.next_epoch(0);
    // The validator rates only UID 1; UID 2 earns nothing and is pruned.
    let (uids, weights) = ([1u16], [1u16]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    assert_eq!(c.neuron(0, 2).emission, 0);
    let r = c.ok(4, vec![register(0)]);
    assert!(r.events.iter().any(|e| e.kind == "neuron_pruned"));
    assert_eq!(c.neuron(0, 2).hotkey, key(4).address());
    assert!(
        c.get::<u16>(&hotkey_uid_key(0, &key(3).address()))
            .is_none()
    );
}

#[test]
fn a_reregistered_uid_inherits_no_weights_bonds_or_pending_reveals() {
    let mut c = subnet_with_neurons();
    c.ok(0, vec![set(0, SubnetParam::MaxUids(3))]);
    c.next_epoch(0);
    // The validator rates UID 1 (user 2) low and UID 2 (user 3) high, and commits to the same
    // weights again.
    let (uids, weights) = ([1u16, 2], [1u16, 9]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    let bonds: Vec<(u16, u64)> = c.get(&bonds_key(0, 0)).unwrap();
    assert!(
        bonds.iter().any(|b| b.0 == 2),
        "the validator holds bonds on UID 2"
    );
    // UID 1 (user 2) earns the least, so it is the one a new registration takes.
    assert!(c.neuron(0, 2).emission > c.neuron(0, 1).emission);
    // User 4 takes UID 1 (the lowest earner); then the validator's pending reveal (committed
    // before the registration) must not count for the new owner of UID 1.
    c.ok(4, vec![register(0)]);
    assert_eq!(c.neuron(0, 1).hotkey, key(4).address());
    c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    let n1 = c.neuron(0, 1);
    assert_eq!(
        n1.incentive, 0,
        "weights committed before the registration do not count"
    );
    assert_eq!(n1.consensus, 0);
    let bonds: Vec<(u16, u64)> = c.get(&bonds_key(0, 0)).unwrap();
    assert!(
        bonds.iter().all(|b| b.0 != 1),
        "no bonds on the new owner of UID 1: {bonds:?}"
    );
    // The next commitment, made after the registration, counts.
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    assert!(c.neuron(0, 1).incentive > 0);
}

#[test]
fn stake_counts_from_the_next_full_epoch_and_unstaking_unbonds() {
    let mut c = subnet_with_neurons();
    // User 4 delegates to the validator right before an epoch: it earns nothing from it.
    let (uids, weights) = ([1u16], [1u16]);
    c.ok(1, vec![commit(0, 1, &uids, &weights)]);
    c.next_epoch(0);
    c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
    // Run to the block before the epoch, then stake in the epoch's own block.
    let index: SubnetIndex = c.get(&subnet_index_key()).unwrap();
    let due = index.subnets[0].next_epoch;
    c.run_to(due - 1);
    let before = c.balance(4);
    c.ok(4, vec![stake(0, 1, 100 * AGR)]);
    assert_eq!(c.height, due, "the stake landed in the epoch block");
    assert_eq!(c.balance(4), before - 100 * AGR - 10, "paid nothing");
    // The next epoch: it was there the whole tempo, so it earns about half of the dividends'
    // delegators' share (the validator's own stake is the other half).
    let before = c.balance(4);
    c.next_epoch(0);
    assert!(c.balance(4) > before);
    // Unstaking: beyond what it has, refused; the rest unbonds.
    c.fails(
        4,
        vec![Message::RemoveSubnetStake {
            netuid: 0,
            hotkey: key(1).address(),
            amount: 101 * AGR,
        }],
        "insufficient_stake",
    );
    c.fails(
        5,
        vec![Message::RemoveSubnetStake {
            netuid: 0,
            hotkey: key(1).address(),
            amount: 1,
        }],
        "insufficient_stake",
    );
    c.ok(
        4,
        vec![Message::RemoveSubnetStake {
            netuid: 0,
            hotkey: key(1).address(),
            amount: 100 * AGR,
        }],
    );
    assert_eq!(account(&c.s, &key(4).address()).unbonding, 100 * AGR);
    c.fails(4, vec![stake(0, 5, AGR)], "not_registered");
    c.fails(4, vec![stake(0, 1, 10_000 * AGR)], "insufficient_funds");
    c.fails(4, vec![stake(0, 1, 0)], "zero_amount");
}

#[test]
fn a_validator_that_stops_revealing_loses_its_dividends() {
    let mut c = subnet_with_neurons();
    c.ok(4, vec![register(0)]);
    c.ok(4, vec![stake(0, 4, 100 * AGR)]);
    c.ok(0, vec![set(0, SubnetParam::ActivityCutoff(30))]);
    let (uids, weights) = ([1u16, 2], [3u16, 1]);
    // Both validators (users 1 and 4) commit and reveal once.
    c.block(vec![
        (1, vec![commit(0, 1, &uids, &weights)]),
        (4, vec![commit(0, 4, &uids, &weights)]),
    ]);
    c.next_epoch(0);
    c.block(vec![
        (1, vec![reveal(0, 1, &uids, &weights)]),
        (4, vec![reveal(0, 4, &uids, &weights)]),
    ]);
    c.next_epoch(0);
    let (d1, d4) = (c.neuron(0, 0).dividends, c.neuron(0, 3).dividends);
    assert!(d1 > 0 && d4 > 0);
    // User 1 keeps committing and revealing; user 4 stops.
    for _ in 0..4 {
        c.ok(1, vec![commit(0, 1, &uids, &weights)]);
        c.next_epoch(0);
        c.ok(1, vec![reveal(0, 1, &uids, &weights)]);
        c.next_epoch(0);
    }
    assert_eq!(c.neuron(0, 3).dividends, 0, "past the activity cutoff");
    assert_eq!(c.neuron(0, 3).validator_trust, 0);
    assert!(c.neuron(0, 0).dividends > d1);
}

pub(super) fn predict(netuid: u16, user: usize, value: u64) -> Message {
    Message::CommitPrediction {
        netuid,
        commitment: agora_types::prediction_commitment(
            netuid,
            &key(user).address(),
            value,
            &salt(user),
        ),
    }
}

pub(super) fn reveal_prediction(netuid: u16, user: usize, value: u64) -> Message {
    Message::RevealPrediction {
        netuid,
        value,
        salt: salt(user),
    }
}

#[test]
fn the_chain_scores_forecasts_against_what_it_recorded() {
    let mut c = Chain::new(6);
    c.ok(0, vec![create("tx-count", SubnetTask::Forecast)]);
    c.ok(
        0,
        vec![
            set(0, SubnetParam::Tempo(TEMPO)),
            set(0, SubnetParam::ImmunityPeriod(TEMPO)),
        ],
    );
    for u in 1..=3 {
        c.ok(u, vec![register(0)]);
    }
    c.ok(1, vec![stake(0, 1, 100 * AGR)]);
    // Weights belong to the chain here.
    c.fails(1, vec![commit(0, 1, &[1], &[1])], "wrong_task");
    c.next_epoch(0);
    // In this window, users 2 and 3 predict the fees of the next window: forty (its four
    // one-unit transactions at 10), and sixty.
    c.ok(2, vec![predict(0, 2, 40)]);
    c.ok(3, vec![predict(0, 3, 60)]);
    c.fails(2, vec![predict(0, 2, 3)], "commit_pending");
    c.fails(2, vec![reveal_prediction(0, 2, 40)], "reveal_too_early");
    c.next_epoch(0);
    c.fails(2, vec![reveal_prediction(0, 2, 7)], "reveal_mismatch");
    let (b2, b3) = (c.balance(2), c.balance(3));
    c.ok(2, vec![reveal_prediction(0, 2, 40)]);
    c.ok(3, vec![reveal_prediction(0, 3, 60)]);
    c.fails(2, vec![reveal_prediction(0, 2, 40)], "no_commit");
    // The window held four transactions: the mismatched reveal, the two reveals and the
    // repeated one (refused transactions pay their fees too).
    c.next_epoch(0);
    let history: Vec<EpochRecord> = c.get(&subnet_history_key(0)).unwrap();
    let truth = history.last().unwrap().observed;
    assert_eq!(truth, 40, "four transactions' fees in the window");
    let (s2, s3) = (
        crate::subnet::forecast_score(40, truth),
        crate::subnet::forecast_score(60, truth),
    );
    assert_eq!((s2, s3), (crate::yuma::ONE, crate::yuma::ONE / 2));
    assert!(s2 > s3);
    let (n2, n3) = (c.neuron(0, 1), c.neuron(0, 2));
    assert_eq!(u128::from(n2.rank), s2);
    assert_eq!(u128::from(n3.rank), s3);
    assert!(n2.incentive > n3.incentive);
    assert!(c.balance(2) - b2 > c.balance(3) - b3 + 10);
    // The staker gets the validators' half: the chain did the validating.
    assert!(c.neuron(0, 0).dividends > 0);
    // Anyone recomputes the weights from the chain: the scores are the predictions against
    // the recorded count, nothing else.
    assert_eq!(
        (n2.incentive as u128 * 1_000 / crate::yuma::ONE) as u64,
        (s2 * 1_000 / (s2 + s3)) as u64
    );
}

#[test]
fn predictions_only_on_forecast_subnets_and_never_past_their_window() {
    let mut c = subnet_with_neurons();
    c.fails(2, vec![predict(0, 2, 1)], "wrong_task");
    c.ok(4, vec![create("f", SubnetTask::Forecast)]);
    c.ok(4, vec![set(1, SubnetParam::Tempo(TEMPO))]);
    c.fails(2, vec![predict(1, 2, 1)], "not_registered");
    c.ok(2, vec![register(1)]);
    c.next_epoch(1);
    c.ok(2, vec![predict(1, 2, 1)]);
    // Two epochs later the window it predicted is over: the forecast is gone.
    c.next_epoch(1);
    c.next_epoch(1);
    c.fails(2, vec![reveal_prediction(1, 2, 1)], "no_commit");
    let left: Option<Vec<Prediction>> = c.get(&predictions_key(1));
    assert!(left.is_none(), "{left:?}");
}

/// One epoch window of a subnet whose miners' quality rotates: honest validators (users 1 and
/// 2) reveal what they committed last window and commit what they measure now; the copier
/// (user 3) reveals its last commitment and commits the weights validator 1 just revealed —
/// the freshest it can see. Returns each validator's dividends (Fx) from the window's epoch.
fn copier_window(c: &mut Chain, quality: &[u16; 3], last: &mut [Option<Vec<u16>>; 3]) {
    let uids = [4u16, 5, 6];
    let mut first = Vec::new();
    for (i, user) in [1usize, 2].into_iter().enumerate() {
        let mut msgs = Vec::new();
        if let Some(w) = &last[i] {
            msgs.push(reveal(0, user, &uids, w));
        }
        msgs.push(commit(0, user, &uids, quality));
        last[i] = Some(quality.to_vec());
        first.push((user, msgs));
    }
    for r in c.block(first) {
        assert!(r.success, "{:?}", r.failure);
    }
    let mut msgs = Vec::new();
    if let Some(w) = &last[2] {
        msgs.push(reveal(0, 3, &uids, w));
    }
    // What validator 1 revealed in this window (its weights of the window before).
    let seen: Option<WeightRow> = c.get(&weights_key(0, 0));
    if let Some(row) = seen {
        let copied: Vec<u16> = uids
            .iter()
            .map(|u| row.entries.iter().find(|e| e.0 == *u).map_or(0, |e| e.1))
            .collect();
        if copied.iter().any(|w| *w > 0) {
            msgs.push(commit(0, 3, &uids, &copied));
            last[2] = Some(copied);
        }
    }
    if !msgs.is_empty() {
        c.ok(3, msgs);
    }
    c.next_epoch(0);
}

#[test]
fn a_weight_copier_earns_less_than_honest_validators_when_quality_changes() {
    let mut c = Chain::new(8);
    c.ok(0, vec![create("chat", SubnetTask::Chat)]);
    c.ok(
        0,
        vec![
            set(0, SubnetParam::Tempo(TEMPO)),
            set(0, SubnetParam::WeightsRateLimit(0)),
            set(0, SubnetParam::TargetRegistrations(4)),
        ],
    );
    // UIDs 0, 1, 2: validators (users 1, 2, 3); UIDs 3.. : miners (users 4, 5, 6, 7).
    for u in 1..=7 {
        c.ok(u, vec![register(0)]);
    }
    c.block(vec![
        (1, vec![stake(0, 1, 400 * AGR)]),
        (2, vec![stake(0, 2, 400 * AGR)]),
        (3, vec![stake(0, 3, 200 * AGR)]),
    ]);
    c.next_epoch(0);
    let qualities = [[700u16, 200, 100], [100, 700, 200], [200, 100, 700]];
    let mut last: [Option<Vec<u16>>; 3] = [None, None, None];
    let (mut honest, mut copier) = (0u128, 0u128);
    for e in 0..12 {
        copier_window(&mut c, &qualities[e % 3], &mut last);
        if e >= 4 {
            // Dividends per unit of stake: honest validators hold 400 AGR, the copier 200.
            honest += u128::from(c.neuron(0, 0).dividends) / 400;
            copier += u128::from(c.neuron(0, 2).dividends) / 200;
        }
    }
    let ratio = copier as f64 / honest as f64;
    eprintln!("weight copier's dividends per stake / honest validators': {ratio:.3}");
    assert!(honest > 0 && copier > 0);
    assert!(
        ratio < 0.8,
        "the copier earned {ratio:.3} of an honest validator's rate"
    );
}

#[test]
fn colluding_validators_below_kappa_cannot_raise_their_own_miner() {
    let mut c = Chain::new(8);
    c.ok(0, vec![create("chat", SubnetTask::Chat)]);
    c.ok(
        0,
        vec![
            set(0, SubnetParam::Tempo(TEMPO)),
            set(0, SubnetParam::WeightsRateLimit(0)),
        ],
    );
    for u in 1..=6 {
        c.ok(u, vec![register(0)]);
    }
    // Validators: users 1 and 2 honest (35 % each), 3 and 4 colluding (15 % each: 30 % < κ),
    // rating their friend UID 5 (user 6) alone; miners UID 4 (user 5) and UID 5 (user 6).
    c.block(vec![
        (1, vec![stake(0, 1, 350 * AGR)]),
        (2, vec![stake(0, 2, 350 * AGR)]),
        (3, vec![stake(0, 3, 150 * AGR)]),
        (4, vec![stake(0, 4, 150 * AGR)]),
    ]);
    c.next_epoch(0);
    let honest = ([4u16, 5], [9u16, 1]);
    let collude = ([5u16], [1u16]);
    let round = |c: &mut Chain, reveal_too: bool| {
        let mut txs = Vec::new();
        for u in [1usize, 2] {
            let mut m = Vec::new();
            if reveal_too {
                m.push(reveal(0, u, &honest.0, &honest.1));
            }
            m.push(commit(0, u, &honest.0, &honest.1));
            txs.push((u, m));
        }
        for u in [3usize, 4] {
            let mut m = Vec::new();
            if reveal_too {
                m.push(reveal(0, u, &collude.0, &collude.1));
            }
            m.push(commit(0, u, &collude.0, &collude.1));
            txs.push((u, m));
        }
        for r in c.block(txs) {
            assert!(r.success, "{:?}", r.failure);
        }
        c.next_epoch(0);
    };
    round(&mut c, false);
    for _ in 0..3 {
        round(&mut c, true);
    }
    let (friend, honest_miner) = (c.neuron(0, 5), c.neuron(0, 4));
    // The friend's consensus weight is what the honest validators give it (a tenth), not the
    // colluders' all: consensus is what validators holding κ of the stake support, and its rank
    // (the stake-weighted weight it keeps after clipping) cannot exceed it.
    let tenth = (crate::yuma::ONE / 10) as u64;
    assert!(friend.consensus <= tenth + 1, "{}", friend.consensus);
    assert!(friend.rank <= tenth + 1, "{}", friend.rank);
    assert!(honest_miner.incentive > 6 * friend.incentive);
    // The colluders' extra weight is clipped away: their validator trust is what they share
    // with consensus.
    assert!(c.neuron(0, 2).validator_trust <= tenth + 1);
    assert!(c.neuron(0, 0).validator_trust > 9 * c.neuron(0, 2).validator_trust);
}

#[test]
fn sybil_miners_pay_the_burn_and_are_pruned_when_they_do_not_earn() {
    let mut c = Chain::new(12);
    c.ok(0, vec![create("chat", SubnetTask::Chat)]);
    c.ok(
        0,
        vec![
            set(0, SubnetParam::Tempo(TEMPO)),
            set(0, SubnetParam::ImmunityPeriod(TEMPO)),
            set(0, SubnetParam::WeightsRateLimit(0)),
            set(0, SubnetParam::MaxUids(6)),
        ],
    );
    c.next_epoch(0);
    // A validator (user 1) and a good miner (user 2), then four sybils (users 3..=6) fill it.
    c.ok(1, vec![register(0)]);
    c.ok(2, vec![register(0)]);
    let burned = c.emission().burned;
    let burn = c.subnet(0).burn;
    let receipts = c.block((3..=6).map(|u| (u, vec![register(0)])).collect());
    assert!(receipts.iter().all(|r| r.success));
    assert_eq!(
        c.emission().burned - burned,
        4 * burn,
        "each sybil burned the burn"
    );
    c.ok(1, vec![stake(0, 1, 100 * AGR), commit(0, 1, &[1], &[1])]);
    c.next_epoch(0);
    // Six registrations against a target of two raised the burn for the next ones.
    assert!(c.subnet(0).burn > burn);
    c.ok(1, vec![reveal(0, 1, &[1], &[1])]);
    c.next_epoch(0);
    // The sybils earned nothing: newcomers take their UIDs, never the earning miner's.
    for u in 7..=10 {
        c.ok(u, vec![register(0)]);
    }
    let hotkeys: Vec<Address> = (0..6).map(|uid| c.neuron(0, uid).hotkey).collect();
    assert_eq!(
        hotkeys[1],
        key(2).address(),
        "the earning miner keeps its UID"
    );
    for u in 3..=6 {
        assert!(!hotkeys.contains(&key(u).address()), "sybil {u} was pruned");
    }
}

#[test]
fn delegator_slots_cannot_be_squatted_with_dust() {
    let g = genesis(6).with_subnets(SubnetParams {
        max_delegators: 2,
        ..SubnetParams::default()
    });
    let mut c = Chain::from_genesis(g);
    c.ok(0, vec![create("chat", SubnetTask::Chat)]);
    c.ok(1, vec![register(0)]);
    let min = crate::subnet::MIN_DELEGATION;
    c.fails(2, vec![stake(0, 1, min - 1)], "delegation_too_small");
    c.ok(2, vec![stake(0, 1, AGR)]);
    c.ok(3, vec![stake(0, 1, 2 * AGR)]);
    // Full: a newcomer must offer more than the smallest delegation, which it then replaces.
    c.fails(4, vec![stake(0, 1, AGR)], "too_many_delegators");
    // Only by a tenth more than the smallest.
    c.fails(4, vec![stake(0, 1, AGR + AGR / 10)], "too_many_delegators");
    let r = c.ok(4, vec![stake(0, 1, 5 * AGR)]);
    assert!(r.events.iter().any(|e| e.kind == "subnet_stake_evicted"));
    assert_eq!(
        account(&c.s, &key(2).address()).unbonding,
        AGR,
        "the evicted stake unbonds"
    );
    let hs: HotkeyStake = c.get(&hotkey_stake_key(0, &key(1).address())).unwrap();
    let delegators: Vec<Address> = hs.delegations.iter().map(|d| d.delegator).collect();
    assert!(delegators.contains(&key(3).address()) && delegators.contains(&key(4).address()));
    // A delegator already in adds any amount, and takes out all or leaves at least the least.
    c.ok(3, vec![stake(0, 1, 1)]);
    let unstake = |amount| Message::RemoveSubnetStake {
        netuid: 0,
        hotkey: key(1).address(),
        amount,
    };
    c.fails(3, vec![unstake(2 * AGR)], "delegation_too_small");
    c.ok(3, vec![unstake(2 * AGR + 1)]);
    // The hotkey's own stake is never evicted.
    c.ok(1, vec![stake(0, 1, AGR)]);
    c.ok(5, vec![stake(0, 1, 50 * AGR)]);
    let hs: HotkeyStake = c.get(&hotkey_stake_key(0, &key(1).address())).unwrap();
    assert!(
        hs.delegations
            .iter()
            .any(|d| d.delegator == key(1).address())
    );
    assert!(
        !hs.delegations
            .iter()
            .any(|d| d.delegator == key(4).address())
    );
}

#[test]
fn a_proposers_own_fees_do_not_count_in_what_forecasts_predict() {
    let mut c = Chain::new(4);
    c.ok(0, vec![create("f", SubnetTask::Forecast)]);
    let observed = |c: &Chain| {
        let index: SubnetIndex = c.get(&subnet_index_key()).unwrap();
        index.subnets[0].observed
    };
    let before = observed(&c);
    // User 1 proposes a block holding its own transfer and user 2's.
    let height = c.height + 1;
    let txs = [
        tx(
            1,
            0,
            10,
            vec![Message::Transfer {
                to: key(3).address(),
                amount: 1,
            }],
        ),
        tx(
            2,
            0,
            10,
            vec![Message::Transfer {
                to: key(3).address(),
                amount: 1,
            }],
        ),
    ];
    let ctx = BlockContext {
        proposer: key(1).address(),
        ..ctx(height)
    };
    let out = Executor::execute_block(&c.s, ctx, &txs).unwrap();
    c.s.apply(&out.writes);
    c.height = height;
    assert_eq!(observed(&c) - before, 10, "only user 2's fee counts");
}

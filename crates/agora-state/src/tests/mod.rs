use crate::*;
use agora_types::{AGR, Address, Keypair, Message, SignedTransaction, Transaction};
use proptest::prelude::*;

const CHAIN: &str = "agora-test";

fn key(i: usize) -> Keypair {
    Keypair::from_seed_label(&format!("user{i}"))
}

fn proposer() -> Address {
    Address([0xEE; 20])
}

fn genesis(n: usize) -> Genesis {
    Genesis::new(CHAIN)
        .with_params(Params {
            min_fee: 10,
            unbonding_period: 3,
        })
        .with_accounts((0..n).map(|i| GenesisAccount {
            address: key(i).address(),
            balance: 1_000 * AGR,
            bonded: 0,
        }))
}

fn state(n: usize) -> MemState {
    let mut s = MemState::default();
    s.apply(&genesis(n).initial_writes().unwrap());
    s
}

fn ctx(height: u64) -> BlockContext {
    BlockContext {
        chain_id: CHAIN.into(),
        height,
        time_ms: height * 500,
        proposer: proposer(),
        seed: agora_types::Hash::digest(&height.to_le_bytes()),
    }
}

/// A transaction paying `fee` per unit of work (the tests' chains charge 10).
fn tx(from: usize, nonce: u64, fee: u128, messages: Vec<Message>) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: key(from).public(),
        nonce,
        fee: fee * u128::from(agora_types::work_units(&messages)),
        messages,
    }
    .sign(&key(from))
}

fn account(s: &MemState, a: &Address) -> Account {
    let bytes = s.get(&account_key(a)).unwrap().expect("account exists");
    borsh::from_slice(&bytes).unwrap()
}

fn supply(s: &MemState) -> u128 {
    borsh::from_slice(&s.get(&supply_key()).unwrap().unwrap()).unwrap()
}

/// Everything held anywhere — accounts, provider stakes, escrows, fees waiting out their
/// challenge window, the verifiers' pool: must equal the recorded supply.
fn sum_accounts(s: &MemState) -> u128 {
    let mut total = 0u128;
    for (k, v) in &s.0 {
        let held = if k.starts_with(b"acct/") {
            borsh::from_slice::<Account>(v).unwrap().total().unwrap()
        } else if k.starts_with(b"prov/") {
            borsh::from_slice::<Provider>(v).unwrap().stake
        } else if k.starts_with(b"escr/") {
            let e: Escrow = borsh::from_slice(v).unwrap();
            e.balance + e.unlocking
        } else if k.starts_with(b"job/") {
            let j: JobRecord = borsh::from_slice(v).unwrap();
            j.surcharge
                + match j.fee_state {
                    FeeState::Pending | FeeState::Held => j.fee,
                    FeeState::Released | FeeState::Refunded => 0,
                }
        } else if k.starts_with(b"vrfr/") {
            borsh::from_slice::<Verifier>(v).unwrap().stake
        } else if k.starts_with(b"chk/") {
            // An open check holds its budget and the challenger's bond.
            let c: Check = borsh::from_slice(v).unwrap();
            if c.outcome == Outcome::Open {
                c.budget + c.challenger.map_or(0, |(_, bond)| bond)
            } else {
                0
            }
        } else if k.starts_with(b"vfnd/") || k.as_slice() == verifier_pool_key().as_slice() {
            borsh::from_slice::<u128>(v).unwrap()
        } else {
            0
        };
        total += held;
    }
    total
}

/// Executes block `height` over `s` and checks every invariant of the state it leaves.
fn run_block(s: &mut MemState, height: u64, txs: &[SignedTransaction]) -> Executed {
    let out = Executor::execute_block(s, ctx(height), txs).unwrap();
    s.apply(&out.writes);
    let entries = s.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
    if let Err(broken) = invariants::check(height, entries) {
        panic!("after block {height}: {broken}");
    }
    out
}

#[test]
fn transfer_moves_funds_and_pays_fee_to_proposer() {
    let mut s = state(2);
    let to = key(1).address();
    let out = run_block(
        &mut s,
        1,
        &[tx(
            0,
            0,
            10,
            vec![Message::Transfer {
                to,
                amount: 5 * AGR,
            }],
        )],
    );
    assert!(out.receipts[0].success);
    assert_eq!(account(&s, &key(0).address()).balance, 995 * AGR - 10);
    assert_eq!(account(&s, &key(0).address()).nonce, 1);
    assert_eq!(account(&s, &to).balance, 1005 * AGR);
    assert_eq!(account(&s, &proposer()).balance, 10);
    assert_eq!(sum_accounts(&s), supply(&s));
    let kinds: Vec<_> = out.receipts[0]
        .events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["transfer"]);
    assert_eq!(out.block_events[0].kind, "fees_paid");
}

fn admission_error(s: &MemState, t: &SignedTransaction) -> TxError {
    let mut exec = Executor::new(s, ctx(1)).unwrap();
    match exec.check_tx(t) {
        Err(CheckError::Tx(e)) => e,
        other => panic!("expected a tx error, got {other:?}"),
    }
}

#[test]
fn admission_rejects_wrong_chain_replay_gap_low_fee_unknown_sender_and_unpayable_fee() {
    let mut s = state(2);
    let to = key(1).address();
    let send = |nonce, fee| tx(0, nonce, fee, vec![Message::Transfer { to, amount: 1 }]);
    run_block(&mut s, 1, &[send(0, 10)]);

    let mut wrong_chain = send(1, 10).tx;
    wrong_chain.chain_id = "other".into();
    let wrong_chain = wrong_chain.sign(&key(0));
    assert_eq!(admission_error(&s, &wrong_chain).code(), "wrong_chain_id");
    assert_eq!(admission_error(&s, &send(0, 10)).code(), "nonce_too_low");
    assert_eq!(admission_error(&s, &send(2, 10)).code(), "nonce_too_high");
    assert_eq!(admission_error(&s, &send(1, 9)).code(), "fee_too_low");
    let stranger = tx(7, 0, 10, vec![Message::Transfer { to, amount: 1 }]);
    assert_eq!(admission_error(&s, &stranger).code(), "unknown_account");
    let unpayable = send(1, 2_000 * AGR);
    assert_eq!(admission_error(&s, &unpayable).code(), "insufficient_funds");

    // A block holding an inadmissible transaction is invalid and changes nothing.
    let before = s.0.clone();
    let err = Executor::execute_block(&s, ctx(2), &[send(0, 10)]).unwrap_err();
    assert!(matches!(err, Error::InvalidTx { index: 0, .. }), "{err}");
    assert_eq!(s.0, before);
}

#[test]
fn failed_messages_charge_the_fee_and_roll_back_everything_else() {
    let mut s = state(2);
    let to = key(1).address();
    let t = tx(
        0,
        0,
        10,
        vec![
            Message::Transfer {
                to,
                amount: 100 * AGR,
            },
            Message::Transfer {
                to,
                amount: 10_000 * AGR,
            },
        ],
    );
    let out = run_block(&mut s, 1, &[t]);
    let r = &out.receipts[0];
    assert!(!r.success);
    let failure = r.failure.as_ref().unwrap();
    assert_eq!(
        (failure.code.as_str(), failure.message_index),
        ("insufficient_funds", 1)
    );
    // Two messages: two units of work at 10.
    assert_eq!(
        account(&s, &key(0).address()).balance,
        1_000 * AGR - 20,
        "first transfer undone"
    );
    assert_eq!(account(&s, &key(0).address()).nonce, 1);
    assert_eq!(account(&s, &to).balance, 1_000 * AGR);
    assert_eq!(sum_accounts(&s), supply(&s));
}

#[test]
fn overflow_zero_amounts_and_overbonding_fail_cleanly() {
    let mut s = state(2);
    let to = key(1).address();
    let cases = [
        (
            Message::Transfer {
                to,
                amount: u128::MAX,
            },
            "insufficient_funds",
        ),
        (Message::Transfer { to, amount: 0 }, "zero_amount"),
        (
            Message::Bond {
                amount: 1_001 * AGR,
            },
            "insufficient_funds",
        ),
        (Message::Unbond { amount: 1 }, "insufficient_bonded"),
    ];
    for (nonce, (msg, code)) in cases.into_iter().enumerate() {
        let out = run_block(
            &mut s,
            nonce as u64 + 1,
            &[tx(0, nonce as u64, 10, vec![msg])],
        );
        assert_eq!(out.receipts[0].failure.as_ref().unwrap().code, code);
    }
    assert_eq!(sum_accounts(&s), supply(&s));
}

#[test]
fn recipient_overflow_is_rejected() {
    let mut g = genesis(1);
    let rich = Keypair::from_seed_label("rich");
    g.accounts.push(GenesisAccount {
        address: rich.address(),
        balance: u128::MAX - 2_000 * AGR,
        bonded: 0,
    });
    let mut s = MemState::default();
    s.apply(&g.initial_writes().unwrap());
    // Moving user0's funds into the rich account would overflow its total: refused.
    let t = tx(
        0,
        0,
        10,
        vec![Message::Transfer {
            to: rich.address(),
            amount: 999 * AGR,
        }],
    );
    let out = run_block(&mut s, 1, &[t]);
    assert!(out.receipts[0].success, "still fits");
    let t = tx(
        0,
        1,
        10,
        vec![Message::Transfer {
            to: rich.address(),
            amount: AGR / 2,
        }],
    );
    let out = run_block(&mut s, 2, &[t]);
    assert!(out.receipts[0].success);
    assert_eq!(sum_accounts(&s), supply(&s));
}

#[test]
fn bond_unbond_and_release_after_the_period() {
    let mut s = state(1);
    let me = key(0).address();
    run_block(
        &mut s,
        1,
        &[tx(0, 0, 10, vec![Message::Bond { amount: 100 * AGR }])],
    );
    assert_eq!(account(&s, &me).bonded, 100 * AGR);
    run_block(
        &mut s,
        2,
        &[tx(0, 1, 10, vec![Message::Unbond { amount: 40 * AGR }])],
    );
    let acc = account(&s, &me);
    assert_eq!((acc.bonded, acc.unbonding), (60 * AGR, 40 * AGR));
    // Period is 3 blocks: released at the end of block 5.
    run_block(&mut s, 3, &[]);
    run_block(&mut s, 4, &[]);
    assert_eq!(account(&s, &me).unbonding, 40 * AGR);
    let out = run_block(&mut s, 5, &[]);
    let acc = account(&s, &me);
    assert_eq!(
        (acc.bonded, acc.unbonding, acc.balance),
        (60 * AGR, 0, 940 * AGR - 20)
    );
    assert_eq!(out.block_events.last().unwrap().kind, "unbond_released");
    assert!(
        s.get(&unbonding_key(5)).unwrap().is_none(),
        "queue entry removed"
    );
    assert_eq!(sum_accounts(&s), supply(&s));
}

#[test]
fn genesis_rejects_duplicates_and_overflow() {
    let mut g = genesis(2);
    g.accounts.push(g.accounts[0].clone());
    assert!(g.initial_writes().is_err());
    let mut g = genesis(0);
    g.accounts = (0..2)
        .map(|i| GenesisAccount {
            address: key(i).address(),
            balance: u128::MAX / 2 + 1,
            bonded: 0,
        })
        .collect();
    assert!(g.initial_writes().is_err());
    let text = genesis(2).to_json();
    assert_eq!(Genesis::from_json(&text).unwrap(), genesis(2));
    assert!(Genesis::from_json("{").is_err());
}

fn arb_msg(n: usize) -> impl Strategy<Value = Message> {
    prop_oneof![
        (0..n, 0u128..2_000 * AGR).prop_map(|(to, amount)| Message::Transfer {
            to: key(to).address(),
            amount
        }),
        (0u128..500 * AGR).prop_map(|amount| Message::Bond { amount }),
        (0u128..500 * AGR).prop_map(|amount| Message::Unbond { amount }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Invariants over random blocks: supply conserved, no account ever goes negative (u128 would
    /// have panicked), and executing the same blocks twice gives the same state.
    #[test]
    fn random_blocks_conserve_supply_and_are_deterministic(
        blocks in proptest::collection::vec(
            proptest::collection::vec((0usize..4, proptest::collection::vec(arb_msg(5), 1..3)), 0..6),
            1..8,
        )
    ) {
        let run = || {
            let mut s = state(4);
            let mut nonces = [0u64; 4];
            for (h, block) in blocks.iter().enumerate() {
                let txs: Vec<_> = block.iter().map(|(from, msgs)| {
                    let t = tx(*from, nonces[*from], 10, msgs.clone());
                    nonces[*from] += 1;
                    t
                }).collect();
                run_block(&mut s, h as u64 + 1, &txs);
            }
            s
        };
        let a = run();
        prop_assert_eq!(sum_accounts(&a), supply(&a));
        let b = run();
        prop_assert_eq!(a.0, b.0);
    }
}

// ---- Adversarial runs of every message type (see `sim`) ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random blocks of every message type from actors playing every role, honest and not:
    /// every invariant holds after every block, and the same blocks give the same state.
    #[test]
    fn adversarial_runs_keep_every_invariant_after_every_block(run in sim::arb_run(20)) {
        sim::check_run(&run)?;
    }
}

/// The adversarial runs are not vacuous: over a fixed set of them, jobs settle, are drawn,
/// revealed, challenged, judged every way, and providers and verifiers are slashed.
#[test]
fn adversarial_runs_reach_every_outcome() {
    use proptest::{
        strategy::ValueTree,
        test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
    };
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        // A seed whose 120 runs reach every outcome, the rare ones (an appeal, a dispute, a
        // pruned neuron) included; a new kind of action changes what a seed draws.
        TestRng::from_seed(RngAlgorithm::ChaCha, &[8; 32]),
    );
    let mut seen: std::collections::BTreeMap<String, u64> = Default::default();
    for _ in 0..120 {
        let run = sim::arb_run(20).new_tree(&mut runner).unwrap().current();
        let world = sim::run(&run).unwrap();
        for (k, n) in world.events {
            *seen.entry(k).or_default() += n;
        }
    }
    for kind in [
        "job_settled",
        "job_rejected",
        "job_sampled",
        "job_revealed",
        "job_challenged",
        "dispute_opened",
        "check_decided:passed",
        "check_decided:fraud",
        "check_decided:no_reveal",
        "provider_slashed",
        "verifier_slashed",
        "verifier_rewarded",
        "fee_released",
        "job_refunded",
        "unbond_released",
        "escrow_released",
        "job_pruned",
        "subnet_created",
        "neuron_registered",
        "neuron_pruned",
        "subnet_stake_added",
        "subnet_stake_removed",
        "weights_committed",
        "weights_revealed",
        "subnet_epoch",
        "subnet_param",
        "prediction_committed",
        "prediction_revealed",
        "forecast_scored",
        "bounty_created",
        "item_submitted",
        "screener_drawn",
        "item_screened",
        "item_appealed",
        "panel_drawn",
        "vote_committed",
        "vote_revealed",
        "votes_counted",
        "reviewer_slashed",
        "item_decided",
        "bounty_settled",
        "reviewer_staked",
        "reviewer_unstaked",
        "datasets_cited",
        "royalty_paid",
        "royalty_claimed",
        "zk_model_registered",
        "zk_input_certified",
        "model_source_published",
    ] {
        assert!(seen.contains_key(kind), "no {kind} in {seen:?}");
    }
}

// ---- The compute market ----

mod data;
mod market;
mod subnets;
mod zk;

fn validator_set(s: &MemState) -> Option<ValidatorSet> {
    s.get(&validator_set_key())
        .unwrap()
        .map(|b| borsh::from_slice(&b).unwrap())
}

#[test]
fn validator_set_follows_bonds_at_epoch_ends_only() {
    let mut g = genesis(4);
    g.consensus.epoch_length = 4;
    g.consensus.min_validator_stake = 10 * AGR;
    g.accounts[0].bonded = 30 * AGR;
    g.validators = vec![GenesisValidator {
        public_key: key(0).public(),
    }];
    let mut s = MemState::default();
    s.apply(&g.initial_writes().unwrap());
    let set = validator_set(&s).expect("genesis set");
    assert_eq!(set.validators.len(), 1);
    assert_eq!(set.validators[0].address, key(0).address());
    assert_eq!(set.validators[0].public_key, key(0).public());
    assert_eq!(set.total_power(), 30);

    // User 1 bonds 20 AGR at height 1 and user 2 bonds 5 (below the minimum): no change before
    // the epoch ends at height 4.
    run_block(
        &mut s,
        1,
        &[
            tx(1, 0, 10, vec![Message::Bond { amount: 20 * AGR }]),
            tx(2, 0, 10, vec![Message::Bond { amount: 5 * AGR }]),
        ],
    );
    for h in 2..4 {
        run_block(&mut s, h, &[]);
        assert_eq!(validator_set(&s).unwrap(), set, "height {h}");
    }
    let out = run_block(&mut s, 4, &[]);
    assert!(out.block_events.iter().any(|e| e.kind == "validator_set"));
    let set = validator_set(&s).unwrap();
    let seats: Vec<(Address, u64)> = set
        .validators
        .iter()
        .map(|v| (v.address, v.power))
        .collect();
    let mut expected = vec![(key(0).address(), 30), (key(1).address(), 20)];
    expected.sort();
    assert_eq!(seats, expected);
    assert_eq!(
        set.get(&key(1).address()).unwrap().public_key,
        key(1).public()
    );

    // Everyone unbonds below the minimum: the set never becomes empty, the last one stays.
    run_block(
        &mut s,
        5,
        &[
            tx(0, 0, 10, vec![Message::Unbond { amount: 30 * AGR }]),
            tx(1, 1, 10, vec![Message::Unbond { amount: 15 * AGR }]),
        ],
    );
    for h in 6..=8 {
        run_block(&mut s, h, &[]);
    }
    assert_eq!(validator_set(&s).unwrap(), set);
}

#[test]
fn a_genesis_validator_needs_its_account_and_stake() {
    let mut g = genesis(2);
    g.validators = vec![GenesisValidator {
        public_key: key(7).public(),
    }];
    let err = g.initial_writes().unwrap_err().to_string();
    assert!(err.contains("has no account"), "{err}");
    g.validators = vec![GenesisValidator {
        public_key: key(1).public(),
    }];
    let err = g.initial_writes().unwrap_err().to_string();
    assert!(err.contains("min_validator_stake"), "{err}");
    g.accounts[1].bonded = AGR;
    assert!(g.initial_writes().is_ok());
    // A dev chain has no set.
    assert!(validator_set(&state(2)).is_none());
}

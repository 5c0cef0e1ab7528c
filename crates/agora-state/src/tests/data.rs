//! The data market on the chain: bounties, items through pre-screen and review, payouts,
//! datasets, citations and royalties, with every invariant (escrow exact to the base unit
//! included) checked after every block.

use super::subnets::Chain;
use super::*;
use agora_types::{
    BountySpec, CiteTarget, EncryptionKey, Hash, JobParams, JobReceipt, JobRequest, ModelKind,
    ProviderInfo, RejectReason, ScreenVerdict, SettledJob, dataset_leaf, job_fee, merkle_root,
    vote_commitment,
};

const REQUESTER: usize = 0;
/// Users 1..=3 contribute; 4..=9 review.
const REVIEWERS: std::ops::RangeInclusive<usize> = 4..=9;
const WINDOW: u64 = 10;
const REWARD: u128 = 2 * AGR;
const FEE: u128 = AGR / 10;
const REVIEW_STAKE: u128 = 10 * AGR;
const BOND: u128 = AGR;

fn data_params() -> DataParams {
    DataParams {
        screen_window: WINDOW,
        appeal_window: WINDOW,
        commit_window: WINDOW,
        reveal_window: WINDOW,
        ..DataParams::default()
    }
}

/// Ten funded users; 4..=9 stake 100 AGR each as reviewers.
fn market() -> Chain {
    let mut c = Chain::from_genesis(genesis(10).with_data(data_params()));
    for r in REVIEWERS {
        c.ok(r, vec![Message::JoinReviewers { amount: 100 * AGR }]);
    }
    c
}

fn spec(quorum: u8, budget: u128, deadline: u64) -> BountySpec {
    BountySpec {
        description: "Questions about Solidity with a correct short answer".into(),
        schema: r#"{"type":"object","required":["question","answer"]}"#.into(),
        reward_per_item: REWARD,
        review_fee: FEE,
        budget,
        quorum,
        review_stake: REVIEW_STAKE,
        item_bond: BOND,
        deadline,
        max_item_bytes: 1024,
        duplicate_bps: 9_500,
        royalty_bps: 500,
    }
}

fn content(i: usize) -> Hash {
    Hash::digest(format!("{{\"question\":\"q{i}\",\"answer\":\"a{i}\"}}").as_bytes())
}

fn submit(bounty: u64, i: usize) -> Message {
    Message::SubmitItem {
        bounty,
        hash: content(i),
        size: 40,
    }
}

fn user_of(a: &Address) -> usize {
    (0..10).find(|&i| key(i).address() == *a).expect("a user")
}

fn salt(user: usize) -> Hash {
    Hash::digest(format!("salt{user}").as_bytes())
}

impl Chain {
    fn bounty(&self, id: u64) -> Bounty {
        self.get(&bounty_key(id)).expect("the bounty")
    }

    fn item(&self, b: u64, i: u32) -> Item {
        self.get(&item_key(b, i)).expect("the item")
    }

    fn reviewer(&self, user: usize) -> Reviewer {
        self.get(&reviewer_key(&key(user).address()))
            .unwrap_or_default()
    }

    /// Runs until the item's screener is drawn; returns it.
    fn screener(&mut self, b: u64, i: u32) -> usize {
        self.block(vec![]);
        match self.item(b, i).stage {
            Stage::Screening { screener, .. } => user_of(&screener),
            other => panic!("not screening: {other:?}"),
        }
    }

    /// Runs until the item's panel is drawn; returns its seats as (user, votes).
    fn panel(&mut self, b: u64, i: u32) -> Vec<(usize, u8)> {
        self.block(vec![]);
        match self.item(b, i).stage {
            Stage::Voting { seats, .. } => seats
                .iter()
                .map(|s| (user_of(&s.reviewer), s.votes))
                .collect(),
            other => panic!("not voting: {other:?}"),
        }
    }

    fn deadlines(&self, b: u64, i: u32) -> (u64, u64) {
        match self.item(b, i).stage {
            Stage::Voting {
                commit_deadline,
                reveal_deadline,
                ..
            } => (commit_deadline, reveal_deadline),
            other => panic!("not voting: {other:?}"),
        }
    }

    /// Every seat votes as `vote` says (`None`: commits but never reveals), then the votes are
    /// counted.
    fn vote(
        &mut self,
        b: u64,
        i: u32,
        seats: &[(usize, u8)],
        vote: impl Fn(usize) -> Option<bool>,
    ) {
        // Every commit in one block, every reveal in another.
        let commits = seats
            .iter()
            .map(|&(u, _)| {
                let accept = vote(u).unwrap_or(true);
                let commitment = vote_commitment(b, i, &key(u).address(), accept, &salt(u));
                (
                    u,
                    vec![Message::CommitVote {
                        bounty: b,
                        item: i,
                        commitment,
                    }],
                )
            })
            .collect();
        let receipts = self.block(commits);
        assert!(receipts.iter().all(|r| r.success), "{receipts:?}");
        let (commit, reveal) = self.deadlines(b, i);
        self.run_to(commit);
        let reveals = seats
            .iter()
            .filter_map(|&(u, _)| {
                let accept = vote(u)?;
                Some((
                    u,
                    vec![Message::RevealVote {
                        bounty: b,
                        item: i,
                        accept,
                        salt: salt(u),
                    }],
                ))
            })
            .collect();
        let receipts = self.block(reveals);
        assert!(receipts.iter().all(|r| r.success), "{receipts:?}");
        self.run_to(reveal);
    }

    fn screen(&mut self, screener: usize, b: u64, i: u32, verdict: ScreenVerdict) {
        self.ok(
            screener,
            vec![Message::ScreenItem {
                bounty: b,
                item: i,
                verdict,
            }],
        );
    }
}

/// One item from submission to the dataset: the screener, the panel, the contributor and the
/// requester are paid exactly what the terms say, and the dataset's root is the items'.
#[test]
fn an_accepted_item_pays_everyone_exactly_and_forms_the_dataset() {
    let mut c = market();
    let budget = 50 * AGR;
    let before = c.balance(REQUESTER);
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(3, budget, 30),
        }],
    );
    // The requester paid the budget and the transaction's fee (10 per unit, 4 units).
    assert_eq!(c.balance(REQUESTER), before - budget - 40);
    let contributor = c.balance(1);
    c.ok(1, vec![submit(0, 0)]);
    assert_eq!(c.bounty(0).held, REWARD + 4 * FEE);
    let screener = c.screener(0, 0);
    assert!(REVIEWERS.contains(&screener));
    assert_eq!(c.reviewer(screener).locked, REVIEW_STAKE);
    let screener_before = c.balance(screener);
    c.screen(screener, 0, 0, ScreenVerdict::Pass);
    assert_eq!(c.balance(screener), screener_before + FEE - 10);
    let seats = c.panel(0, 0);
    assert_eq!(seats.iter().map(|s| u32::from(s.1)).sum::<u32>(), 3);
    assert!(
        seats
            .iter()
            .all(|(u, _)| *u != screener && *u != 1 && *u != REQUESTER)
    );
    let balances: Vec<u128> = seats.iter().map(|(u, _)| c.balance(*u)).collect();
    c.vote(0, 0, &seats, |_| Some(true));
    let it = c.item(0, 0);
    assert_eq!(it.stage, Stage::Accepted);
    // Each reviewer: its fees, less its two transactions' fees.
    for ((u, votes), before) in seats.iter().zip(balances) {
        assert_eq!(c.balance(*u), before + FEE * u128::from(*votes) - 20);
        assert_eq!(c.reviewer(*u).locked, 0);
    }
    assert_eq!(c.reviewer(screener).locked, 0);
    // The contributor: the reward, its bond back, less the submission's fee (3 units).
    assert_eq!(c.balance(1), contributor + REWARD - 30);
    let b = c.bounty(0);
    assert_eq!(
        (b.paid, b.held, b.open, b.accepted),
        (REWARD + 4 * FEE, 0, 0, 1)
    );

    let requester = c.balance(REQUESTER);
    c.run_to(b.settle_at);
    let b = c.bounty(0);
    assert!(b.settled);
    assert_eq!(b.refunded, budget - REWARD - 4 * FEE);
    assert_eq!(c.balance(REQUESTER), requester + b.refunded);
    let root = merkle_root(&[dataset_leaf(0, 0, &key(1).address(), &content(0))]);
    assert_eq!(b.dataset, Some(root));
    let d: Dataset = c.get(&dataset_key(&root)).expect("the dataset");
    assert_eq!((d.items, d.contributors), (1, 1));
    let list: Vec<(Address, u32)> = c.get(&dataset_contributors_key(&root)).unwrap();
    assert_eq!(list, vec![(key(1).address(), 1)]);
}

/// The majority decides: a reviewer voting against it and one that never reveals lose a
/// share of their review stake to the winning votes; the item is accepted.
#[test]
fn a_colluding_minority_is_outvoted_and_pays_the_majority() {
    let mut c = market();
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(7, 50 * AGR, 30),
        }],
    );
    c.ok(1, vec![submit(0, 0)]);
    let screener = c.screener(0, 0);
    c.screen(screener, 0, 0, ScreenVerdict::Pass);
    let seats = c.panel(0, 0);
    assert!(
        seats.len() >= 3,
        "five reviewers share seven votes: {seats:?}"
    );
    // The two seats with the fewest votes: one votes against, one never reveals.
    let mut by_votes = seats.clone();
    by_votes.sort_by_key(|s| s.1);
    let (liar, lazy) = (by_votes[0], by_votes[1]);
    assert!(u32::from(liar.1 + lazy.1) * 2 < 7, "a minority: {seats:?}");
    let stakes: Vec<u128> = seats.iter().map(|(u, _)| c.reviewer(*u).stake).collect();
    let balances: Vec<u128> = seats.iter().map(|(u, _)| c.balance(*u)).collect();
    let supply_before = supply(&c.s);
    c.vote(0, 0, &seats, |u| {
        if u == liar.0 {
            Some(false)
        } else if u == lazy.0 {
            None
        } else {
            Some(true)
        }
    });
    assert_eq!(c.item(0, 0).stage, Stage::Accepted);
    let cut = data_params().slash(REVIEW_STAKE);
    let pot = cut * u128::from(liar.1 + lazy.1);
    let winner_votes = 7 - u128::from(liar.1 + lazy.1);
    let mut paid_out = 0;
    for (k, (u, votes)) in seats.iter().enumerate() {
        let votes = u128::from(*votes);
        if *u == liar.0 || *u == lazy.0 {
            assert_eq!(c.reviewer(*u).stake, stakes[k] - cut * votes, "loser {u}");
            let txs = if *u == liar.0 { 20 } else { 10 };
            assert_eq!(c.balance(*u), balances[k] - txs, "a loser earns no fee");
        } else {
            let share = pot / winner_votes * votes;
            paid_out += share;
            assert_eq!(c.reviewer(*u).stake, stakes[k]);
            assert_eq!(c.balance(*u), balances[k] + FEE * votes + share - 20);
        }
    }
    // What does not divide evenly is burned; the rest moved from losers to winners.
    assert_eq!(supply(&c.s), supply_before - (pot - paid_out));
}

/// Spam and duplicates: the same bytes twice, sizes outside the terms, a submission after the
/// deadline or beyond the budget are refused; a near-duplicate the screener names is rejected
/// with its reason after the appeal window, and its bond burned.
#[test]
fn spam_duplicates_sizes_deadlines_and_budgets_are_refused_with_clear_errors() {
    let mut c = market();
    // Exactly two items' worth of budget.
    let budget = 2 * (REWARD + 4 * FEE);
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(3, budget, 40),
        }],
    );
    c.ok(1, vec![submit(0, 0)]);
    c.fails(2, vec![submit(0, 0)], "duplicate_item");
    for size in [0, 1025] {
        c.fails(
            2,
            vec![Message::SubmitItem {
                bounty: 0,
                hash: content(9),
                size,
            }],
            "item_size",
        );
    }
    c.fails(2, vec![submit(7, 1)], "unknown_bounty");
    c.ok(2, vec![submit(0, 1)]);
    // Two items reserve the whole budget.
    c.fails(3, vec![submit(0, 2)], "bounty_exhausted");
    let screener = match c.item(0, 1).stage {
        Stage::Screening { screener, .. } => user_of(&screener),
        other => panic!("{other:?}"),
    };
    let not_screener = REVIEWERS.clone().find(|u| *u != screener).unwrap();
    let dup = |of| ScreenVerdict::Reject {
        reason: RejectReason::Duplicate,
        duplicate_of: of,
        detail: "cosine 0.97 with item 0".into(),
    };
    for (who, verdict, code) in [
        (not_screener, dup(Some(0)), "not_drawn"),
        (screener, dup(None), "invalid_screen"),
        (screener, dup(Some(1)), "invalid_screen"),
        (
            screener,
            ScreenVerdict::Reject {
                reason: RejectReason::Spam,
                duplicate_of: Some(0),
                detail: String::new(),
            },
            "invalid_screen",
        ),
        (
            screener,
            ScreenVerdict::Reject {
                reason: RejectReason::Spam,
                duplicate_of: None,
                detail: "x".repeat(257),
            },
            "invalid_screen",
        ),
    ] {
        c.fails(
            who,
            vec![Message::ScreenItem {
                bounty: 0,
                item: 1,
                verdict,
            }],
            code,
        );
    }
    c.screen(screener, 0, 1, dup(Some(0)));
    let burned = c.emission().burned;
    // Only the contributor appeals.
    c.fails(
        3,
        vec![Message::AppealItem { bounty: 0, item: 1 }],
        "not_drawn",
    );
    c.run_to(c.height + WINDOW);
    let it = c.item(0, 1);
    assert_eq!(
        it.stage,
        Stage::Rejected {
            reason: "duplicate".into()
        }
    );
    assert_eq!(it.screen.unwrap().duplicate_of, Some(0));
    assert_eq!(c.emission().burned, burned + BOND);
    // Its reserve, less the screener's fee, is back in the budget: not enough for one more.
    assert_eq!(c.bounty(0).available, REWARD + 3 * FEE);
    c.fails(3, vec![submit(0, 2)], "bounty_exhausted");
    c.run_to(40);
    c.fails(3, vec![submit(0, 3)], "bounty_closed");
}

/// Reviewers never judge their own items, cannot vote outside their windows, and a reveal
/// must match its commitment.
#[test]
fn votes_outside_the_windows_or_on_ones_own_items_are_refused() {
    let mut c = market();
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(5, 100 * AGR, 40),
        }],
    );
    // Reviewer 4 contributes items: it is never drawn on them.
    for i in 0..6 {
        c.ok(4, vec![submit(0, i)]);
    }
    for i in 0..6u32 {
        let it = c.item(0, i);
        if let Stage::Screening { screener, .. } = it.stage {
            assert_ne!(user_of(&screener), 4);
            c.screen(user_of(&screener), 0, i, ScreenVerdict::Pass);
        }
    }
    c.block(vec![]);
    let mut tried = false;
    for i in 0..6u32 {
        if let Stage::Voting { seats, .. } = c.item(0, i).stage {
            assert!(seats.iter().all(|s| user_of(&s.reviewer) != 4));
            if !tried {
                tried = true;
                let commitment = vote_commitment(0, i, &key(4).address(), true, &salt(4));
                c.fails(
                    4,
                    vec![Message::CommitVote {
                        bounty: 0,
                        item: i,
                        commitment,
                    }],
                    "not_drawn",
                );
                let u = user_of(&seats[0].reviewer);
                let commitment = vote_commitment(0, i, &key(u).address(), true, &salt(u));
                let reveal = |accept, s| Message::RevealVote {
                    bounty: 0,
                    item: i,
                    accept,
                    salt: s,
                };
                c.fails(u, vec![reveal(true, salt(u))], "outside_window");
                c.ok(
                    u,
                    vec![Message::CommitVote {
                        bounty: 0,
                        item: i,
                        commitment,
                    }],
                );
                c.fails(
                    u,
                    vec![Message::CommitVote {
                        bounty: 0,
                        item: i,
                        commitment,
                    }],
                    "wrong_stage",
                );
                let (commit, reveal_until) = c.deadlines(0, i);
                c.run_to(commit);
                // A late commit by another seat.
                if let Some(other) = seats.get(1) {
                    let o = user_of(&other.reviewer);
                    let late = vote_commitment(0, i, &key(o).address(), true, &salt(o));
                    c.fails(
                        o,
                        vec![Message::CommitVote {
                            bounty: 0,
                            item: i,
                            commitment: late,
                        }],
                        "outside_window",
                    );
                }
                c.fails(u, vec![reveal(false, salt(u))], "vote_mismatch");
                c.fails(u, vec![reveal(true, salt(u + 1))], "vote_mismatch");
                c.run_to(reveal_until);
                // Counted: nothing more to vote on.
                c.fails(u, vec![reveal(true, salt(u))], "wrong_stage");
            }
        }
    }
    assert!(tried, "some item reached its panel");
}

/// A screener's false rejection, appealed and overturned by the panel, costs the screener a
/// share of its review stake, paid to the contributor; the screener sits on no panel of it.
#[test]
fn an_appeal_overturns_a_false_rejection_and_the_screener_pays() {
    let mut c = market();
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(3, 50 * AGR, 30),
        }],
    );
    c.ok(1, vec![submit(0, 0)]);
    let screener = c.screener(0, 0);
    c.screen(
        screener,
        0,
        0,
        ScreenVerdict::Reject {
            reason: RejectReason::Spam,
            duplicate_of: None,
            detail: "looks like filler".into(),
        },
    );
    let contributor = c.balance(1);
    let stake = c.reviewer(screener).stake;
    c.ok(1, vec![Message::AppealItem { bounty: 0, item: 0 }]);
    let seats = c.panel(0, 0);
    assert!(seats.iter().all(|(u, _)| *u != screener));
    c.vote(0, 0, &seats, |_| Some(true));
    assert_eq!(c.item(0, 0).stage, Stage::Accepted);
    let cut = data_params().slash(REVIEW_STAKE);
    assert_eq!(c.reviewer(screener).stake, stake - cut);
    assert_eq!(c.reviewer(screener).locked, 0);
    // The appeal's fee is 3 units.
    assert_eq!(c.balance(1), contributor + REWARD + BOND + cut - 30);
}

/// Nobody to judge: with no reviewer free, an item is rejected as `no_reviewers`, its bond
/// returned and its bytes free to submit again; a reviewer leaves only with free stake.
#[test]
fn without_reviewers_an_item_is_returned_and_locked_stake_cannot_leave() {
    let mut c = Chain::from_genesis(genesis(10).with_data(data_params()));
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(1, 50 * AGR, 30),
        }],
    );
    let before = c.balance(1);
    c.ok(1, vec![submit(0, 0)]);
    c.run_to(c.height + 3);
    assert_eq!(
        c.item(0, 0).stage,
        Stage::Rejected {
            reason: "no_reviewers".into()
        }
    );
    assert_eq!(c.balance(1), before - 30);
    // The reviewer stake: at least the minimum, or nothing.
    c.fails(
        5,
        vec![Message::JoinReviewers { amount: AGR }],
        "stake_too_low",
    );
    c.ok(5, vec![Message::JoinReviewers { amount: 20 * AGR }]);
    c.fails(
        5,
        vec![Message::LeaveReviewers { amount: 15 * AGR }],
        "stake_too_low",
    );
    c.ok(1, vec![submit(0, 0)]);
    c.block(vec![]);
    assert_eq!(c.reviewer(5).locked, REVIEW_STAKE);
    c.fails(
        5,
        vec![Message::LeaveReviewers { amount: 20 * AGR }],
        "review_stake_locked",
    );
    c.fails(
        6,
        vec![Message::LeaveReviewers { amount: AGR }],
        "not_reviewer",
    );
    c.screen(5, 0, 1, ScreenVerdict::Pass);
    // The only reviewer screened it: nobody is left for the panel.
    c.run_to(c.height + 2);
    assert_eq!(
        c.item(0, 1).stage,
        Stage::Rejected {
            reason: "no_reviewers".into()
        }
    );
    c.ok(5, vec![Message::LeaveReviewers { amount: 20 * AGR }]);
    assert!(
        c.get::<Reviewer>(&reviewer_key(&key(5).address()))
            .is_none()
    );
}

const MODEL: Hash = Hash([0xAA; 32]);

fn job(client: usize, provider: usize, n: u8) -> SettledJob {
    let req = JobRequest {
        chain_id: CHAIN.into(),
        client: key(client).public(),
        provider: key(provider).address(),
        model: MODEL,
        input_hash: Hash::digest(&[n]),
        params: JobParams {
            max_tokens: 1_000,
            verification: agora_types::Verification::None,
            ..JobParams::default()
        },
        max_fee: 100 * AGR,
        nonce: Hash([n; 32]),
        expiry_height: 1_000,
    };
    let receipt = JobReceipt {
        request_hash: req.hash(),
        output_hash: Hash::digest(b"out"),
        input_tokens: 1_000,
        output_tokens: 1_000,
        fee: job_fee(AGR, AGR, 1_000, 1_000).unwrap(),
    };
    SettledJob {
        request: req.sign(&key(client)),
        receipt: receipt.sign(&key(provider)),
    }
}

/// A model cites a dataset in the block that registers it; a provider's earnings on it pay
/// the royalty, which the contributors claim pro rata; a job's client cites it too.
#[test]
fn a_citing_models_earnings_pay_its_datasets_contributors_pro_rata() {
    let mut c = market();
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(1, 50 * AGR, 20),
        }],
    );
    // Contributor 1 gives two items, contributor 2 one.
    for (who, i) in [(1, 0), (1, 1), (2, 2)] {
        c.ok(who, vec![submit(0, i)]);
    }
    for i in 0..3u32 {
        let Stage::Screening { screener, .. } = c.item(0, i).stage else {
            panic!("not screening");
        };
        c.screen(user_of(&screener), 0, i, ScreenVerdict::Pass);
    }
    c.block(vec![]);
    for i in 0..3u32 {
        let Stage::Voting { seats, .. } = c.item(0, i).stage else {
            panic!("not voting");
        };
        let u = user_of(&seats[0].reviewer);
        let commitment = vote_commitment(0, i, &key(u).address(), true, &salt(u));
        c.ok(
            u,
            vec![Message::CommitVote {
                bounty: 0,
                item: i,
                commitment,
            }],
        );
    }
    let (commit, reveal) = c.deadlines(0, 2);
    c.run_to(commit);
    for i in 0..3u32 {
        let Stage::Voting { seats, .. } = c.item(0, i).stage else {
            panic!("not voting");
        };
        let u = user_of(&seats[0].reviewer);
        c.ok(
            u,
            vec![Message::RevealVote {
                bounty: 0,
                item: i,
                accept: true,
                salt: salt(u),
            }],
        );
    }
    c.run_to(reveal);
    let settle = c.bounty(0).settle_at;
    c.run_to(settle);
    let root = c.bounty(0).dataset.expect("a dataset");
    let cite = |target| Message::CiteDatasets {
        target,
        datasets: vec![root],
    };
    let register = Message::RegisterModel {
        id: MODEL,
        name: "cited-model".into(),
        kind: ModelKind::Chat,
    };
    // The registrant's provenance: only in the registration's block.
    c.fails(
        3,
        vec![cite(CiteTarget::Model { id: MODEL })],
        "invalid_citation",
    );
    c.ok(3, vec![register, cite(CiteTarget::Model { id: MODEL })]);
    c.fails(
        3,
        vec![cite(CiteTarget::Model { id: MODEL })],
        "invalid_citation",
    );
    assert_eq!(
        c.get::<Vec<Hash>>(&citation_key(
            &CiteTarget::Model { id: MODEL },
            &key(3).address()
        )),
        Some(vec![root])
    );
    c.fails(
        3,
        vec![Message::CiteDatasets {
            target: CiteTarget::Model { id: MODEL },
            datasets: vec![Hash([1; 32])],
        }],
        "unknown_dataset",
    );
    // Provider 3 serves it to client 2.
    c.ok(
        3,
        vec![Message::RegisterProvider {
            stake: 100 * AGR,
            info: ProviderInfo {
                models: vec![MODEL],
                price_input_per_1k: AGR,
                price_output_per_1k: AGR,
                endpoint: "http://127.0.0.1:9000".into(),
                encryption_key: EncryptionKey([5; 32]),
            },
        }],
    );
    // Serving it, the provider cites the dataset: its own fees on the model pay the royalty
    // (a registrant cannot tax the providers of a model id it registered first).
    c.ok(3, vec![cite(CiteTarget::Model { id: MODEL })]);
    c.fails(
        2,
        vec![cite(CiteTarget::Model { id: MODEL })],
        "invalid_citation",
    );
    c.ok(2, vec![Message::EscrowDeposit { amount: 10 * AGR }]);
    c.ok(
        3,
        vec![Message::SettleJobs {
            jobs: vec![job(2, 3, 1)],
        }],
    );
    let job_id = job(2, 3, 1).request.request.id();
    c.fails(
        1,
        vec![cite(CiteTarget::Job { id: job_id })],
        "invalid_citation",
    );
    c.ok(2, vec![cite(CiteTarget::Job { id: job_id })]);
    let provider = c.balance(3);
    let record: JobRecord = c.get(&job_key(&job_id)).unwrap();
    c.run_to(record.release_height);
    // The fee less the protocol share, less the 5 % royalty.
    // No protocol share on a job its client chose not to have checked.
    let paid = 2 * AGR;
    let royalty = paid * 500 / 10_000;
    assert_eq!(c.balance(3), provider + paid - royalty);
    let d: Dataset = c.get(&dataset_key(&root)).unwrap();
    assert_eq!(
        (
            d.received,
            d.cited_by_models,
            d.cited_by_providers,
            d.cited_by_jobs
        ),
        (royalty, 1, 1, 1)
    );
    let (one, two) = (c.balance(1), c.balance(2));
    c.ok(1, vec![Message::ClaimRoyalties { dataset: root }]);
    c.ok(2, vec![Message::ClaimRoyalties { dataset: root }]);
    assert_eq!(c.balance(1), one + royalty * 2 / 3 - 10);
    assert_eq!(c.balance(2), two + royalty / 3 - 10);
    c.fails(
        1,
        vec![Message::ClaimRoyalties { dataset: root }],
        "nothing_to_claim",
    );
    c.fails(
        4,
        vec![Message::ClaimRoyalties { dataset: root }],
        "nothing_to_claim",
    );
}

/// A bounty's terms are checked: each bad one is refused with its reason and moves nothing.
#[test]
fn bad_bounties_are_refused() {
    let mut c = market();
    let good = spec(3, 50 * AGR, 30);
    let cases: Vec<(BountySpec, &str)> = vec![
        (
            BountySpec {
                description: " ".into(),
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                schema: "not json".into(),
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                schema: "[1]".into(),
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                reward_per_item: 0,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                review_stake: 0,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                quorum: 0,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                quorum: 16,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                deadline: 1,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                deadline: u64::MAX,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                max_item_bytes: 0,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                max_item_bytes: 2 << 20,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                duplicate_bps: 0,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                royalty_bps: 1_001,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                budget: REWARD,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                review_fee: u128::MAX,
                ..good.clone()
            },
            "invalid_bounty",
        ),
        (
            BountySpec {
                budget: 2_000 * AGR,
                ..good.clone()
            },
            "insufficient_funds",
        ),
    ];
    for (spec, code) in cases {
        c.fails(REQUESTER, vec![Message::CreateBounty { spec }], code);
    }
}

/// A requester cannot make its own accounts the panel: a review stake above what every
/// reviewer holds is refused; a pick whose free stake cannot cover the review stake is void; and
/// a side wins only with more than half of the quorum, so void or silent seats never let a
/// minority of the panel decide.
#[test]
fn void_seats_never_let_a_minority_of_the_panel_decide() {
    let mut c = Chain::from_genesis(genesis(10).with_data(data_params()));
    let greedy = BountySpec {
        review_stake: 11 * AGR,
        ..spec(5, 50 * AGR, 40)
    };
    c.fails(
        REQUESTER,
        vec![Message::CreateBounty { spec: greedy }],
        "invalid_bounty",
    );
    // Three reviewers with the least stake: each covers one vote at a time.
    for r in 4..=6 {
        c.ok(r, vec![Message::JoinReviewers { amount: 10 * AGR }]);
    }
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(5, 50 * AGR, 40),
        }],
    );
    let before = c.balance(1);
    c.ok(1, vec![submit(0, 0)]);
    let screener = c.screener(0, 0);
    c.screen(screener, 0, 0, ScreenVerdict::Pass);
    let seats = c.panel(0, 0);
    // Two reviewers are left, one vote each: the other picks of five are void.
    assert!(
        seats.iter().all(|s| s.1 == 1 && s.0 != screener),
        "{seats:?}"
    );
    assert!(seats.len() <= 2);
    c.vote(0, 0, &seats, |_| Some(true));
    assert_eq!(
        c.item(0, 0).stage,
        Stage::Rejected {
            reason: "no_quorum".into()
        }
    );
    // The bond came back: only the submission's fee was paid.
    assert_eq!(c.balance(1), before - 30);
}

/// The reviewer set is bounded: a newcomer takes the place of the smallest reviewer with no
/// open seat only by offering more; that one's stake unbonds.
#[test]
fn a_full_reviewer_set_takes_a_newcomer_only_for_more_stake() {
    let mut c = Chain::from_genesis(genesis(10).with_data(DataParams {
        max_reviewers: 6,
        ..data_params()
    }));
    for r in REVIEWERS {
        c.ok(r, vec![Message::JoinReviewers { amount: 100 * AGR }]);
    }
    c.fails(
        1,
        vec![Message::JoinReviewers { amount: 50 * AGR }],
        "reviewers_full",
    );
    let r = c.ok(1, vec![Message::JoinReviewers { amount: 150 * AGR }]);
    let evicted = r
        .events
        .iter()
        .find(|e| e.kind == "reviewer_evicted")
        .expect("one gave way");
    let gone = evicted
        .attributes
        .iter()
        .find(|(k, _)| k == "reviewer")
        .map(|(_, v)| v.clone())
        .unwrap();
    let gone = (0..10)
        .find(|i| key(*i).address().to_string() == gone)
        .unwrap();
    assert!(REVIEWERS.contains(&gone));
    assert_eq!(account(&c.s, &key(gone).address()).unbonding, 100 * AGR);
    assert_eq!(c.reviewer(gone).stake, 0);
    assert_eq!(c.reviewer(1).stake, 150 * AGR);
}

/// Settlement reads a bounded number of items per block, over all bounties: a bounty goes on
/// where it stopped, and its dataset is the same as if it had settled at once.
#[test]
fn settlements_read_a_bounded_number_of_items_per_block() {
    let mut c = Chain::from_genesis(genesis(10).with_data(DataParams {
        settle_items_per_block: 2,
        ..data_params()
    }));
    for r in REVIEWERS {
        c.ok(r, vec![Message::JoinReviewers { amount: 100 * AGR }]);
    }
    // Two bounties with one deadline, three items each (each item passes unscreened: the
    // screeners miss their windows, the panels return them, or they are accepted).
    for _ in 0..2 {
        c.ok(
            REQUESTER,
            vec![Message::CreateBounty {
                spec: spec(1, 50 * AGR, 30),
            }],
        );
    }
    for b in 0..2u64 {
        for i in 0..3 {
            c.ok(1, vec![submit(b, i + 3 * b as usize)]);
        }
    }
    let settle_at = c.bounty(0).settle_at;
    assert_eq!(c.bounty(1).settle_at, settle_at);
    c.run_to(settle_at);
    // Six items, two read per block: the first bounty needs two blocks, the second two more.
    assert!(!c.bounty(0).settled);
    c.run_to(settle_at + 1);
    assert!(c.bounty(0).settled && !c.bounty(1).settled);
    c.run_to(settle_at + 3);
    assert!(c.bounty(1).settled);
    assert!(c.get::<SettleProgress>(&settle_progress_key(1)).is_none());
}

/// A reviewer holds at most `max_reviewer_seats` open seats: a pick beyond them is void, so its
/// assignments stay few enough to list and act on.
#[test]
fn a_reviewer_holds_a_bounded_number_of_seats() {
    let mut c = Chain::from_genesis(genesis(10).with_data(DataParams {
        max_reviewer_seats: 1,
        ..data_params()
    }));
    c.ok(5, vec![Message::JoinReviewers { amount: 100 * AGR }]);
    c.ok(
        REQUESTER,
        vec![Message::CreateBounty {
            spec: spec(1, 50 * AGR, 40),
        }],
    );
    c.ok(1, vec![submit(0, 0)]);
    assert_eq!(c.screener(0, 0), 5);
    // The second item's screener would be the same reviewer, already at its bound.
    c.ok(1, vec![submit(0, 1)]);
    c.block(vec![]);
    assert_eq!(c.item(0, 1).stage, Stage::DrawPanel);
    assert_eq!(
        (c.reviewer(5).seats, c.reviewer(5).locked),
        (1, REVIEW_STAKE)
    );
}

//! Verification and slashing on-chain (DESIGN.md §6): registered verifiers, the checks drawn from
//! settled jobs, their seats (one verifier each: a reveal to receive, a verdict to post), disputes
//! and outcomes.
//!
//! A check's life:
//!
//! ```text
//!  settled at h ──draw at h+1──▶ Open: seat(s) drawn ──provider reveals to each seat (≤ R blocks)──▶
//!     verdicts (≤ R+V blocks) ──▶ sampled: Pass → Passed; Fail → dispute: k committee seats
//!                                 committee/redundant: majority → Passed or Fraud (ties: Passed)
//!  no reveal in time → NoReveal (the provider is slashed like a fraud)
//!  no verdict in time → the verifier is dismissed and another is drawn (none left: NoVerifier)
//! ```

use agora_types::{AGR, Address, Amount, Hash, Verdict, Verification, VerifierInfo, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Verification's chain parameters, fixed in genesis (`verify`; absent: the defaults).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyParams {
    /// Probability that a `sampled` job is checked, in basis points.
    pub sample_bps: u32,
    /// Per-model probabilities that replace `sample_bps`.
    pub model_sample_bps: Vec<(Hash, u32)>,
    /// Blocks the provider has to reveal a job to a seated verifier.
    pub reveal_window: u64,
    /// Blocks a seated verifier has, after the reveal window, to post its verdict.
    pub verdict_window: u64,
    /// Verifiers drawn for a dispute.
    pub committee: u8,
    /// Share of a provider's stake lost per proven fraud, in basis points.
    pub slash_provider_bps: u32,
    /// Share of a verifier's stake lost per verdict against the majority, in basis points.
    pub slash_verifier_bps: u32,
    /// Least stake a verifier registers with, in base units.
    #[serde(with = "serde_u128")]
    pub min_verifier_stake: Amount,
    /// What a client locks to challenge a job (returned if the job is found wrong; if not, it
    /// pays the committee that judged it), in base units.
    #[serde(with = "serde_u128")]
    pub challenge_bond: Amount,
}

impl Default for VerifyParams {
    fn default() -> Self {
        VerifyParams {
            sample_bps: 500,
            model_sample_bps: Vec::new(),
            // A minute at 500 ms blocks: long enough for a provider or verifier to restart
            // (and reload its models) without losing a deadline.
            reveal_window: 120,
            verdict_window: 120,
            committee: 3,
            slash_provider_bps: 1_000,
            slash_verifier_bps: 500,
            min_verifier_stake: 50 * AGR,
            challenge_bond: AGR,
        }
    }
}

impl VerifyParams {
    /// Checks the values make sense together.
    pub fn check(&self) -> Result<(), String> {
        let bps = std::iter::once(self.sample_bps)
            .chain(self.model_sample_bps.iter().map(|(_, b)| *b))
            .chain([self.slash_provider_bps, self.slash_verifier_bps]);
        if bps.into_iter().any(|b| b > 10_000) {
            return Err("basis points are at most 10000".into());
        }
        if self.reveal_window == 0 || self.verdict_window == 0 {
            return Err("reveal_window and verdict_window must be at least 1 block".into());
        }
        if self.committee == 0 || self.committee > agora_types::MAX_REDUNDANCY {
            return Err(format!("committee is 1 to {}", agora_types::MAX_REDUNDANCY));
        }
        Ok(())
    }

    /// The probability (basis points) that a sampled job of `model` is checked.
    pub fn sample_bps_for(&self, model: &Hash) -> u32 {
        self.model_sample_bps
            .iter()
            .find(|(m, _)| m == model)
            .map_or(self.sample_bps, |(_, b)| *b)
    }

    /// `bps` basis points of `amount`, rounded down.
    pub fn share(amount: Amount, bps: u32) -> Amount {
        amount
            .checked_mul(Amount::from(bps))
            .map(|x| x / 10_000)
            .unwrap_or(amount / 10_000 * Amount::from(bps))
    }
}

/// A registered verifier.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct Verifier {
    /// Models it checks, and its key.
    pub info: VerifierInfo,
    /// Locked stake, in base units.
    #[serde(with = "serde_u128")]
    pub stake: Amount,
    /// Height of registration.
    pub registered_height: u64,
    /// Seats it holds on open checks, judged or not (it cannot leave while it holds one: a seat
    /// it judged is still rewarded or slashed by the outcome).
    pub open_seats: u32,
    /// The last height at which a check it sat on can still be reopened by a challenge (its
    /// job's release height): it cannot leave before, so a later outcome still reaches its stake.
    pub held_until: u64,
    /// Verdicts it posted.
    pub verdicts: u64,
    /// Verdicts on the losing side of a majority.
    pub overturned: u64,
    /// Seats it was dismissed from for not answering in time.
    pub missed: u64,
}

/// Why a verifier holds a seat.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The one verifier drawn for a sampled job.
    First,
    /// One of the verifiers of a dispute or of a redundant job; the majority of them decides.
    Committee,
    /// Judged the check before a client's challenge reopened it: the new committee decides
    /// alone, and this seat is rewarded or slashed by its outcome.
    Earlier,
}

/// One verifier's part in a check.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct Seat {
    /// Who.
    pub verifier: Address,
    /// As what.
    pub role: Role,
    /// When it was drawn.
    pub drawn_height: u64,
    /// The provider's reveal must be complete by this height.
    pub reveal_deadline: u64,
    /// The verdict must be posted by this height.
    pub verdict_deadline: u64,
    /// Parts of the reveal announced (0: none arrived yet).
    pub parts: u16,
    /// Parts arrived.
    pub received: u16,
    /// When the last part arrived.
    pub revealed_height: Option<u64>,
    /// Its verdict, once posted.
    pub verdict: Option<Verdict>,
    /// Whether its verdict agreed with the outcome, once counted (rewarded: `Some(true)`;
    /// slashed: `Some(false)`). A challenge can decide again; a seat is paid or slashed once.
    pub sided: Option<bool>,
}

impl Seat {
    /// Whether the whole reveal arrived.
    pub fn revealed(&self) -> bool {
        self.revealed_height.is_some()
    }
}

/// How a check ended.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running.
    Open,
    /// The output holds: the fee goes to the provider.
    Passed,
    /// The majority found the output wrong: the provider is slashed, the client refunded.
    Fraud,
    /// The provider did not reveal the job in time: slashed as for fraud.
    NoReveal,
    /// No verifier could be drawn (or every one drawn failed to answer): the fee goes to the
    /// provider unchecked.
    NoVerifier,
}

/// A settled job drawn for checking.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct Check {
    /// The job.
    pub job_id: Hash,
    /// Who served it.
    pub provider: Address,
    /// Who paid.
    pub client: Address,
    /// The model.
    pub model: Hash,
    /// The fee settled.
    #[serde(with = "serde_u128")]
    pub fee: Amount,
    /// The client's choice.
    pub level: Verification,
    /// When the fee would be released without a check.
    pub release_height: u64,
    /// When the check was opened.
    pub opened_height: u64,
    /// Opened by the chain's draw (not by a client's challenge).
    pub drawn: bool,
    /// A first verdict failed the job and a committee was drawn.
    pub dispute: bool,
    /// Verifiers seated, in the order drawn.
    pub seats: Vec<Seat>,
    /// Verifiers dismissed for not answering (never drawn again for this check).
    pub dismissed: Vec<Address>,
    /// How it ended.
    pub outcome: Outcome,
    /// When it ended.
    pub decided_height: Option<u64>,
    /// The client that challenged the job, and the bond it locked (held by the check).
    pub challenger: Option<(Address, Amount)>,
    /// What the check pays the verifiers who judge it right, held by the check: its job's
    /// redundancy surcharge and what its provider's verification fund pays when it opens, never
    /// more than was paid in for it (see `Executor::check_budget`). Split among the winners when
    /// it is decided; back to the provider's fund if none.
    #[serde(with = "serde_u128")]
    pub budget: Amount,
}

impl Check {
    /// The seat of `verifier`, if it holds one.
    pub fn seat_of(&self, verifier: &Address) -> Option<usize> {
        self.seats.iter().position(|s| s.verifier == *verifier)
    }
}

//! A provable risk scorer over an account's on-chain activity: a logistic-regression form (one
//! linear layer; the predicate "score below t" is the decision on its logit), with weights set by
//! hand from what each signal costs a sybil to fake, not fitted (no labelled sybils exist here).
//!
//! Features, each an integer in `[0, 127]` computed from the chain by [`features`]:
//!
//! | # | feature | scale |
//! | --- | --- | --- |
//! | 0 | liquid balance | 8 × log2(1 + AGR) |
//! | 1 | bonded stake | 8 × log2(1 + AGR) |
//! | 2 | transactions sent | the nonce, up to 127 |
//! | 3 | compute escrow | 8 × log2(1 + AGR) |
//! | 4 | a registered provider | 127 or 0 |
//! | 5 | jobs it settled as a provider | 12 × log2(1 + jobs) |
//! | 6 | a registered verifier | 127 or 0 |
//! | 7 | review stake in the data market | 8 × log2(1 + AGR) |
//!
//! Score = (4064 - Σ wᵢ·fᵢ) / 32, rounded: 127 for an empty account, lower with every costly
//! signal; a busy provider with 255 AGR bonded and 127 transactions scores about 30.

use crate::{Error, Layer, ZkModel};

/// Feature names, in order.
pub const FEATURES: [&str; 8] = [
    "balance",
    "bonded",
    "transactions",
    "escrow",
    "provider",
    "jobs_settled",
    "verifier",
    "review_stake",
];

const WEIGHTS: [i8; 8] = [-4, -10, -6, -3, -6, -5, -6, -4];

/// The risk scorer's name on chain.
pub const RISK_MODEL_NAME: &str = "agora-risk-v1";

/// The scorer.
pub fn risk_model() -> ZkModel {
    ZkModel {
        name: RISK_MODEL_NAME.into(),
        layers: vec![Layer {
            n_in: 8,
            n_out: 1,
            weights: WEIGHTS.to_vec(),
            bias: vec![4064],
            shift: 5,
        }],
    }
}

/// What [`features`] reads of an account; amounts in whole AGR.
#[derive(Clone, Copy, Debug, Default)]
pub struct Activity {
    pub balance: u128,
    pub bonded: u128,
    pub nonce: u64,
    pub escrow: u128,
    pub provider: bool,
    pub jobs_settled: u64,
    pub verifier: bool,
    pub review_stake: u128,
}

fn log_scale(agr: u128, per_bit: u32) -> i8 {
    let bits = 128 - agr.saturating_add(1).leading_zeros() - 1; // floor(log2(1 + agr))
    (bits * per_bit).min(127) as i8
}

/// The scorer's input for an account.
pub fn features(a: &Activity) -> [i8; 8] {
    [
        log_scale(a.balance, 8),
        log_scale(a.bonded, 8),
        a.nonce.min(127) as i8,
        log_scale(a.escrow, 8),
        if a.provider { 127 } else { 0 },
        {
            let bits = 64 - (a.jobs_settled + 1).leading_zeros() - 1;
            (bits * 12).min(127) as i8
        },
        if a.verifier { 127 } else { 0 },
        log_scale(a.review_stake, 8),
    ]
}

/// The scorer's score of an account, as a proof would show it.
pub fn score(a: &Activity) -> Result<i64, Error> {
    Ok(risk_model().forward(&features(a))?[0])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const AGR: u128 = 1;

    #[test]
    fn an_empty_account_is_riskiest_and_costly_signals_lower_the_score() {
        risk_model().validate().unwrap();
        let empty = score(&Activity::default()).unwrap();
        assert_eq!(empty, 127);
        let staked = score(&Activity {
            bonded: 255 * AGR,
            ..Activity::default()
        })
        .unwrap();
        assert!(staked < empty);
        let busy = Activity {
            balance: 1000 * AGR,
            bonded: 255 * AGR,
            nonce: 500,
            escrow: 10 * AGR,
            provider: true,
            jobs_settled: 2000,
            verifier: false,
            review_stake: 0,
        };
        // 4080 - (4·72 + 10·64 + 6·127 + 3·24 + 6·127 + 5·120) = 956, / 32 = 29.
        assert_eq!(features(&busy), [72, 64, 127, 24, 127, 120, 0, 0]);
        assert_eq!(score(&busy).unwrap(), 29);
    }
}

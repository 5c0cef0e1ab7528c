//! Yuma Consensus in fixed point (DESIGN.md §7): from validators' stake and weights over a
//! subnet's UIDs, each miner's consensus weight, rank, trust and incentive, each validator's
//! trust, bonds and dividends — the Yuma 3 form, where bonds are an exponential moving average
//! of clipped weights (independent of stake) and dividends weigh them by stake.
//!
//! Everything is integer arithmetic over [`Fx`] (Q60 fixed point), so every node computes the
//! same bits; no float, no hash-map order. The formulas, for validators `i` and miners `j`:
//!
//! ```text
//!   s_i   = stake_i / Σ stake                 w_ij = weight_ij / Σ_j weight_ij
//!   P_j   = Σ_i s_i w_ij                      (prerank)
//!   C_j   = max { c : Σ_i s_i [w_ij ≥ c] ≥ κ } (consensus: the stake-weighted κ-quantile)
//!   w̄_ij  = min(w_ij, C_j)                    (clipped to consensus)
//!   R_j   = Σ_i s_i w̄_ij                      (rank)     T_j = R_j / P_j       (trust)
//!   I_j   = R_j / Σ R                         (incentive)
//!   V_i   = Σ_j w̄_ij                          (validator trust)
//!   B_ij  = α ((1-β) w_ij + β w̄_ij) + (1-α) B_ij(prev)   (bonds)
//!   D_i   = s_i Σ_j B_ij I_j / Σ (...)         (dividends)
//! ```
//!
//! `tests/yuma_reference.py` computes the same in f64 for the golden tests.

// Matrix code reads clearer with indices.
#![allow(clippy::needless_range_loop)]

use agora_types::Amount;

/// A fixed-point fraction: `ONE` is 1.0. Values in an epoch stay within `[0, 1]` but for
/// intermediate sums, far below the `u128` range.
pub type Fx = u128;

/// Fractional bits of [`Fx`].
pub const FRAC_BITS: u32 = 60;

/// 1.0 in [`Fx`].
pub const ONE: Fx = 1 << FRAC_BITS;

/// `a × b` in fixed point (rounded down; saturates instead of overflowing, which values in
/// `[0, 16]` never reach).
pub fn mul(a: Fx, b: Fx) -> Fx {
    a.saturating_mul(b) >> FRAC_BITS
}

/// `a / b` in fixed point (rounded down); 0 when `b` is 0. Works for any `u128` operands (such
/// as raw stakes) by dropping low bits of both when `a` is too large to shift.
pub fn ratio(mut a: u128, mut b: u128) -> Fx {
    if b == 0 {
        return 0;
    }
    let bits = 128 - a.leading_zeros();
    if bits > 128 - FRAC_BITS {
        let drop = bits - (128 - FRAC_BITS);
        a >>= drop;
        b >>= drop;
        if b == 0 {
            return u128::MAX;
        }
    }
    (a << FRAC_BITS) / b
}

/// `amount × f` rounded down, exact for any amount (no intermediate overflow for `f ≤ ONE`).
pub fn mul_amount(amount: Amount, f: Fx) -> Amount {
    let high = (amount >> FRAC_BITS).saturating_mul(f);
    let low = ((amount & (ONE - 1)) * f.min(ONE << 4)) >> FRAC_BITS;
    high.saturating_add(low)
}

/// A `u16` fraction of `u16::MAX` (how κ and the bond penalty are stored) as [`Fx`].
pub fn from_u16(v: u16) -> Fx {
    ratio(u128::from(v), u128::from(u16::MAX))
}

/// A parts-per-million fraction as [`Fx`].
pub fn from_ppm(v: u32) -> Fx {
    ratio(u128::from(v.min(1_000_000)), 1_000_000)
}

/// One epoch's input, by UID `0..n`. The caller has applied the masks: only validators with a
/// permit and recent weights have stake here, and weights on UIDs registered after they were
/// set are gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochInput {
    /// Stake behind each UID (base units); 0 for a UID that does not validate.
    pub stake: Vec<u128>,
    /// Each UID's weights, `(uid, weight)`, as set (any positive scale; rows are normalized
    /// here). Empty for a UID that set none.
    pub weights: Vec<Vec<(u16, u16)>>,
    /// Each UID's bonds from the last epoch, `(uid, bond in Fx)`.
    pub bonds: Vec<Vec<(u16, Fx)>>,
    /// The consensus quantile κ.
    pub kappa: Fx,
    /// The bonds' EMA rate α (1 − the bonds moving average).
    pub alpha: Fx,
    /// The bond penalty β: how much bonds follow clipped rather than raw weights.
    pub bond_penalty: Fx,
}

/// One epoch's result, by UID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochOutput {
    /// Consensus weight `C_j`.
    pub consensus: Vec<Fx>,
    /// Rank `R_j` (stake-weighted clipped weight).
    pub rank: Vec<Fx>,
    /// Trust `T_j = R_j / P_j`: how much of a miner's weight survived clipping.
    pub trust: Vec<Fx>,
    /// Incentive `I_j`, normalized (sums to 1, or all 0).
    pub incentive: Vec<Fx>,
    /// Validator trust `V_i`: how much of a validator's weight survived clipping.
    pub validator_trust: Vec<Fx>,
    /// Dividends `D_i`, normalized (sums to 1, or all 0).
    pub dividends: Vec<Fx>,
    /// New bonds, `(uid, bond)`, positive entries only.
    pub bonds: Vec<Vec<(u16, Fx)>>,
}

/// Runs Yuma Consensus for one epoch. `stake`, `weights` and `bonds` must have the same length
/// (the number of UIDs); entries naming a UID out of range are ignored.
pub fn epoch(input: &EpochInput) -> EpochOutput {
    let n = input.stake.len();
    let mut out = EpochOutput {
        consensus: vec![0; n],
        rank: vec![0; n],
        trust: vec![0; n],
        incentive: vec![0; n],
        validator_trust: vec![0; n],
        dividends: vec![0; n],
        bonds: vec![Vec::new(); n],
    };
    // Validators: UIDs with stake. Their normalized stake and dense weight rows.
    let total: u128 = input
        .stake
        .iter()
        .fold(0u128, |acc, s| acc.saturating_add(*s));
    let validators: Vec<usize> = (0..n).filter(|&i| input.stake[i] > 0).collect();
    let s: Vec<Fx> = validators
        .iter()
        .map(|&i| ratio(input.stake[i], total))
        .collect();
    let mut w = vec![0 as Fx; validators.len() * n];
    for (v, &i) in validators.iter().enumerate() {
        let row = input.weights.get(i).map(Vec::as_slice).unwrap_or(&[]);
        let sum: u128 = row
            .iter()
            .filter(|(j, _)| usize::from(*j) < n)
            .map(|(_, x)| u128::from(*x))
            .sum();
        if sum == 0 {
            continue;
        }
        for &(j, x) in row {
            if usize::from(j) < n {
                w[v * n + usize::from(j)] = ratio(u128::from(x), sum);
            }
        }
    }

    // Prerank and consensus, column by column. κ never asks for more than all the stake (the
    // normalized stakes can sum to a hair under 1).
    let kappa = input.kappa.min(s.iter().sum());
    let mut prerank = vec![0 as Fx; n];
    let mut column: Vec<(Fx, Fx)> = Vec::with_capacity(validators.len());
    for j in 0..n {
        column.clear();
        for (v, &sv) in s.iter().enumerate() {
            let x = w[v * n + j];
            if x > 0 {
                prerank[j] += mul(sv, x);
                column.push((x, sv));
            }
        }
        // The largest weight that validators holding κ of the stake give at least.
        column.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        let mut cum = 0;
        for &(x, sv) in &column {
            cum += sv;
            if cum >= kappa {
                out.consensus[j] = x;
                break;
            }
        }
    }

    // Clipping, ranks, validator trust, bonds.
    let mut dividend_raw = vec![0 as Fx; validators.len()];
    let mut clipped = vec![0 as Fx; validators.len() * n];
    for (v, &sv) in s.iter().enumerate() {
        let mut vtrust = 0;
        for j in 0..n {
            let c = w[v * n + j].min(out.consensus[j]);
            clipped[v * n + j] = c;
            vtrust += c;
            out.rank[j] += mul(sv, c);
        }
        out.validator_trust[validators[v]] = vtrust;
    }
    let rank_sum: Fx = out.rank.iter().sum();
    for j in 0..n {
        out.trust[j] = if prerank[j] == 0 {
            0
        } else {
            ratio(out.rank[j], prerank[j]).min(ONE)
        };
        out.incentive[j] = ratio(out.rank[j], rank_sum);
    }
    let beta = input.bond_penalty.min(ONE);
    let alpha = input.alpha.min(ONE);
    let mut old = vec![0 as Fx; n];
    for (v, &i) in validators.iter().enumerate() {
        old.iter_mut().for_each(|b| *b = 0);
        for &(j, b) in input.bonds.get(i).map(Vec::as_slice).unwrap_or(&[]) {
            if usize::from(j) < n {
                old[usize::from(j)] = b.min(ONE);
            }
        }
        let mut row = Vec::new();
        let mut earned = 0;
        for (j, &prev) in old.iter().enumerate() {
            let bond_weight = mul(ONE - beta, w[v * n + j]) + mul(beta, clipped[v * n + j]);
            let bond = (mul(alpha, bond_weight) + mul(ONE - alpha, prev)).min(ONE);
            if bond > 0 {
                row.push((j as u16, bond));
                earned += mul(bond, out.incentive[j]);
            }
        }
        dividend_raw[v] = mul(earned, s[v]);
        out.bonds[i] = row;
    }
    let dividend_sum: Fx = dividend_raw.iter().sum();
    for (v, &i) in validators.iter().enumerate() {
        out.dividends[i] = ratio(dividend_raw[v], dividend_sum);
    }
    // UIDs without stake keep no bonds: they no longer validate (as Bittensor clears the bonds
    // of validators without a permit).
    out
}

/// How one epoch's emission is paid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// The subnet owner's cut, plus every rounding remainder.
    pub owner: Amount,
    /// Each UID's part of the miners' half, by incentive.
    pub miners: Vec<Amount>,
    /// Each UID's part of the validators' half, by dividends.
    pub validators: Vec<Amount>,
    /// What nobody earned (no incentive, or no dividends): not paid out, burned.
    pub recycled: Amount,
}

impl Split {
    /// Everything the split pays or recycles: always the emission it split.
    pub fn total(&self) -> Option<Amount> {
        self.miners
            .iter()
            .chain(&self.validators)
            .try_fold(self.owner.checked_add(self.recycled)?, |a, x| {
                a.checked_add(*x)
            })
    }
}

/// Splits `emission`: `owner_ppm` to the owner, then half of the rest to miners by incentive and
/// half to validators by dividends. Shares are rounded down and the remainders go to the owner,
/// so the parts add up to `emission` exactly.
pub fn split(emission: Amount, owner_ppm: u32, incentive: &[Fx], dividends: &[Fx]) -> Split {
    let ppm = u128::from(owner_ppm.min(1_000_000));
    let owner = emission / 1_000_000 * ppm + emission % 1_000_000 * ppm / 1_000_000;
    let rest = emission - owner;
    let miners_pool = rest / 2;
    let validators_pool = rest - miners_pool;
    let mut out = Split {
        owner,
        ..Split::default()
    };
    let mut pay = |pool: Amount, shares: &[Fx]| -> Vec<Amount> {
        if shares.iter().all(|x| *x == 0) {
            out.recycled += pool;
            return vec![0; shares.len()];
        }
        let paid: Vec<Amount> = shares.iter().map(|x| mul_amount(pool, *x)).collect();
        let sum: Amount = paid.iter().sum();
        // Shares sum to at most 1 (each is rounded down), so this never underflows.
        out.owner += pool.saturating_sub(sum);
        paid
    };
    let miners = pay(miners_pool, incentive);
    let validators = pay(validators_pool, dividends);
    out.miners = miners;
    out.validators = validators;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(x: Fx) -> f64 {
        x as f64 / ONE as f64
    }

    fn input(stake: Vec<u128>, weights: Vec<Vec<(u16, u16)>>) -> EpochInput {
        let n = stake.len();
        EpochInput {
            stake,
            weights,
            bonds: vec![Vec::new(); n],
            kappa: from_u16(32_767),
            alpha: from_ppm(100_000),
            bond_penalty: ONE,
        }
    }

    #[test]
    fn fixed_point_helpers() {
        assert_eq!(mul(ONE, ONE), ONE);
        assert_eq!(mul(ONE / 2, ONE / 2), ONE / 4);
        assert_eq!(ratio(1, 4), ONE / 4);
        assert_eq!(ratio(5, 0), 0);
        // Huge operands keep their ratio.
        assert_eq!(ratio(u128::MAX / 2, u128::MAX), ONE / 2 - 1);
        assert_eq!(mul_amount(1_000, ONE / 2), 500);
        assert_eq!(mul_amount(u128::MAX, ONE), u128::MAX);
        assert_eq!(from_u16(u16::MAX), ONE);
        assert_eq!(from_ppm(1_000_000), ONE);
    }

    #[test]
    fn agreeing_validators_pay_miners_by_weight() {
        // Two validators (UIDs 0, 1) agree: miner 2 gets 3/4, miner 3 1/4.
        let w = vec![(2, 3), (3, 1)];
        let out = epoch(&input(
            vec![60, 40, 0, 0],
            vec![w.clone(), w, vec![], vec![]],
        ));
        assert!((f(out.incentive[2]) - 0.75).abs() < 1e-15);
        assert!((f(out.incentive[3]) - 0.25).abs() < 1e-15);
        assert!((f(out.trust[2]) - 1.0).abs() < 1e-15);
        assert!((f(out.validator_trust[0]) - 1.0).abs() < 1e-15);
        // Same weights, same bonds: dividends follow stake.
        assert!((f(out.dividends[0]) - 0.6).abs() < 1e-15);
        assert!((f(out.dividends[1]) - 0.4).abs() < 1e-15);
    }

    #[test]
    fn a_minority_cannot_raise_its_miner() {
        // Validators 0 and 1 hold 70 % and rate miner 3; validator 2 (30 %) rates only its own
        // miner 4. Consensus on miner 4 is 0: the colluder's weight is clipped away.
        let out = epoch(&input(
            vec![35, 35, 30, 0, 0],
            vec![vec![(3, 1)], vec![(3, 1)], vec![(4, 1)], vec![], vec![]],
        ));
        assert_eq!(out.consensus[4], 0);
        assert_eq!(out.incentive[4], 0);
        assert_eq!(out.incentive[3], ONE);
        assert_eq!(out.validator_trust[2], 0);
        assert_eq!(out.dividends[2], 0);
    }

    #[test]
    fn no_weights_no_incentive_and_the_split_recycles() {
        let out = epoch(&input(vec![10, 0], vec![vec![], vec![]]));
        assert!(out.incentive.iter().all(|x| *x == 0));
        let s = split(1_000_000, 180_000, &out.incentive, &out.dividends);
        assert_eq!(s.owner, 180_000);
        assert_eq!(s.recycled, 820_000);
        assert_eq!(s.total(), Some(1_000_000));
    }

    fn arb_epoch() -> impl Strategy<Value = EpochInput> {
        (2usize..12).prop_flat_map(|n| {
            (
                proptest::collection::vec(prop_oneof![Just(0u128), 1u128..1_000_000_000_000], n),
                proptest::collection::vec(
                    proptest::collection::vec((0..n as u16, any::<u16>()), 0..n),
                    n,
                ),
                proptest::collection::vec(
                    proptest::collection::vec((0..n as u16, 0..=ONE), 0..n),
                    n,
                ),
                any::<u16>(),
                0u32..=1_000_000,
                any::<u16>(),
            )
                .prop_map(|(stake, weights, bonds, kappa, alpha, beta)| {
                    // One weight per (row, uid), as the chain stores them.
                    let dedup = |mut row: Vec<(u16, u16)>| {
                        row.sort_by_key(|e| e.0);
                        row.dedup_by_key(|e| e.0);
                        row
                    };
                    let dedup_b = |mut row: Vec<(u16, Fx)>| {
                        row.sort_by_key(|e| e.0);
                        row.dedup_by_key(|e| e.0);
                        row
                    };
                    EpochInput {
                        stake,
                        weights: weights.into_iter().map(dedup).collect(),
                        bonds: bonds.into_iter().map(dedup_b).collect(),
                        kappa: from_u16(kappa),
                        alpha: from_ppm(alpha),
                        bond_penalty: from_u16(beta),
                    }
                })
        })
    }

    /// The same epoch with UIDs renumbered by `perm` (uid `u` becomes `perm[u]`).
    fn permuted(input: &EpochInput, perm: &[usize]) -> EpochInput {
        let n = perm.len();
        let mut out = EpochInput {
            stake: vec![0; n],
            weights: vec![Vec::new(); n],
            bonds: vec![Vec::new(); n],
            ..input.clone()
        };
        for u in 0..n {
            out.stake[perm[u]] = input.stake[u];
            out.weights[perm[u]] = input.weights[u]
                .iter()
                .map(|&(j, x)| (perm[usize::from(j)] as u16, x))
                .collect();
            out.bonds[perm[u]] = input.bonds[u]
                .iter()
                .map(|&(j, x)| (perm[usize::from(j)] as u16, x))
                .collect();
        }
        out
    }

    proptest! {
        #[test]
        fn results_do_not_depend_on_the_order_of_uids(
            input in arb_epoch(),
            seed in any::<u64>(),
            emission in 0u128..1_000_000_000_000_000,
        ) {
            let n = input.stake.len();
            // A permutation from the seed (Fisher–Yates over a tiny LCG).
            let mut perm: Vec<usize> = (0..n).collect();
            let mut x = seed | 1;
            for i in (1..n).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                perm.swap(i, (x >> 33) as usize % (i + 1));
            }
            let a = epoch(&input);
            let b = epoch(&permuted(&input, &perm));
            for u in 0..n {
                let p = perm[u];
                prop_assert_eq!(a.consensus[u], b.consensus[p]);
                prop_assert_eq!(a.incentive[u], b.incentive[p]);
                prop_assert_eq!(a.dividends[u], b.dividends[p]);
                prop_assert_eq!(a.validator_trust[u], b.validator_trust[p]);
                let mut bonds: Vec<(u16, Fx)> = a.bonds[u]
                    .iter()
                    .map(|&(j, x)| (perm[usize::from(j)] as u16, x))
                    .collect();
                bonds.sort();
                prop_assert_eq!(&bonds, &b.bonds[p]);
            }
            // And the split pays exactly the emission, every time.
            let s = split(emission, 180_000, &a.incentive, &a.dividends);
            prop_assert_eq!(s.total(), Some(emission));
            let total_incentive: Fx = a.incentive.iter().sum();
            prop_assert!(total_incentive <= ONE);
            let total_dividends: Fx = a.dividends.iter().sum();
            prop_assert!(total_dividends <= ONE);
            for row in &a.bonds {
                prop_assert!(row.iter().all(|&(_, b)| b > 0 && b <= ONE));
            }
        }
    }
}

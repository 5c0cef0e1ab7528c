//! Elementary functions computed by this crate's own code, for the chat model's numbers that a
//! verifier must reproduce exactly (rotary position angles, sampling weights).
//!
//! The platform's libm gives no such promise: its `sinf`, `cosf`, `powf` and `exp` are accurate to
//! about an ulp, and which way a result rounds differs between libm versions and platforms. A provider
//! and a verifier on different machines could then compute different logits, and a sampled answer
//! checked token by token against the seeded sampler's choice could fail although it is honest. These
//! use only `+ - * /` (no fused multiply-add, which Rust never introduces by itself) in f64, rounded
//! once at the end where the caller needs f32: the same bits everywhere, and in practice the correctly
//! rounded f32 value.

/// ln 2 in two parts (their bits, so no decimal rounding stands between): `k · LN2_HI` is exact
/// for |k| < 2^20.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// `e^x`, relative error about 1e-16. Below -708 it is 0 (the caller's weights that small do not
/// count); above 709 it is infinite.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -708.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    // x = k·ln2 + r with |r| ≤ ln2/2; e^r by its Taylor series to r¹³ (the next term is below 4e-18).
    let k = round(x * std::f64::consts::LOG2_E);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = EXP_TAYLOR[13];
    for c in EXP_TAYLOR[..13].iter().rev() {
        p = p * r + c;
    }
    // k is in [-1022, 1023]: 2^k is a normal number, built from its exponent bits.
    p * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// `x` rounded to an integer (ties to even), for |x| < 2^51: adding 1.5·2^52 leaves no fraction bits.
/// (`f64::round` is a libm call on CPUs without SSE4.1, and slow.)
#[inline(always)]
fn round(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    (x + SHIFT) - SHIFT
}

/// 1/n! for n = 0..=13, computed once by the compiler.
const EXP_TAYLOR: [f64; 14] = {
    let mut c = [1.0; 14];
    let mut n = 1;
    while n < 14 {
        c[n] = c[n - 1] / n as f64;
        n += 1;
    }
    c
};

/// Natural logarithm of a positive, finite, normal `x`, absolute error about 1e-16.
pub fn ln(x: f64) -> f64 {
    assert!(
        x.is_finite() && x >= f64::MIN_POSITIVE,
        "ln of {x}: a positive, finite, normal number expected"
    );
    // x = m · 2^e with m in [√½, √2); ln m = 2·atanh(s) with s = (m − 1)/(m + 1), |s| ≤ 0.172, by its
    // series to s²⁷ (the next term is below 1e-20).
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for n in (0..14).rev() {
        series = 1.0 / f64::from(2 * n + 1) + s2 * series;
    }
    let e = e as f64;
    e * LN2_HI + (2.0 * s * series + e * LN2_LO)
}

/// `base^y` for a positive `base`, rounded to f32.
pub fn powf(base: f32, y: f32) -> f32 {
    exp(ln(f64::from(base)) * f64::from(y)) as f32
}

/// π/2 in three parts of 33 bits (their sum is π/2 to within 1e-31): each `k · PIO2_n` is exact for
/// |k| < 2^20.
const PIO2_1: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
const PIO2_2: f64 = f64::from_bits(0x3dd0_b461_1a60_0000);
const PIO2_3: f64 = f64::from_bits(0x3ba3_198a_2e00_0000);

/// The factors of the nested Taylor series: 1/((2n)(2n+1)) for sine, 1/((2n−1)(2n)) for cosine,
/// n = 1..=9 (multiplications, not divisions, in the loop).
const SIN_STEPS: [f64; 9] = steps(1);
const COS_STEPS: [f64; 9] = steps(0);

const fn steps(odd: usize) -> [f64; 9] {
    let mut c = [0.0; 9];
    let mut n = 1;
    while n <= 9 {
        c[n - 1] = 1.0 / ((2 * n - 1 + odd) as f64 * (2 * n + odd) as f64);
        n += 1;
    }
    c
}

/// The largest angle [`sin_cos`] takes, 2^20: below it, `k · PIO2_n` is exact. Rotary angles are at
/// most the context length, which the model loader checks against this.
pub const MAX_ANGLE: f32 = 1_048_576.0;

/// `(sin x, cos x)` rounded to f32, for |x| < [`MAX_ANGLE`].
pub fn sin_cos(x: f32) -> (f32, f32) {
    assert!(x.abs() < MAX_ANGLE, "sin_cos of {x}: |x| < 2^20 expected");
    let x = f64::from(x);
    // x = k·π/2 + r with |r| ≤ π/4 (to within 1e-16); then the quadrant k mod 4 picks the signs.
    let k = round(x / std::f64::consts::FRAC_PI_2);
    let r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let r2 = r * r;
    // Taylor series: sin to r¹⁹, cos to r¹⁸ (the next terms are below 4e-21 for |r| ≤ π/4).
    let (mut s, mut c) = (1.0, 1.0);
    for (ks, kc) in SIN_STEPS.iter().zip(&COS_STEPS).rev() {
        s = 1.0 - s * r2 * ks;
        c = 1.0 - c * r2 * kc;
    }
    let s = s * r;
    let (sin, cos) = match (k as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    };
    (sin as f32, cos as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_ln_are_accurate() {
        for i in -7000..=7000 {
            let x = f64::from(i) / 10.0;
            let want = x.exp();
            assert!((exp(x) - want).abs() <= 4e-16 * want, "exp({x})");
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(800.0), f64::INFINITY);
        assert!(exp(f64::NAN).is_nan());
        for i in 1..=10_000 {
            let x = f64::from(i) * 37.3 / 1000.0;
            assert!(
                (ln(x) - x.ln()).abs() <= 4e-16 * x.ln().abs().max(1.0),
                "ln({x})"
            );
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn rotary_frequencies_and_angles_round_as_the_exact_values_do() {
        // The model's rotary base and head size, and llama's classic ones.
        for (base, head_dim) in [(100_000f32, 64usize), (10_000.0, 64), (10_000.0, 128)] {
            let y = -2.0 / head_dim as f32;
            let want = (f64::from(base).ln() * f64::from(y)).exp() as f32;
            assert_eq!(powf(base, y), want, "base {base}, head {head_dim}");
        }
        // Every angle a 2048-token context uses: our f32 equals f64 libm's value rounded to f32.
        let scale = powf(100_000.0, -2.0 / 64.0);
        let mut checked = 0;
        for pos in 0..2048 {
            let mut theta = pos as f32;
            for _ in 0..32 {
                let (s, c) = sin_cos(theta);
                let t = f64::from(theta);
                assert_eq!((s, c), (t.sin() as f32, t.cos() as f32), "theta {theta}");
                theta *= scale;
                checked += 1;
            }
        }
        assert_eq!(checked, 2048 * 32);
        assert_eq!(sin_cos(0.0), (0.0, 1.0));
        assert_eq!(sin_cos(-1.0), ((-1f64).sin() as f32, (-1f64).cos() as f32));
    }
}

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

/// `a·b + c` rounded once, as an FMA instruction computes it, with plain `+ - *` in f64: the
/// portable kernels' fused multiply-add, so that they give the SIMD kernels' bits without the
/// platform's `fmaf` (which `f32::mul_add` calls on a CPU without FMA).
///
/// The product of two f32 is exact in f64 (24 + 24 significant bits ≤ 53). The sum `s` with `c` is
/// rounded, and its rounding error `e` recovered exactly (Knuth's TwoSum). Rounding `s` again to f32
/// could round twice (a sum just past a halfway point, rounded back onto it in f64, then to even);
/// so an inexact `s` is first replaced by the sum rounded to odd: the f64 next to it toward zero,
/// last bit set. Rounding that to f32 gives the exact sum's rounding, since f64 keeps more than
/// 24 + 1 bits (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums", 2008).
#[inline]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    let p = f64::from(a) * f64::from(b);
    let c = f64::from(c);
    let s = p + c;
    if !s.is_finite() {
        // An infinity or NaN among the inputs, or ∞ − ∞: what the instruction gives too.
        return s as f32;
    }
    let v = s - p;
    let e = (p - (s - v)) + (c - v);
    if e == 0.0 {
        return s as f32;
    }
    // The exact sum is s + e. When e points toward zero it lies below |s|: the f64 next to it
    // toward zero is s's neighbour of smaller magnitude (one less in sign-magnitude bits).
    let bits = s.to_bits();
    let toward_zero = if (e < 0.0) != (s < 0.0) {
        bits - 1
    } else {
        bits
    };
    f64::from_bits(toward_zero | 1) as f32
}

/// How a kernel fuses a multiply and an add, chosen by the code it is compiled into (see
/// `kernels::multiversion`): [`Fused`] where the FMA instruction is enabled, [`Emulated`] elsewhere.
/// Both round once, so both give the same bits.
pub(crate) trait Fma {
    fn fma(a: f32, b: f32, c: f32) -> f32;

    /// f16 values (IEEE binary16 bits) in f32, exactly: the F16C instruction where it is
    /// enabled, software elsewhere. Both give the same bits for every value but
    /// signalling NaNs (which the instruction quiets); the KV cache holds none.
    fn widen<const W: usize>(h: &[u16; W]) -> [f32; W] {
        h.map(widen)
    }
}

/// An f16 (IEEE binary16 bits) in f32, exactly (the `half` crate's software conversion, the same
/// on every machine).
#[inline(always)]
pub(crate) fn widen(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32_const()
}

/// f32 to f16 bits, rounded to nearest, ties to even: out of range gives an infinity, below half
/// the smallest subnormal a zero (with the sign), any NaN the quiet NaN `0x7e00` (with its sign).
#[inline(always)]
pub(crate) fn narrow(x: f32) -> u16 {
    const F16_MAX: u32 = (127 + 16) << 23; // 2^16: rounds to infinity and beyond
    const SMALLEST_NORMAL: u32 = (127 - 14) << 23; // 2^-14
    // 0.5: added to a value below 2^-14, it leaves the f16 subnormal's bits at the bottom, rounded
    // by the addition itself (to nearest, ties to even).
    const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    let out = if abs >= F16_MAX {
        if abs > 0x7f80_0000 { 0x7e00 } else { 0x7c00 }
    } else if abs < SMALLEST_NORMAL {
        let f = f32::from_bits(abs) + f32::from_bits(DENORM_MAGIC);
        f.to_bits() - DENORM_MAGIC
    } else {
        // Rebias the exponent; add just under half of the dropped bits' unit, plus one more when
        // the kept part is odd: ties go to even. A carry into the exponent is the right result.
        let odd = (abs >> 13) & 1;
        (abs.wrapping_sub((127 - 15) << 23) + 0xfff + odd) >> 13
    };
    sign | out as u16
}

/// `f32::mul_add`: one instruction in code compiled with the `fma` target feature.
#[derive(Debug)]
pub(crate) struct Fused;

impl Fma for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn widen<const W: usize>(h: &[u16; W]) -> [f32; W] {
        use std::arch::x86_64::{_mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
        debug_assert!(
            crate::kernels::has_avx2(),
            "Fused::widen on a CPU without F16C"
        );
        let mut out = [0f32; W];
        let (chunks, rest) = h.as_chunks::<8>();
        for (o, c) in out.as_chunks_mut::<8>().0.iter_mut().zip(chunks) {
            #[allow(unsafe_code)]
            // SAFETY: `Fused` is the code compiled for, and taken only on, CPUs with F16C (see
            // `kernels::multiversion`: its SIMD copies run where `kernels::detected` found AVX2,
            // FMA and F16C); the load reads the 16 bytes of `c`, the store writes the 32 of `o`.
            unsafe {
                _mm256_storeu_ps(
                    o.as_mut_ptr(),
                    _mm256_cvtph_ps(_mm_loadu_si128(c.as_ptr().cast())),
                );
            }
        }
        for (o, &x) in out[W - rest.len()..].iter_mut().zip(rest) {
            *o = widen(x);
        }
        out
    }
}

/// [`fma`], in plain arithmetic: for code compiled for CPUs that may lack the instruction.
#[derive(Debug)]
pub(crate) struct Emulated;

impl Fma for Emulated {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        fma(a, b, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// The F16C instruction's conversion (in the SIMD code) and the integer one give the same bits
    /// for every f16 the cache can hold (all but signalling NaNs, which `narrow` never makes).
    #[test]
    fn f16_conversions_agree_across_kernels() {
        let all: Vec<u16> = (0..=u16::MAX)
            .filter(|&h| !(h & 0x7c00 == 0x7c00 && h & 0x3ff != 0 && h & 0x200 == 0))
            .collect();
        if crate::kernels::has_avx2() {
            for chunk in all.chunks(16) {
                let mut block = [0u16; 16];
                block[..chunk.len()].copy_from_slice(chunk);
                let (hw, sw) = (Fused::widen(&block), Emulated::widen(&block));
                assert_eq!(hw.map(f32::to_bits), sw.map(f32::to_bits), "{block:x?}");
            }
        }
        // And every f16 but a NaN comes back from f32 unchanged (NaNs all become 0x7e00).
        for h in all {
            let back = narrow(widen(h));
            match widen(h).is_nan() {
                true => assert_eq!(back & 0x7fff, 0x7e00, "{h:#06x}"),
                false => assert_eq!(back, h, "{h:#06x}"),
            }
        }
    }

    #[test]
    fn f32_to_f16_rounds_to_nearest_even() {
        let check = |x: f32| {
            let got = narrow(x);
            if x.is_nan() {
                assert_eq!(got & 0x7fff, 0x7e00, "{:#010x}", x.to_bits());
                return;
            }
            let want = f16::from_f32_const(x).to_bits();
            assert_eq!(got, want, "{x:e} ({:#010x})", x.to_bits());
        };
        // A sweep of the bit patterns, then every f16 value, its neighbours and the midpoints
        // around it (where rounding decides), in both signs.
        for i in 0..(1u32 << 20) {
            check(f32::from_bits(i.wrapping_mul(4093)));
        }
        for h in 0..=u16::MAX {
            let x = f16::from_bits(h).to_f32_const();
            if !x.is_finite() {
                continue;
            }
            for d in -2i32..=2 {
                check(f32::from_bits(x.to_bits().wrapping_add_signed(d)));
                check(f32::from_bits(x.to_bits().wrapping_add_signed(d + 4096)));
                check(f32::from_bits(x.to_bits().wrapping_add_signed(d - 4096)));
            }
        }
        for x in [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            65504.0,
            65520.0,
            1e-8,
            1.0 + 1.0 / 2048.0,
        ] {
            check(x);
        }
        // Ties to even, by hand: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
        assert_eq!(narrow(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(narrow(1.0 + 3.0 / 2048.0), 0x3c02);
        assert_eq!(narrow(65520.0), 0x7c00);
        assert_eq!(narrow(f32::NAN) & 0x7fff, 0x7e00);
    }

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

    #[test]
    fn emulated_fma_rounds_once_like_the_instruction() {
        let same = |a: f32, b: f32, c: f32| {
            let (got, want) = (fma(a, b, c), a.mul_add(b, c));
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "fma({a:e}, {b:e}, {c:e}) = {got:e}, want {want:e}"
            );
        };
        // Products exactly halfway between two f32 (1 + 2^-11 + 2^-24): a tiny c decides the
        // rounding, which a sum rounded in f64 and then in f32 gets wrong.
        let x = 1.0 + 1.0 / 4096.0;
        for c in [
            1e-30f32,
            -1e-30,
            1e-40,
            -1e-40,
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
        ] {
            same(x, x, c);
            same(-x, x, c);
        }
        assert_ne!(
            fma(x, x, 1e-30).to_bits(),
            ((f64::from(x) * f64::from(x) + 1e-30) as f32).to_bits(),
            "the halfway case must differ from rounding twice"
        );
        // Special values, signed zeros, subnormals, overflow, cancellation.
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::MAX,
            -f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.5,
            3.0e-20,
        ];
        for a in specials {
            for b in specials {
                for c in specials {
                    same(a, b, c);
                }
            }
        }
        // Random bit patterns, and operands near each other so that the sum cancels.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let r = next();
            let (a, b) = (f32::from_bits(r as u32), f32::from_bits((r >> 32) as u32));
            let c = f32::from_bits(next() as u32);
            same(a, b, c);
            let p = a * b;
            same(a, b, -p);
            same(
                a,
                b,
                f32::from_bits((-p).to_bits() ^ (next() as u32 & 0xff)),
            );
        }
    }
}

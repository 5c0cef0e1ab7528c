//! The embedding model's dense layers as 16-bit integer matrix products.
//!
//! Weights and activations are both quantized in blocks of [`QB`] values along the shared
//! dimension, each block to integers in ±[`QMAX`] with its own f32 scale (weights per output column
//! and block, at load; activations per token and block, before each product). A block's dot product
//! is exact in i32 — 64 products of at most 5792² sum to less than 2³¹ — and the blocks are added in
//! f32, in order: `acc = fma(isum as f32, s_w · s_a, acc)`, then `acc + bias`.
//!
//! Why: x86 CPUs without AVX-512 multiply pairs of i16 and add them (`vpmaddwd`, 16 multiplies) at
//! the rate they issue 8-lane f32 FMAs, so the products run ~1.35× faster than in f32. The rounding
//! to 13½ bits keeps an embedding at cosine ≥ 0.999998 to the f32 computation and ≥ 0.999999 to
//! sentence-transformers (measured on the fixtures and the 512 benchmark sentences).
//!
//! Every implementation gives the same bits (integer sums are exact; the f32 steps are the same
//! operations in the same order), and a row's result depends only on that row: the same for any
//! batch, any thread count, AVX2 or portable.

/// Values per quantization block along the shared dimension.
pub const QB: usize = 64;
/// Largest quantized magnitude: `QB · QMAX²` fits in an i32.
pub const QMAX: f32 = 5792.0;
/// Output columns per packed panel.
const NR: usize = 16;
/// Rows per micro-kernel call.
const MR: usize = 5;
/// A block whose largest magnitude is below this quantizes to zeros (its scale would overflow).
const TINY: f32 = 1e-30;

const _: () = assert!(QB as u64 * (QMAX as u64) * (QMAX as u64) <= i32::MAX as u64);

/// `(x + 1.5·2²³) − 1.5·2²³`: x rounded to the nearest integer, ties to even, for |x| < 2²²
/// (as `cvtps2dq` does under the default rounding mode).
#[inline(always)]
fn round_even(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (x + SHIFT) - SHIFT
}

/// One block's scale and the factor that maps it onto ±QMAX.
#[inline(always)]
fn block_scale(max_abs: f32) -> (f32, f32) {
    if max_abs >= TINY {
        (max_abs / QMAX, QMAX / max_abs)
    } else {
        (0.0, 0.0)
    }
}

#[inline(always)]
fn quantize_value(x: f32, inv: f32) -> i16 {
    round_even(x * inv).clamp(-QMAX, QMAX) as i16
}

/// A weight matrix `w` (`n` rows of `k`, a PyTorch `Linear`) quantized and packed for `a · wᵀ`:
/// panels of 16 output columns; in a panel, per block, 32 steps of two `k` values for 16 columns
/// (the pairs `vpmaddwd` multiplies), then the 16 columns' scales of the block.
#[derive(Debug, Clone)]
pub struct PackedI16 {
    pub n: usize,
    pub k: usize,
    blocks: usize,
    data: Vec<i16>,
    scales: Vec<f32>,
}

impl PackedI16 {
    /// Quantizes and packs `w` (row-major `n × k`); `n` must be a multiple of 16. `k` is padded
    /// with zeros to whole blocks.
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert!(
            w.len() == n * k && n.is_multiple_of(NR),
            "PackedI16: {n}x{k} from {} floats",
            w.len()
        );
        let blocks = k.div_ceil(QB);
        let mut data = vec![0i16; n * blocks * QB];
        let mut scales = vec![0f32; n * blocks];
        // Each column quantized as activation rows are, then its pairs spread over the panel.
        let mut column = QuantRows::default();
        for c in 0..n {
            let (p, col) = (c / NR, c % NR);
            column.quantize(&w[c * k..(c + 1) * k], k);
            for b in 0..blocks {
                scales[(p * blocks + b) * NR + col] = column.scales[b];
                let base = (p * blocks + b) * QB * NR;
                for (j, pair) in column.q[b * QB..(b + 1) * QB].chunks_exact(2).enumerate() {
                    data[base + j * 2 * NR + col * 2..][..2].copy_from_slice(pair);
                }
            }
        }
        Self {
            n,
            k,
            blocks,
            data,
            scales,
        }
    }
}

/// Activation rows quantized for [`matmul_i16_bias`]: each row padded to whole blocks. Kept and
/// reused by the caller, so quantizing allocates only when rows grow.
#[derive(Debug, Default)]
pub struct QuantRows {
    k: usize,
    blocks: usize,
    rows: usize,
    q: Vec<i16>,
    scales: Vec<f32>,
}

impl QuantRows {
    /// Quantizes `a` (`a.len() / k` rows of `k`).
    pub fn quantize(&mut self, a: &[f32], k: usize) {
        assert!(k > 0 && a.len().is_multiple_of(k), "QuantRows: shapes");
        let rows = a.len() / k;
        let blocks = k.div_ceil(QB);
        self.q.resize(rows * blocks * QB, 0);
        self.scales.resize(rows * blocks, 0.0);
        (self.k, self.blocks, self.rows) = (k, blocks, rows);
        quantize_rows(a, k, &mut self.q, &mut self.scales);
    }

    /// Bytes held.
    pub fn capacity_bytes(&self) -> usize {
        self.q.capacity() * 2 + self.scales.capacity() * 4
    }
}

/// Rows of `k` values to rows of whole blocks: each block's scale, and its quants (zeros past the
/// end of the row).
fn quantize_rows(a: &[f32], k: usize, q: &mut [i16], scales: &mut [f32]) {
    let blocks = k.div_ceil(QB);
    for ((row, q), scales) in a
        .chunks_exact(k)
        .zip(q.chunks_exact_mut(blocks * QB))
        .zip(scales.chunks_exact_mut(blocks))
    {
        for ((src, dst), scale) in row.chunks(QB).zip(q.chunks_exact_mut(QB)).zip(scales) {
            let dst: &mut [i16; QB] = dst.try_into().expect("whole blocks");
            #[cfg(target_arch = "x86_64")]
            if let (Ok(src), true) = (<&[f32; QB]>::try_from(src), crate::kernels::has_avx2()) {
                // SAFETY: `detected` just said the CPU has AVX2 and FMA.
                #[allow(unsafe_code)]
                let s = unsafe { avx2::quantize_block(src, dst) };
                *scale = s;
                continue;
            }
            *scale = quantize_block(src, dst);
        }
    }
}

/// Up to QB values to a block (zeros past the end of `src`); returns its scale.
fn quantize_block(src: &[f32], dst: &mut [i16; QB]) -> f32 {
    let (scale, inv) = block_scale(src.iter().fold(0f32, |m, v| m.max(v.abs())));
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = quantize_value(v, inv);
    }
    dst[src.len()..].fill(0);
    scale
}

/// `out[m × n] = a · wᵀ + bias` for the `m` rows of `a`, on the calling thread.
pub fn matmul_i16_bias(a: &QuantRows, w: &PackedI16, bias: &[f32], out: &mut [f32]) {
    let (m, n) = (a.rows, w.n);
    assert!(
        a.k == w.k && out.len() == m * n && bias.len() == n,
        "matmul_i16_bias: shapes"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_avx2() {
        // SAFETY: `detected` just said the CPU has AVX2 and FMA.
        #[allow(unsafe_code)]
        unsafe {
            avx2::matmul(a, w, bias, out)
        };
        return;
    }
    portable(a, w, bias, out);
}

fn portable(a: &QuantRows, w: &PackedI16, bias: &[f32], out: &mut [f32]) {
    let (n, nb) = (w.n, w.blocks);
    for i in 0..a.rows {
        for c in 0..n {
            let (p, col) = (c / NR, c % NR);
            let mut acc = 0f32;
            for b in 0..nb {
                let aq = &a.q[(i * nb + b) * QB..][..QB];
                let wq = &w.data[(p * nb + b) * QB * NR..][..QB * NR];
                let isum: i32 = aq
                    .chunks_exact(2)
                    .enumerate()
                    .map(|(j, x)| {
                        let y = &wq[j * 2 * NR + col * 2..][..2];
                        i32::from(x[0]) * i32::from(y[0]) + i32::from(x[1]) * i32::from(y[1])
                    })
                    .sum();
                let scale = w.scales[(p * nb + b) * NR + col] * a.scales[i * nb + b];
                acc = crate::fmath::fma(isum as f32, scale, acc);
            }
            out[i * n + c] = acc + bias[c];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{MR, NR, PackedI16, QB, QMAX, QuantRows, block_scale};

    /// [`super::quantize_block`] for a whole block, with the same result: the same largest magnitude
    /// (max is exact in any order), `cvtps2dq` rounds to nearest even like `round_even`, and
    /// clamping to the integers ±QMAX commutes with rounding.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA ([`crate::kernels::detected`]).
    pub(super) unsafe fn quantize_block(src: &[f32; QB], dst: &mut [i16; QB]) -> f32 {
        // SAFETY: the caller guarantees the CPU's features.
        unsafe { quantize_block_impl(src, dst) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn quantize_block_impl(src: &[f32; QB], dst: &mut [i16; QB]) -> f32 {
        // Only the loads and stores touch memory through pointers; the arithmetic is safe here.
        let p = src.as_ptr();
        // SAFETY: vector `t` (eight floats from 8t) is inside `src` for t < QB/8.
        let load = |t: usize| unsafe { _mm256_loadu_ps(p.add(8 * t)) };
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for t in 0..QB / 8 {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, load(t)));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2));
        let (scale, inv) = block_scale(_mm_cvtss_f32(m1));
        let (inv, lo, hi) = (
            _mm256_set1_ps(inv),
            _mm256_set1_ps(-QMAX),
            _mm256_set1_ps(QMAX),
        );
        let quant = |v: __m256| {
            _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, inv), lo), hi))
        };
        let d = dst.as_mut_ptr().cast::<__m256i>();
        for t in 0..QB / 16 {
            let a = quant(load(2 * t));
            let b = quant(load(2 * t + 1));
            // packs works within 128-bit halves: a0-3 b0-3 a4-7 b4-7; reorder the quarters.
            let ab = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
            // SAFETY: vector `t` (sixteen i16 from 16t) is inside `dst` for t < QB/16.
            unsafe { _mm256_storeu_si256(d.add(t), ab) };
        }
        scale
    }

    /// [`super::matmul_i16_bias`] in AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA ([`crate::kernels::detected`]).
    pub(super) unsafe fn matmul(a: &QuantRows, w: &PackedI16, bias: &[f32], out: &mut [f32]) {
        // SAFETY: the caller guarantees the CPU's features.
        unsafe { matmul_impl(a, w, bias, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn matmul_impl(a: &QuantRows, w: &PackedI16, bias: &[f32], out: &mut [f32]) {
        let (m, n, kp) = (a.rows, w.n, w.blocks * QB);
        // Rows in chunks that keep their slice of `a` in L2 while every panel passes over it.
        let chunk = (192 * 384 / kp).clamp(MR, 190) / MR * MR;
        let panel_len = kp * NR;
        let panels = n / NR;
        let mut i0 = 0;
        while i0 < m {
            let rows = chunk.min(m - i0);
            for p in 0..panels {
                let tile = Tile {
                    a,
                    w,
                    p,
                    bias: &bias[p * NR..(p + 1) * NR],
                    next: w.data[(p + 1).min(panels - 1) * panel_len..].as_ptr(),
                };
                let end = i0 + rows;
                let mut i = i0;
                if i + MR <= end {
                    tile.run::<MR, true>(i, out);
                    i += MR;
                }
                while i + MR <= end {
                    tile.run::<MR, false>(i, out);
                    i += MR;
                }
                match end - i {
                    4 => tile.run::<4, false>(i, out),
                    3 => tile.run::<3, false>(i, out),
                    2 => tile.run::<2, false>(i, out),
                    1 => tile.run::<1, false>(i, out),
                    _ => {}
                }
            }
            i0 += rows;
        }
    }

    struct Tile<'a> {
        a: &'a QuantRows,
        w: &'a PackedI16,
        p: usize,
        bias: &'a [f32],
        /// The next panel (or this one, for the last), to prefetch.
        next: *const i16,
    }

    impl Tile<'_> {
        /// Rows `i..i+R` times panel `p`: 2R i32 accumulators per block, folded into 2R f32 ones.
        /// With `PREFETCH`, brings the next panel into cache as it goes (the weights come from
        /// memory, and the hardware prefetcher alone leaves the multiplies waiting on them).
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = "avx2,fma")]
        fn run<const R: usize, const PREFETCH: bool>(&self, i: usize, out: &mut [f32]) {
            let (w, a, p) = (self.w, self.a, self.p);
            let (n, nb) = (w.n, w.blocks);
            let kp = nb * QB;
            assert!(i + R <= a.rows && out.len() >= (i + R) * n && (p + 1) * NR <= n);
            let panel = &w.data[p * nb * QB * NR..(p + 1) * nb * QB * NR];
            let scales = &w.scales[p * nb * NR..(p + 1) * nb * NR];
            let rows = &a.q[i * kp..(i + R) * kp];
            let row_scales = &a.scales[i * nb..(i + R) * nb];
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            // The pointers below stay inside their slices: `panel` holds nb blocks of QB/2 steps
            // of 32 i16 (2 vectors); `rows` R rows of nb blocks of QB i16, read as QB/2 i32
            // pairs; `scales` nb·16 floats; `row_scales` R·nb; `next` is a panel of the same
            // size (a prefetch cannot fault anyway). Only the loads and stores are unsafe.
            let wp = panel.as_ptr().cast::<__m256i>();
            let ap = rows.as_ptr().cast::<i32>();
            for b in 0..nb {
                let mut isum = [[_mm256_setzero_si256(); 2]; R];
                let bw = wp.wrapping_add(b * QB);
                let ba: [*const i32; R] =
                    std::array::from_fn(|r| ap.wrapping_add((r * nb + b) * QB / 2));
                let next = self.next.wrapping_add(b * QB * NR);
                for j in 0..QB / 2 {
                    if PREFETCH {
                        // A prefetch reads nothing and cannot fault.
                        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(j * 2 * NR).cast());
                    }
                    // SAFETY: steps 2j and 2j+1 of block b are inside `panel`.
                    let (w0, w1) = unsafe {
                        (
                            _mm256_loadu_si256(bw.add(2 * j)),
                            _mm256_loadu_si256(bw.add(2 * j + 1)),
                        )
                    };
                    for r in 0..R {
                        // SAFETY: pair j of block b of row r is inside `rows`.
                        let x = _mm256_set1_epi32(unsafe { ba[r].add(j).read_unaligned() });
                        isum[r][0] = _mm256_add_epi32(isum[r][0], _mm256_madd_epi16(x, w0));
                        isum[r][1] = _mm256_add_epi32(isum[r][1], _mm256_madd_epi16(x, w1));
                    }
                }
                let bs = &scales[b * NR..(b + 1) * NR];
                // SAFETY: `bs` holds sixteen floats (NR).
                let (s0, s1) = unsafe {
                    (
                        _mm256_loadu_ps(bs.as_ptr()),
                        _mm256_loadu_ps(bs.as_ptr().add(8)),
                    )
                };
                for r in 0..R {
                    let sa = _mm256_set1_ps(row_scales[r * nb + b]);
                    let (c0, c1) = (_mm256_mul_ps(s0, sa), _mm256_mul_ps(s1, sa));
                    acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][0]), c0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][1]), c1, acc[r][1]);
                }
            }
            // SAFETY: `bias` holds sixteen floats (NR).
            let (bias0, bias1) = unsafe {
                (
                    _mm256_loadu_ps(self.bias.as_ptr()),
                    _mm256_loadu_ps(self.bias.as_ptr().add(8)),
                )
            };
            for r in 0..R {
                let dst = &mut out[(i + r) * n + p * NR..][..NR];
                // SAFETY: `dst` holds sixteen floats (NR).
                unsafe {
                    _mm256_storeu_ps(dst.as_mut_ptr(), _mm256_add_ps(acc[r][0], bias0));
                    _mm256_storeu_ps(dst.as_mut_ptr().add(8), _mm256_add_ps(acc[r][1], bias1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::testing::random_f32(n, seed)
    }

    /// Whether this CPU runs the AVX2 kernels, checked against what it reports: the tests below
    /// compare them with the portable code where it does, and say that they cannot where it
    /// does not.
    fn simd_here() -> bool {
        let simd = crate::kernels::has_avx2();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            simd,
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c"),
            "the dispatch follows the CPU"
        );
        if !simd {
            eprintln!("no AVX2 on this CPU: only the portable int16 code is checked");
        }
        simd
    }

    #[test]
    fn products_are_close_to_f32_and_the_same_bits_everywhere() {
        // k = 100: one whole block and a padded one; n = 48: three panels.
        let (n, k) = (48, 100);
        let mut wf = data(n * k, 3);
        // A column of zeros and a block with one outlier.
        wf[5 * k..6 * k].fill(0.0);
        wf[7 * k + 3] = 40.0;
        let bias = data(n, 4);
        let w = PackedI16::new(&wf, n, k);
        for m in [1, 4, 5, 6, 13] {
            let af = data(m * k, 5 + m as u32);
            let mut a = QuantRows::default();
            a.quantize(&af, k);
            let mut out = vec![0f32; m * n];
            matmul_i16_bias(&a, &w, &bias, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let row = &wf[j * k..(j + 1) * k];
                    let want: f32 = row
                        .iter()
                        .zip(&af[i * k..])
                        .map(|(x, y)| x * y)
                        .sum::<f32>()
                        + bias[j];
                    let bound: f32 = row
                        .iter()
                        .zip(&af[i * k..])
                        .map(|(x, y)| (x * y).abs())
                        .sum::<f32>();
                    let got = out[i * n + j];
                    assert!(
                        (want - got).abs() <= 1e-3 * bound + 1e-6,
                        "m{m} ({i},{j}): {want} vs {got}"
                    );
                }
            }
            // The portable code gives the same bits as the AVX2 one (called directly, not
            // through the dispatch), and the dispatch runs the one this CPU has.
            let mut slow = vec![0f32; m * n];
            portable(&a, &w, &bias, &mut slow);
            #[cfg(target_arch = "x86_64")]
            if simd_here() {
                let mut fast = vec![0f32; m * n];
                // SAFETY: `simd_here` checked the CPU's features.
                #[allow(unsafe_code)]
                unsafe {
                    avx2::matmul(&a, &w, &bias, &mut fast)
                };
                assert_eq!(slow, fast, "m{m}: portable and AVX2 products differ");
            }
            assert_eq!(slow, out, "m{m}: portable and dispatched products differ");
            // A row's result does not depend on the rows around it.
            let mut last = QuantRows::default();
            last.quantize(&af[(m - 1) * k..], k);
            let mut one = vec![0f32; n];
            matmul_i16_bias(&last, &w, &bias, &mut one);
            assert_eq!(one, out[(m - 1) * n..]);
        }
    }

    #[test]
    fn simd_and_portable_quantizers_agree() {
        let mut v = data(64 * 9, 11);
        v[64..128].iter_mut().for_each(|x| *x *= 1e-33);
        v[130] = 1e6;
        // Halfway cases: the block's largest magnitude is 5792, so each value maps to itself.
        for (i, x) in v[192..256].iter_mut().enumerate() {
            *x = (i as f32 - 32.0) * 90.5;
        }
        v[192] = QMAX;
        let simd = simd_here();
        for block in v.chunks_exact(QB) {
            let (mut a, mut b) = ([0i16; QB], [0i16; QB]);
            let sa = quantize_block(block, &mut a);
            // The AVX2 quantizer, called directly.
            #[cfg(target_arch = "x86_64")]
            if simd {
                let mut c = [0i16; QB];
                // SAFETY: `simd_here` checked the CPU's features.
                #[allow(unsafe_code)]
                let sc = unsafe { avx2::quantize_block(block.try_into().unwrap(), &mut c) };
                assert_eq!((sa, a), (sc, c), "portable and AVX2 quantizers differ");
            }
            // And whichever the dispatch runs.
            let mut q = QuantRows::default();
            q.quantize(block, QB);
            b.copy_from_slice(&q.q);
            assert_eq!((sa, a), (q.scales[0], b));
        }
        let _ = simd;
    }

    #[test]
    fn quantization_saturates_within_the_i32_bound() {
        let mut a = QuantRows::default();
        let row: Vec<f32> = (0..70)
            .map(|i| if i % 2 == 0 { -3e38 } else { 1e-38 })
            .collect();
        a.quantize(&row, 70);
        assert!(a.q.iter().all(|&q| f32::from(q).abs() <= QMAX));
        assert_eq!(a.q[0], -(QMAX as i16));
        assert!(a.q[70..].iter().all(|&q| q == 0), "padding is zero");
        // A block of tiny values (scale would overflow) quantizes to zeros.
        a.quantize(&[1e-35; 64], 64);
        assert!(a.q.iter().all(|&q| q == 0) && a.scales[0] == 0.0);
    }
}

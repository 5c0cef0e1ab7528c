//! Quantized dot products: a weight row (Q4_1 or Q8_0) times quantized activations.
//!
//! Every implementation computes the same thing in the same order, so results are bit-identical
//! whichever runs (AVX2 or portable) and however rows and tokens are split between threads:
//! - per 32-element block, eight exact integer lane sums, lane `j` covering elements `4j..4j+4`;
//! - per lane, `acc[j] = fma(d_w * d_a, lane_sum as f32, acc[j])`, blocks in order;
//! - Q4_1 only: `summs += m_w * s_a` (a multiply then an add), blocks in order;
//! - result = `((acc0+acc4) + (acc2+acc6)) + ((acc1+acc5) + (acc3+acc7))`, plus `summs`.
//!
//! The AVX2 path is taken when the CPU has AVX2, FMA and F16C (checked once at run time).

use std::ops::Range;
use std::sync::OnceLock;

use crate::quant::{QActs, QK, QMatrix, WeightType, f16_at};

/// Which kernel implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
}

/// The fastest implementation this CPU supports.
pub fn detected() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            return Isa::Avx2;
        }
        Isa::Portable
    })
}

/// Computes `out[t * rows.len() + i] = dot(w.row(rows.start + i), acts token t)` for every token.
pub fn matmul_rows(isa: Isa, w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &mut [f32]) {
    assert_eq!(
        w.cols, acts.cols,
        "matmul: weight columns and activation length differ"
    );
    assert!(
        rows.end <= w.rows && out.len() == acts.n * rows.len(),
        "matmul: output size"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if detected() == Isa::Avx2 => avx2::matmul_rows(w, acts, rows, out),
        _ => portable_rows(w, acts, rows, out),
    }
}

/// `out[m × n] = a[m × k] · w[n × k]ᵀ` in f32 (a PyTorch `Linear` without bias), on the calling thread.
/// `matrixmultiply` picks its SIMD kernel at run time; row `i` of the result depends only on row `i`
/// of `a`, whatever `m` is, so a row's value does not depend on what else is in the batch.
pub fn matmul_f32_nt(a: &[f32], m: usize, k: usize, w: &[f32], n: usize, out: &mut [f32]) {
    assert!(
        a.len() == m * k && w.len() == n * k && out.len() == m * n,
        "matmul_f32_nt: shapes"
    );
    if m == 0 || n == 0 {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: the strides describe exactly the three slices checked above: `a` row-major m×k, `w`
    // row-major n×k read as its transpose (k×n: row stride 1, column stride k), `out` row-major m×n,
    // which does not alias the inputs (it is borrowed mutably).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Defines a function whose body is compiled twice: for the baseline CPU, and with AVX2 and FMA
/// enabled, taken at run time when the CPU has them, so that plain loops in it vectorize 8 lanes wide.
/// Both copies compute the same thing; Rust never fuses a multiply and an add by itself, so they give
/// the same bits as long as the body calls no `mul_add`.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            if $crate::kernels::detected() == $crate::kernels::Isa::Avx2 {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[allow(unsafe_code)]
                // SAFETY: `detected` checked at run time that the CPU has AVX2 and FMA.
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

fn hsum(acc: &[f32; 8]) -> f32 {
    let r = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (r[0] + r[2]) + (r[1] + r[3])
}

fn portable_rows(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &mut [f32]) {
    let nb = acts.blocks_per_row();
    let n_rows = rows.len();
    for (i, r) in rows.enumerate() {
        let row = w.row(r);
        for t in 0..acts.n {
            let qs = &acts.qs[t * acts.cols..(t + 1) * acts.cols];
            let d = &acts.d[t * nb..(t + 1) * nb];
            let s = &acts.s[t * nb..(t + 1) * nb];
            out[t * n_rows + i] = portable_dot(w.ty, row, qs, d, s);
        }
    }
}

fn portable_dot(ty: WeightType, row: &[u8], qs: &[i8], d: &[f32], s: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (b, block) in row.chunks_exact(ty.block_bytes()).enumerate() {
        let a = &qs[b * QK..(b + 1) * QK];
        let mut w = [0i32; QK];
        match ty {
            WeightType::Q4_1 => {
                for i in 0..16 {
                    w[i] = i32::from(block[4 + i] & 0x0f);
                    w[i + 16] = i32::from(block[4 + i] >> 4);
                }
                summs += f16_at(block, 2) * s[b];
            }
            WeightType::Q8_0 => {
                for (wi, &q) in w.iter_mut().zip(&block[2..]) {
                    *wi = i32::from(q as i8);
                }
            }
        }
        let scale = f16_at(block, 0) * d[b];
        for (j, lane) in acc.iter_mut().enumerate() {
            let sum: i32 = (4 * j..4 * j + 4).map(|k| w[k] * i32::from(a[k])).sum();
            *lane = scale.mul_add(sum as f32, *lane);
        }
    }
    hsum(&acc) + summs
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use crate::quant::{Q4_1_BYTES, Q8_0_BYTES, QActs, QK, QMatrix, WeightType};

    pub(super) fn matmul_rows(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &mut [f32]) {
        // SAFETY: the caller checked (`detected`) that the CPU has AVX2, FMA and F16C; every pointer
        // read below is inside a slice whose length the loops bound (rows of `cols / 32` blocks,
        // activations of `n * cols` bytes and `n * cols / 32` scales).
        unsafe { rows_impl(w, acts, rows, out) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(acc: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
    }

    /// The two f16 values at `p` (Q4_1's `d` and `m`, or Q8_0's `d` and a byte of data) as f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
        // SAFETY: the caller guarantees 4 readable bytes at `p`.
        let bits = unsafe { p.cast::<i32>().read_unaligned() };
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// Weight block at `p` as 32 signed or unsigned bytes, ready for `maddubs`: returns (x, y-sign).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1_nibbles(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees a whole Q4_1 block (20 bytes) at `p`.
        let tmp = unsafe { _mm_loadu_si128(p.add(4).cast()) };
        let both = _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn lanes(x_unsigned: __m256i, y_signed: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(x_unsigned, y_signed);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_impl(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &mut [f32]) {
        let nb = acts.blocks_per_row();
        let n = acts.n;
        let n_rows = rows.len();
        let qs = acts.qs.as_ptr().cast::<u8>();
        let (ds, ss) = (acts.d.as_ptr(), acts.s.as_ptr());
        for (i, r) in rows.enumerate() {
            let row = w.row(r).as_ptr();
            let mut t = 0;
            while t + 4 <= n {
                // SAFETY: tokens t..t+4 exist (n tokens of nb blocks); the row has nb blocks.
                let v = unsafe {
                    dot_x4(
                        w.ty,
                        row,
                        nb,
                        qs.add(t * nb * QK),
                        ds.add(t * nb),
                        ss.add(t * nb),
                    )
                };
                for (k, value) in v.into_iter().enumerate() {
                    out[(t + k) * n_rows + i] = value;
                }
                t += 4;
            }
            while t < n {
                // SAFETY: token t exists; the row has nb blocks.
                out[t * n_rows + i] = unsafe {
                    dot_x1(
                        w.ty,
                        row,
                        nb,
                        qs.add(t * nb * QK),
                        ds.add(t * nb),
                        ss.add(t * nb),
                    )
                };
                t += 1;
            }
        }
    }

    /// One weight row against one token's activations.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_x1(
        ty: WeightType,
        row: *const u8,
        nb: usize,
        qs: *const u8,
        d: *const f32,
        s: *const f32,
    ) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        // SAFETY (whole body): `row` has nb blocks of `ty`, `qs` nb * 32 bytes, `d` and `s` nb floats.
        unsafe {
            match ty {
                WeightType::Q4_1 => {
                    for b in 0..nb {
                        let blk = row.add(b * Q4_1_BYTES);
                        let (dw, mw) = f16_pair(blk);
                        summs += mw * *s.add(b);
                        let x = q4_1_nibbles(blk);
                        let y = _mm256_loadu_si256(qs.add(b * QK).cast());
                        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * *d.add(b)), lanes(x, y), acc);
                    }
                }
                WeightType::Q8_0 => {
                    for b in 0..nb {
                        let blk = row.add(b * Q8_0_BYTES);
                        let (dw, _) = f16_pair(blk);
                        let x = _mm256_loadu_si256(blk.add(2).cast());
                        let y = _mm256_loadu_si256(qs.add(b * QK).cast());
                        let v = lanes(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
                        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * *d.add(b)), v, acc);
                    }
                }
            }
        }
        hsum(acc) + summs
    }

    /// One weight row against four consecutive tokens: the weight block is unpacked once.
    #[allow(clippy::needless_range_loop)] // k indexes tokens in three arrays and pointer offsets
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_x4(
        ty: WeightType,
        row: *const u8,
        nb: usize,
        qs: *const u8,
        d: *const f32,
        s: *const f32,
    ) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut summs = [0f32; 4];
        let tq = nb * QK;
        // SAFETY (whole body): `row` has nb blocks; `qs`, `d`, `s` hold 4 tokens of nb blocks each.
        unsafe {
            match ty {
                WeightType::Q4_1 => {
                    for b in 0..nb {
                        let blk = row.add(b * Q4_1_BYTES);
                        let (dw, mw) = f16_pair(blk);
                        let x = q4_1_nibbles(blk);
                        for k in 0..4 {
                            summs[k] += mw * *s.add(k * nb + b);
                            let y = _mm256_loadu_si256(qs.add(k * tq + b * QK).cast());
                            let scale = _mm256_set1_ps(dw * *d.add(k * nb + b));
                            acc[k] = _mm256_fmadd_ps(scale, lanes(x, y), acc[k]);
                        }
                    }
                }
                WeightType::Q8_0 => {
                    for b in 0..nb {
                        let blk = row.add(b * Q8_0_BYTES);
                        let (dw, _) = f16_pair(blk);
                        let x = _mm256_loadu_si256(blk.add(2).cast());
                        let ax = _mm256_sign_epi8(x, x);
                        for k in 0..4 {
                            let y = _mm256_loadu_si256(qs.add(k * tq + b * QK).cast());
                            let scale = _mm256_set1_ps(dw * *d.add(k * nb + b));
                            acc[k] =
                                _mm256_fmadd_ps(scale, lanes(ax, _mm256_sign_epi8(y, x)), acc[k]);
                        }
                    }
                }
            }
        }
        [
            hsum(acc[0]) + summs[0],
            hsum(acc[1]) + summs[1],
            hsum(acc[2]) + summs[2],
            hsum(acc[3]) + summs[3],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize_q4_1, quantize_q8_0};

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 20001) as f32 / 10000.0 - 1.0
            })
            .collect()
    }

    fn check(ty: WeightType) {
        let (rows, cols, n) = (37, 192, 7);
        let wf = data(rows * cols, 1);
        let data_bytes = match ty {
            WeightType::Q4_1 => quantize_q4_1(&wf),
            WeightType::Q8_0 => quantize_q8_0(&wf),
        };
        let w = QMatrix::new(ty, rows, cols, data_bytes).unwrap();
        let x = data(n * cols, 2);
        let mut acts = QActs::default();
        acts.quantize(&x, cols, ty);

        let mut portable = vec![0f32; n * rows];
        matmul_rows(Isa::Portable, &w, &acts, 0..rows, &mut portable);

        // Close to the float dot product of the dequantized weights and the activations.
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            w.dequantize_row(r, &mut row);
            for t in 0..n {
                let exact: f32 = row.iter().zip(&x[t * cols..]).map(|(a, b)| a * b).sum();
                let got = portable[t * rows + r];
                assert!(
                    (exact - got).abs() < 0.05 + exact.abs() * 0.02,
                    "{ty:?} r{r} t{t}: {exact} vs {got}"
                );
            }
        }

        // A split over rows gives the same bits as the whole.
        let mut split = vec![0f32; n * rows];
        for range in [0..10, 10..11, 11..rows] {
            let mut part = vec![0f32; n * range.len()];
            matmul_rows(Isa::Portable, &w, &acts, range.clone(), &mut part);
            for t in 0..n {
                split[t * rows + range.start..t * rows + range.end]
                    .copy_from_slice(&part[t * range.len()..(t + 1) * range.len()]);
            }
        }
        assert_eq!(split, portable);

        // The SIMD path gives the same bits as the portable one.
        if detected() == Isa::Avx2 {
            let mut simd = vec![0f32; n * rows];
            matmul_rows(Isa::Avx2, &w, &acts, 0..rows, &mut simd);
            assert_eq!(simd, portable, "{ty:?}: AVX2 and portable kernels differ");
        } else {
            eprintln!("AVX2 not available: only the portable kernel was checked");
        }
    }

    #[test]
    fn q4_1_kernels_agree_bit_for_bit_and_with_floats() {
        check(WeightType::Q4_1);
    }

    #[test]
    fn q8_0_kernels_agree_bit_for_bit_and_with_floats() {
        check(WeightType::Q8_0);
    }
}

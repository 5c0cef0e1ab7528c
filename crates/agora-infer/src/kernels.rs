//! Quantized matrix products: weight rows (Q4_1 or Q8_0, interleaved by eights, see `quant`) times
//! quantized activations (tokens interleaved by fours), eight rows against up to four tokens at a
//! time, written straight into the caller's output.
//!
//! Every implementation computes the same thing in the same order, so results are bit-identical
//! whichever runs (AVX2 or portable), however rows and tokens are split between threads, and however
//! many tokens are processed together:
//! - per 32-element block, the exact integer dot product `isum` of the weight and activation quants;
//! - `acc = fma(d_w * d_a, isum as f32, acc)`, blocks in order;
//! - Q4_1 only: `macc = fma(m_w, s_a, macc)`, blocks in order;
//! - result = `acc + macc` (Q8_0: `acc`).
//!
//! The AVX2 path is taken when the CPU has AVX2, FMA and F16C, the VNNI one (the same kernels with
//! `vpdpbusd` for the integer dot products) when it also has AVX-512 VNNI and VL; both are checked
//! once at run time. Where the CPU also has AVX-512 (F, BW, DQ, VL), batches of [`WIDE_TOKENS`]
//! tokens take the wide kernels (sixteen rows against up to twelve tokens per block, on 512-bit
//! registers). Where it also multiplies tiles (AMX-INT8) and the OS grants them, larger batches
//! (at least [`TILE_MIN_TOKENS`] tokens) take the tile kernels (the integer sums of sixteen rows
//! and sixteen tokens per block in two instructions). `AGORA_NO_AMX=1` turns the tiles off,
//! `AGORA_NO_AVX512=1` the wide kernels and the AVX-512 forms of the other steps, to compare.

use std::ops::Range;
use std::sync::OnceLock;

use crate::fmath;
use crate::quant::{GROUP, QActs, QMatrix, WeightType};

/// Which kernel implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    /// AVX2, with AVX-512 VNNI's four-byte dot products (on 256-bit registers) in the matmuls.
    Vnni,
    /// VNNI, and AMX's tile multiplies for batches of tokens.
    Amx,
}

/// Batches of at least this many tokens take the tile kernels where they run (but those of
/// [`WIDE_TOKENS`], which take the wide kernels where the CPU has AVX-512).
pub const TILE_MIN_TOKENS: usize = 8;

/// The fastest implementation this CPU supports.
pub fn detected() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            if std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512vl")
            {
                if amx_granted() {
                    return Isa::Amx;
                }
                return Isa::Vnni;
            }
            return Isa::Avx2;
        }
        Isa::Portable
    })
}

/// Whether the CPU multiplies int8 tiles (AMX-TILE and AMX-INT8, with the AVX-512 the tile
/// kernels also use) and the OS lets this process use them: Linux grants the tiles' state to a
/// process that asks (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); without that grant
/// the first tile instruction would kill it. The grant is for the whole process and makes its
/// signal frames larger (8 KiB of tile state): an alternate signal stack set up afterwards must
/// hold them.
#[cfg(target_arch = "x86_64")]
fn amx_granted() -> bool {
    if std::env::var_os("AGORA_NO_AMX").is_some_and(|v| v != "0") {
        return false;
    }
    // CPUID leaf 7: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8.
    #[allow(unsafe_code, unused_unsafe)]
    // SAFETY: CPUID leaf 7 exists on every CPU with AVX2 (checked by the caller).
    let leaf = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
    if leaf.edx & (3 << 24) != 3 << 24
        || !std::is_x86_feature_detected!("avx512f")
        || !std::is_x86_feature_detected!("avx512bw")
        || !std::is_x86_feature_detected!("avx512dq")
    {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        #[allow(unsafe_code)]
        // SAFETY: arch_prctl with these arguments only changes which state the kernel saves for
        // this process; it reads and writes no memory of ours.
        let granted = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        granted == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Asks for `data`'s cache lines to be brought into the core's second-level cache ahead of their
/// use: a hint only, which changes no result.
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let p = data.as_ptr().cast::<i8>();
        for line in (0..std::mem::size_of_val(data)).step_by(64) {
            // SAFETY: the address lies inside `data`, and a prefetch never faults.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(line))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Whether this CPU runs the AVX2 kernels (AVX2, FMA and F16C).
pub fn has_avx2() -> bool {
    detected() != Isa::Portable
}

/// Whether this CPU runs the AVX-512 forms of the element-wise kernels (AVX2, FMA and F16C, and
/// AVX-512 F, BW, DQ and VL): the same operations in the same order on wider registers.
pub fn has_avx512() -> bool {
    static AVX512: OnceLock<bool> = OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() && std::env::var_os("AGORA_NO_AVX512").is_none_or(|v| v == "0") {
            return std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512vl");
        }
        false
    })
}

/// `quant`'s quantization of a run of 32-element blocks with AVX-512, where the CPU has it
/// (returns `false` where it lacks AVX-512, writing nothing): per block of `x`, its quants into
/// `q`, its scale `max|x| / 127` rounded through f16 into `d`, the stored quants' sum into `qsum`,
/// and with `sums`, `scale · Σr` rounded through f16 into `s` (`Σr` the rounded values' sum before
/// their cut to a byte; else 0). The same operations as the portable code, lane by lane (a maximum
/// does not depend on the order, the sums are of integers, and the f16 roundings are the same
/// F16C instruction `half` takes), so the same bits; sixteen blocks' scales and sums at once.
pub(crate) fn quantize_run(
    x: &[f32],
    q: &mut [i8],
    [d, s]: [&mut [f32]; 2],
    qsum: &mut [i32],
    sums: bool,
) -> bool {
    let blocks = d.len();
    assert!(
        x.len() == blocks * 32
            && q.len() == blocks * 32
            && s.len() == blocks
            && qsum.len() == blocks,
        "quantize_run: sizes"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        for (i, x) in x.chunks(16 * 32).enumerate() {
            let at = i * 16..(i * 16 + x.len() / 32);
            #[allow(unsafe_code)]
            // SAFETY: `has_avx512` checked that the CPU has AVX-512 F, BW, DQ and VL (and F16C).
            unsafe {
                quantize16_avx512(
                    x,
                    &mut q[at.start * 32..at.end * 32],
                    [&mut d[at.clone()], &mut s[at.clone()]],
                    &mut qsum[at],
                    sums,
                )
            };
        }
        return true;
    }
    let _ = (x, q, s, qsum, sums);
    false
}

/// Up to sixteen blocks of [`quantize_run`].
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
fn quantize16_avx512(
    x: &[f32],
    q: &mut [i8],
    [d, s]: [&mut [f32]; 2],
    qsum: &mut [i32],
    sums: bool,
) {
    use std::arch::x86_64::*;
    const MAGIC: f32 = 12_582_912.0;
    const MAGIC_BITS: i32 = 0x4b40_0000;
    const RNE: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let n = d.len();
    assert!(n <= 16 && x.len() == n * 32 && q.len() == n * 32 && s.len() == n && qsum.len() == n);
    let (mut amax, mut inv, mut sum, mut qs) = ([0f32; 16], [0f32; 16], [0i32; 16], [0i32; 16]);
    // SAFETY (every block below): loads of 16 floats at 16j inside `x` (j < 2n), stores of 16
    // bytes at 16j inside `q`, and of at most 16 lanes of `n` into the arrays and slices of `n`.
    unsafe {
        for (b, amax) in amax.iter_mut().enumerate().take(n) {
            let lo = _mm512_loadu_ps(x.as_ptr().add(32 * b));
            let hi = _mm512_loadu_ps(x.as_ptr().add(32 * b + 16));
            // `m = if a > m { a } else { m }`, as `vmaxps a, m` computes it: a NaN is never taken.
            let m = _mm512_max_ps(_mm512_abs_ps(lo), _mm512_setzero_ps());
            *amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(hi), m));
        }
        let mask = ((1u32 << n) - 1) as u16;
        let a = _mm512_loadu_ps(amax.as_ptr());
        let scale = _mm512_div_ps(a, _mm512_set1_ps(127.0));
        let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(a, _mm512_setzero_ps());
        let r = _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(127.0), a);
        _mm512_storeu_ps(inv.as_mut_ptr(), r);
        let through_f16 = |v: __m512| _mm512_cvtph_ps(_mm512_cvtps_ph::<RNE>(v));
        _mm512_mask_storeu_ps(d.as_mut_ptr(), mask, through_f16(scale));
        for (b, ((&inv, sum), qs)) in inv.iter().zip(&mut sum).zip(&mut qs).enumerate().take(n) {
            let inv = _mm512_set1_ps(inv);
            let round = |v: __m512| {
                let r = _mm512_add_ps(_mm512_mul_ps(v, inv), _mm512_set1_ps(MAGIC));
                _mm512_sub_epi32(_mm512_castps_si512(r), _mm512_set1_epi32(MAGIC_BITS))
            };
            let r_lo = round(_mm512_loadu_ps(x.as_ptr().add(32 * b)));
            let r_hi = round(_mm512_loadu_ps(x.as_ptr().add(32 * b + 16)));
            _mm_storeu_si128(
                q.as_mut_ptr().add(32 * b).cast(),
                _mm512_cvtepi32_epi8(r_lo),
            );
            _mm_storeu_si128(
                q.as_mut_ptr().add(32 * b + 16).cast(),
                _mm512_cvtepi32_epi8(r_hi),
            );
            *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(r_lo, r_hi));
            // The stored bytes, sign-extended back.
            let byte = |r: __m512i| _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(r));
            *qs = _mm512_reduce_add_epi32(_mm512_add_epi32(byte(r_lo), byte(r_hi)));
        }
        _mm512_mask_storeu_epi32(
            qsum.as_mut_ptr(),
            mask,
            _mm512_loadu_si512(qs.as_ptr().cast()),
        );
        let s16 = if sums {
            let total = _mm512_cvtepi32_ps(_mm512_loadu_si512(sum.as_ptr().cast()));
            through_f16(_mm512_mul_ps(scale, total))
        } else {
            _mm512_setzero_ps()
        };
        _mm512_mask_storeu_ps(s.as_mut_ptr(), mask, s16);
    }
}

/// Whether this CPU runs the VNNI kernels.
fn has_vnni() -> bool {
    matches!(detected(), Isa::Vnni | Isa::Amx)
}

/// Whether activations of `n` tokens are quantized for the tile kernels too ([`QActs::rows`]).
pub fn tile_rows(n: usize) -> bool {
    n >= TILE_MIN_TOKENS && detected() == Isa::Amx && !wide_tokens(n)
}

/// Batches of this many tokens take the wide kernels where they run: measured on a model's
/// passes (SmolLM2, 2 threads), a pass of 8 sequences took 11 ms with them against 12.7–13.1 with
/// the tile kernels (which pad to 16 tokens); 4 sequences were faster on the VNNI kernels
/// (6.7–7.8 ms against 8.6–9.1), 16 on the tiles.
pub const WIDE_TOKENS: std::ops::RangeInclusive<usize> = 8..=12;

/// Whether a matmul of `n` tokens takes the wide kernels (where the CPU runs them).
fn wide_tokens(n: usize) -> bool {
    WIDE_TOKENS.contains(&n) && has_wide()
}

/// Whether this CPU runs the wide kernels (AVX-512 with VNNI).
fn has_wide() -> bool {
    has_avx512() && has_vnni()
}

/// Computes `out[t * rows.len() + i] = dot(row rows.start + i, token t)` for every token.
/// `rows.start` must be a multiple of 8 (a row group boundary).
pub fn matmul_rows(isa: Isa, w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &mut [f32]) {
    assert_eq!(out.len(), acts.n * rows.len(), "matmul: output size");
    let width = rows.len();
    let view = Out::new(out, width, rows.start);
    run_rows(isa, w, acts, rows, &view);
}

/// Several matmuls that share their input, split into row ranges run in parallel on the current
/// rayon pool: `jobs[j].1` (`acts.n` rows of `jobs[j].0.rows`) receives `acts · jobs[j].0ᵀ`. Each
/// output element is computed by one task, start to finish, so the split changes no bit of it; the
/// tasks write straight into the outputs (disjoint row ranges), with no copy afterwards.
pub fn matmuls(isa: Isa, acts: &QActs, jobs: &mut [(&QMatrix, &mut [f32])]) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let total_rows: usize = jobs.iter().map(|(m, _)| m.rows).sum();
    // Four tasks per thread: enough to balance the threads, few enough that scheduling stays cheap.
    let chunk = total_rows
        .div_ceil(threads * 4)
        .next_multiple_of(16)
        .max(16);
    let mats: Vec<&QMatrix> = jobs.iter().map(|(m, _)| *m).collect();
    let views: Vec<Out<'_>> = jobs
        .iter_mut()
        .map(|(m, out)| {
            assert_eq!(out.len(), acts.n * m.rows, "matmuls: output size");
            Out::new(out, m.rows, 0)
        })
        .collect();
    let mut tasks = Vec::new();
    for (j, m) in mats.iter().enumerate() {
        let mut r = 0;
        while r < m.rows {
            let end = (r + chunk).min(m.rows);
            tasks.push((j, r..end));
            r = end;
        }
    }
    // Every task's rows are its own: no two tasks write the same element (see `Out`).
    tasks
        .into_par_iter()
        .for_each(|(j, rows)| run_rows(isa, mats[j], acts, rows, &views[j]));
}

fn run_rows(isa: Isa, w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
    assert_eq!(
        w.cols, acts.cols,
        "matmul: weight columns and activation length differ"
    );
    assert!(
        rows.end <= w.rows && rows.start.is_multiple_of(GROUP),
        "matmul: row range"
    );
    assert!(
        rows.start >= out.col0 && rows.end - out.col0 <= out.width && acts.n <= out.n,
        "matmul: rows outside the output"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detected` just said the CPU has AVX2, FMA and F16C.
        #[allow(unsafe_code)]
        Isa::Avx2 if has_avx2() => unsafe { avx2::matmul_rows(w, acts, rows, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `has_wide` said the CPU has AVX2, FMA, F16C and AVX-512 F, BW, DQ, VL and
        // VNNI; the weights are not Q6K.
        #[allow(unsafe_code)]
        Isa::Vnni | Isa::Amx if w.ty != WeightType::Q6K && wide_tokens(acts.n) => unsafe {
            wide::matmul_rows(w, acts, rows, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detected` said the CPU has AMX-INT8 and AVX-512 and the OS granted the tiles;
        // `rows` holds the quants the tile kernels read (checked again inside).
        #[allow(unsafe_code)]
        Isa::Amx
            if detected() == Isa::Amx
                && w.ty != WeightType::Q6K
                && acts.rows.len() >= acts.n.next_multiple_of(amx::TOKENS) * acts.cols
                && acts.tile_d.len() >= acts.n.next_multiple_of(amx::TOKENS) * acts.cols / 32
                && acts.tile_s.len() >= acts.n.next_multiple_of(amx::TOKENS) * acts.cols / 32
                && acts.n >= TILE_MIN_TOKENS =>
        unsafe { amx::matmul_rows(w, acts, rows, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detected` just said the CPU has AVX2, FMA, F16C, AVX-512 VNNI and VL.
        #[allow(unsafe_code)]
        Isa::Vnni | Isa::Amx if has_vnni() => unsafe { vnni::matmul_rows(w, acts, rows, out) },
        _ => portable_rows(w, acts, rows, out),
    }
}

/// A matmul's output, `n` rows (tokens) of `width` floats, written through a pointer by tasks that
/// each own a range of its columns (weight rows): element (t, r) lives at `t · width + r − col0`.
/// Only this module makes one, from a `&mut` slice it then borrows, and every task it gives one to
/// writes only inside its own row range (checked in `run_rows`), so writes never overlap.
#[derive(Debug)]
struct Out<'a> {
    ptr: *mut f32,
    n: usize,
    width: usize,
    col0: usize,
    _out: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: see the type's comment: tasks sharing an `Out` write disjoint elements.
#[allow(unsafe_code)]
unsafe impl Send for Out<'_> {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for Out<'_> {}

impl<'a> Out<'a> {
    fn new(out: &'a mut [f32], width: usize, col0: usize) -> Self {
        let n = out.len().checked_div(width).unwrap_or(0);
        assert_eq!(n * width, out.len(), "matmul: output size");
        Self {
            ptr: out.as_mut_ptr(),
            n,
            width,
            col0,
            _out: std::marker::PhantomData,
        }
    }

    /// Writes the results of one row group (eight rows) for token `t`, skipping rows past `rows`.
    #[inline(always)]
    fn store(&self, rows: &Range<usize>, g: usize, t: usize, values: &[f32; GROUP]) {
        assert!(t < self.n, "matmul: token outside the output");
        for (lane, v) in values.iter().enumerate() {
            let r = g * GROUP + lane;
            if r < rows.end {
                let at = t * self.width + r - self.col0;
                assert!(r >= self.col0 && r - self.col0 < self.width);
                // SAFETY: `at` is inside the output (checked above); the row is this task's.
                #[allow(unsafe_code)]
                unsafe {
                    *self.ptr.add(at) = *v;
                }
            }
        }
    }
}

fn portable_rows(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
    let nb = acts.blocks_per_row();
    for g in rows.start / GROUP..rows.end.div_ceil(GROUP) {
        for t in 0..acts.n {
            let mut acc = [0f32; GROUP];
            let mut macc = [0f32; GROUP];
            for b in 0..nb {
                let blk = w.group_block(g, b);
                let (a, da, sa) = acts.token_block(t, b);
                let at = w.ty.quants_at();
                for lane in 0..GROUP {
                    let [dw, second] = w.scales_of(blk, lane);
                    // Slices j0..j1 (four bytes each) of the block's signed quants, summed.
                    let signed = |j0: usize, j1: usize| -> i32 {
                        (j0..j1)
                            .flat_map(|j| (0..4).map(move |k| (j, k)))
                            .map(|(j, k)| {
                                i32::from(blk[at + j * 4 * GROUP + lane * 4 + k] as i8)
                                    * i32::from(a[j * 4 + k])
                            })
                            .sum()
                    };
                    match w.ty {
                        WeightType::Q4_1 | WeightType::Q4K => {
                            let isum: i32 = (0..4)
                                .flat_map(|j| (0..4).map(move |k| (j, k)))
                                .map(|(j, k)| {
                                    let q = blk[at + j * 4 * GROUP + lane * 4 + k];
                                    i32::from(q & 0x0f) * i32::from(a[j * 4 + k])
                                        + i32::from(q >> 4) * i32::from(a[16 + j * 4 + k])
                                })
                                .sum();
                            acc[lane] = fmath::fma(dw * da, isum as f32, acc[lane]);
                            macc[lane] = fmath::fma(second, sa, macc[lane]);
                        }
                        WeightType::Q8_0 => {
                            acc[lane] = fmath::fma(dw * da, signed(0, 8) as f32, acc[lane]);
                        }
                        WeightType::Q6K => {
                            // Each half with its own scale: the first half's term, then the
                            // second's.
                            acc[lane] = fmath::fma(dw * da, signed(0, 4) as f32, acc[lane]);
                            acc[lane] = fmath::fma(second * da, signed(4, 8) as f32, acc[lane]);
                        }
                    }
                }
            }
            let values: [f32; GROUP] = std::array::from_fn(|l| acc[l] + macc[l]);
            out.store(&rows, g, t, &values);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
// Token `k` is both an accumulator's index and an offset into the quad: loops count it.
#[allow(clippy::needless_range_loop)]
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::Out;
    use crate::quant::{GROUP, QActs, QK, QMatrix, QUAD, WeightType};

    /// [`super::matmul_rows`] in AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C ([`super::detected`]).
    pub(super) unsafe fn matmul_rows(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        // SAFETY: the caller guarantees the CPU's features.
        unsafe { rows_impl(w, acts, rows, out) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn rows_impl(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        let n = acts.n;
        let (g0, g1) = (rows.start / GROUP, rows.end.div_ceil(GROUP));
        for g in g0..g1 {
            let mut t = 0;
            while t + 4 <= n {
                group::<4>(w, acts, g, t, &rows, out);
                t += 4;
            }
            match n - t {
                3 => group::<3>(w, acts, g, t, &rows, out),
                2 => group::<2>(w, acts, g, t, &rows, out),
                1 => group::<1>(w, acts, g, t, &rows, out),
                _ => {}
            }
        }
    }

    /// Writes eight results of row group `g` for token `t`: one vector store when the group lies
    /// wholly inside `rows`.
    #[inline(always)]
    pub(super) fn put(out: &Out<'_>, rows: &Range<usize>, g: usize, t: usize, v: __m256) {
        let r0 = g * GROUP;
        if r0 + GROUP <= rows.end {
            // `run_rows` checked that rows.start ≥ col0 and rows.end − col0 ≤ width.
            assert!(t < out.n && r0 >= out.col0 && r0 + GROUP - out.col0 <= out.width);
            let at = t * out.width + r0 - out.col0;
            // SAFETY: the eight floats at `at` are inside the output and in this task's rows.
            unsafe { _mm256_storeu_ps(out.ptr.add(at), v) };
        } else {
            let mut lanes = [0f32; GROUP];
            // SAFETY: `lanes` holds eight f32.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            out.store(rows, g, t, &lanes);
        }
    }

    /// Eight rows (group `g`) against tokens `t0..t0+T`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn group<const T: usize>(
        w: &QMatrix,
        acts: &QActs,
        g: usize,
        t0: usize,
        rows: &Range<usize>,
        out: &Out<'_>,
    ) {
        let nb = acts.blocks_per_row();
        let block_bytes = GROUP * w.ty.block_bytes();
        let blocks = &w.data[g * nb * block_bytes..(g + 1) * nb * block_bytes];
        let tokens = Quad::new(acts, t0);
        let values = match w.ty {
            WeightType::Q4_1 => q4_1::<T, false>(blocks, nb, &tokens),
            WeightType::Q4K => q4_1::<T, true>(blocks, nb, &tokens),
            WeightType::Q8_0 => q8_0::<T>(blocks, nb, &tokens),
            WeightType::Q6K => q6k::<T>(blocks, nb, &tokens),
        };
        for (k, v) in values.iter().enumerate() {
            put(out, rows, g, t0 + k, *v);
        }
    }

    /// The quad of tokens starting at `t0` (a multiple of 4): its quants, scales and sums, `nb`
    /// blocks each.
    pub(super) struct Quad<'a> {
        pub(super) qs: &'a [i8],
        pub(super) d: &'a [f32],
        pub(super) s: &'a [f32],
        pub(super) qsum: &'a [i32],
    }

    impl<'a> Quad<'a> {
        /// `quads` consecutive quads from `t0` (a multiple of 4): quad `q`'s block `b` at
        /// `(q·nb + b)·QUAD·QK` in `qs` and `(q·nb + b)·QUAD` in `d`, `s` and `qsum`.
        #[inline(always)]
        pub(super) fn span(acts: &'a QActs, t0: usize, quads: usize) -> Self {
            debug_assert!(t0.is_multiple_of(QUAD));
            let nb = acts.blocks_per_row();
            let end = t0 + quads * QUAD;
            Self {
                qs: &acts.qs[t0 * acts.cols..end * acts.cols],
                d: &acts.d[t0 * nb..end * nb],
                s: &acts.s[t0 * nb..end * nb],
                qsum: &acts.qsum[t0 * nb..end * nb],
            }
        }

        #[inline(always)]
        pub(super) fn new(acts: &'a QActs, t0: usize) -> Self {
            debug_assert!(t0.is_multiple_of(QUAD));
            let nb = acts.blocks_per_row();
            Self {
                qs: &acts.qs[t0 * acts.cols..(t0 + QUAD) * acts.cols],
                d: &acts.d[t0 * nb..(t0 + QUAD) * nb],
                s: &acts.s[t0 * nb..(t0 + QUAD) * nb],
                qsum: &acts.qsum[t0 * nb..(t0 + QUAD) * nb],
            }
        }
    }

    /// Asks for the block one row group ahead of `p` (`nb` blocks of `SIZE` bytes per group) to be
    /// brought into cache: the weights stream from memory, and the loads otherwise wait on them.
    #[inline(always)]
    pub(super) fn prefetch_ahead<const SIZE: usize>(p: *const u8, nb: usize) {
        // A prefetch never faults, so the address may lie past the matrix (the last group).
        let ahead = p.wrapping_add(nb * SIZE);
        let mut line = 0;
        while line < SIZE {
            // SAFETY: prefetching reads nothing and cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
            line += 64;
        }
    }

    /// [`prefetch_ahead`] for a block size known at run time.
    #[inline(always)]
    pub(super) fn prefetch_block(p: *const u8, group_bytes: usize, size: usize) {
        let ahead = p.wrapping_add(group_bytes);
        let mut line = 0;
        while line < size {
            // SAFETY: prefetching reads nothing and cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
            line += 64;
        }
    }

    /// Eight rows' scales (or minimums) at `at`: f32 (`F32`, 32 bytes) or f16 (16 bytes).
    #[inline(always)]
    pub(super) fn scales<const F32: bool>(wp: *const u8, at: usize) -> __m256 {
        // SAFETY: callers pass the offset of a block's scale field, whose 32 (f32) or 16 (f16)
        // bytes lie inside the block (checked by their callers' length asserts).
        unsafe {
            if F32 {
                _mm256_loadu_ps(wp.add(at).cast())
            } else {
                _mm256_cvtph_ps(_mm_loadu_si128(wp.add(at).cast()))
            }
        }
    }

    /// Q4_1 rows (160 bytes per block of eight rows: 16 of d, 16 of m, 128 of quants), or with
    /// `F32` Q4K's (192: 32 of d, 32 of m, 128 of quants).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4_1<const T: usize, const F32: bool>(
        blocks: &[u8],
        nb: usize,
        quad: &Quad<'_>,
    ) -> [__m256; T] {
        let (block, field) = if F32 {
            (GROUP * 24, 4 * GROUP)
        } else {
            (GROUP * 20, 2 * GROUP)
        };
        // Bounds, checked once; only the loads below go through pointers.
        assert!(T <= QUAD && blocks.len() == nb * block && quad.qs.len() == nb * QUAD * QK);
        let (wp, ap) = (blocks.as_ptr(), quad.qs.as_ptr());
        // SAFETY: callers pass offsets of block b < nb plus the two scale fields and at most
        // 96 more, so the 32 bytes at `at` end inside `blocks` (nb·block bytes).
        let w32 = |at: usize| unsafe { _mm256_loadu_si256(wp.add(at).cast()) };
        // SAFETY: callers pass b·QUAD·QK + 16j + 4k (+ 64) with j < 4, k < 4: four bytes inside
        // the quad's nb·QUAD·QK quants.
        let bcast =
            |at: usize| unsafe { _mm256_set1_epi32(ap.add(at).cast::<i32>().read_unaligned()) };
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let at = b * block;
            prefetch_block(wp.wrapping_add(at), nb * block, block);
            let mut s16 = [_mm256_setzero_si256(); T];
            for j in 0..4 {
                let q = w32(at + 2 * field + 32 * j);
                let lo = _mm256_and_si256(q, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
                for k in 0..T {
                    // Pairs of u4·i8 sum to at most 3810 in magnitude; eight fit in i16.
                    let a = b * QUAD * QK + 16 * j + 4 * k;
                    let x = _mm256_maddubs_epi16(lo, bcast(a));
                    let y = _mm256_maddubs_epi16(hi, bcast(a + 64));
                    s16[k] = _mm256_add_epi16(s16[k], _mm256_add_epi16(x, y));
                }
            }
            let dw = scales::<F32>(wp, at);
            for k in 0..T {
                let isum = _mm256_madd_epi16(s16[k], ones);
                let scale = _mm256_mul_ps(dw, _mm256_set1_ps(quad.d[b * QUAD + k]));
                acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc[k]);
            }
        }
        // The minimum terms, in a second pass (the same order, fewer live registers above).
        let mut macc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let mw = scales::<F32>(wp, b * block + field);
            for k in 0..T {
                macc[k] = _mm256_fmadd_ps(mw, _mm256_set1_ps(quad.s[b * QUAD + k]), macc[k]);
            }
        }
        std::array::from_fn(|k| _mm256_add_ps(acc[k], macc[k]))
    }

    /// Q8_0 rows (272 bytes per block of eight rows: 16 of d, 256 of quants).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_0<const T: usize>(blocks: &[u8], nb: usize, quad: &Quad<'_>) -> [__m256; T] {
        const BLOCK: usize = GROUP * 34;
        // Bounds, checked once; only the loads below go through pointers.
        assert!(T <= QUAD && blocks.len() == nb * BLOCK && quad.qs.len() == nb * QUAD * QK);
        let (wp, ap) = (blocks.as_ptr(), quad.qs.as_ptr());
        // SAFETY: callers pass offsets of block b < nb plus at most 16 + 224, so the 32 bytes at
        // `at` end inside `blocks` (nb·BLOCK bytes).
        let w32 = |at: usize| unsafe { _mm256_loadu_si256(wp.add(at).cast()) };
        // SAFETY: as above, the block's 16 bytes of scales.
        let w16 = |at: usize| unsafe { _mm_loadu_si128(wp.add(at).cast()) };
        // SAFETY: callers pass b·QUAD·QK + 16j + 4k with j < 8, k < 4: four bytes inside the quad's
        // nb·QUAD·QK quants.
        let bcast =
            |at: usize| unsafe { _mm256_set1_epi32(ap.add(at).cast::<i32>().read_unaligned()) };
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let at = b * BLOCK;
            prefetch_ahead::<BLOCK>(wp.wrapping_add(at), nb);
            let mut isum = [_mm256_setzero_si256(); T];
            for j in 0..8 {
                let q = w32(at + 2 * GROUP + 32 * j);
                let aq = _mm256_sign_epi8(q, q);
                for k in 0..T {
                    // |q|·(±a): pairs sum to at most 2·128·127 = 32512, which fits i16.
                    let a = bcast(b * QUAD * QK + 16 * j + 4 * k);
                    let prod = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q));
                    isum[k] = _mm256_add_epi32(isum[k], _mm256_madd_epi16(prod, ones));
                }
            }
            let dw = _mm256_cvtph_ps(w16(at));
            for k in 0..T {
                let scale = _mm256_mul_ps(dw, _mm256_set1_ps(quad.d[b * QUAD + k]));
                acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum[k]), acc[k]);
            }
        }
        acc
    }

    /// Q6K rows (320 bytes per block of eight rows: 32 of each half's scale, 256 of quants), as
    /// Q8_0's, each half of the block summed on its own and scaled by its own scale.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q6k<const T: usize>(blocks: &[u8], nb: usize, quad: &Quad<'_>) -> [__m256; T] {
        const BLOCK: usize = GROUP * 40;
        // Bounds, checked once; only the loads below go through pointers.
        assert!(T <= QUAD && blocks.len() == nb * BLOCK && quad.qs.len() == nb * QUAD * QK);
        let (wp, ap) = (blocks.as_ptr(), quad.qs.as_ptr());
        // SAFETY: callers pass offsets of block b < nb plus at most 64 + 224, so the 32 bytes at
        // `at` end inside `blocks` (nb·BLOCK bytes).
        let w32 = |at: usize| unsafe { _mm256_loadu_si256(wp.add(at).cast()) };
        // SAFETY: callers pass b·QUAD·QK + 16j + 4k with j < 8, k < 4: four bytes inside the quad's
        // nb·QUAD·QK quants.
        let bcast =
            |at: usize| unsafe { _mm256_set1_epi32(ap.add(at).cast::<i32>().read_unaligned()) };
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let at = b * BLOCK;
            prefetch_ahead::<BLOCK>(wp.wrapping_add(at), nb);
            let mut halves = [[_mm256_setzero_si256(); T]; 2];
            for j in 0..8 {
                let q = w32(at + 8 * GROUP + 32 * j);
                let aq = _mm256_sign_epi8(q, q);
                for k in 0..T {
                    let a = bcast(b * QUAD * QK + 16 * j + 4 * k);
                    let prod = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q));
                    halves[j / 4][k] =
                        _mm256_add_epi32(halves[j / 4][k], _mm256_madd_epi16(prod, ones));
                }
            }
            for (h, isum) in halves.iter().enumerate() {
                let dw = scales::<true>(wp, at + 4 * GROUP * h);
                for k in 0..T {
                    let scale = _mm256_mul_ps(dw, _mm256_set1_ps(quad.d[b * QUAD + k]));
                    acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum[k]), acc[k]);
                }
            }
        }
        acc
    }
}

/// The AVX2 kernels with AVX-512 VNNI's `vpdpbusd` (four u8·i8 products summed into each i32
/// lane, on 256-bit registers) in place of `vpmaddubsw` + `vpmaddwd` + add: the same exact integer
/// sums, fewer instructions, so the same bits as the other kernels.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[allow(clippy::needless_range_loop)]
mod vnni {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::Out;
    use super::avx2::{Quad, prefetch_ahead, prefetch_block, put, scales};
    use crate::quant::{GROUP, QActs, QK, QMatrix, QUAD, WeightType};

    /// [`super::matmul_rows`] with VNNI.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C, AVX-512 VNNI and VL ([`super::detected`]).
    pub(super) unsafe fn matmul_rows(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        // SAFETY: the caller guarantees the CPU's features.
        unsafe { rows_impl(w, acts, rows, out) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn rows_impl(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        let n = acts.n;
        let (g0, g1) = (rows.start / GROUP, rows.end.div_ceil(GROUP));
        for g in g0..g1 {
            let mut t = 0;
            // Eight tokens (two quads) at a time: AVX-512's 32 registers hold their sums, and
            // each block's weights are unpacked once for the eight.
            while t + 8 <= n {
                group::<8>(w, acts, g, t, &rows, out);
                t += 8;
            }
            while t + 4 <= n {
                group::<4>(w, acts, g, t, &rows, out);
                t += 4;
            }
            match n - t {
                3 => group::<3>(w, acts, g, t, &rows, out),
                2 => group::<2>(w, acts, g, t, &rows, out),
                1 => group::<1>(w, acts, g, t, &rows, out),
                _ => {}
            }
        }
    }

    /// Eight rows (group `g`) against tokens `t0..t0+T`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn group<const T: usize>(
        w: &QMatrix,
        acts: &QActs,
        g: usize,
        t0: usize,
        rows: &Range<usize>,
        out: &Out<'_>,
    ) {
        let nb = acts.blocks_per_row();
        let block_bytes = GROUP * w.ty.block_bytes();
        let blocks = &w.data[g * nb * block_bytes..(g + 1) * nb * block_bytes];
        let tokens = Quad::span(acts, t0, T.div_ceil(QUAD));
        let values = match w.ty {
            WeightType::Q4_1 => q4_1::<T, false>(blocks, nb, &tokens),
            WeightType::Q4K => q4_1::<T, true>(blocks, nb, &tokens),
            WeightType::Q8_0 => q8_0::<T>(blocks, nb, &tokens),
            WeightType::Q6K => q6k::<T>(blocks, nb, &tokens),
        };
        for (k, v) in values.iter().enumerate() {
            put(out, rows, g, t0 + k, *v);
        }
    }

    /// Q4_1 rows (or with `F32`, Q4K's), as [`super::avx2`]'s: nibbles (unsigned) times the
    /// tokens' quants (signed).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn q4_1<const T: usize, const F32: bool>(
        blocks: &[u8],
        nb: usize,
        quad: &Quad<'_>,
    ) -> [__m256; T] {
        let (block, field) = if F32 {
            (GROUP * 24, 4 * GROUP)
        } else {
            (GROUP * 20, 2 * GROUP)
        };
        assert!(
            T <= 2 * QUAD
                && blocks.len() == nb * block
                && quad.qs.len() == nb * QUAD * QK * T.div_ceil(QUAD)
        );
        let (wp, ap) = (blocks.as_ptr(), quad.qs.as_ptr());
        // SAFETY: as in `avx2::q4_1`: offsets of block b < nb plus the scale fields and at most 96.
        let w32 = |at: usize| unsafe { _mm256_loadu_si256(wp.add(at).cast()) };
        // SAFETY: as in `avx2::q4_1`: four bytes inside the quad's quants.
        let bcast =
            |at: usize| unsafe { _mm256_set1_epi32(ap.add(at).cast::<i32>().read_unaligned()) };
        let low = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let at = b * block;
            prefetch_block(wp.wrapping_add(at), nb * block, block);
            let mut isum = [_mm256_setzero_si256(); T];
            for j in 0..4 {
                let q = w32(at + 2 * field + 32 * j);
                let lo = _mm256_and_si256(q, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
                for k in 0..T {
                    let a = (k / QUAD) * nb * QUAD * QK + b * QUAD * QK + 16 * j + 4 * (k % QUAD);
                    isum[k] = _mm256_dpbusd_epi32(isum[k], lo, bcast(a));
                    isum[k] = _mm256_dpbusd_epi32(isum[k], hi, bcast(a + 64));
                }
            }
            let dw = scales::<F32>(wp, at);
            for k in 0..T {
                let scale = _mm256_mul_ps(
                    dw,
                    _mm256_set1_ps(quad.d[(k / QUAD) * nb * QUAD + b * QUAD + k % QUAD]),
                );
                acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum[k]), acc[k]);
            }
        }
        let mut macc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let mw = scales::<F32>(wp, b * block + field);
            for k in 0..T {
                macc[k] = _mm256_fmadd_ps(
                    mw,
                    _mm256_set1_ps(quad.s[(k / QUAD) * nb * QUAD + b * QUAD + k % QUAD]),
                    macc[k],
                );
            }
        }
        std::array::from_fn(|k| _mm256_add_ps(acc[k], macc[k]))
    }

    /// Q8_0 rows, as [`super::avx2`]'s: |q| (unsigned) times the token's quants with q's sign.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn q8_0<const T: usize>(blocks: &[u8], nb: usize, quad: &Quad<'_>) -> [__m256; T] {
        const BLOCK: usize = GROUP * 34;
        assert!(
            T <= 2 * QUAD
                && blocks.len() == nb * BLOCK
                && quad.qs.len() == nb * QUAD * QK * T.div_ceil(QUAD)
        );
        let (wp, ap) = (blocks.as_ptr(), quad.qs.as_ptr());
        // SAFETY: as in `avx2::q8_0`: offsets of block b < nb plus at most 16 + 224.
        let w32 = |at: usize| unsafe { _mm256_loadu_si256(wp.add(at).cast()) };
        // SAFETY: as above, the block's 16 bytes of scales.
        let w16 = |at: usize| unsafe { _mm_loadu_si128(wp.add(at).cast()) };
        // SAFETY: as in `avx2::q8_0`: four bytes inside the quad's quants.
        let bcast =
            |at: usize| unsafe { _mm256_set1_epi32(ap.add(at).cast::<i32>().read_unaligned()) };
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let at = b * BLOCK;
            prefetch_ahead::<BLOCK>(wp.wrapping_add(at), nb);
            let mut isum = [_mm256_setzero_si256(); T];
            for j in 0..8 {
                let q = w32(at + 2 * GROUP + 32 * j);
                let aq = _mm256_sign_epi8(q, q);
                for k in 0..T {
                    let a = bcast(
                        (k / QUAD) * nb * QUAD * QK + b * QUAD * QK + 16 * j + 4 * (k % QUAD),
                    );
                    isum[k] = _mm256_dpbusd_epi32(isum[k], aq, _mm256_sign_epi8(a, q));
                }
            }
            let dw = _mm256_cvtph_ps(w16(at));
            for k in 0..T {
                let scale = _mm256_mul_ps(
                    dw,
                    _mm256_set1_ps(quad.d[(k / QUAD) * nb * QUAD + b * QUAD + k % QUAD]),
                );
                acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum[k]), acc[k]);
            }
        }
        acc
    }

    /// Q6K rows, as [`super::avx2`]'s, each half summed on its own.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn q6k<const T: usize>(blocks: &[u8], nb: usize, quad: &Quad<'_>) -> [__m256; T] {
        const BLOCK: usize = GROUP * 40;
        assert!(
            T <= 2 * QUAD
                && blocks.len() == nb * BLOCK
                && quad.qs.len() == nb * QUAD * QK * T.div_ceil(QUAD)
        );
        let (wp, ap) = (blocks.as_ptr(), quad.qs.as_ptr());
        // SAFETY: as in `avx2::q6k`: offsets of block b < nb plus at most 64 + 224.
        let w32 = |at: usize| unsafe { _mm256_loadu_si256(wp.add(at).cast()) };
        // SAFETY: as in `avx2::q6k`: four bytes inside the quad's quants.
        let bcast =
            |at: usize| unsafe { _mm256_set1_epi32(ap.add(at).cast::<i32>().read_unaligned()) };
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let at = b * BLOCK;
            prefetch_ahead::<BLOCK>(wp.wrapping_add(at), nb);
            let mut halves = [[_mm256_setzero_si256(); T]; 2];
            for j in 0..8 {
                let q = w32(at + 8 * GROUP + 32 * j);
                let aq = _mm256_sign_epi8(q, q);
                for k in 0..T {
                    let a = bcast(
                        (k / QUAD) * nb * QUAD * QK + b * QUAD * QK + 16 * j + 4 * (k % QUAD),
                    );
                    halves[j / 4][k] =
                        _mm256_dpbusd_epi32(halves[j / 4][k], aq, _mm256_sign_epi8(a, q));
                }
            }
            for (h, isum) in halves.iter().enumerate() {
                let dw = scales::<true>(wp, at + 4 * GROUP * h);
                for k in 0..T {
                    let scale = _mm256_mul_ps(
                        dw,
                        _mm256_set1_ps(quad.d[(k / QUAD) * nb * QUAD + b * QUAD + k % QUAD]),
                    );
                    acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum[k]), acc[k]);
                }
            }
        }
        acc
    }
}

/// Sixteen rows (two row groups) against up to twelve tokens per block on AVX-512's 512-bit
/// registers: each block's weights unpacked once into eight registers (four elements of each of
/// the sixteen rows per 32-bit lane), each token's four-byte slices broadcast into `vpdpbusd`, the
/// sums never leaving the registers; then the same float steps as every kernel, sixteen lanes wide.
/// Q8_0's signed weights are offset by 128 to be unsigned, and `128 · Σq` of the token taken off
/// (exact integers: [`QActs::qsum`], the stored quants' sum). Q6K takes the VNNI kernel.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod wide {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::Out;
    use super::amx::scales16;
    use super::avx2::{Quad, put};
    use crate::quant::{GROUP, QActs, QK, QMatrix, QUAD, WeightType};

    /// [`super::matmul_rows`] with the wide kernels.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 (F, BW, DQ, VL, VNNI); `w` must not be Q6K.
    pub(super) unsafe fn matmul_rows(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        // SAFETY: the caller guarantees the CPU's features.
        unsafe { rows_impl(w, acts, rows, out) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn rows_impl(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        let (n, nb) = (acts.n, acts.blocks_per_row());
        // Two or three quads of tokens (see `WIDE_TOKENS`).
        assert!(
            (5..=12).contains(&n),
            "the wide kernels take 5 to 12 tokens"
        );
        let block_bytes = GROUP * w.ty.block_bytes();
        let group = |g: usize| &w.data[g * nb * block_bytes..(g + 1) * nb * block_bytes];
        let (g0, g1) = (rows.start / GROUP, rows.end.div_ceil(GROUP));
        // A lone last group is computed twice and stored once.
        for g in (g0..g1).step_by(2) {
            let g2 = if g + 1 < g1 { g + 1 } else { g };
            let (wa, wb) = (group(g), group(g2));
            let put_all = |values: &[__m512]| {
                for (k, v) in values.iter().enumerate().take(n) {
                    put(out, &rows, g, k, _mm512_castps512_ps256(*v));
                    if g2 != g {
                        put(out, &rows, g2, k, _mm512_extractf32x8_ps::<1>(*v));
                    }
                }
            };
            if n <= 8 {
                put_all(&pair::<8>(w.ty, wa, wb, nb, &Quad::span(acts, 0, 2)));
            } else {
                put_all(&pair::<12>(w.ty, wa, wb, nb, &Quad::span(acts, 0, 3)));
            }
        }
    }

    /// Two row groups' blocks (`wa`, `wb`) against the `T` tokens of `quad` (`T / 4` quads).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn pair<const T: usize>(
        ty: WeightType,
        wa: &[u8],
        wb: &[u8],
        nb: usize,
        quad: &Quad<'_>,
    ) -> [__m512; T] {
        match ty {
            WeightType::Q4_1 => nibbles::<T, false>(wa, wb, nb, quad),
            WeightType::Q4K => nibbles::<T, true>(wa, wb, nb, quad),
            WeightType::Q8_0 => bytes::<T>(wa, wb, nb, quad),
            WeightType::Q6K => unreachable!("Q6K takes the VNNI kernel"),
        }
    }

    /// Slice `j` (32 bytes: four of each of eight rows) of both groups, side by side.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn slices(wa: &[u8], wb: &[u8], at: usize) -> __m512i {
        let (a, b) = (&wa[at..at + 32], &wb[at..at + 32]);
        // SAFETY: `a` and `b` hold the 32 bytes read.
        unsafe {
            let lo = _mm256_loadu_si256(a.as_ptr().cast());
            let hi = _mm256_loadu_si256(b.as_ptr().cast());
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        }
    }

    /// Asks for block `b` of the next pair of groups (`block` bytes each), as the tile kernels do.
    #[inline(always)]
    fn prefetch_ahead(wa: &[u8], wb: &[u8], b: usize, block: usize) {
        for g in [wa, wb] {
            let ahead = g.as_ptr().wrapping_add(2 * g.len() + b * block);
            for line in (0..block).step_by(64) {
                // SAFETY: a prefetch never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
            }
        }
    }

    /// One quad's block: its 128 bytes of quants (slice `c` of token `l` at `16c + 4l`) and its
    /// four scales (or sums).
    #[inline(always)]
    fn quad_block<'a>(quad: &'a Quad<'_>, nb: usize, q: usize, b: usize) -> (&'a [i8; 128], usize) {
        let at = (q * nb + b) * QUAD;
        let qs = quad.qs[at * QK..at * QK + QUAD * QK]
            .try_into()
            .expect("a quad's block of quants");
        (qs, at)
    }

    /// Four tokens' products with one block's weights (`w`, see [`nibbles`]), added to `acc` as
    /// every kernel adds them: `acc = fma(dw · d_a, isum, acc)`. `offsets`: each token's sums
    /// start there (Q8_0's `-128 · Σq`, else zero).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn quad_products(
        w: &[__m512i; 8],
        dw: __m512,
        qs: &[i8; 128],
        d: &[f32],
        offsets: [i32; QUAD],
        acc: &mut [__m512],
    ) {
        for (l, acc) in acc.iter_mut().enumerate().take(QUAD) {
            let s = |c: usize| {
                let at = 16 * c + 4 * l;
                _mm512_set1_epi32(i32::from_le_bytes([
                    qs[at] as u8,
                    qs[at + 1] as u8,
                    qs[at + 2] as u8,
                    qs[at + 3] as u8,
                ]))
            };
            // Two chains of four, so the products overlap; integers, so the order is free.
            let mut s0 = _mm512_dpbusd_epi32(_mm512_set1_epi32(offsets[l]), w[0], s(0));
            let mut s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], s(1));
            for c in (2..8).step_by(2) {
                s0 = _mm512_dpbusd_epi32(s0, w[c], s(c));
                s1 = _mm512_dpbusd_epi32(s1, w[c + 1], s(c + 1));
            }
            let isum = _mm512_add_epi32(s0, s1);
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(d[l]));
            *acc = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(isum), *acc);
        }
    }

    /// Q4_1 rows (or with `F32`, Q4K's): nibbles (unsigned) times the tokens' quants (signed).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn nibbles<const T: usize, const F32: bool>(
        wa: &[u8],
        wb: &[u8],
        nb: usize,
        quad: &Quad<'_>,
    ) -> [__m512; T] {
        let (block, field) = if F32 {
            (GROUP * 24, 4 * GROUP)
        } else {
            (GROUP * 20, 2 * GROUP)
        };
        assert!(
            wa.len() == nb * block
                && wb.len() == nb * block
                && quad.qs.len() == nb * QK * T
                && quad.d.len() == nb * T
        );
        let low = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let at = b * block;
            prefetch_ahead(wa, wb, b, block);
            // Register j holds elements 4j..4j+4 of the sixteen rows: the low nibbles of slice j
            // for j < 4, the high ones of slice j − 4 after.
            let mut w = [_mm512_setzero_si512(); 8];
            for j in 0..4 {
                let v = slices(wa, wb, at + 2 * field + 32 * j);
                w[j] = _mm512_and_si512(v, low);
                w[j + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
            }
            let dw = scales16::<F32>(wa, wb, at);
            for (q, acc) in acc.chunks_exact_mut(QUAD).enumerate() {
                let (qs, at) = quad_block(quad, nb, q, b);
                quad_products(&w, dw, qs, &quad.d[at..at + QUAD], [0; QUAD], acc);
            }
        }
        let mut macc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let mw = scales16::<F32>(wa, wb, b * block + field);
            for (q, macc) in macc.chunks_exact_mut(QUAD).enumerate() {
                let at = (q * nb + b) * QUAD;
                for (macc, &sa) in macc.iter_mut().zip(&quad.s[at..at + QUAD]) {
                    *macc = _mm512_fmadd_ps(mw, _mm512_set1_ps(sa), *macc);
                }
            }
        }
        std::array::from_fn(|k| _mm512_add_ps(acc[k], macc[k]))
    }

    /// Q8_0 rows: the quants plus 128 (unsigned) times the tokens' quants (signed), less 128 · Σq.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn bytes<const T: usize>(wa: &[u8], wb: &[u8], nb: usize, quad: &Quad<'_>) -> [__m512; T] {
        const BLOCK: usize = GROUP * 34;
        assert!(
            wa.len() == nb * BLOCK
                && wb.len() == nb * BLOCK
                && quad.qs.len() == nb * QK * T
                && quad.d.len() == nb * T
                && quad.qsum.len() == nb * T
        );
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let at = b * BLOCK;
            prefetch_ahead(wa, wb, b, BLOCK);
            let w: [__m512i; 8] = std::array::from_fn(|j| {
                _mm512_xor_si512(slices(wa, wb, at + 2 * GROUP + 32 * j), flip)
            });
            let dw = scales16::<false>(wa, wb, at);
            for (q, acc) in acc.chunks_exact_mut(QUAD).enumerate() {
                let (qs, at) = quad_block(quad, nb, q, b);
                // |Σq| ≤ 32 · 128 (the stored bytes' sum): the products fit.
                let sums = &quad.qsum[at..at + QUAD];
                let offsets = std::array::from_fn(|l| sums[l].wrapping_mul(-128));
                quad_products(&w, dw, qs, &quad.d[at..at + QUAD], offsets, acc);
            }
        }
        acc
    }
}

/// Tile multiplies (AMX) for batches of tokens: sixteen rows (two row groups) against sixteen
/// tokens per block, the block's exact integer sums from two tile dot products, then the same
/// float steps as every other kernel, sixteen lanes wide.
///
/// Tiles have no renaming, so a block's loads, products and stores would wait on the previous
/// block's: two sets of tiles take turns (the next block's products run while this block's sums
/// are scaled and added).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod amx {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::Out;
    use super::avx2::put;
    use crate::quant::{GROUP, QActs, QK, QMatrix, WeightType};

    /// Tokens per tile (a tile's rows).
    pub(super) const TOKENS: usize = 16;

    /// Blocks of weights in the tiles' layout for sixteen or fewer tokens, filled `RING - 1`
    /// blocks ahead of their use: a tile load of bytes just stored waits until the stores have
    /// left the core's store buffer. (A ring of six measured no faster.)
    const RING: usize = 3;

    /// The tiles, two sets of three taking turns: a block's sums (16 tokens × 16 rows of i32:
    /// tiles 0 and 3), the tokens' quants of the block (16 × 32 bytes: tiles 1 and 4), and the two
    /// groups' weights of the block (8 × 64 bytes: tiles 2 and 5; row `j` holds elements
    /// 4j..4j+4 of the sixteen weight rows side by side).
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    impl Config {
        fn new() -> Self {
            let mut c = [0u8; 64];
            c[0] = 1; // palette 1
            for set in [0, 3] {
                for (tile, rows, bytes) in [(set, 16, 64u16), (set + 1, 16, 32), (set + 2, 8, 64)] {
                    c[16 + 2 * tile..18 + 2 * tile].copy_from_slice(&bytes.to_le_bytes());
                    c[48 + tile] = rows;
                }
            }
            Self(c)
        }
    }

    /// Where each set of tiles' sums are read back (a token per 64 bytes).
    #[repr(C, align(64))]
    struct Sums([[i32; TOKENS * 2 * GROUP]; 2]);

    /// [`super::matmul_rows`] with tile multiplies: `acts` carries its quants row by row
    /// ([`QActs::rows`]), for `acts.n` rounded up to [`TOKENS`] tokens.
    ///
    /// # Safety
    /// The CPU must have AMX-INT8 and AVX-512 (F, BW, DQ, VL, VNNI), and the process must have
    /// been granted the tile state ([`super::detected`] returned `Isa::Amx`).
    pub(super) unsafe fn matmul_rows(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        // SAFETY: the caller guarantees the CPU's features and the permission.
        unsafe { rows_impl(w, acts, rows, out) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn rows_impl(w: &QMatrix, acts: &QActs, rows: Range<usize>, out: &Out<'_>) {
        let (n, nb) = (acts.n, acts.blocks_per_row());
        let padded = n.next_multiple_of(TOKENS);
        // Every tile load below reads inside these (16 rows of `cols` from a multiple of 16).
        assert!(
            acts.rows.len() >= padded * acts.cols
                && acts.tile_d.len() >= padded * nb
                && acts.tile_s.len() >= padded * nb
                && w.ty != WeightType::Q6K
        );
        let config = Config::new();
        // SAFETY: a valid palette-1 configuration (64 bytes, aligned).
        unsafe {
            asm!(
                "ldtilecfg [{}]",
                in(reg) config.0.as_ptr(),
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack, readonly),
            )
        };
        // The tiles are released however this ends (a panic included), so the thread does not
        // keep their state.
        let _release = Release;
        let mut sums = Sums([[0; TOKENS * 2 * GROUP]; 2]);
        // Two groups' weights in the tiles' layout, 512 bytes a block. For many tokens they are
        // written once for all of them, a pair of groups ahead (a tile load of bytes just stored
        // waits long for the stores); for sixteen or fewer, in a ring of [`RING`].
        let whole = n > TOKENS;
        let slots = if whole { nb } else { RING };
        let mut tiled = vec![0u8; 2 * slots * 512 + 64];
        let off = tiled.as_ptr().align_offset(64);
        let (mut tiled, mut next) = tiled[off..off + 2 * slots * 512].split_at_mut(slots * 512);
        let block_bytes = GROUP * w.ty.block_bytes();
        let group = |g: usize| &w.data[g * nb * block_bytes..(g + 1) * nb * block_bytes];
        let (g0, g1) = (rows.start / GROUP, rows.end.div_ceil(GROUP));
        // A lone last group is computed twice and stored once.
        let pair = |g: usize| Pair {
            ty: w.ty,
            a: group(g),
            b: group(if g + 1 < g1 { g + 1 } else { g }),
        };
        if whole {
            pair(g0).tile_all(nb, tiled);
        }
        for g in (g0..g1).step_by(2) {
            if whole && g + 2 < g1 {
                pair(g + 2).tile_all(nb, next);
            }
            let g2 = if g + 1 < g1 { g + 1 } else { g };
            let p = pair(g);
            for t0 in (0..n).step_by(TOKENS) {
                let values = match w.ty {
                    WeightType::Q4_1 => {
                        products::<false, false, true>(p, nb, tiled, whole, acts, t0, &mut sums)
                    }
                    WeightType::Q4K => {
                        products::<false, true, true>(p, nb, tiled, whole, acts, t0, &mut sums)
                    }
                    WeightType::Q8_0 => {
                        products::<true, false, false>(p, nb, tiled, whole, acts, t0, &mut sums)
                    }
                    WeightType::Q6K => unreachable!("Q6K takes the VNNI kernel"),
                };
                for (k, v) in values.iter().enumerate().take(n - t0) {
                    put(out, &rows, g, t0 + k, _mm512_castps512_ps256(*v));
                    if g2 != g {
                        put(out, &rows, g2, t0 + k, _mm512_extractf32x8_ps::<1>(*v));
                    }
                }
            }
            std::mem::swap(&mut tiled, &mut next);
        }
    }

    /// Releases the tiles when dropped.
    struct Release;

    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: only made after the tiles are configured, and dropped after their last use.
            unsafe {
                asm!(
                    "tilerelease",
                    out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                    out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                    options(nostack, nomem),
                )
            };
        }
    }

    /// Sixteen rows' scales (or minimums) at `at` in two groups' blocks: f32 (`F32`) or f16.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
    pub(super) fn scales16<const F32: bool>(wa: &[u8], wb: &[u8], at: usize) -> __m512 {
        let n = if F32 { 32 } else { 16 };
        let (a, b) = (&wa[at..at + n], &wb[at..at + n]);
        // SAFETY: `a` and `b` hold the `n` bytes read.
        unsafe {
            if F32 {
                let lo = _mm256_loadu_ps(a.as_ptr().cast());
                let hi = _mm256_loadu_ps(b.as_ptr().cast());
                _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi)
            } else {
                let lo = _mm_loadu_si128(a.as_ptr().cast());
                let hi = _mm_loadu_si128(b.as_ptr().cast());
                _mm512_cvtph_ps(_mm256_set_m128i(hi, lo))
            }
        }
    }

    /// Starts one block's tile product in the given set of tiles (`$c` sums, `$a` tokens, `$w`
    /// weights): `$dp` the dot product (`tdpbssd` for signed weights, `tdpbsud` for unsigned).
    /// The sums stay in `$c` until [`store`] writes them out, so that the product runs while
    /// the previous block's sums are scaled.
    macro_rules! block_tiles {
        ($dp:literal, $c:literal, $a:literal, $w:literal, $ap:expr, $stride:expr, $wp:expr) => {
            asm!(
                concat!("tilezero ", $c),
                concat!("tileloadd ", $a, ", [{a} + {stride}*1]"),
                concat!("tileloadd ", $w, ", [{w} + {s}*1]"),
                concat!($dp, " ", $c, ", ", $a, ", ", $w),
                a = in(reg) $ap, stride = in(reg) $stride, w = in(reg) $wp,
                s = in(reg) 64usize,
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _,
                options(nostack, readonly),
            )
        };
    }

    /// Starts one block's tile products in set `set`: `a` the tokens' quants (16 rows, `stride`
    /// apart), `weights` the two groups' weights in the tile's layout; [`store`] with the same
    /// set reads the sums back. `SIGNED`: the weights are signed bytes (else unsigned).
    #[inline(always)]
    fn tiles<const SIGNED: bool>(set: usize, a: &[i8], stride: usize, weights: &[u8]) {
        assert!(a.len() >= 15 * stride + QK && weights.len() >= 8 * 64);
        let (ap, wp) = (a.as_ptr(), weights.as_ptr());
        // SAFETY: 16 rows of 32 bytes `stride` apart inside `a` (checked above), 8 rows of 64
        // bytes in `weights`.
        unsafe {
            match (SIGNED, set) {
                (true, 0) => block_tiles!("tdpbssd", "tmm0", "tmm1", "tmm2", ap, stride, wp),
                (true, _) => block_tiles!("tdpbssd", "tmm3", "tmm4", "tmm5", ap, stride, wp),
                (false, 0) => block_tiles!("tdpbsud", "tmm0", "tmm1", "tmm2", ap, stride, wp),
                (false, _) => block_tiles!("tdpbsud", "tmm3", "tmm4", "tmm5", ap, stride, wp),
            }
        }
    }

    /// Writes set `set`'s sums (started by [`tiles`]) to `sums`, a token per 64 bytes.
    #[inline(always)]
    fn store(set: usize, sums: &mut [i32; TOKENS * 2 * GROUP]) {
        let sums = sums.as_mut_ptr();
        // SAFETY: 16 rows of 64 bytes in `sums`.
        unsafe {
            if set == 0 {
                asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) sums, s = in(reg) 64usize,
                    options(nostack))
            } else {
                asm!("tilestored [{p} + {s}*1], tmm3", p = in(reg) sums, s = in(reg) 64usize,
                    options(nostack))
            }
        }
    }

    /// Adds one block's scaled sums to the sixteen tokens' results: `acc = fma(dw · d_a, isum,
    /// acc)`, as every kernel does; `da` the tokens' scales of the block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
    fn scale_add(
        acc: &mut [__m512; TOKENS],
        sums: &[i32; TOKENS * 2 * GROUP],
        dw: __m512,
        da: &[f32; TOKENS],
    ) {
        for k in 0..TOKENS {
            // SAFETY: token k's 16 sums, inside `sums`.
            let isum = unsafe { _mm512_loadu_si512(sums.as_ptr().add(16 * k).cast()) };
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(da[k]));
            acc[k] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(isum), acc[k]);
        }
    }

    /// The sixteen tokens' entries of block `b` in `tile_d` or `tile_s`.
    #[inline(always)]
    fn of_block(v: &[f32], nb: usize, t0: usize, b: usize) -> &[f32; TOKENS] {
        let at = (t0 / TOKENS * nb + b) * TOKENS;
        v[at..at + TOKENS].try_into().expect("sixteen tokens")
    }

    /// Two row groups' weights (one group twice for a lone last group).
    #[derive(Clone, Copy)]
    struct Pair<'a> {
        ty: WeightType,
        a: &'a [u8],
        b: &'a [u8],
    }

    impl Pair<'_> {
        /// Block `b` of both groups in the tiles' layout (512 bytes at `dst`): Q8_0, row j the
        /// slice j of both groups; 4-bit weights as bytes, row j < 4 the low nibbles of slice j
        /// of both groups, row j + 4 their high ones (elements 16 + 4j..).
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
        fn tile(self, b: usize, dst: &mut [u8]) {
            let (block, quants) = match self.ty {
                WeightType::Q4_1 => (GROUP * 20, 4 * GROUP),
                WeightType::Q4K => (GROUP * 24, 8 * GROUP),
                WeightType::Q8_0 | WeightType::Q6K => (GROUP * 34, 2 * GROUP),
            };
            let q = b * block + quants;
            // The same block of the next pair of groups (the two after these in memory), whole:
            // a pair ahead, the loads of its blocks have long arrived when they are used, where
            // a few blocks ahead they had not from memory (a 1536x576 matrix at 16 tokens from
            // memory, one thread: 0.111-0.121 ms a few blocks ahead, 0.080-0.098 a pair ahead).
            for g in [self.a, self.b] {
                // A prefetch never faults, whatever the address: past the matrix it asks for
                // nothing useful.
                let ahead = g.as_ptr().wrapping_add(2 * g.len() + b * block);
                for line in (0..block).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
                }
            }
            let (sa, sb, d) = (&self.a[q..q + 128], &self.b[q..q + 128], &mut dst[..512]);
            // SAFETY (every block below): loads of 32 bytes at 32j inside `sa` and `sb` (j < 4;
            // for Q8_0 the 256 bytes are checked below), stores of 64 at 64j (j < 8) inside `d`.
            if self.ty == WeightType::Q8_0 {
                let (sa, sb) = (&self.a[q..q + 256], &self.b[q..q + 256]);
                for j in 0..8 {
                    unsafe {
                        let lo = _mm256_loadu_si256(sa.as_ptr().add(32 * j).cast());
                        let hi = _mm256_loadu_si256(sb.as_ptr().add(32 * j).cast());
                        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                        _mm512_storeu_si512(d.as_mut_ptr().add(64 * j).cast(), v);
                    }
                }
                return;
            }
            let low = _mm512_set1_epi8(0x0f);
            for j in 0..4 {
                unsafe {
                    let lo = _mm256_loadu_si256(sa.as_ptr().add(32 * j).cast());
                    let hi = _mm256_loadu_si256(sb.as_ptr().add(32 * j).cast());
                    let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                    let nibbles = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                    _mm512_storeu_si512(
                        d.as_mut_ptr().add(64 * j).cast(),
                        _mm512_and_si512(v, low),
                    );
                    _mm512_storeu_si512(d.as_mut_ptr().add(64 * (j + 4)).cast(), nibbles);
                }
            }
        }

        /// All `nb` blocks, 512 bytes each.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
        fn tile_all(self, nb: usize, dst: &mut [u8]) {
            for b in 0..nb {
                self.tile(b, &mut dst[b * 512..(b + 1) * 512]);
            }
        }
    }

    /// Two groups' rows against tokens `t0..t0+16`: their weights tiled in `tiled`, all blocks
    /// (`whole`) or a ring of [`RING`] filled here. `SIGNED`: signed weights
    /// (Q8_0); `F32`: f32 scales (else f16); `MIN`: the blocks have minimums (the field after
    /// the scales), added in a second pass as every kernel adds them.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
    fn products<const SIGNED: bool, const F32: bool, const MIN: bool>(
        p: Pair<'_>,
        nb: usize,
        tiled: &mut [u8],
        whole: bool,
        acts: &QActs,
        t0: usize,
        sums: &mut Sums,
    ) -> [__m512; TOKENS] {
        let block = GROUP * p.ty.block_bytes();
        let (wa, wb) = (p.a, p.b);
        assert!(wa.len() == nb * block && wb.len() == nb * block);
        let slot = |b: usize| if whole { b * 512 } else { b % RING * 512 };
        let a = &acts.rows[t0 * acts.cols..];
        let mut acc = [_mm512_setzero_ps(); TOKENS];
        if !whole {
            for b in 0..nb.min(RING - 1) {
                p.tile(b, &mut tiled[slot(b)..slot(b) + 512]);
            }
        }
        tiles::<SIGNED>(0, a, acts.cols, &tiled[slot(0)..]);
        for b in 0..nb {
            store(b % 2, &mut sums.0[b % 2]);
            if b + 1 < nb {
                let w = &tiled[slot(b + 1)..];
                tiles::<SIGNED>((b + 1) % 2, &a[(b + 1) * QK..], acts.cols, w);
            }
            if !whole && b + RING - 1 < nb {
                let ahead = b + RING - 1;
                p.tile(ahead, &mut tiled[slot(ahead)..slot(ahead) + 512]);
            }
            let dw = scales16::<F32>(wa, wb, b * block);
            scale_add(
                &mut acc,
                &sums.0[b % 2],
                dw,
                of_block(&acts.tile_d, nb, t0, b),
            );
        }
        if !MIN {
            return acc;
        }
        let field = if F32 { 4 * GROUP } else { 2 * GROUP };
        let mut macc = [_mm512_setzero_ps(); TOKENS];
        for b in 0..nb {
            let mw = scales16::<F32>(wa, wb, b * block + field);
            let sa = of_block(&acts.tile_s, nb, t0, b);
            for k in 0..TOKENS {
                macc[k] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sa[k]), macc[k]);
            }
        }
        std::array::from_fn(|k| _mm512_add_ps(acc[k], macc[k]))
    }
}

/// `e^y`, branch-free so loops over it vectorize, and the same bits on every CPU (no libm):
/// y = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to r⁶ (relative error below 3e-7),
/// 2^n from the exponent bits. y is clamped to [-87, 88].
#[inline(always)]
pub fn exp(y: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let y = y.clamp(-87.0, 88.0);
    let z = y * std::f32::consts::LOG2_E + SHIFT;
    let n = z - SHIFT;
    // n as an integer, read from z's mantissa (no float-to-int conversion, no overflow check).
    let ni = (z.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let r = (y - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

/// Defines a function whose body is compiled three times: for the baseline CPU; with AVX2, FMA
/// and F16C enabled, so that plain loops in it vectorize 8 lanes wide; and with AVX-512 (F, BW,
/// DQ, VL) too, 16 lanes wide; the widest the CPU has is taken at run time. A body written
/// `avx2_only;` first gets no AVX-512 copy: attention's, which LLVM turns into gathers and
/// scatters with AVX-512 (a 512-token prompt took 1,280 ms against 300 ms with AVX2). Every copy
/// gives the same bits: Rust never fuses a multiply and an add by itself, and a body that fuses
/// them names a type parameter (`fn name<F>(…)`) and calls `F::fma`, which is the FMA instruction
/// in the SIMD copies and [`crate::fmath::fma`] (plain arithmetic, rounded once too) in the
/// baseline one.
macro_rules! multiversion {
    (@avx2 ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        if $crate::kernels::has_avx2() {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn avx2($($arg: $ty),*) -> _Ret {
                body::<$crate::fmath::Fused>($($arg),*)
            }
            #[allow(unsafe_code)]
            // SAFETY: `detected` checked at run time that the CPU has AVX2, FMA and F16C.
            return unsafe { avx2($($arg),*) };
        }
    };
    (@avx512 no, ($($arg:ident: $ty:ty),*)) => {};
    (@avx512 yes, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        if $crate::kernels::has_avx512() {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
            fn avx512($($arg: $ty),*) -> _Ret {
                body::<$crate::fmath::Fused>($($arg),*)
            }
            #[allow(unsafe_code)]
            // SAFETY: `has_avx512` checked at run time that the CPU has AVX2, FMA, F16C and
            // AVX-512 (F, BW, DQ, VL).
            return unsafe { avx512($($arg),*) };
        }
    };
    (@define $wide:ident $(#[$meta:meta])* $vis:vis fn $name:ident<$fma:ident>($($arg:ident: $ty:ty),*) -> $ret:ty, $body:block) => {
        $(#[$meta])*
        // The return type comes parenthesized (`()` where the definition has none).
        #[allow(unused_parens)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            type _Ret = $ret;
            #[inline(always)]
            fn body<$fma: $crate::fmath::Fma>($($arg: $ty),*) -> _Ret $body
            $crate::kernels::multiversion!(@avx512 $wide, ($($arg: $ty),*));
            $crate::kernels::multiversion!(@avx2 ($($arg: $ty),*));
            body::<$crate::fmath::Emulated>($($arg),*)
        }
    };
    (avx2_only; $(#[$meta:meta])* $vis:vis fn $name:ident<$fma:ident>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $crate::kernels::multiversion! {
            @define no $(#[$meta])* $vis fn $name<$fma>($($arg: $ty),*) -> ($($ret)?), $body
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$fma:ident>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $crate::kernels::multiversion! {
            @define yes $(#[$meta])* $vis fn $name<$fma>($($arg: $ty),*) -> ($($ret)?), $body
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $crate::kernels::multiversion! {
            $(#[$meta])* $vis fn $name<_NoFma>($($arg: $ty),*) $(-> $ret)? $body
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;
    use crate::quant::{quantize_q4_1, quantize_q4_k, quantize_q6_k, quantize_q8_0};

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::testing::random_f32(n, seed)
    }

    fn check(ty: WeightType) {
        // 13 tokens: three quads and a lone token (for the tile kernels, 16 less 3, their fewest
        // where the CPU has the wide kernels); 16 and 17 the tile kernels' edges (one tile,
        // weights tiled block by block; two, tiled at once); 37: two tiles of 16 and 5 more; 8,
        // 9 and 12 the wide kernels' (two quads; three, the last with one token; three), or the
        // tile kernels' fewest (8) where the CPU lacks AVX-512.
        for n in [13, 8, 16, 17, 37, 9, 12] {
            check_tokens(ty, n);
        }
    }

    fn check_tokens(ty: WeightType, n: usize) {
        let rows = 37;
        // K-quants' rows are whole super-blocks of 256.
        let cols = if matches!(ty, WeightType::Q4K | WeightType::Q6K) {
            512
        } else {
            192
        };
        let wf = data(rows * cols, 1);
        let (ggml, bytes) = match ty {
            WeightType::Q4_1 => (GgmlType::Q4_1, quantize_q4_1(&wf)),
            WeightType::Q8_0 => (GgmlType::Q8_0, quantize_q8_0(&wf)),
            WeightType::Q4K => (GgmlType::Q4_K, quantize_q4_k(&wf)),
            WeightType::Q6K => (GgmlType::Q6_K, quantize_q6_k(&wf)),
        };
        let w = QMatrix::from_gguf("w", ggml, &[cols as u64, rows as u64], bytes).unwrap();
        assert_eq!(w.ty, ty);
        let x = data(n * cols, 2);
        let mut acts = QActs::default();
        acts.quantize(&x, cols, ty);

        let mut portable = vec![0f32; n * rows];
        matmul_rows(Isa::Portable, &w, &acts, 0..rows, &mut portable);

        // Close to the float dot product of the dequantized weights and activations (the
        // minimum's term uses the activations' sum rounded through f16, hence the tolerance).
        let deq: Vec<f32> = (0..n)
            .flat_map(|t| {
                let acts = &acts;
                (0..cols / 32).flat_map(move |b| {
                    let (q, d, _) = acts.token_block(t, b);
                    q.map(|v| f32::from(v) * d)
                })
            })
            .collect();
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            w.dequantize_row(r, &mut row);
            for t in 0..n {
                let exact: f32 = row.iter().zip(&deq[t * cols..]).map(|(a, b)| a * b).sum();
                let got = portable[t * rows + r];
                assert!(
                    (exact - got).abs() < 0.01 + exact.abs() * 0.005,
                    "{ty:?} r{r} t{t}: {exact} vs {got}"
                );
            }
        }

        // A split over rows (as the pool splits them, a lone last group included) gives the same
        // bits as the whole.
        let split = |isa: Isa| {
            let mut split = vec![0f32; n * rows];
            for range in [0..16, 16..24, 24..rows] {
                let mut part = vec![0f32; n * range.len()];
                matmul_rows(isa, &w, &acts, range.clone(), &mut part);
                for t in 0..n {
                    split[t * rows + range.start..t * rows + range.end]
                        .copy_from_slice(&part[t * range.len()..(t + 1) * range.len()]);
                }
            }
            split
        };
        assert_eq!(split(Isa::Portable), portable);

        // The SIMD paths give the same bits as the portable one.
        if has_avx2() {
            let mut simd = vec![0f32; n * rows];
            matmul_rows(Isa::Avx2, &w, &acts, 0..rows, &mut simd);
            assert_eq!(simd, portable, "{ty:?}: AVX2 and portable kernels differ");
        } else {
            eprintln!("AVX2 not available: only the portable kernel was checked");
        }
        if has_vnni() {
            // The wide kernels, where the CPU has them, for their numbers of tokens.
            let mut simd = vec![0f32; n * rows];
            matmul_rows(Isa::Vnni, &w, &acts, 0..rows, &mut simd);
            assert_eq!(simd, portable, "{ty:?}: VNNI and portable kernels differ");
            assert_eq!(
                split(Isa::Vnni),
                portable,
                "{ty:?}: split VNNI kernels differ"
            );
        } else {
            eprintln!("AVX-512 VNNI not available: its kernel was not checked");
        }
        if detected() == Isa::Amx {
            let mut tiles = vec![0f32; n * rows];
            matmul_rows(Isa::Amx, &w, &acts, 0..rows, &mut tiles);
            assert_eq!(
                tiles, portable,
                "{ty:?}: tile and portable kernels differ ({n} tokens)"
            );
            assert_eq!(
                split(Isa::Amx),
                portable,
                "{ty:?}: split tile kernels differ"
            );
        } else {
            eprintln!("AMX not available (or not granted): the tile kernels were not checked");
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

    /// Activations holding a NaN or an infinity: every kernel gives what the portable one gives
    /// (NaN where it gives NaN, the same bits elsewhere), however many tokens (the wide kernels'
    /// offset sums included).
    #[test]
    fn kernels_agree_on_activations_that_are_not_finite() {
        for ty in [WeightType::Q4_1, WeightType::Q8_0] {
            let (rows, cols) = (37, 192);
            let wf = data(rows * cols, 1);
            let (ggml, bytes) = match ty {
                WeightType::Q4_1 => (GgmlType::Q4_1, quantize_q4_1(&wf)),
                _ => (GgmlType::Q8_0, quantize_q8_0(&wf)),
            };
            let w = QMatrix::from_gguf("w", ggml, &[cols as u64, rows as u64], bytes).unwrap();
            for n in [1, 8, 9, 12, 16] {
                let mut x = data(n * cols, 2);
                x[3] = f32::NAN;
                x[(n - 1) * cols + 40] = f32::INFINITY;
                x[(n / 2) * cols + 100] = f32::NEG_INFINITY;
                let mut acts = QActs::default();
                acts.quantize(&x, cols, ty);
                let run = |isa: Isa| {
                    let mut out = vec![0f32; n * rows];
                    matmul_rows(isa, &w, &acts, 0..rows, &mut out);
                    // NaNs alike whatever their payload.
                    out.iter()
                        .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
                        .collect::<Vec<_>>()
                };
                let portable = run(Isa::Portable);
                assert!(
                    portable.contains(&u32::MAX),
                    "{ty:?} {n}: some result is NaN"
                );
                for isa in [Isa::Avx2, Isa::Vnni, Isa::Amx] {
                    if isa == Isa::Avx2 && !has_avx2()
                        || isa == Isa::Vnni && !has_vnni()
                        || isa == Isa::Amx && detected() != Isa::Amx
                    {
                        continue;
                    }
                    assert_eq!(run(isa), portable, "{ty:?} {n} tokens, {isa:?}");
                }
            }
        }
    }

    #[test]
    fn q4_k_kernels_agree_bit_for_bit_and_with_floats() {
        check(WeightType::Q4K);
    }

    #[test]
    fn q6_k_kernels_agree_bit_for_bit_and_with_floats() {
        check(WeightType::Q6K);
    }
}

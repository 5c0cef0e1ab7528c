//! Grouped-query attention over the KV cache, in blocks of rows, scores and values.

use super::*;
use crate::fmath::Fma;

impl Llama {
    /// Causal attention of `n` new tokens (at positions `pos0..pos0+n`) over the cache: one token's
    /// heads in parallel, or runs of a batch's tokens in parallel.
    pub(super) fn attention(&self, q: &[f32], cache: &KvCache, li: usize, out: &mut [f32]) {
        let cfg = &self.config;
        let (hd, n_head) = (cfg.head_dim, cfg.n_head);
        let pos0 = cache.len;
        let group = n_head / cfg.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        if q.len() == n_head * hd {
            // One token: its key/value heads in parallel, each with the query heads that share it
            // stacked, so its keys and values are read once.
            let g = group * hd;
            out.par_chunks_mut(g).enumerate().for_each(|(kvh, out_g)| {
                let mut scores = Vec::new();
                let (keys, values) = cache.head(li, kvh);
                attend(
                    &q[kvh * g..(kvh + 1) * g],
                    keys,
                    values,
                    pos0 + 1,
                    group,
                    scale,
                    out_g,
                    &mut scores,
                    hd,
                );
            });
            return;
        }
        // A batch: runs of tokens in parallel, every head of a token in one task.
        let d = n_head * hd;
        let tokens = q.len() / d;
        // Later tokens attend to more positions: small runs, so the threads end together.
        let per_task = tokens.div_ceil(self.threads() * 16).max(1);
        out.par_chunks_mut(d * per_task)
            .enumerate()
            .for_each(|(c, out_c)| {
                let mut scores = Vec::new();
                let (mut q2, mut out2) = (vec![0f32; 2 * group * hd], vec![0f32; 2 * group * hd]);
                let t0 = c * per_task;
                let mut i = 0;
                let in_chunk = out_c.len() / d;
                while i < in_chunk {
                    let t = t0 + i;
                    // Two tokens at a time where there are two: their query heads of one key/value
                    // head stacked, so each key and value is read once for both.
                    let pair = i + 1 < in_chunk;
                    let tokens = if pair { 2 } else { 1 };
                    for kvh in 0..cfg.n_head_kv {
                        let g = group * hd;
                        for k in 0..tokens {
                            q2[k * g..(k + 1) * g]
                                .copy_from_slice(&q[(t + k) * d + kvh * g..][..g]);
                        }
                        let (keys, values) = cache.head(li, kvh);
                        attend(
                            &q2[..tokens * g],
                            keys,
                            values,
                            pos0 + t + 1,
                            group,
                            scale,
                            &mut out2[..tokens * g],
                            &mut scores,
                            hd,
                        );
                        for k in 0..tokens {
                            out_c[(i + k) * d + kvh * g..][..g]
                                .copy_from_slice(&out2[k * g..(k + 1) * g]);
                        }
                    }
                    i += tokens;
                }
            });
    }
}

crate::kernels::multiversion! {
    avx2_only;
    /// Query rows that share one key/value head (`q` and `out`: rows of `hd`), over the cached
    /// positions: softmax(q·k · scale) · v. Rows come `per_token` at a time from consecutive
    /// tokens: row r sees the first `span + r / per_token` positions. `keys` and `values` are the
    /// head's, as [`KvCache::head`] lays them out (f16 bits). Each row's arithmetic is the same
    /// whether it runs alone or with others (the same operations in the same order); rows
    /// together read each key and value once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attend<F>(
        q: &[f32],
        keys: &[u16],
        values: &[u16],
        span: usize,
        per_token: usize,
        scale: f32,
        out: &mut [f32],
        scores: &mut Vec<f32>,
        hd: usize,
    ) {
        let rows = q.len() / hd;
        let span_of = |r: usize| span + r / per_token;
        let last = span_of(rows - 1);
        // Rows of whole blocks; what lies past a row's span is computed and never used.
        let stride = last.next_multiple_of(SCORE_BLOCK);
        assert!(
            stride * hd <= keys.len() && last * hd <= values.len(),
            "attention: the cache holds fewer positions than asked for"
        );
        // The keys are read block after block, the values after the scores: all on their way.
        crate::kernels::prefetch(&keys[..stride * hd]);
        crate::kernels::prefetch(&values[..last * hd]);
        scores.clear();
        scores.resize(rows * stride, 0.0);
        // Up to six rows at a time, so a block of accumulators stays in registers.
        for r0 in (0..rows).step_by(ROW_BLOCK) {
            let n = (rows - r0).min(ROW_BLOCK);
            let q_r = &q[r0 * hd..(r0 + n) * hd];
            let s_r = &mut scores[r0 * stride..(r0 + n) * stride];
            match n {
                6 => scores_block::<F, 6, 16>(q_r, keys, stride, hd, s_r),
                5 => scores_block::<F, 5, 16>(q_r, keys, stride, hd, s_r),
                4 => scores_block::<F, 4, 16>(q_r, keys, stride, hd, s_r),
                3 => scores_block::<F, 3, 32>(q_r, keys, stride, hd, s_r),
                2 => scores_block::<F, 2, 32>(q_r, keys, stride, hd, s_r),
                _ => scores_block::<F, 1, 64>(q_r, keys, stride, hd, s_r),
            }
        }
        let mut sums = [0f32; ROW_BLOCK];
        for (r0, block) in (0..rows).step_by(ROW_BLOCK).zip(scores.chunks_mut(ROW_BLOCK * stride)) {
            for (r, row) in block.chunks_exact_mut(stride).enumerate() {
                let row = &mut row[..span_of(r0 + r)];
                for s in row.iter_mut() {
                    *s *= scale;
                }
                let max = max_of(row);
                for s in row.iter_mut() {
                    *s = exp(*s - max);
                }
            }
            // Each row's sum in position order: the rows side by side, so the additions of one
            // row do not wait on each other.
            let n = block.len() / stride;
            let sums = &mut sums[..n];
            let common = span_of(r0);
            match n {
                6 => sum_rows::<6>(block, stride, common, sums),
                5 => sum_rows::<5>(block, stride, common, sums),
                4 => sum_rows::<4>(block, stride, common, sums),
                3 => sum_rows::<3>(block, stride, common, sums),
                2 => sum_rows::<2>(block, stride, common, sums),
                _ => sum_rows::<1>(block, stride, common, sums),
            }
            for (r, sum) in sums.iter_mut().enumerate() {
                for p in common..span_of(r0 + r) {
                    *sum += block[r * stride + p];
                }
            }
            // Each weight divided as `w · (1 / sum)`.
            for (r, row) in block.chunks_exact_mut(stride).enumerate() {
                let inv = 1.0 / sums[r];
                for s in row[..span_of(r0 + r)].iter_mut() {
                    *s *= inv;
                }
            }
        }
        for r0 in (0..rows).step_by(ROW_BLOCK) {
            let n = (rows - r0).min(ROW_BLOCK);
            let w_r = &scores[r0 * stride..(r0 + n) * stride];
            let o_r = &mut out[r0 * hd..(r0 + n) * hd];
            // The positions every row of the block sees, together; then each row's last ones.
            let common = span_of(r0);
            match n {
                6 => values_block::<F, 6, 16>(w_r, stride, values, common, hd, o_r),
                5 => values_block::<F, 5, 16>(w_r, stride, values, common, hd, o_r),
                4 => values_block::<F, 4, 16>(w_r, stride, values, common, hd, o_r),
                3 => values_block::<F, 3, 32>(w_r, stride, values, common, hd, o_r),
                2 => values_block::<F, 2, 32>(w_r, stride, values, common, hd, o_r),
                _ => values_block::<F, 1, 64>(w_r, stride, values, common, hd, o_r),
            }
            for r in 0..n {
                let o = &mut o_r[r * hd..(r + 1) * hd];
                for p in common..span_of(r0 + r) {
                    let wp = w_r[r * stride + p];
                    for (a, &x) in o.iter_mut().zip(&values[p * hd..][..hd]) {
                        *a += wp * from_f16(x);
                    }
                }
            }
        }
    }
}

/// The largest of `row` (NaNs ignored, as `f32::max` ignores them), sixteen lanes at a time: a
/// maximum does not depend on the order. Where the largest is zero its sign may differ from a
/// scan's, which changes no `s - max` but that of `s = -0.0` (to `±0`, whose `exp` is 1 alike).
#[inline(always)]
fn max_of(row: &[f32]) -> f32 {
    let (chunks, rest) = row.as_chunks::<16>();
    let mut lanes = [f32::NEG_INFINITY; 16];
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    rest.iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `sums[r] = Σ_p rows[r][p]` over `p < len` in order, for `R` rows `stride` apart.
#[inline(always)]
pub(super) fn sum_rows<const R: usize>(rows: &[f32], stride: usize, len: usize, sums: &mut [f32]) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &rows[r * stride..r * stride + len]);
    let mut acc = [0f32; R];
    for p in 0..len {
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a += row[p];
        }
    }
    sums.copy_from_slice(&acc);
}

/// Query rows whose attention runs together (see `attend`): two tokens' three heads per key/value
/// head for SmolLM2.
pub(super) const ROW_BLOCK: usize = 6;
/// Positions per block of attention scores held in registers.
pub(super) const SCORE_BLOCK: usize = 16;
/// Head dimensions per block of attention outputs held in registers.
pub(super) const VALUE_BLOCK: usize = 16;

/// Scores of `R` query heads (`q`: `R` rows of `hd`) for positions `0..stride` (a multiple of
/// [`SCORE_BLOCK`]): `s[r][p] = Σ_d q[r][d] · k[d][p]`, over `d` in order (multiply, then add).
/// The keys come in blocks of [`SCORE_BLOCK`] positions, each `hd` rows of its positions' keys.
/// Positions run `W` at a time where they can (then [`SCORE_BLOCK`] at a time): with few rows, a
/// wider block gives the additions independent chains to overlap. Each score's arithmetic is the
/// same whatever the width.
#[inline(always)]
pub(super) fn scores_block<F: Fma, const R: usize, const W: usize>(
    q: &[f32],
    keys: &[u16],
    stride: usize,
    hd: usize,
    s: &mut [f32],
) {
    // The queries transposed: for each key dimension, the R heads' values side by side.
    let mut qt = vec![[0f32; R]; hd];
    for (d, col) in qt.iter_mut().enumerate() {
        for (r, x) in col.iter_mut().enumerate() {
            *x = q[r * hd + d];
        }
    }
    let mut p0 = 0;
    while p0 + W <= stride {
        scores_at::<F, R, W>(&qt, keys, hd, p0, stride, s);
        p0 += W;
    }
    while p0 < stride {
        scores_at::<F, R, SCORE_BLOCK>(&qt, keys, hd, p0, stride, s);
        p0 += SCORE_BLOCK;
    }
}

/// [`scores_block`]'s positions `p0..p0 + W`.
#[inline(always)]
fn scores_at<F: Fma, const R: usize, const W: usize>(
    qt: &[[f32; R]],
    keys: &[u16],
    hd: usize,
    p0: usize,
    stride: usize,
    s: &mut [f32],
) {
    const B: usize = SCORE_BLOCK;
    // The blocks of keys these positions lie in.
    let keys = &keys[p0 * hd..(p0 + W) * hd];
    let mut acc = [[0f32; W]; R];
    for (d, q_d) in qt.iter().enumerate() {
        let mut k = [0f32; W];
        for (k, block) in k
            .as_chunks_mut::<B>()
            .0
            .iter_mut()
            .zip(keys.chunks_exact(B * hd))
        {
            *k = F::widen(
                block[d * B..][..B]
                    .try_into()
                    .expect("a block's row of keys"),
            );
        }
        for (acc_r, &qd) in acc.iter_mut().zip(q_d) {
            for (a, k) in acc_r.iter_mut().zip(&k) {
                *a += qd * k;
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        s[r * stride + p0..][..W].copy_from_slice(acc_r);
    }
}

/// `out[r][j] = Σ_p w[r][p] · v[p][j]` for `R` heads (weights in rows `stride` apart; `values` a
/// position per row of `hd`), over the first `span` positions in order (multiply, then add), in register blocks of `W` head dimensions
/// where they fit (then [`VALUE_BLOCK`], then one at a time). Each output's arithmetic is the same
/// whatever the width.
#[inline(always)]
pub(super) fn values_block<F: Fma, const R: usize, const W: usize>(
    w: &[f32],
    stride: usize,
    values: &[u16],
    span: usize,
    hd: usize,
    out: &mut [f32],
) {
    // The weights transposed: for each position, the R heads' weights side by side.
    let mut wt = vec![[0f32; R]; span];
    for (p, ws) in wt.iter_mut().enumerate() {
        for (r, x) in ws.iter_mut().enumerate() {
            *x = w[r * stride + p];
        }
    }
    let mut j0 = 0;
    while j0 + W <= hd {
        values_at::<F, R, W>(&wt, values, hd, j0, out);
        j0 += W;
    }
    while j0 + VALUE_BLOCK <= hd {
        values_at::<F, R, VALUE_BLOCK>(&wt, values, hd, j0, out);
        j0 += VALUE_BLOCK;
    }
    let n = hd - j0;
    if n > 0 {
        for r in 0..R {
            let o = &mut out[r * hd + j0..][..n];
            o.fill(0.0);
            for p in 0..span {
                let wp = w[r * stride + p];
                for (a, &x) in o.iter_mut().zip(&values[p * hd + j0..][..n]) {
                    *a += wp * from_f16(x);
                }
            }
        }
    }
}

/// [`values_block`]'s head dimensions `j0..j0 + W`.
#[inline(always)]
fn values_at<F: Fma, const R: usize, const W: usize>(
    wt: &[[f32; R]],
    values: &[u16],
    hd: usize,
    j0: usize,
    out: &mut [f32],
) {
    let mut acc = [[0f32; W]; R];
    for (ws, row) in wt.iter().zip(values.chunks_exact(hd)) {
        let v: &[u16; W] = row[j0..j0 + W].try_into().expect("a block of values");
        let v = F::widen(v);
        for (acc_r, &wp) in acc.iter_mut().zip(ws) {
            for (a, x) in acc_r.iter_mut().zip(&v) {
                *a += wp * x;
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        out[r * hd + j0..][..W].copy_from_slice(acc_r);
    }
}

//! A llama-architecture transformer over quantized weights (GGUF): RMSNorm, rotary position embedding
//! (interleaved pairs, as GGUF stores llama weights), grouped-query attention with an f32 KV cache,
//! SwiGLU feed-forward, and an output layer (tied to the token embedding when the file has none).
//!
//! Determinism: every output element is computed start to finish by one thread in a fixed order, so
//! results do not depend on the thread count; a batch of tokens gives bit-for-bit the logits that
//! feeding the same tokens one at a time gives, which is what teacher-forced scoring relies on.

use std::ops::Range;
use std::path::Path;

use rayon::prelude::*;

use crate::Error;
use crate::fmath;
use crate::gguf::{GgmlType, Gguf};
use crate::kernels::{self, Isa, exp};
use crate::quant::{QActs, QMatrix};

/// Shape and constants of a llama model, from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
}

impl LlamaConfig {
    fn from_gguf(g: &Gguf) -> Result<Self, Error> {
        let arch = g.str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::BadModel(format!(
                "architecture {arch} is not supported (llama)"
            )));
        }
        let n_embd = g.u64("llama.embedding_length")? as usize;
        let n_head = g.u64("llama.attention.head_count")? as usize;
        let n_head_kv = match g.metadata.get("llama.attention.head_count_kv") {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| Error::BadModel("head_count_kv is not an integer".into()))?
                as usize,
            None => n_head,
        };
        let vocab = g
            .info("token_embd.weight")?
            .dims
            .get(1)
            .copied()
            .unwrap_or(0) as usize;
        let cfg = Self {
            n_layer: g.u64("llama.block_count")? as usize,
            n_embd,
            n_ff: g.u64("llama.feed_forward_length")? as usize,
            n_head,
            n_head_kv,
            head_dim: n_embd.checked_div(n_head).unwrap_or(0),
            vocab,
            context: g.u64("llama.context_length")? as usize,
            rope_base: match g.metadata.get("llama.rope.freq_base") {
                Some(v) => v
                    .as_f32()
                    .ok_or_else(|| Error::BadModel("rope.freq_base is not a float".into()))?,
                None => 10_000.0,
            },
            rms_eps: g.f32("llama.attention.layer_norm_rms_epsilon")?,
        };
        let ok = cfg.n_layer > 0
            && cfg.n_head > 0
            && cfg.n_head_kv > 0
            && cfg.n_head.is_multiple_of(cfg.n_head_kv)
            && cfg.head_dim * cfg.n_head == cfg.n_embd
            && cfg.head_dim.is_multiple_of(2)
            && cfg.vocab > 0
            && cfg.context > 0;
        if !ok {
            return Err(Error::BadModel(format!(
                "inconsistent llama shape: {cfg:?}"
            )));
        }
        // The rotary angles (see `fmath`): a positive base, positions below the largest angle.
        if !(cfg.rope_base.is_finite() && cfg.rope_base >= f32::MIN_POSITIVE) {
            return Err(Error::BadModel(format!(
                "rope.freq_base is {}: a positive number expected",
                cfg.rope_base
            )));
        }
        if cfg.context as f64 >= f64::from(fmath::MAX_ANGLE) {
            return Err(Error::BadModel(format!(
                "a context of {} tokens is beyond what this runtime supports (2^20)",
                cfg.context
            )));
        }
        Ok(cfg)
    }

    fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// A loaded llama model. Load once, share (`Send + Sync`), and run many [`KvCache`] sessions on it.
#[derive(Debug)]
pub struct Llama {
    pub config: LlamaConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    /// `None`: the output layer is the token embedding (tied weights).
    output: Option<QMatrix>,
    pool: rayon::ThreadPool,
    isa: Isa,
}

/// The keys and values of the tokens seen so far by one sequence. Keys are kept transposed (per layer:
/// for each key dimension, a row of positions, `cap` long), so attention scores for many positions come
/// from whole-row multiply-adds; values are kept a position per row.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    cap: usize,
}

impl KvCache {
    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of the first `len` positions (at most all of them), to reuse a common prefix in
    /// another sequence.
    pub fn prefix(&self, len: usize) -> KvCache {
        let len = len.min(self.len);
        let mut out = KvCache {
            k: vec![Vec::new(); self.k.len()],
            v: vec![Vec::new(); self.v.len()],
            len: 0,
            cap: 0,
        };
        let Some(kv_dim) = self.v.first().and_then(|v| v.len().checked_div(self.len)) else {
            return out;
        };
        if len == 0 {
            return out;
        }
        out.reserve(len, kv_dim);
        for (dst, src) in out.k.iter_mut().zip(&self.k) {
            for (d, s) in dst
                .chunks_exact_mut(out.cap)
                .zip(src.chunks_exact(self.cap))
            {
                d[..len].copy_from_slice(&s[..len]);
            }
        }
        for (dst, src) in out.v.iter_mut().zip(&self.v) {
            dst.extend_from_slice(&src[..len * kv_dim]);
        }
        out.len = len;
        out
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.capacity() * 4).sum()
    }

    /// Makes room for `positions` keys per row, keeping what is there (capacity doubles).
    fn reserve(&mut self, positions: usize, kv_dim: usize) {
        if positions <= self.cap {
            return;
        }
        // A whole number of score blocks, so a block that starts inside the span can be read whole.
        let cap = positions
            .max(self.cap * 2)
            .max(64)
            .next_multiple_of(SCORE_BLOCK);
        for layer in self.k.iter_mut() {
            let mut grown = vec![0f32; kv_dim * cap];
            for r in 0..kv_dim {
                grown[r * cap..r * cap + self.len]
                    .copy_from_slice(&layer[r * self.cap..r * self.cap + self.len]);
            }
            *layer = grown;
        }
        self.cap = cap;
    }

    /// Writes the keys of `n` new tokens (rows of `kv_dim`) at positions `len..len+n` of layer `li`.
    fn put_keys(&mut self, li: usize, keys: &[f32], kv_dim: usize) {
        let cap = self.cap;
        let layer = &mut self.k[li];
        for (t, row) in keys.chunks_exact(kv_dim).enumerate() {
            for (r, &x) in row.iter().enumerate() {
                layer[r * cap + self.len + t] = x;
            }
        }
    }
}

fn read_f32(g: &Gguf, name: &str, len: usize) -> Result<Vec<f32>, Error> {
    let (info, bytes) = g.read(name)?;
    if info.ty != GgmlType::F32 || info.elements() != len as u64 {
        return Err(Error::BadModel(format!(
            "tensor {name} is {:?} {:?}; F32 [{len}] expected",
            info.ty, info.dims
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn read_matrix(g: &Gguf, name: &str, cols: usize, rows: usize) -> Result<QMatrix, Error> {
    let (info, bytes) = g.read(name)?;
    let m = QMatrix::from_gguf(name, info.ty, &info.dims, bytes)?;
    if m.cols != cols || m.rows != rows {
        return Err(Error::BadModel(format!(
            "tensor {name} is {}x{}; {rows}x{cols} expected",
            m.rows, m.cols
        )));
    }
    Ok(m)
}

impl Llama {
    /// Loads a llama GGUF and starts a pool of `threads` threads for it.
    pub fn load(path: &Path, threads: usize) -> Result<Self, Error> {
        let g = Gguf::open(path)?;
        let cfg = LlamaConfig::from_gguf(&g)?;
        let (d, kv, ff) = (cfg.n_embd, cfg.kv_dim(), cfg.n_ff);
        let embed = read_matrix(&g, "token_embd.weight", d, cfg.vocab)?;
        let output = match g.tensors.contains_key("output.weight") {
            true => Some(read_matrix(&g, "output.weight", d, cfg.vocab)?),
            false => None,
        };
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: read_f32(&g, &n("attn_norm"), d)?,
                    wq: read_matrix(&g, &n("attn_q"), d, d)?,
                    wk: read_matrix(&g, &n("attn_k"), d, kv)?,
                    wv: read_matrix(&g, &n("attn_v"), d, kv)?,
                    wo: read_matrix(&g, &n("attn_output"), d, d)?,
                    ffn_norm: read_f32(&g, &n("ffn_norm"), d)?,
                    gate: read_matrix(&g, &n("ffn_gate"), d, ff)?,
                    up: read_matrix(&g, &n("ffn_up"), d, ff)?,
                    down: read_matrix(&g, &n("ffn_down"), ff, d)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let out_norm = read_f32(&g, "output_norm.weight", d)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("agora-infer-{i}"))
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start inference threads: {e}")))?;
        Ok(Self {
            config: cfg,
            embed,
            layers,
            out_norm,
            output,
            pool,
            isa: kernels::detected(),
        })
    }

    /// Uses the portable kernels even where SIMD ones exist (for tests: both give the same bits).
    pub fn force_portable_kernels(&mut self) {
        self.isa = Isa::Portable;
    }

    /// Runs `f` on this model's thread pool (rayon's parallel iterators inside it use that pool).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let m = |q: &QMatrix| q.data.len();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                m(&l.wq)
                    + m(&l.wk)
                    + m(&l.wv)
                    + m(&l.wo)
                    + m(&l.gate)
                    + m(&l.up)
                    + m(&l.down)
                    + 4 * (l.attn_norm.len() + l.ffn_norm.len())
            })
            .sum();
        layers + m(&self.embed) + self.output.as_ref().map_or(0, m) + 4 * self.out_norm.len()
    }

    pub fn new_cache(&self) -> KvCache {
        let n = self.config.n_layer;
        KvCache {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            len: 0,
            cap: 0,
        }
    }

    /// Runs `tokens` after what `cache` holds, appends them to the cache, and returns the logits of the
    /// tokens whose indices (within `tokens`) are in `logits_for`, one `vocab`-long row each.
    pub fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits_for: Range<usize>,
    ) -> Result<Vec<f32>, Error> {
        let mut logits = Vec::new();
        self.forward_into(cache, tokens, logits_for, &mut logits)?;
        Ok(logits)
    }

    /// [`Llama::forward`] writing the logits into `logits` (resized to fit), so that a caller running
    /// many passes reuses one buffer.
    pub fn forward_into(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits_for: Range<usize>,
        logits: &mut Vec<f32>,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        logits.clear();
        if tokens.is_empty() {
            return Ok(());
        }
        if logits_for.end > tokens.len() || logits_for.start > logits_for.end {
            return Err(Error::Runtime(
                "logits requested for tokens outside the batch".into(),
            ));
        }
        if cache.len + tokens.len() > cfg.context {
            return Err(Error::ContextOverflow {
                tokens: cache.len + tokens.len(),
                context: cfg.context,
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= cfg.vocab) {
            return Err(Error::BadRequest(format!(
                "token id {t} is outside the vocabulary ({})",
                cfg.vocab
            )));
        }
        if cache.k.len() != cfg.n_layer {
            *cache = self.new_cache();
        }
        self.pool
            .install(|| self.forward_inner(cache, tokens, logits_for, logits));
        Ok(())
    }

    fn forward_inner(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits_for: Range<usize>,
        logits: &mut Vec<f32>,
    ) {
        let cfg = &self.config;
        let (n, d, kv_dim) = (tokens.len(), cfg.n_embd, cfg.kv_dim());
        let pos0 = cache.len;
        cache.reserve(pos0 + n, kv_dim);

        let mut x = vec![0f32; n * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            self.embed.dequantize_row(t as usize, row);
        }
        let mut h = vec![0f32; n * d];
        let mut acts = QActs::default();
        let mut q = vec![0f32; n * d];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut attn = vec![0f32; n * d];
        let mut o = vec![0f32; n * d];
        let mut gate = vec![0f32; n * cfg.n_ff];
        let mut up = vec![0f32; n * cfg.n_ff];
        let mut down = vec![0f32; n * d];

        // Steps that work token by token run over runs of tokens in parallel for a batch.
        let rows_per_task = if n >= 8 {
            n.div_ceil(self.threads() * 2)
        } else {
            n
        };
        let rms_norm = |x: &[f32], w: &[f32], out: &mut [f32]| {
            x.par_chunks(rows_per_task * d)
                .zip(out.par_chunks_mut(rows_per_task * d))
                .for_each(|(x, out)| rms_norm(x, w, cfg.rms_eps, out));
        };
        let add = |x: &mut [f32], y: &[f32]| {
            x.par_chunks_mut(rows_per_task * d)
                .zip(y.par_chunks(rows_per_task * d))
                .for_each(|(x, y)| add_assign(x, y));
        };
        let rope = |x: &mut [f32], row_len: usize| {
            x.par_chunks_mut(rows_per_task * row_len)
                .enumerate()
                .for_each(|(i, x)| {
                    rope(
                        x,
                        row_len,
                        cfg.head_dim,
                        pos0 + i * rows_per_task,
                        cfg.rope_base,
                    )
                });
        };

        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, &mut h);
            acts.quantize(&h, d, layer.wq.ty);
            self.matmuls(
                &acts,
                &mut [
                    (&layer.wq, &mut q),
                    (&layer.wk, &mut k),
                    (&layer.wv, &mut v),
                ],
            );
            rope(&mut q, d);
            rope(&mut k, kv_dim);
            cache.put_keys(li, &k, kv_dim);
            cache.v[li].extend_from_slice(&v);
            self.attention(&q, &cache.k[li], cache.cap, &cache.v[li], pos0, &mut attn);
            acts.quantize(&attn, d, layer.wo.ty);
            self.matmuls(&acts, &mut [(&layer.wo, &mut o)]);
            add(&mut x, &o);

            rms_norm(&x, &layer.ffn_norm, &mut h);
            acts.quantize(&h, d, layer.gate.ty);
            self.matmuls(&acts, &mut [(&layer.gate, &mut gate), (&layer.up, &mut up)]);
            gate.par_chunks_mut(rows_per_task * cfg.n_ff)
                .zip(up.par_chunks(rows_per_task * cfg.n_ff))
                .for_each(|(g, u)| silu_mul(g, u));
            acts.quantize(&gate, cfg.n_ff, layer.down.ty);
            self.matmuls(&acts, &mut [(&layer.down, &mut down)]);
            add(&mut x, &down);
        }
        cache.len += n;

        let rows = &x[logits_for.start * d..logits_for.end * d];
        if rows.is_empty() {
            return;
        }
        let mut normed = vec![0f32; rows.len()];
        rms_norm(rows, &self.out_norm, &mut normed);
        let output = self.output.as_ref().unwrap_or(&self.embed);
        acts.quantize(&normed, d, output.ty);
        // Every element is written below: a reused buffer keeps its pages (no zeroing, no faults).
        logits.resize(logits_for.len() * cfg.vocab, 0.0);
        self.matmuls(&acts, &mut [(output, logits)]);
    }

    /// Runs several matmuls that share their input, split into row ranges over the pool (see
    /// [`kernels::matmuls`]: the split does not change a bit of the result).
    fn matmuls(&self, acts: &QActs, jobs: &mut [(&QMatrix, &mut Vec<f32>)]) {
        let mut jobs: Vec<(&QMatrix, &mut [f32])> = jobs
            .iter_mut()
            .map(|(m, out)| (*m, out.as_mut_slice()))
            .collect();
        kernels::matmuls(self.isa, acts, &mut jobs);
    }

    /// Causal attention of `n` new tokens (at positions `pos0..pos0+n`) over the cache: one token's
    /// heads in parallel, or runs of a batch's tokens in parallel.
    fn attention(
        &self,
        q: &[f32],
        kt: &[f32],
        cap: usize,
        vc: &[f32],
        pos0: usize,
        out: &mut [f32],
    ) {
        let cfg = &self.config;
        let (hd, n_head, kv_dim) = (cfg.head_dim, cfg.n_head, cfg.kv_dim());
        let group = n_head / cfg.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        if q.len() == n_head * hd {
            // One token: its heads in parallel.
            out.par_chunks_mut(hd)
                .enumerate()
                .for_each(|(head, out_h)| {
                    let mut scores = Vec::new();
                    let q_h = &q[head * hd..(head + 1) * hd];
                    attend(
                        q_h,
                        kt,
                        cap,
                        vc,
                        kv_dim,
                        (head / group) * hd,
                        pos0 + 1,
                        1,
                        scale,
                        out_h,
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
                        attend(
                            &q2[..tokens * g],
                            kt,
                            cap,
                            vc,
                            kv_dim,
                            kvh * hd,
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
    /// Query rows that share one key/value head (`q` and `out`: rows of `hd`), over the cached
    /// positions: softmax(q·k · scale) · v. Rows come `per_token` at a time from consecutive
    /// tokens: row r sees the first `span + r / per_token` positions. Key dimension `d` of the head
    /// is row `offset + d` of the transposed keys `kt` (rows `cap` long); a position's value starts
    /// at `p * kv_dim + offset`. Each row's arithmetic is the same whether it runs alone or with
    /// others (the same operations in the same order); rows together read each key and value once.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        q: &[f32],
        kt: &[f32],
        cap: usize,
        vc: &[f32],
        kv_dim: usize,
        offset: usize,
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
        assert!(stride <= cap, "attention: the key rows are not padded");
        scores.clear();
        scores.resize(rows * stride, 0.0);
        // Up to six rows at a time, so a block of accumulators stays in registers.
        for r0 in (0..rows).step_by(ROW_BLOCK) {
            let n = (rows - r0).min(ROW_BLOCK);
            let q_r = &q[r0 * hd..(r0 + n) * hd];
            let s_r = &mut scores[r0 * stride..(r0 + n) * stride];
            match n {
                6 => scores_block::<6>(q_r, kt, cap, offset, stride, hd, s_r),
                5 => scores_block::<5>(q_r, kt, cap, offset, stride, hd, s_r),
                4 => scores_block::<4>(q_r, kt, cap, offset, stride, hd, s_r),
                3 => scores_block::<3>(q_r, kt, cap, offset, stride, hd, s_r),
                2 => scores_block::<2>(q_r, kt, cap, offset, stride, hd, s_r),
                _ => scores_block::<1>(q_r, kt, cap, offset, stride, hd, s_r),
            }
        }
        let mut sums = [0f32; ROW_BLOCK];
        for (r0, block) in (0..rows).step_by(ROW_BLOCK).zip(scores.chunks_mut(ROW_BLOCK * stride)) {
            for (r, row) in block.chunks_exact_mut(stride).enumerate() {
                let row = &mut row[..span_of(r0 + r)];
                for s in row.iter_mut() {
                    *s *= scale;
                }
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
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
                6 => values_block::<6>(w_r, stride, vc, kv_dim, offset, common, hd, o_r),
                5 => values_block::<5>(w_r, stride, vc, kv_dim, offset, common, hd, o_r),
                4 => values_block::<4>(w_r, stride, vc, kv_dim, offset, common, hd, o_r),
                3 => values_block::<3>(w_r, stride, vc, kv_dim, offset, common, hd, o_r),
                2 => values_block::<2>(w_r, stride, vc, kv_dim, offset, common, hd, o_r),
                _ => values_block::<1>(w_r, stride, vc, kv_dim, offset, common, hd, o_r),
            }
            for r in 0..n {
                let o = &mut o_r[r * hd..(r + 1) * hd];
                for p in common..span_of(r0 + r) {
                    let wp = w_r[r * stride + p];
                    for (a, x) in o.iter_mut().zip(&vc[p * kv_dim + offset..][..hd]) {
                        *a += wp * x;
                    }
                }
            }
        }
    }
}

/// `sums[r] = Σ_p rows[r][p]` over `p < len` in order, for `R` rows `stride` apart.
#[inline(always)]
fn sum_rows<const R: usize>(rows: &[f32], stride: usize, len: usize, sums: &mut [f32]) {
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
const ROW_BLOCK: usize = 6;
/// Positions per block of attention scores held in registers.
const SCORE_BLOCK: usize = 16;
/// Head dimensions per block of attention outputs held in registers.
const VALUE_BLOCK: usize = 16;

/// Scores of `R` query heads (`q`: `R` rows of `hd`) for positions `0..stride` (a multiple of
/// [`SCORE_BLOCK`]): `s[r][p] = Σ_d q[r][d] · k[d][p]`, over `d` in order (multiply, then add).
#[inline(always)]
fn scores_block<const R: usize>(
    q: &[f32],
    kt: &[f32],
    cap: usize,
    offset: usize,
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
    let key_rows = &kt[offset * cap..(offset + hd) * cap];
    for p0 in (0..stride).step_by(SCORE_BLOCK) {
        let mut acc = [[0f32; SCORE_BLOCK]; R];
        for (q_d, row) in qt.iter().zip(key_rows.chunks_exact(cap)) {
            let keys: &[f32; SCORE_BLOCK] = row[p0..p0 + SCORE_BLOCK]
                .try_into()
                .expect("a block of keys");
            for (acc_r, &qd) in acc.iter_mut().zip(q_d) {
                for (a, k) in acc_r.iter_mut().zip(keys) {
                    *a += qd * k;
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            s[r * stride + p0..][..SCORE_BLOCK].copy_from_slice(acc_r);
        }
    }
}

/// `out[r][j] = Σ_p w[r][p] · v[p][j]` for `R` heads (weights in rows `stride` apart), over the
/// first `span` positions in order (multiply, then add), in register blocks of head dimensions.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn values_block<const R: usize>(
    w: &[f32],
    stride: usize,
    vc: &[f32],
    kv_dim: usize,
    offset: usize,
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
    while j0 < hd {
        let n = (hd - j0).min(VALUE_BLOCK);
        if n == VALUE_BLOCK {
            let mut acc = [[0f32; VALUE_BLOCK]; R];
            let col = offset + j0;
            for (ws, row) in wt.iter().zip(vc.chunks_exact(kv_dim)) {
                let v: &[f32; VALUE_BLOCK] = row[col..col + VALUE_BLOCK]
                    .try_into()
                    .expect("a block of values");
                for (acc_r, &wp) in acc.iter_mut().zip(ws) {
                    for (a, x) in acc_r.iter_mut().zip(v) {
                        *a += wp * x;
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                out[r * hd + j0..][..VALUE_BLOCK].copy_from_slice(acc_r);
            }
        } else {
            for r in 0..R {
                let o = &mut out[r * hd + j0..][..n];
                o.fill(0.0);
                for p in 0..span {
                    let wp = w[r * stride + p];
                    for (a, x) in o.iter_mut().zip(&vc[p * kv_dim + offset + j0..][..n]) {
                        *a += wp * x;
                    }
                }
            }
        }
        j0 += n;
    }
}

crate::kernels::multiversion! {
    /// `gate = silu(gate) · up`, with silu(x) = x / (1 + e^-x).
    fn silu_mul(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + exp(-*g)) * u;
        }
    }
}

crate::kernels::multiversion! {
    /// `x += y`.
    fn add_assign(x: &mut [f32], y: &[f32]) {
        for (a, b) in x.iter_mut().zip(y) {
            *a += b;
        }
    }
}

/// `out = x / rms(x) * weight`, per row; the sum of squares in f64 as llama.cpp does.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let sum: f64 = row.iter().map(|v| f64::from(v * v)).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
            *o = (v * scale) * w;
        }
    }
}

/// Rotary embedding on rows of `row_len` (one token each, whole heads), pairs `(2i, 2i+1)` of each
/// head rotated by `pos * base^(-2i/head_dim)`, the angle built by repeated multiplication as in llama.cpp.
fn rope(x: &mut [f32], row_len: usize, head_dim: usize, pos0: usize, base: f32) {
    // Angles from this crate's own functions: the same bits on every machine (see `fmath`).
    let theta_scale = fmath::powf(base, -2.0 / head_dim as f32);
    let mut cos_sin = vec![(0f32, 0f32); head_dim / 2];
    for (t, row) in x.chunks_exact_mut(row_len).enumerate() {
        let mut theta = (pos0 + t) as f32;
        for cs in cos_sin.iter_mut() {
            let (sin, cos) = fmath::sin_cos(theta);
            *cs = (cos, sin);
            theta *= theta_scale;
        }
        for head in row.chunks_exact_mut(head_dim) {
            for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(&cos_sin) {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * c - x1 * s;
                pair[1] = x0 * s + x1 * c;
            }
        }
    }
}

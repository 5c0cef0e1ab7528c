//! A llama-architecture transformer over quantized weights (GGUF): RMSNorm, rotary position embedding
//! (interleaved pairs, as GGUF stores llama weights), grouped-query attention with an f16 KV cache,
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
use crate::quant::{QActs, QMatrix, WeightType};

mod attention;
mod cache;
mod config;
mod ops;
use crate::fmath::widen as from_f16;
use attention::*;
use config::*;
use ops::*;

/// The activations' format for matmuls that share them: with sums when any of the weights has a
/// minimum (a file may mix types, as Q4_K_M files mix Q4_K and Q6_K).
fn acts_for(weights: &[&QMatrix]) -> WeightType {
    if weights.iter().any(|w| w.ty.needs_sums()) {
        WeightType::Q4_1
    } else {
        WeightType::Q8_0
    }
}

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

/// One sequence's share of a batched pass ([`Llama::forward_batch`]).
#[derive(Debug)]
pub struct Step<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    /// The tokens (indices within `tokens`) whose logits are wanted.
    pub logits_for: Range<usize>,
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

/// The keys and values of the tokens seen so far by one sequence, in f16, room for `cap`
/// positions per layer (laid out as `cache.rs` says).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
    len: usize,
    cap: usize,
    kv_heads: usize,
    head_dim: usize,
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

    /// Keeps only the first `layers` transformer blocks (at least one): a cheaper, worse model
    /// with the same tokenizer and output head — what a model market's weaker miner serves. Its
    /// results are as deterministic as the whole model's.
    pub fn keep_layers(&mut self, layers: usize) {
        let keep = layers.clamp(1, self.config.n_layer);
        self.layers.truncate(keep);
        self.config.n_layer = keep;
    }

    /// Whether `cache` has this model's shape (a default or another model's cache is replaced).
    fn fits(&self, cache: &KvCache) -> bool {
        let cfg = &self.config;
        cache.k.len() == cfg.n_layer
            && cache.kv_heads == cfg.n_head_kv
            && cache.head_dim == cfg.head_dim
    }

    pub fn new_cache(&self) -> KvCache {
        let n = self.config.n_layer;
        KvCache {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            len: 0,
            cap: 0,
            kv_heads: self.config.n_head_kv,
            head_dim: self.config.head_dim,
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
        self.forward_batch(
            &mut [Step {
                cache,
                tokens,
                logits_for,
            }],
            logits,
        )
    }

    /// One pass over several sequences together (continuous batching): every step's tokens run
    /// after what its cache holds and are appended to it; `logits` receives, step after step, the
    /// rows each step asked for. The weights are read once for the whole batch. Each sequence
    /// gets, bit for bit, what [`Llama::forward`] gives it alone: rows of a matmul never mix, and
    /// attention runs per sequence over its own cache.
    pub fn forward_batch(
        &self,
        steps: &mut [Step<'_>],
        logits: &mut Vec<f32>,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        logits.clear();
        for step in steps.iter_mut() {
            let (n, lf) = (step.tokens.len(), &step.logits_for);
            if lf.end > n || lf.start > lf.end {
                return Err(Error::Runtime(
                    "logits requested for tokens outside the batch".into(),
                ));
            }
            if step.cache.len + n > cfg.context {
                return Err(Error::ContextOverflow {
                    tokens: step.cache.len + n,
                    context: cfg.context,
                });
            }
            if let Some(&t) = step.tokens.iter().find(|&&t| t as usize >= cfg.vocab) {
                return Err(Error::BadRequest(format!(
                    "token id {t} is outside the vocabulary ({})",
                    cfg.vocab
                )));
            }
            if !self.fits(step.cache) {
                *step.cache = self.new_cache();
            }
        }
        if steps.iter().all(|s| s.tokens.is_empty()) {
            return Ok(());
        }
        self.pool.install(|| self.forward_inner(steps, logits));
        Ok(())
    }

    /// Makes room in `cache` for `positions` positions in all, so that a sequence whose length
    /// is bounded grows its cache once.
    pub fn reserve(&self, cache: &mut KvCache, positions: usize) {
        if !self.fits(cache) {
            *cache = self.new_cache();
        }
        cache.reserve(positions.min(self.config.context));
    }

    /// [`Llama::reserve`] to exactly `positions` (rounded up to a block), not more: for a
    /// sequence whose length is known.
    pub fn reserve_exact(&self, cache: &mut KvCache, positions: usize) {
        if !self.fits(cache) {
            *cache = self.new_cache();
        }
        cache.reserve_exact(positions.min(self.config.context));
    }

    fn forward_inner(&self, steps: &mut [Step<'_>], logits: &mut Vec<f32>) {
        let cfg = &self.config;
        let (d, kv_dim) = (cfg.n_embd, cfg.kv_dim());
        // Each step's first row in the batch, and every row's position in its sequence.
        let mut first = Vec::with_capacity(steps.len());
        let mut positions = Vec::new();
        for step in steps.iter_mut() {
            first.push(positions.len());
            let pos0 = step.cache.len;
            positions.extend(pos0..pos0 + step.tokens.len());
            step.cache.reserve(pos0 + step.tokens.len());
        }
        let n = positions.len();

        let mut x = vec![0f32; n * d];
        for (row, &t) in x
            .chunks_exact_mut(d)
            .zip(steps.iter().flat_map(|s| s.tokens))
        {
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
        let par_rms_norm = |x: &[f32], w: &[f32], out: &mut [f32]| {
            x.par_chunks(rows_per_task * d)
                .zip(out.par_chunks_mut(rows_per_task * d))
                .for_each(|(x, out)| rms_norm(x, w, cfg.rms_eps, out));
        };
        let add = |x: &mut [f32], y: &[f32]| {
            x.par_chunks_mut(rows_per_task * d)
                .zip(y.par_chunks(rows_per_task * d))
                .for_each(|(x, y)| add_assign(x, y));
        };
        // `x += y`, then `out` = the normed `x`: one pass over the rows.
        let add_norm = |x: &mut [f32], y: &[f32], w: &[f32], out: &mut [f32]| {
            x.par_chunks_mut(rows_per_task * d)
                .zip(y.par_chunks(rows_per_task * d))
                .zip(out.par_chunks_mut(rows_per_task * d))
                .for_each(|((x, y), out)| {
                    add_assign(x, y);
                    rms_norm(x, w, cfg.rms_eps, out);
                });
        };
        // The rotary angles of every row, for every layer.
        let half = cfg.head_dim / 2;
        let mut angles = vec![(0f32, 0f32); n * half];
        angles
            .par_chunks_mut(rows_per_task * half)
            .zip(positions.par_chunks(rows_per_task))
            .for_each(|(a, pos)| rope_angles(cfg.head_dim, pos, cfg.rope_base, a));
        let par_rope = |x: &mut [f32], row_len: usize| {
            x.par_chunks_mut(rows_per_task * row_len)
                .zip(angles.par_chunks(rows_per_task * half))
                .for_each(|(x, a)| rope(x, row_len, cfg.head_dim, a));
        };

        if let Some(first_layer) = self.layers.first() {
            par_rms_norm(&x, &first_layer.attn_norm, &mut h);
        }
        for (li, layer) in self.layers.iter().enumerate() {
            // `h` holds the layer's normed input.
            acts.quantize(&h, d, acts_for(&[&layer.wq, &layer.wk, &layer.wv]));
            self.matmuls(
                &acts,
                &mut [
                    (&layer.wq, &mut q),
                    (&layer.wk, &mut k),
                    (&layer.wv, &mut v),
                ],
            );
            if let [step] = &mut *steps {
                par_rope(&mut q, d);
                par_rope(&mut k, kv_dim);
                step.cache.put(li, &k, &v);
                self.attention(&q, step.cache, li, &mut attn);
            } else {
                // Sequences in parallel: each turns its queries and keys, stores its keys and
                // values, and attends over its own cache.
                let mut parts = Vec::with_capacity(steps.len());
                let (mut q, mut k, mut v) = (q.as_mut_slice(), k.as_mut_slice(), v.as_slice());
                let (mut out, mut angles) = (attn.as_mut_slice(), angles.as_slice());
                for step in steps.iter_mut() {
                    let t = step.tokens.len();
                    let (q1, q2) = std::mem::take(&mut q).split_at_mut(t * d);
                    let (k1, k2) = std::mem::take(&mut k).split_at_mut(t * kv_dim);
                    let (v1, v2) = v.split_at(t * kv_dim);
                    let (o1, o2) = std::mem::take(&mut out).split_at_mut(t * d);
                    let (a1, a2) = angles.split_at(t * half);
                    (q, k, v, out, angles) = (q2, k2, v2, o2, a2);
                    if t > 0 {
                        parts.push((&mut *step.cache, q1, k1, v1, o1, a1));
                    }
                }
                parts.into_par_iter().for_each(|(cache, q, k, v, out, a)| {
                    rope(q, d, cfg.head_dim, a);
                    rope(k, kv_dim, cfg.head_dim, a);
                    cache.put(li, k, v);
                    self.attention(q, cache, li, out);
                });
            }
            acts.quantize(&attn, d, layer.wo.ty);
            self.matmuls(&acts, &mut [(&layer.wo, &mut o)]);
            add_norm(&mut x, &o, &layer.ffn_norm, &mut h);

            acts.quantize(&h, d, acts_for(&[&layer.gate, &layer.up]));
            self.matmuls(&acts, &mut [(&layer.gate, &mut gate), (&layer.up, &mut up)]);
            gate.par_chunks_mut(rows_per_task * cfg.n_ff)
                .zip(up.par_chunks(rows_per_task * cfg.n_ff))
                .for_each(|(g, u)| silu_mul(g, u));
            acts.quantize(&gate, cfg.n_ff, layer.down.ty);
            self.matmuls(&acts, &mut [(&layer.down, &mut down)]);
            match self.layers.get(li + 1) {
                Some(next) => add_norm(&mut x, &down, &next.attn_norm, &mut h),
                None => add(&mut x, &down),
            }
        }
        for step in steps.iter_mut() {
            step.cache.len += step.tokens.len();
        }

        // The rows whose logits are wanted, step after step.
        let mut rows = Vec::new();
        for (step, &r0) in steps.iter().zip(&first) {
            let lf = &step.logits_for;
            rows.extend_from_slice(&x[(r0 + lf.start) * d..(r0 + lf.end) * d]);
        }
        if rows.is_empty() {
            return;
        }
        let mut normed = vec![0f32; rows.len()];
        par_rms_norm(&rows, &self.out_norm, &mut normed);
        let output = self.output.as_ref().unwrap_or(&self.embed);
        acts.quantize(&normed, d, output.ty);
        // Every element is written below: a reused buffer keeps its pages (no zeroing, no faults).
        logits.resize(rows.len() / d * cfg.vocab, 0.0);
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
}

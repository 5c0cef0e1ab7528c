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

mod attention;
mod cache;
mod config;
mod ops;
use attention::*;
use config::*;
use ops::*;

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
}

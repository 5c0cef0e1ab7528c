//! Sentence embeddings with a BERT encoder (all-MiniLM-L6-v2): WordPiece tokens, six transformer
//! layers, mean pooling over the tokens, L2 normalization — what sentence-transformers computes.
//!
//! Batches are ragged: the sentences of a batch are laid end to end (no padding), the dense layers run
//! as one matrix product over all their tokens (16-bit integer products, [`crate::gemm16`]: cosine
//! ≥ 0.999998 to the f32 computation), and attention runs per sentence. Sentences are sorted
//! by length into batches, and the batches run in parallel, one thread each: no thread waits on
//! another inside a batch. A sentence's embedding does not depend on the batch it lands in, so the
//! result is the same for any thread count and any batching.

use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use crate::Error;
use crate::fmath::Fma;
use crate::gemm16::{PackedI16, QuantRows, matmul_i16_bias};
use crate::kernels::multiversion;

/// Longest input in tokens (sentence-transformers' `max_seq_length` for this model); longer text is cut.
pub const MAX_TOKENS: usize = 256;
/// Sentences per batch.
pub const BATCH: usize = 32;

#[derive(Debug, Clone, Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    layer_norm_eps: f64,
    #[serde(default)]
    hidden_act: Option<String>,
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value weights stacked: [3·hidden × hidden].
    wqkv: PackedI16,
    bqkv: Vec<f32>,
    wo: PackedI16,
    bo: Vec<f32>,
    ln1: (Vec<f32>, Vec<f32>),
    w1: PackedI16,
    b1: Vec<f32>,
    w2: PackedI16,
    b2: Vec<f32>,
    ln2: (Vec<f32>, Vec<f32>),
}

/// A loaded sentence-embedding model; `Send + Sync`, shared by many requests.
#[derive(Debug)]
pub struct Embedder {
    cfg: BertConfig,
    tokenizer: Tokenizer,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    pool: rayon::ThreadPool,
}

fn tensor(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, Error> {
    let t = st
        .tensor(name)
        .map_err(|e| Error::BadModel(format!("{name}: {e}")))?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
        return Err(Error::BadModel(format!(
            "{name} is {:?} {:?}; F32 {shape:?} expected",
            t.dtype(),
            t.shape()
        )));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

impl Embedder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, Error> {
        let read =
            |name: &str| std::fs::read(dir.join(name)).map_err(|e| Error::io(&dir.join(name), e));
        let cfg: BertConfig = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| Error::BadModel(format!("config.json: {e}")))?;
        if let Some(act) = cfg.hidden_act.as_deref().filter(|a| *a != "gelu") {
            return Err(Error::BadModel(format!(
                "activation {act} is not supported (gelu)"
            )));
        }
        let (h, ff) = (cfg.hidden_size, cfg.intermediate_size);
        if cfg.num_attention_heads == 0 || h % cfg.num_attention_heads != 0 {
            return Err(Error::BadModel(format!(
                "{h} hidden units do not split into {} heads",
                cfg.num_attention_heads
            )));
        }
        if !(h / cfg.num_attention_heads).is_multiple_of(LANES) {
            return Err(Error::BadModel(format!(
                "head size {} is not a multiple of {LANES}",
                h / cfg.num_attention_heads
            )));
        }
        let bytes = read("model.safetensors")?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::BadModel(format!("model.safetensors: {e}")))?;
        let vocab = st
            .tensor("embeddings.word_embeddings.weight")
            .map_err(|e| Error::BadModel(format!("word embeddings: {e}")))?
            .shape()
            .first()
            .copied()
            .unwrap_or(0);
        let ln = |p: &str| -> Result<(Vec<f32>, Vec<f32>), Error> {
            Ok((
                tensor(&st, &format!("{p}.weight"), &[h])?,
                tensor(&st, &format!("{p}.bias"), &[h])?,
            ))
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let mut wqkv = tensor(&st, &format!("{p}.attention.self.query.weight"), &[h, h])?;
                wqkv.extend(tensor(
                    &st,
                    &format!("{p}.attention.self.key.weight"),
                    &[h, h],
                )?);
                wqkv.extend(tensor(
                    &st,
                    &format!("{p}.attention.self.value.weight"),
                    &[h, h],
                )?);
                let mut bqkv = tensor(&st, &format!("{p}.attention.self.query.bias"), &[h])?;
                bqkv.extend(tensor(&st, &format!("{p}.attention.self.key.bias"), &[h])?);
                bqkv.extend(tensor(
                    &st,
                    &format!("{p}.attention.self.value.bias"),
                    &[h],
                )?);
                Ok(Layer {
                    wqkv: PackedI16::new(&wqkv, 3 * h, h),
                    bqkv,
                    wo: PackedI16::new(
                        &tensor(&st, &format!("{p}.attention.output.dense.weight"), &[h, h])?,
                        h,
                        h,
                    ),
                    bo: tensor(&st, &format!("{p}.attention.output.dense.bias"), &[h])?,
                    ln1: ln(&format!("{p}.attention.output.LayerNorm"))?,
                    w1: PackedI16::new(
                        &tensor(&st, &format!("{p}.intermediate.dense.weight"), &[ff, h])?,
                        ff,
                        h,
                    ),
                    b1: tensor(&st, &format!("{p}.intermediate.dense.bias"), &[ff])?,
                    w2: PackedI16::new(
                        &tensor(&st, &format!("{p}.output.dense.weight"), &[h, ff])?,
                        h,
                        ff,
                    ),
                    b2: tensor(&st, &format!("{p}.output.dense.bias"), &[h])?,
                    ln2: ln(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let word = tensor(&st, "embeddings.word_embeddings.weight", &[vocab, h])?;
        let position = tensor(
            &st,
            "embeddings.position_embeddings.weight",
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type = tensor(&st, "embeddings.token_type_embeddings.weight", &[2, h])?;
        let ln_emb = ln("embeddings.LayerNorm")?;
        drop(bytes);

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| Error::BadModel(format!("tokenizer.json: {e}")))?;
        // The file pads every input to 128 tokens; batches here are ragged, so no padding at all.
        tokenizer.with_padding(None);
        let max_len = MAX_TOKENS.min(cfg.max_position_embeddings);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| Error::BadModel(format!("tokenizer truncation: {e}")))?;
        if tokenizer.get_vocab_size(true) > vocab {
            return Err(Error::BadModel(
                "the tokenizer has more tokens than the model".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("agora-embed-{i}"))
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start embedding threads: {e}")))?;
        Ok(Self {
            cfg,
            tokenizer,
            word,
            position,
            token_type: token_type[..h].to_vec(),
            ln: ln_emb,
            layers,
            pool,
        })
    }

    /// Length of an embedding vector.
    pub fn dim(&self) -> usize {
        self.cfg.hidden_size
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Token ids of each text (with `[CLS]` and `[SEP]`, cut at [`MAX_TOKENS`]).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, Error> {
        self.pool.install(|| {
            texts
                .par_iter()
                .map(|t| {
                    self.tokenizer
                        .encode(*t, true)
                        .map(|e| e.get_ids().to_vec())
                        .map_err(|e| Error::BadRequest(format!("cannot tokenize: {e}")))
                })
                .collect()
        })
    }

    /// Unit-length embeddings of `texts`, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let ids = self.tokenize(texts)?;
        let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
        let batches = batches_by_tokens(&lens, self.threads());
        let results: Vec<Vec<Vec<f32>>> = self.pool.install(|| {
            batches
                .par_iter()
                .map(|batch| {
                    let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
                    self.forward(&seqs)
                })
                .collect()
        });
        let mut out = vec![Vec::new(); texts.len()];
        for (batch, vectors) in batches.iter().zip(results) {
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Runs one ragged batch on the calling thread and returns its pooled, normalized embeddings.
    fn forward(&self, seqs: &[&[u32]]) -> Vec<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let ff = self.cfg.intermediate_size;
        let eps = self.cfg.layer_norm_eps as f32;
        let starts: Vec<usize> = seqs
            .iter()
            .scan(0, |acc, s| {
                let start = *acc;
                *acc += s.len();
                Some(start)
            })
            .collect();
        let total: usize = seqs.iter().map(|s| s.len()).sum();

        // The pass's buffers come from this thread's scratch: every element is written before it
        // is read (the sums below; the matrix products; attention, every row and head), so they
        // are not cleared.
        let mut scratch = SCRATCH.take();
        for (buf, width) in scratch.0.iter_mut().zip([h, 3 * h, h, h, ff]) {
            buf.resize(total * width, 0.0);
        }
        let [x, qkv, ctx, tmp, inner] = &mut scratch.0;
        let quant = &mut scratch.1;
        for (s, &start) in seqs.iter().zip(&starts) {
            for (p, &id) in s.iter().enumerate() {
                let row = &mut x[(start + p) * h..(start + p + 1) * h];
                let w = &self.word[id as usize * h..(id as usize + 1) * h];
                let pos = &self.position[p * h..(p + 1) * h];
                for (((o, a), b), c) in row.iter_mut().zip(w).zip(pos).zip(&self.token_type) {
                    *o = a + b + c;
                }
            }
        }
        layer_norm(x, &self.ln.0, &self.ln.1, eps);

        for layer in &self.layers {
            quant.quantize(x, h);
            matmul_i16_bias(quant, &layer.wqkv, &layer.bqkv, qkv);
            self.attention(qkv, seqs, &starts, ctx);
            quant.quantize(ctx, h);
            matmul_i16_bias(quant, &layer.wo, &layer.bo, tmp);
            residual_norm(x, tmp, &layer.ln1, eps);
            quant.quantize(x, h);
            matmul_i16_bias(quant, &layer.w1, &layer.b1, inner);
            gelu(inner);
            quant.quantize(inner, ff);
            matmul_i16_bias(quant, &layer.w2, &layer.b2, tmp);
            residual_norm(x, tmp, &layer.ln2, eps);
        }

        let pooled = seqs
            .iter()
            .zip(&starts)
            .map(|(s, &start)| {
                let mut v = vec![0f32; h];
                for p in 0..s.len() {
                    for (o, a) in v.iter_mut().zip(&x[(start + p) * h..(start + p + 1) * h]) {
                        *o += a;
                    }
                }
                let n = s.len().max(1) as f32;
                v.iter_mut().for_each(|a| *a /= n);
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect();
        // Kept for the next batch, unless a batch of long texts made it large.
        if scratch.0.iter().map(Vec::capacity).sum::<usize>() * 4 + scratch.1.capacity_bytes()
            <= SCRATCH_KEEP_BYTES
        {
            SCRATCH.set(scratch);
        }
        pooled
    }

    /// Self-attention of every sentence and head.
    fn attention(&self, qkv: &[f32], seqs: &[&[u32]], starts: &[usize], ctx: &mut [f32]) {
        attention(
            qkv,
            seqs,
            starts,
            ctx,
            self.cfg.hidden_size,
            self.cfg.num_attention_heads,
        );
    }
}

multiversion! {
    /// Self-attention of every sentence and head of a ragged batch (`qkv` rows: query, key, value).
    fn attention<F>(qkv: &[f32], seqs: &[&[u32]], starts: &[usize], ctx: &mut [f32], h: usize, heads: usize) {
        let hd = h / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut scores = Vec::new();
        let mut kt = Vec::new();
        let mut q = Vec::new();
        let mut vals = Vec::new();
        for (s, &start) in seqs.iter().zip(starts) {
            let len = s.len();
            // Key rows padded to whole blocks (the padding's scores are computed and not used).
            let stride = len.next_multiple_of(LANES);
            scores.resize(QROWS * stride, 0f32);
            kt.resize(hd * stride, 0f32);
            q.resize(QROWS * hd, 0f32);
            vals.resize(len * hd, 0f32);
            for head in 0..heads {
                let col = head * hd;
                // Keys transposed (head_dim × len), so scores for all keys build up as whole rows;
                // values gathered into one block, read again for every run of query rows.
                // The transpose reads with a stride and writes whole rows: scattered stores would
                // queue up behind each other.
                let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
                for (d, dst) in kt.chunks_exact_mut(stride).enumerate() {
                    for (o, row) in dst.iter_mut().zip(rows.chunks_exact(3 * h)) {
                        *o = row[h + col + d];
                    }
                }
                for (dst, row) in vals.chunks_exact_mut(hd).zip(rows.chunks_exact(3 * h)) {
                    dst.copy_from_slice(&row[2 * h + col..2 * h + col + hd]);
                }
                for i0 in (0..len).step_by(QROWS) {
                    let rows = (len - i0).min(QROWS);
                    for r in 0..rows {
                        q[r * hd..(r + 1) * hd]
                            .copy_from_slice(&qkv[(start + i0 + r) * 3 * h + col..][..hd]);
                    }
                    score_rows::<F>(&q, rows, hd, &kt, stride, &mut scores);
                    for r in 0..rows {
                        let row = &mut scores[r * stride..r * stride + len];
                        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) * scale;
                        row.iter_mut().for_each(|sc| *sc = fexp::<F>(F::fma(*sc, scale, -max)));
                        let inv = 1.0 / sum8(row);
                        row.iter_mut().for_each(|sc| *sc *= inv);
                    }
                    let out = &mut ctx[(start + i0) * h + col..];
                    match rows {
                        4 => weigh_values::<F, 4>(&scores, stride, &vals, len, hd, out, h),
                        3 => weigh_values::<F, 3>(&scores, stride, &vals, len, hd, out, h),
                        2 => weigh_values::<F, 2>(&scores, stride, &vals, len, hd, out, h),
                        _ => weigh_values::<F, 1>(&scores, stride, &vals, len, hd, out, h),
                    }
                }
            }
        }
    }
}

/// Splits sentences of `lens` tokens into batches of at most [`BATCH`] (full ones, but at least one
/// per thread when there are enough sentences). Batches are ragged (no padding), so lengths need not
/// match within one. Each sentence, longest first, goes to the batch with the fewest tokens so far
/// (that has room): the batches, and so the threads, end up with the same work to within about one
/// short sentence. (Dealing them out round robin gave the first batch the longer sentence of every
/// round, and left the other thread idle for several percent of the time.)
fn batches_by_tokens(lens: &[usize], threads: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lens[i]), i));
    let size = BATCH.min(lens.len().div_ceil(threads.max(1))).max(1);
    let n_batches = lens.len().div_ceil(size);
    let mut batches: Vec<Vec<usize>> = vec![Vec::with_capacity(size); n_batches];
    let mut tokens = vec![0usize; n_batches];
    for &i in &order {
        let b = (0..n_batches)
            .filter(|&b| batches[b].len() < size)
            .min_by_key(|&b| (tokens[b], b))
            .expect("the batches hold every sentence");
        batches[b].push(i);
        tokens[b] += lens[i];
    }
    batches
}

/// A forward pass's work buffers (hidden states, query/key/value, attention output, a layer's
/// output, the feed-forward inner layer) and a matrix product's quantized input, kept per thread
/// between batches so that their pages stay mapped: allocating them afresh cost a page fault and a
/// zeroed page for every 4 KiB.
#[derive(Default)]
struct Scratch([Vec<f32>; 5], QuantRows);

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// The most scratch memory a thread keeps between batches (a batch of 32 sentences of ~50 tokens).
const SCRATCH_KEEP_BYTES: usize = 32 << 20;

/// Query rows per attention block; keys (and head dimensions) per vector block.
const QROWS: usize = 4;
const LANES: usize = 8;

/// `out[r][d] = Σ_j w[r][j] · v[j][d]` for `R` query rows (weights in rows `stride` apart; values
/// `len` rows of `hd`; output rows `o_stride` apart), eight head dimensions at a time.
#[inline(always)]
fn weigh_values<F: Fma, const R: usize>(
    w: &[f32],
    stride: usize,
    values: &[f32],
    len: usize,
    hd: usize,
    out: &mut [f32],
    o_stride: usize,
) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &w[r * stride..r * stride + len]);
    for d0 in (0..hd).step_by(LANES) {
        let mut acc = [[0f32; LANES]; R];
        for (j, v) in values[..len * hd].chunks_exact(hd).enumerate() {
            let v: &[f32; LANES] = v[d0..d0 + LANES].try_into().expect("hd is a multiple of 8");
            for (acc_r, row) in acc.iter_mut().zip(&rows) {
                let wj = row[j];
                for (a, x) in acc_r.iter_mut().zip(v) {
                    *a = F::fma(wj, *x, *a);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            out[r * o_stride + d0..][..LANES].copy_from_slice(acc_r);
        }
    }
}

/// Scores of up to [`QROWS`] query rows (`q`, rows of `hd`) against the transposed keys `kt` (rows
/// of `stride`, a multiple of 8), into `scores` (rows of `stride`).
#[inline(always)]
fn score_rows<F: Fma>(
    q: &[f32],
    rows: usize,
    hd: usize,
    kt: &[f32],
    stride: usize,
    scores: &mut [f32],
) {
    let qs: [&[f32]; QROWS] = std::array::from_fn(|r| &q[r * hd..(r + 1) * hd]);
    for p0 in (0..stride).step_by(LANES) {
        let mut acc = [[0f32; LANES]; QROWS];
        for (d, k) in kt[..hd * stride].chunks_exact(stride).enumerate() {
            let k: &[f32; LANES] = k[p0..p0 + LANES].try_into().expect("a block of keys");
            for (acc_r, qr) in acc.iter_mut().zip(&qs) {
                let qd = qr[d];
                for (a, x) in acc_r.iter_mut().zip(k) {
                    *a = F::fma(qd, *x, *a);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            scores[r * stride + p0..][..LANES].copy_from_slice(acc_r);
        }
    }
}

multiversion! {
    fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
        let h = w.len();
        for row in x.chunks_exact_mut(h) {
            let mean = sum8(row) / h as f32;
            let mut var = [0f32; 8];
            for chunk in row.chunks_exact(8) {
                for (v, a) in var.iter_mut().zip(chunk) {
                    *v += (a - mean) * (a - mean);
                }
            }
            let rest: f32 = row.chunks_exact(8).remainder().iter().map(|a| (a - mean) * (a - mean)).sum();
            let inv = 1.0 / ((var.iter().sum::<f32>() + rest) / h as f32 + eps).sqrt();
            for ((a, w), b) in row.iter_mut().zip(w).zip(b) {
                *a = (*a - mean) * inv * w + b;
            }
        }
    }
}

/// A sum with eight partial sums (so it vectorizes), in a fixed order.
#[inline(always)]
fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for chunk in x.chunks_exact(8) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + x.chunks_exact(8).remainder().iter().sum::<f32>()
}

/// `x = LayerNorm(x + y)`.
fn residual_norm(x: &mut [f32], y: &[f32], ln: &(Vec<f32>, Vec<f32>), eps: f32) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    layer_norm(x, &ln.0, &ln.1, eps);
}

multiversion! {
    /// `x = gelu(x)`: the erf GELU that BERT uses, `0.5·v·(1 + erf(v/√2))`.
    fn gelu<F>(x: &mut [f32]) {
        for a in x.iter_mut() {
            let v = *a;
            *a = 0.5 * v * (1.0 + erf::<F>(v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7), branch-free, with fused
/// multiply-adds and its polynomial in Estrin's scheme (see [`fexp`]).
#[inline(always)]
fn erf<F: Fma>(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / F::fma(a, 0.327_591_1, 1.0);
    let t2 = t * t;
    let low = F::fma(t, -0.284_496_74, 0.254_829_6);
    let high = F::fma(t, -1.453_152, 1.421_413_7);
    let poly = t * F::fma(t2 * t2, 1.061_405_4, F::fma(t2, high, low));
    F::fma(-poly, fexp::<F>(-a * a), 1.0).copysign(x)
}

/// `e^y` as [`exp`](crate::kernels::exp) computes it (same reduction, same Taylor terms to r⁶), but
/// with fused multiply-adds and the polynomial in Estrin's scheme rather than Horner's. The chains of
/// dependent operations are about half as long, and these loops are bound by them (the FP scheduler
/// fills with waiting operations), not by the arithmetic units. The rounding differs from `exp`'s in
/// the last bits, which the embedding model may do (its vectors are compared by cosine); the chat
/// model's arithmetic is fixed to the bit, so it keeps `exp`.
#[inline(always)]
fn fexp<F: Fma>(y: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let y = y.clamp(-87.0, 88.0);
    let z = F::fma(y, std::f32::consts::LOG2_E, SHIFT);
    let n = z - SHIFT;
    let ni = (z.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let r = F::fma(n, -1.428_606_8e-6, F::fma(n, -0.693_145_75, y));
    let r2 = r * r;
    let p01 = r + 1.0;
    let p23 = F::fma(r, 1.0 / 6.0, 0.5);
    let p45 = F::fma(r, 1.0 / 120.0, 1.0 / 24.0);
    let p = F::fma(r2 * r2, F::fma(r2, 1.0 / 720.0, p45), F::fma(r2, p23, p01));
    p * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmath::{Emulated, Fused};

    #[test]
    fn batches_share_the_tokens_evenly() {
        // 32 sentences of 5..=67 tokens, two threads: two batches of 16.
        let lens: Vec<usize> = (0..32).map(|i| 5 + (i * 37) % 63).collect();
        let batches = batches_by_tokens(&lens, 2);
        assert_eq!(batches.len(), 2);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..32).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.len() == 16));
        let tokens: Vec<usize> = batches
            .iter()
            .map(|b| b.iter().map(|&i| lens[i]).sum())
            .collect();
        let shortest = *lens.iter().min().unwrap();
        assert!(tokens[0].abs_diff(tokens[1]) <= shortest, "{tokens:?}");
        // Many sentences: full batches of BATCH, every one placed once.
        let lens: Vec<usize> = (0..1000).map(|i| 3 + (i * 7919) % 200).collect();
        let batches = batches_by_tokens(&lens, 2);
        assert_eq!(batches.len(), 1000usize.div_ceil(BATCH));
        assert!(batches.iter().all(|b| b.len() <= BATCH));
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 1000);
        // One sentence, and none.
        assert_eq!(batches_by_tokens(&[9], 2), vec![vec![0]]);
        assert!(batches_by_tokens(&[], 2).is_empty());
    }

    #[test]
    fn fast_erf_and_exp_are_accurate() {
        let mut worst_erf = 0f64;
        let mut worst_exp = 0f64;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            for e in [erf::<Fused>(x), erf::<Emulated>(x)] {
                worst_erf = worst_erf.max((f64::from(e) - libm_erf(f64::from(x))).abs());
            }
            assert_eq!(
                erf::<Fused>(x).to_bits(),
                erf::<Emulated>(x).to_bits(),
                "erf({x})"
            );
            let y = -(i32::abs(i) as f32) / 100.0;
            let want = f64::from(y).exp();
            assert_eq!(
                fexp::<Fused>(y).to_bits(),
                fexp::<Emulated>(y).to_bits(),
                "exp({y})"
            );
            for e in [
                crate::kernels::exp(y),
                fexp::<Fused>(y),
                fexp::<Emulated>(y),
            ] {
                worst_exp = worst_exp.max((f64::from(e) - want).abs() / want.max(1e-30));
            }
        }
        assert!(worst_erf < 6e-7, "erf error {worst_erf}");
        assert!(worst_exp < 5e-7, "exp relative error {worst_exp}");
        for e in [crate::kernels::exp, fexp::<Fused>, fexp::<Emulated>] {
            assert_eq!(e(-200.0), e(-87.0));
            assert!((f64::from(e(10.0)) - 10f64.exp()).abs() / 10f64.exp() < 5e-7);
        }
    }

    /// erf in f64 by its Taylor series (|x| ≤ 3) or continued fraction, as an independent reference.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = f64::from(k) / 2.0 / (a + f);
            }
            1.0 - (-a * a).exp() / (a + f) / std::f64::consts::PI.sqrt()
        };
        v.copysign(x)
    }
}

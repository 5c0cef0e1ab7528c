//! A llama model's shape and constants from GGUF metadata, and reading its tensors.

use super::*;

impl LlamaConfig {
    pub(super) fn from_gguf(g: &Gguf) -> Result<Self, Error> {
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
            && cfg.head_dim > 0
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

    /// Key (and value) elements per position and layer.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

pub(super) fn read_f32(g: &Gguf, name: &str, len: usize) -> Result<Vec<f32>, Error> {
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

pub(super) fn read_matrix(
    g: &Gguf,
    name: &str,
    cols: usize,
    rows: usize,
) -> Result<QMatrix, Error> {
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

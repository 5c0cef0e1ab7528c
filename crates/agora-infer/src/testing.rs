//! Tiny models for tests: a llama GGUF with random weights and a byte-level tokenizer, small enough to
//! build in milliseconds, shaped like the real one (grouped-query attention, Q4_1 layers, a Q8_0
//! embedding tied to the output, ChatML control tokens and template).

use std::collections::BTreeMap;
use std::path::Path;

use crate::gguf::{self, GgmlType, TensorData, Value};
use crate::quant::{
    quantize_q4_0, quantize_q4_1, quantize_q4_k, quantize_q5_0, quantize_q6_k, quantize_q8_0,
};

/// The chat template SmolLM2's GGUF carries.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Shape of a tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinySpec {
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_ff: u32,
    pub context: u32,
    pub seed: u32,
    /// The layers' weight type: Q4_0, Q4_1 (SmolLM2's), Q8_0, or Q4_K (with Q6_K values and
    /// feed-forward outputs, as in Q4_K_M files; rows must then be multiples of 256).
    pub layers: GgmlType,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            context: 256,
            seed: 9,
            layers: GgmlType::Q4_1,
        }
    }
}

struct Rng(u32);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 % 20001) as f32 / 10000.0 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// `n` pseudo-random values in [-1, 1], the same for the same seed (for tests of numeric code).
pub fn random_f32(n: usize, seed: u32) -> Vec<f32> {
    Rng(seed.wrapping_mul(2_654_435_761) | 1).vec(n, 1.0)
}

/// Writes a tiny random llama chat model to `path`. Vocabulary: 256 byte tokens, a few merges, and
/// the control tokens `<|endoftext|>` (0), `<|im_start|>` (1), `<|im_end|>` (2, end of sequence).
pub fn write_tiny_chat_model(path: &Path, spec: TinySpec) -> std::io::Result<()> {
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types: Vec<Value> = vec![Value::I32(3); 3];
    let byte_chars = crate::tokenizer::byte_chars();
    for b in 0..=255u8 {
        tokens.push(byte_chars[b as usize].to_string());
        types.push(Value::I32(1));
    }
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "e r"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
        types.push(Value::I32(1));
    }
    // Pad the vocabulary to a multiple of 32 rows is not needed; rows are whole blocks of n_embd.
    let vocab = tokens.len();

    let s = |v: &str| Value::String(v.into());
    let u = Value::U32;
    let mut md = BTreeMap::new();
    md.insert("general.architecture".into(), s("llama"));
    md.insert("general.name".into(), s("tiny-test-llama"));
    md.insert("llama.block_count".into(), u(spec.n_layer));
    md.insert("llama.context_length".into(), u(spec.context));
    md.insert("llama.embedding_length".into(), u(spec.n_embd));
    md.insert("llama.feed_forward_length".into(), u(spec.n_ff));
    md.insert("llama.attention.head_count".into(), u(spec.n_head));
    md.insert("llama.attention.head_count_kv".into(), u(spec.n_head_kv));
    md.insert("llama.rope.freq_base".into(), Value::F32(10_000.0));
    md.insert(
        "llama.attention.layer_norm_rms_epsilon".into(),
        Value::F32(1e-5),
    );
    md.insert("tokenizer.ggml.model".into(), s("gpt2"));
    md.insert("tokenizer.ggml.pre".into(), s("smollm"));
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.iter().map(|t| s(t)).collect()),
    );
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    md.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(merges.iter().map(|m| s(m)).collect()),
    );
    md.insert("tokenizer.ggml.bos_token_id".into(), u(1));
    md.insert("tokenizer.ggml.eos_token_id".into(), u(2));
    md.insert("tokenizer.chat_template".into(), s(CHATML_TEMPLATE));

    let mut rng = Rng(spec.seed.wrapping_mul(2_654_435_761) | 1);
    let d = spec.n_embd as usize;
    let kv = (spec.n_embd / spec.n_head * spec.n_head_kv) as usize;
    let ff = spec.n_ff as usize;
    let mut tensors = Vec::new();
    let q41 = |name: String, cols: usize, rows: usize, rng: &mut Rng| {
        let w = rng.vec(cols * rows, 1.0 / (cols as f32).sqrt() * 1.7);
        // Q4_K layers mix in Q6_K for the values and the feed-forward's output, as llama.cpp's
        // Q4_K_M files do.
        let ty = match spec.layers {
            GgmlType::Q4_K if name.contains("attn_v") || name.contains("ffn_down") => {
                GgmlType::Q6_K
            }
            ty => ty,
        };
        TensorData {
            name,
            dims: vec![cols as u64, rows as u64],
            ty,
            data: match ty {
                GgmlType::Q4_0 => quantize_q4_0(&w),
                GgmlType::Q5_0 => quantize_q5_0(&w),
                GgmlType::Q8_0 => quantize_q8_0(&w),
                GgmlType::Q4_K => quantize_q4_k(&w),
                GgmlType::Q6_K => quantize_q6_k(&w),
                _ => quantize_q4_1(&w),
            },
        }
    };
    let f32s = |name: String, v: Vec<f32>| TensorData {
        name,
        dims: vec![v.len() as u64],
        ty: GgmlType::F32,
        data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    tensors.push(TensorData {
        name: "token_embd.weight".into(),
        dims: vec![d as u64, vocab as u64],
        ty: GgmlType::Q8_0,
        // Small embeddings: the layers, not the input token, dominate the residual stream, so the
        // model does not just repeat its last token (with the output tied to the embedding, it would).
        data: quantize_q8_0(&rng.vec(d * vocab, 0.1)),
    });
    for i in 0..spec.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let norm: Vec<f32> = (0..d).map(|_| 1.0 + 0.1 * rng.next()).collect();
        tensors.push(f32s(n("attn_norm"), norm));
        tensors.push(q41(n("attn_q"), d, d, &mut rng));
        tensors.push(q41(n("attn_k"), d, kv, &mut rng));
        tensors.push(q41(n("attn_v"), d, kv, &mut rng));
        tensors.push(q41(n("attn_output"), d, d, &mut rng));
        let norm: Vec<f32> = (0..d).map(|_| 1.0 + 0.1 * rng.next()).collect();
        tensors.push(f32s(n("ffn_norm"), norm));
        tensors.push(q41(n("ffn_gate"), d, ff, &mut rng));
        tensors.push(q41(n("ffn_up"), d, ff, &mut rng));
        tensors.push(q41(n("ffn_down"), ff, d, &mut rng));
    }
    tensors.push(f32s("output_norm.weight".into(), vec![3.0; d]));
    let file = std::fs::File::create(path)?;
    gguf::write(std::io::BufWriter::new(file), &md, &tensors)
}

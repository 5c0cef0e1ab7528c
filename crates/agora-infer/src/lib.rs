//! Agora's inference runtime: the models providers sell and verifiers re-check.
//!
//! - [`llama`]: quantized llama generation from GGUF files, on kernels of our own ([`kernels`]).
//! - [`gguf`]: the GGUF reader (and a writer, for tests that build tiny models).

pub mod batch;
pub mod bert;
pub mod chat;
pub mod fmath;
pub mod gemm16;
pub mod gguf;
pub mod kernels;
pub mod llama;
pub mod models;
pub mod quant;
pub mod sample;

/// Threads to run inference on by default: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
pub mod testing;
pub mod tokenizer;

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad model file: {0}")]
    BadModel(String),
    #[error("the prompt and answer need {tokens} tokens but the model's context holds {context}")]
    ContextOverflow { tokens: usize, context: usize },
    #[error("unknown model {0:?}: `agora models list` shows the models this node knows")]
    UnknownModel(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("cannot fetch the model: {0}")]
    Fetch(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("{0}")]
    Runtime(String),
    /// Too many requests wait for the model: a moment later may find room.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Sentences for embedding benchmarks (512 lines of 4 to 40 words); sentence-transformers is measured
/// on the same ones by `tests/fixtures/sentence_transformers_reference.py`.
pub const BENCH_SENTENCES: &str = include_str!("../tests/fixtures/bench_sentences.txt");

//! The compute market's off-chain protocol (DESIGN.md §5, §9): what a gateway sends a provider, and
//! what comes back, with inputs and outputs encrypted end to end.
//!
//! Words:
//! - **Input**: the job's content as JSON bytes ([`JobInput`]); the client-signed request carries
//!   `blake3(input bytes)`, so a provider (and later a verifier) can prove which input it was given.
//! - **Envelope**: the input sealed to the provider's X25519 key with a fresh ephemeral key
//!   (ChaCha20-Poly1305 under a key derived from the shared secret, the request hash as associated
//!   data): only that provider can read it, and it cannot be moved to another request.
//! - **Output stream**: the provider's pieces of output, sealed under a second key derived from the
//!   same shared secret, numbered so none can be dropped, replayed or reordered unnoticed.
//!
//! ```text
//!  gateway ── SignedJobRequest + Envelope(input) ──▶ provider
//!          ◀── sealed pieces …, then SignedJobReceipt (output hash, tokens, fee)
//! ```

#![forbid(unsafe_code)]

mod adversary;
mod audits;
mod backend;
mod envelope;
mod gateway;
mod input;
mod openai;
mod provider;
mod queries;
mod server;
pub mod subnet;
mod verify;
mod zk;

pub use adversary::{Cheat, CheatingBackend};
/// The chain as the market sees it, over HTTP or in process ([`agora_node_api::Chain`]).
pub use agora_node_api::Chain;
pub use audits::MAX_EXPLAINED;
pub use backend::{
    Backend, EMBEDDING_MIN_COSINE, InferBackend, MAX_FILE_NAME_BYTES, Served, auditor_id, sampling,
};
/// A node's HTTP API as the market's [`Chain`].
pub type HttpChain = agora_node_api::NodeClient;
pub use envelope::{Envelope, OutputReader, OutputWriter, ProviderSecret, open, seal};
pub use gateway::{
    COOLDOWN_FIRST, COOLDOWN_MAX, Completed, Gateway, LATENCY_CLASS_MS, LATENCY_SAMPLES,
    ProviderListing, ProviderStats, SLOW_DIVISOR, public_endpoint,
};
pub use input::{
    ChatMessage, JobInput, JobOutput, Logprob, MAX_INPUT_BYTES, SourceFile, TableColumn,
    TextLogprobs, TokenLogprob,
};
pub use openai::{OpenAiState, openai_router};
pub use provider::{
    Admitted, Delivery, JobSubmission, KEPT_SWEEP_LIMIT, Provider, ProviderConfig, SealedPiece,
    open_delivery,
};
pub use queries::{ANALYTICS_MODEL, DEFAULT_MAX_ROWS_READ};
/// The gateway's limits on a forecast job.
pub mod forecast_limits {
    pub use crate::queries::{MAX_HORIZON, MAX_SEASON, MAX_WINDOWS};
}
pub use server::{provider_router, settle_loop};
pub use verify::{GREEDY_TOLERANCE, RevealDoc, Verifier, open_reveal, seal_reveal, verify_loop};

/// How a provider the gateway called failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderFailure {
    /// No answer at its endpoint.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Its endpoint.
        url: String,
        /// The transport's error.
        reason: String,
    },
    /// Its answer stream broke off.
    #[error("its stream broke: {0}")]
    StreamBroken(String),
    /// It sent something that is not the protocol's.
    #[error("it sent a malformed {what}: {reason}")]
    Malformed {
        /// What.
        what: &'static str,
        /// Why it does not read.
        reason: String,
    },
    /// It reported a failure in its stream.
    #[error("it failed: {0}")]
    Reported(String),
    /// It closed its stream before its receipt.
    #[error("it closed the stream before its receipt")]
    ClosedEarly,
}

/// What can go wrong in the protocol.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A ciphertext that does not open with this key and context.
    #[error("cannot decrypt: wrong key, wrong request, or tampered data")]
    Decrypt,
    /// A piece of output out of order.
    #[error("output piece {got} arrived where {expected} was due")]
    OutOfOrder { expected: u64, got: u64 },
    /// Bytes that are not the JSON the protocol expects.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// An input over the size limit.
    #[error("input is {size} bytes, at most {limit}")]
    TooLarge { size: usize, limit: usize },
    /// An input the model cannot take.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A model this backend does not serve.
    #[error("model {0} is not served here")]
    UnknownModel(agora_types::Hash),
    /// The inference runtime failed or refused.
    #[error(transparent)]
    Infer(#[from] agora_infer::Error),
    /// The node's API failed or refused.
    #[error("node: {0}")]
    Node(#[from] agora_node_api::ClientError),
    /// A provider the gateway called failed.
    #[error("provider: {0}")]
    Provider(#[from] ProviderFailure),
    /// A job the chain has not settled (yet).
    #[error("job {0} is not settled")]
    NotSettled(agora_types::Hash),
    /// No complete reveal of a job to this verifier on chain (yet).
    #[error("no complete reveal of job {0} to this verifier yet")]
    NoReveal(agora_types::Hash),
    /// Reading or writing the provider's own files.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A job refused, with the HTTP status and code to answer with.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable machine-readable code.
        code: &'static str,
        /// What went wrong, for people.
        message: String,
    },
}

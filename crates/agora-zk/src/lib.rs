//! Zero-knowledge proofs of inference for small fixed-point models (DESIGN.md §9).
//!
//! A provable model ([`ZkModel`]) is a small MLP over 8-bit integers. Its weights are committed in
//! a [`VerifyingKey`] (a Merkle root; the setup is transparent and deterministic). A proof shows
//! that the committed model maps a private input to a public [`Statement`] (its outputs, or only a
//! predicate "output 0 is below t"), bound to a [`Context`] (chain, job or account) so it cannot be
//! replayed elsewhere. Proofs are Plonky3 batch-STARKs with hiding commitments.
#![forbid(unsafe_code)]

mod air;
pub mod model;
pub mod risk;
mod stark;
pub mod topic;
pub mod train;

pub use air::{Statement, input_commitment};
pub use model::{Architecture, Layer, ZkModel};
pub use stark::{Context, MAX_PROOF_BYTES, ProvingKey, VerifyingKey, verify};

/// BabyBear's modulus, 2^31 − 2^27 + 1: a salt word must be below it.
pub const FIELD_ORDER: u32 = 0x7800_0001;

/// A random salt for an input commitment: eight words below [`FIELD_ORDER`] (27 random bits each),
/// from the system's randomness.
pub fn random_salt() -> Result<[u32; 8], Error> {
    use rand::TryRng as _;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Prove(format!("no randomness from the system: {e}")))?;
    let mut salt = [0u32; 8];
    for (w, c) in salt.iter_mut().zip(bytes.chunks(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x07ff_ffff;
    }
    Ok(salt)
}

/// Everything that can go wrong, each with a clear reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model: {0}")]
    Model(&'static str),
    #[error("invalid input: {0}")]
    Input(&'static str),
    #[error("invalid verifying key: {0}")]
    Key(&'static str),
    #[error("invalid statement: {0}")]
    Statement(&'static str),
    #[error("invalid proof: {0}")]
    Proof(&'static str),
    #[error("the proof does not verify: {0}")]
    Rejected(String),
    #[error("proving failed: {0}")]
    Prove(String),
}

use thiserror::Error;

/// Errors of parsing and checking Agora's basic types.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A bech32 address that does not decode, has the wrong prefix or the wrong length.
    #[error("invalid address {input:?}: {reason}")]
    InvalidAddress { input: String, reason: String },
    /// A hex string that is not 32 bytes of hex.
    #[error("invalid hash {input:?}: expected 64 hex characters")]
    InvalidHash { input: String },
    /// An amount that cannot be parsed or does not fit.
    #[error("invalid amount {input:?}: {reason}")]
    InvalidAmount { input: String, reason: String },
    /// Bytes that are not a canonical encoding of the expected type.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// An encoded object over its size limit.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A public key that is not a valid ed25519 point.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A signature that does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// A VRF proof that does not verify under its key and input.
    #[error("invalid VRF proof")]
    InvalidVrfProof,
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

//! Agora's adapter to Malachite, the Tendermint-family BFT engine (DESIGN.md §4): the types
//! consensus works with ([`context`]), signatures ([`signing`]), encodings ([`codec`]), and the
//! application side of the engine's messages ([`app`]), which builds, checks and commits blocks
//! through [`agora_chain::Node`]. Kept in this one crate so that the engine could be swapped.

#![forbid(unsafe_code)]

pub mod app;
pub mod codec;
pub mod context;
pub mod engine;
pub mod signing;
mod streams;

pub use app::{AppConfig, AppError, ConsensusApp};
pub use codec::AgoraCodec;
pub use context::{AgoraContext, BlockId, Height, ProposalPart, ValidatorAddress, ValidatorSet};
pub use engine::{ConsensusHandle, NetworkConfig, StartError, start};
/// Byzantine test validators (feature `byzantine`).
#[cfg(feature = "byzantine")]
#[doc(hidden)]
pub use malachitebft_engine_byzantine as byzantine;
pub use signing::{Ed25519Signer, Ed25519Verifier};

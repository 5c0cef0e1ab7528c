//! The boundary between a node's HTTP API and everything that talks to it.
//!
//! [`types`] holds every request and response body of the API (`/v1/...`): the server builds
//! them, and clients read them, so the two cannot drift apart. [`NodeClient`] is the one client
//! of that API: timeouts, retries of reads that failed to arrive, and typed errors
//! ([`ClientError`]) that keep the node's code and message.
//!
//! ```text
//!  agora-api (server) ──serializes──▶ types ◀──deserializes── NodeClient ◀── CLI, provider,
//!                                                                          gateway, verifier, relay
//! ```

#![forbid(unsafe_code)]

mod chain;
mod client;
pub mod types;

pub use chain::Chain;
pub use client::{BlockId, ClientError, NodeClient, RawAnswer};
pub use types::*;

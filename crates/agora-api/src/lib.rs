//! Agora's HTTP API (axum, JSON): submit transactions, read blocks, transactions and accounts
//! (with Merkle proofs), follow new blocks as server-sent events, scrape Prometheus metrics.
//!
//! Routes:
//! ```text
//!  POST /v1/txs                     {"tx": hex} or {"txs": [hex…]}  → hash(es) or {code, message}
//!  GET  /v1/txs/{hash}              transaction, status, receipt
//!  GET  /v1/blocks/{height|latest}  header, hash, transactions, receipts
//!  GET  /v1/accounts/{addr}[?prove=true]  account (+ proof against the block's state root)
//!  GET  /v1/accounts/{addr}/txs[?limit=&before=]  its transactions, newest first
//!  GET  /v1/status                  chain id, height, latest hash, peers
//!  GET  /v1/market/providers[/{addr}]  registered compute providers
//!  GET  /v1/market/models[/{id}]    the model registry
//!  GET  /v1/market/escrow/{addr}    a client's compute escrow
//!  GET  /v1/market/jobs/{job id}    a settled job and whether its fee is released
//!  GET  /v1/subnets                 subnets, the lock cost now, emission so far
//!  GET  /v1/subnets/{netuid}        a subnet: hyperparameters, last epochs, commitments
//!  GET  /v1/subnets/{netuid}/metagraph  every UID: stake, rank, trust, incentive, bonds…
//!  GET  /v1/events/blocks           SSE stream of new blocks
//!  GET  /metrics                    Prometheus text format
//!  GET  /health                     liveness
//! ```
//! Errors are JSON `{code, message}` with a fitting HTTP status.

#![forbid(unsafe_code)]

mod error;
pub mod limits;
mod local;
mod market;
pub mod relay;
mod routes;
pub mod subnets;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod views;
pub mod zk;

pub use error::ApiError;
pub use limits::{Limits, limit, limit_per_key};
pub use local::LocalNode;
pub use relay::{Relay, spawn_relay};
pub use routes::{router, serve, serve_with_pages};

//! The data market off the chain (DESIGN.md §8). A submitted item's content lives in the
//! nodes' blob store; only its hash and metadata go on chain.

#![forbid(unsafe_code)]

pub mod blobs;
pub mod export;
pub mod http;
pub mod prescreen;
pub mod views;

pub use blobs::{BlobStore, Limits};
pub use prescreen::{DuplicateIndex, Prescreen, Rejection};

/// What can go wrong; each variant is a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the item is {size} bytes; a blob holds at most {max}")]
    TooLarge { size: u64, max: u64 },
    #[error(
        "the blob store is full ({used} of {max} bytes): try again after its rejected items are collected"
    )]
    Full { used: u64, max: u64 },
    #[error("blob {0} on disk does not match its hash (corrupt); it was removed")]
    Corrupt(agora_types::Hash),
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

//! Search and feeds over what the network knows: chain objects (accounts, transactions,
//! providers, models, jobs, subnets, audit reports…) and ingested content (feeds, folders of
//! Markdown).
//!
//! Retrieval is hybrid. Full text goes through tantivy (BM25, English stemming), meaning through
//! MiniLM vectors in an HNSW index (`hnsw_rs`), and the two rankings are fused by reciprocal rank.
//! Filters (kind, time, address, subnet) apply to both sides; an identifier typed in whole (a
//! hash, an address, an id) goes straight to its object.
//!
//! Storage: the documents and their vectors live in redb, the one place that is written first and
//! read back after a crash; the full-text index (tantivy's files) and the vector graph (memory)
//! are derived from it and rebuilt from it when they do not match.

#![forbid(unsafe_code)]

pub mod chain;
pub mod corpus;
pub mod doc;
pub mod embed;
pub mod eval;
pub mod feed;
pub mod http;
pub mod index;
pub mod ingest;
pub mod reports;

pub use doc::{Doc, Kind};
pub use embed::{Embed, GatewayEmbed, HashEmbed, LocalEmbed};
pub use index::{Batch, Filters, Hit, Mode, Query, SearchIndex, Stats};

/// What can go wrong; each variant is a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("empty query: type some words, a hash or an address")]
    EmptyQuery,
    #[error("query too long: {chars} characters (at most {max})")]
    QueryTooLong { chars: usize, max: usize },
    #[error("unknown filter: {0}")]
    UnknownFilter(String),
    #[error("bad document {id:?}: {why}")]
    BadDoc { id: String, why: String },
    #[error("feed preferences: {0}")]
    BadPrefs(String),
    #[error("audit report: {0}")]
    BadReport(String),
    #[error("ingesting {0}")]
    Ingest(String),
    #[error("embeddings: {0}")]
    Embed(String),
    #[error("search store: {0}")]
    Store(String),
    #[error("full-text index: {0}")]
    Text(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The caller's mistake (HTTP 400), as opposed to the node's.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Error::EmptyQuery
                | Error::QueryTooLong { .. }
                | Error::UnknownFilter(_)
                | Error::BadDoc { .. }
                | Error::BadPrefs(_)
                | Error::BadReport(_)
        )
    }
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Text(e.to_string())
    }
}

macro_rules! store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(e.to_string())
            }
        }
    )*};
}
store_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

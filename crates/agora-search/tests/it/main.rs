//! The crate's integration tests, in one binary: each file a module (one link of the
//! workspace's dependencies instead of one per file).

mod chain;
mod feed;
mod index;
mod ingest;

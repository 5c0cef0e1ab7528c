//! Agora's analytics (DESIGN.md §10): SQL over every table of the chain, with Apache
//! DataFusion over Arrow and Parquet.
//!
//! A node keeps its chain's history as columnar tables ([`tables`]): immutable Parquet
//! segments by height range and an in-memory tail, extended as each block commits, so a query
//! never reads the store row by row and a block's rows are queryable as soon as it commits.
//! Queries are read-only and bounded (time, rows, memory), run on a runtime of their own, and
//! stop when their caller goes away ([`Analytics::query`]). [`http`] serves them as
//! `POST /v1/sql`, and [`format`] writes results as a table, CSV, JSON, Arrow or Parquet.
//!
//! Who could abuse what: a query is the only input. Writes, DDL and other statements are
//! refused before planning; a query past its time, row or memory limit stops with its own
//! error; at most a few run at once and each on the analytics runtime's two threads, so the
//! node's block production and API keep their cores.

#![forbid(unsafe_code)]

pub mod anomaly;
mod concat;
mod engine;
mod error;
pub mod format;
pub mod http;
pub mod job;
mod lake;
pub mod predict;
pub mod tables;

/// The engine and the columnar format, as this crate uses them (one version for every crate).
pub use {arrow, datafusion};

pub use engine::{
    Analytics, FileTable, MAX_OPERATORS, MAX_RESULT_BYTES, MAX_SCANS, MAX_SQL_BYTES,
    MAX_TABLE_ROWS, Options, QueryLimits, QueryOutput, catalog, free_query_config, query_files,
};
pub use error::{Error, Result};
pub use lake::segment_properties;

#[cfg(test)]
mod tests;

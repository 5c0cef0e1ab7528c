use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong in analytics. Each has a stable [`Error::code`] for the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL does not parse, or is empty or too long.
    #[error("SQL syntax: {0}")]
    Syntax(String),
    /// Not a query: a write, DDL or another statement.
    #[error("read only: only SELECT queries are allowed here (got `{0}`)")]
    ReadOnly(String),
    /// A table that does not exist.
    #[error("unknown table `{name}`; the tables are: {known}")]
    UnknownTable {
        /// The name asked for.
        name: String,
        /// The tables there are.
        known: String,
    },
    /// The query does not plan (an unknown column, a type error…).
    #[error("{0}")]
    Plan(String),
    /// The query failed while running.
    #[error("query failed: {0}")]
    Execution(String),
    /// Past the time limit.
    #[error("the query took longer than its limit of {limit:?} and was stopped")]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// Past the row cap.
    #[error("the result has more than {max} rows: add a LIMIT or aggregate")]
    RowCap {
        /// The cap.
        max: usize,
    },
    /// Past the memory cap.
    #[error("the query needs more memory than its limit: {0}")]
    MemoryCap(String),
    /// Too many queries at once.
    #[error("{max} queries are already running: try again shortly")]
    Busy {
        /// Queries allowed at once.
        max: usize,
    },
    /// A block given out of order to the tables.
    #[error("block {got} given to the tables, which expect block {expected}")]
    OutOfOrder {
        /// The next height the tables take.
        expected: u64,
        /// The height given.
        got: u64,
    },
    /// A job's height that this node's tables do not hold (yet).
    #[error("height {height} is not in this node's tables yet (they hold blocks up to {})", indexed.map_or_else(|| "none".to_string(), |h| h.to_string()))]
    NotIndexed {
        /// The height asked for.
        height: u64,
        /// The last height held.
        indexed: Option<u64>,
    },
    /// A job's height that the chain has not reached.
    #[error("height {height} is not committed yet (the chain is at {})", tip.map_or_else(|| "no block".to_string(), |h| h.to_string()))]
    FutureHeight {
        /// The height asked for.
        height: u64,
        /// The last committed height.
        tip: Option<u64>,
    },
    /// A series that cannot be forecast, or a model that did not fit.
    #[error("forecast: {0}")]
    Forecast(String),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The node's store failed or holds something unreadable.
    #[error("store: {0}")]
    Store(String),
    /// A bug or an unexpected failure of a library.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Syntax(_) => "sql_syntax",
            Error::ReadOnly(_) => "read_only",
            Error::UnknownTable { .. } => "unknown_table",
            Error::Plan(_) => "sql_plan",
            Error::Execution(_) => "sql_execution",
            Error::Timeout { .. } => "query_timeout",
            Error::RowCap { .. } => "row_cap",
            Error::MemoryCap(_) => "memory_cap",
            Error::Busy { .. } => "busy",
            Error::OutOfOrder { .. } => "out_of_order",
            Error::NotIndexed { .. } => "height_not_indexed",
            Error::FutureHeight { .. } => "height_not_committed",
            Error::Forecast(_) => "forecast",
            Error::Io { .. } => "io",
            Error::Store(_) => "store",
            Error::Internal(_) => "internal",
        }
    }

    /// Whether the caller's query is at fault (as opposed to the service).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::Syntax(_)
                | Error::ReadOnly(_)
                | Error::UnknownTable { .. }
                | Error::Plan(_)
                | Error::Forecast(_)
                | Error::RowCap { .. }
                | Error::MemoryCap(_)
                | Error::Timeout { .. }
                | Error::FutureHeight { .. }
        )
    }

    /// Whether the query ran before it failed (on its time, memory or row limit, in its
    /// execution, or in fitting a forecast), as opposed to being refused before any work.
    pub fn failed_running(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::MemoryCap(_)
                | Error::RowCap { .. }
                | Error::Execution(_)
                | Error::Forecast(_)
        )
    }

    /// Whether a verifier that meets this error re-running a job must fail the job (a
    /// provider that delivered an answer to it delivered a wrong one), as opposed to giving no
    /// verdict yet for its own passing reasons (busy, tables still being indexed, a store
    /// error). Time and memory count as the job's: the verifier runs with more of both than the
    /// provider had; a height past the verifier's chain is one no provider could have answered
    /// (the verifier's chain holds the job's settlement, after it ran).
    pub fn is_deterministic(&self) -> bool {
        // Every fault of the caller's query, and a query that fails while it runs.
        self.is_client_error() || matches!(self, Error::Execution(_))
    }
}

/// Analytics' results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

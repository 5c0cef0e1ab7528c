//! The analytics service of a node: keeps the history tables current as blocks commit and
//! answers read-only SQL within limits, on a runtime of its own so that a heavy query never
//! slows the node's block production or its API.

use crate::format::Format;
use crate::lake::{Lake, View};
use crate::tables::{
    BlockData, HISTORY, STATE, TableBuilder, TableDef, account_row, model_row, neuron_row,
    provider_row, subnet_row,
};
use crate::{Error, Result};
use agora_chain::{CommittedBlock, Node};
use agora_state::subnet::{Neuron, Subnet, SubnetIndex};
use agora_state::{Account, ModelInfo, Provider, StateRead as _};
use agora_types::{Address, Hash};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode as _, TreeNodeRecursion};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures_util::StreamExt as _;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, broadcast, watch};

/// Limits on one query. A query past one of them fails with its own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall time from parsing to the last row.
    pub timeout: Duration,
    /// Most rows in the result.
    pub max_rows: usize,
    /// Most memory its operators may hold (sorts, joins, aggregations).
    pub memory_bytes: usize,
}

impl QueryLimits {
    /// The most a caller may ask for.
    pub const MAX: QueryLimits = QueryLimits {
        // Below the API's own 30 s limit on a request.
        timeout: Duration::from_secs(25),
        max_rows: 1_000_000,
        memory_bytes: 2 << 30,
    };

    /// Each limit no larger than [`QueryLimits::MAX`]'s.
    pub fn clamped(self) -> Self {
        Self {
            timeout: self.timeout.min(Self::MAX.timeout),
            max_rows: self.max_rows.min(Self::MAX.max_rows),
            memory_bytes: self.memory_bytes.min(Self::MAX.memory_bytes),
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_rows: 10_000,
            memory_bytes: 512 << 20,
        }
    }
}

/// A query's result.
#[derive(Clone, Debug)]
pub struct QueryOutput {
    /// Its columns.
    pub schema: SchemaRef,
    /// Its rows.
    pub batches: Vec<RecordBatch>,
    /// How many rows.
    pub rows: usize,
    /// The last block the history tables held (`None`: none yet).
    pub height: Option<u64>,
    /// Time taken.
    pub elapsed: Duration,
}

/// Most rows a state table may have (the state of a far larger chain needs a columnar copy
/// kept up to date, not a conversion per height).
const MAX_STATE_ROWS: usize = 1_000_000;

/// Queries at once; more are refused as busy.
pub(crate) const MAX_CONCURRENT: usize = 4;
/// Paid jobs (and verifiers' re-runs) at once, in slots of their own.
pub(crate) const JOB_SLOTS: usize = 2;

/// How the tables are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Blocks per Parquet segment (fewer when their rows pass a million).
    pub segment_blocks: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            segment_blocks: crate::lake::SEGMENT_BLOCKS,
        }
    }
}

/// The analytics service: start it once per node with [`Analytics::start`].
#[derive(Clone, Debug)]
pub struct Analytics {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    node: Arc<Node>,
    pub(crate) lake: RwLock<Lake>,
    /// Queries and indexing run here, not on the node's runtime.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) job_permits: Arc<Semaphore>,
    pub(crate) verify_permits: Arc<Semaphore>,
    running: AtomicUsize,
    state_cache: Mutex<BTreeMap<&'static str, (u64, RecordBatch)>>,
    /// Rows of a history table up to a height, `(height, table)` → rows: a job's price counts
    /// them before it runs, and they never change once the height is indexed.
    pub(crate) row_counts: Mutex<BTreeMap<(u64, String), u64>>,
    /// Held while a state table is converted: queries that want it meanwhile wait for it and
    /// take the cached result, instead of converting it again each.
    converting: Mutex<()>,
    stop: watch::Sender<bool>,
    indexed: watch::Sender<Option<u64>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics")
            .field("height", &self.lake.read().height())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.lock().take() {
            rt.shutdown_background();
        }
    }
}

fn committed(node: &Node, height: u64) -> Result<Option<Arc<CommittedBlock>>> {
    let snapshot = node.snapshot().map_err(|e| Error::Store(e.to_string()))?;
    let Some(block) = snapshot
        .block(height)
        .map_err(|e| Error::Store(e.to_string()))?
    else {
        return Ok(None);
    };
    let results = snapshot
        .results(height)
        .map_err(|e| Error::Store(e.to_string()))?
        .ok_or_else(|| Error::Store(format!("block {height} has no results")))?;
    Ok(Some(Arc::new(CommittedBlock {
        hash: block.hash(),
        block,
        results,
    })))
}

impl Analytics {
    /// Opens the tables in `dir`, catches up with what `node` has committed, and keeps them
    /// current from then on (until every handle is dropped).
    pub fn start(node: Arc<Node>, dir: &Path) -> Result<Self> {
        Self::start_with(node, dir, Options::default())
    }

    /// [`Analytics::start`] with `options`.
    pub fn start_with(node: Arc<Node>, dir: &Path, options: Options) -> Result<Self> {
        let mut lake = Lake::open(dir, node.chain_id())?;
        lake.set_segment_blocks(options.segment_blocks);
        // Tables of another history under the same chain id (a store deleted or restored from
        // an older copy): start again from the store.
        if let Some((height, hash)) = lake.last_segment() {
            let stored = committed(&node, height)?.map(|b| b.hash.to_hex());
            if stored.as_deref() != Some(hash) {
                tracing::warn!(
                    height,
                    "the analytics tables do not match the store's block {height}: rebuilding them"
                );
                lake.reset()?;
            }
        }
        let runtime = analytics_runtime()?;
        let (stop, stopped) = watch::channel(false);
        let (indexed, _) = watch::channel(lake.height());
        let inner = Arc::new(Inner {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            node: node.clone(),
            lake: RwLock::new(lake),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            job_permits: Arc::new(Semaphore::new(JOB_SLOTS)),
            verify_permits: Arc::new(Semaphore::new(1)),
            running: AtomicUsize::new(0),
            state_cache: Mutex::new(BTreeMap::new()),
            row_counts: Mutex::new(BTreeMap::new()),
            converting: Mutex::new(()),
            stop,
            indexed,
        });
        // Subscribed before catching up, so no block falls between the two.
        let blocks = node.subscribe();
        let weak = Arc::downgrade(&inner);
        inner.handle.spawn(async move {
            if let Err(e) = follow(weak, blocks, stopped).await {
                tracing::error!("analytics stopped following the chain: {e}");
            }
        });
        Ok(Self { inner })
    }

    /// The last block the node has committed.
    pub fn committed_height(&self) -> Result<Option<u64>> {
        let snapshot = self
            .inner
            .node
            .snapshot()
            .map_err(|e| Error::Store(e.to_string()))?;
        snapshot.height().map_err(|e| Error::Store(e.to_string()))
    }

    /// The last block the history tables hold.
    pub fn height(&self) -> Option<u64> {
        // Not the lake's lock: a segment being written holds it.
        *self.inner.indexed.borrow()
    }

    /// Waits until the tables hold block `height` (or `timeout` passes); returns whether they do.
    pub async fn wait_for(&self, height: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.indexed.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|h| h.is_some_and(|h| h >= height)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Segments written so far.
    pub fn segments(&self) -> usize {
        self.inner.lake.read().segments()
    }

    /// Queries running now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Runs one read-only query. Dropping the returned future cancels the query.
    pub async fn query(&self, sql: &str, limits: QueryLimits) -> Result<QueryOutput> {
        self.run_task(sql, limits, None).await.map(|(out, _)| out)
    }

    /// [`Analytics::query`], with the result written in `format` under the same slot, time
    /// limit and memory cap (and at most [`MAX_RESULT_BYTES`]).
    pub async fn query_as(
        &self,
        sql: &str,
        limits: QueryLimits,
        format: Format,
    ) -> Result<(QueryOutput, Vec<u8>)> {
        self.run_task(sql, limits, Some(format))
            .await
            .map(|(out, bytes)| (out, bytes.unwrap_or_default()))
    }

    async fn run_task(
        &self,
        sql: &str,
        limits: QueryLimits,
        format: Option<Format>,
    ) -> Result<(QueryOutput, Option<Vec<u8>>)> {
        let limits = limits.clamped();
        if sql.len() > MAX_SQL_BYTES {
            return Err(Error::Syntax(format!(
                "the query is {} bytes; at most {MAX_SQL_BYTES}",
                sql.len()
            )));
        }
        let permit = self
            .inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy {
                max: MAX_CONCURRENT,
            })?;
        let inner = self.inner.clone();
        let sql = sql.to_string();
        // Everything — parsing included, whose trees may be deep — runs on the analytics
        // runtime, whose threads have large stacks, never on the caller's.
        let task = self.inner.handle.spawn(async move {
            let _permit = permit;
            inner.running.fetch_add(1, Ordering::Relaxed);
            let _running = Decrement(&inner.running);
            let start = Instant::now();
            let work = async {
                check_read_only(&sql)?;
                let view = inner.lake.read().view();
                let mut out = execute(Some(view), Some(&inner), &[], &sql, limits).await?;
                let bytes = match format {
                    Some(format) => Some(write_output(&out, format)?),
                    None => None,
                };
                out.elapsed = start.elapsed();
                Ok((out, bytes))
            };
            match tokio::time::timeout(limits.timeout, work).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    limit: limits.timeout,
                }),
            }
        });
        let mut guard = AbortOnDrop(task);
        match (&mut guard.0).await {
            Ok(r) => r,
            Err(e) => Err(Error::Internal(format!("the query's task failed: {e}"))),
        }
    }
}

/// `out` written in `format`, at most [`MAX_RESULT_BYTES`] (and [`MAX_TABLE_ROWS`] as a table).
fn write_output(out: &QueryOutput, format: Format) -> Result<Vec<u8>> {
    if format == Format::Table && out.rows > MAX_TABLE_ROWS {
        return Err(Error::RowCap {
            max: MAX_TABLE_ROWS,
        });
    }
    let bytes = crate::format::write(format, &out.schema, &out.batches)?;
    if bytes.len() > MAX_RESULT_BYTES {
        return Err(Error::MemoryCap(format!(
            "the result is {} bytes, at most {MAX_RESULT_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// A table kept as Parquet files outside a node (an ingested EVM chain's, for example).
#[derive(Clone, Debug)]
pub struct FileTable {
    /// Its name in SQL.
    pub name: String,
    /// Its columns (every file has them).
    pub schema: SchemaRef,
    /// Its files, absolute paths.
    pub files: Vec<std::path::PathBuf>,
}

/// Runs one read-only query over `tables` alone, in this process, with the checks and limits
/// of a node's queries, and writes the result in `format`. Blocks the calling thread (which
/// must not be a runtime's); the query runs on a runtime of its own.
pub fn query_files(
    tables: &[FileTable],
    sql: &str,
    limits: QueryLimits,
    format: Format,
) -> Result<(QueryOutput, Vec<u8>)> {
    let limits = limits.clamped();
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::Syntax(format!(
            "the query is {} bytes; at most {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    let runtime = analytics_runtime()?;
    let tables = tables.to_vec();
    let sql = sql.to_string();
    let task = runtime.spawn(async move {
        let start = Instant::now();
        let work = async {
            check_read_only(&sql)?;
            let mut out = execute(None, None, &tables, &sql, limits).await?;
            let bytes = write_output(&out, format)?;
            out.elapsed = start.elapsed();
            Ok((out, bytes))
        };
        match tokio::time::timeout(limits.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                limit: limits.timeout,
            }),
        }
    });
    let result = runtime
        .block_on(task)
        .map_err(|e| Error::Internal(format!("the query's task failed: {e}")))?;
    runtime.shutdown_background();
    result
}

/// The runtime queries run on: two threads with large stacks (a query's plan may be deep).
fn analytics_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(STACK_BYTES)
        .thread_name("analytics")
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the analytics runtime: {e}")))
}

/// Largest formatted result.
pub const MAX_RESULT_BYTES: usize = 256 << 20;
/// Most rows rendered as an aligned text table.
pub const MAX_TABLE_ROWS: usize = 10_000;
/// Most operators (arithmetic, comparisons, AND/OR…) in one query: a long chain of them makes
/// a deep tree, which must fit the analytics threads' stacks.
pub const MAX_OPERATORS: usize = 1_000;
/// The analytics threads' stack.
const STACK_BYTES: usize = 32 << 20;

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Aborts a task when the future waiting for it is dropped (a client gone, a request
/// cancelled): the query stops instead of running on for nobody.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Refuses anything but one query (`SELECT`, `WITH`, `VALUES`, `EXPLAIN` of one), with a
/// message that says what was sent instead.
pub(crate) fn check_read_only(sql: &str) -> Result<()> {
    if sql.trim().is_empty() {
        return Err(Error::Syntax("the query is empty".into()));
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::Syntax(e.to_string()))?;
    let operators = tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret => true,
            _ => false,
        })
        .count();
    if operators > MAX_OPERATORS {
        return Err(Error::Syntax(format!(
            "the query has {operators} operators; at most {MAX_OPERATORS}"
        )));
    }
    let statements = DFParser::parse_sql(sql).map_err(|e| Error::Syntax(e.to_string()))?;
    if statements.len() != 1 {
        return Err(Error::Syntax(format!(
            "send one statement at a time (got {})",
            statements.len()
        )));
    }
    if is_query(&statements[0]) {
        Ok(())
    } else {
        Err(Error::ReadOnly(first_words(&statements[0].to_string())))
    }
}

/// Whether a statement is a query, or an `EXPLAIN` of one.
fn is_query(statement: &DfStatement) -> bool {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(_) => true,
            Statement::Explain { statement, .. } => {
                matches!(statement.as_ref(), Statement::Query(_))
            }
            _ => false,
        },
        DfStatement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// Most table scans in one query (each opens its files at once).
pub const MAX_SCANS: usize = 32;

/// Functions that build values of a size the caller picks (`repeat('x', 1e12)`): not offered.
const UNBOUNDED_FUNCTIONS: &[&str] = &["repeat", "lpad", "rpad"];

/// Largest query text.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Plans and runs `sql` over `view` (and the state tables of `inner`'s node, if given).
pub(crate) async fn execute(
    view: Option<View>,
    inner: Option<&Arc<Inner>>,
    extra: &[FileTable],
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryOutput> {
    let planned = plan(view, inner, extra, sql, limits, None).await?;
    collect(planned, limits).await
}

/// A planned query, ready to run.
pub(crate) struct Planned {
    frame: datafusion::prelude::DataFrame,
    height: Option<u64>,
    /// The tables it scans, once per scan.
    pub(crate) tables: Vec<String>,
    /// Whether its plan orders rows (an `ORDER BY` somewhere).
    pub(crate) sorted: bool,
}

/// DataFusion's settings for a free query (not a job) on `partitions` threads: batches of 32 Ki
/// rows, which halve the per-batch overhead of hashing and aggregating (`agora bench
/// analytics`: about a fifth off the ten queries against the default 8 Ki). A job keeps the
/// default, re-cut at its height (see [`crate::job`]).
pub fn free_query_config(partitions: usize) -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(partitions)
        .with_batch_size(32 * 1024)
}

/// Plans `sql` over `view` (and the state tables of `inner`'s node, if given). With `at`, as a
/// network job does: the history tables cut at that height, no state tables, one partition
/// read in height order (so the same rows come in the same order on every node), and only
/// functions whose result depends on their arguments alone.
pub(crate) async fn plan(
    view: Option<View>,
    inner: Option<&Arc<Inner>>,
    extra: &[FileTable],
    sql: &str,
    limits: QueryLimits,
    at: Option<u64>,
) -> Result<Planned> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        // A query past its memory fails rather than spilling to this node's disk.
        .with_disk_manager_builder(
            datafusion::execution::disk_manager::DiskManagerBuilder::default()
                .with_mode(datafusion::execution::disk_manager::DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut config = match at {
        None => free_query_config(2).with_information_schema(true),
        Some(_) => SessionConfig::new().with_target_partitions(1),
    };
    if at.is_some() {
        // A recursive CTE reads no table, so it would be billed nothing for its work.
        config.options_mut().execution.enable_recursive_ctes = false;
        // Sorted in runs whose size is counted in rows alone, never in place by bytes held:
        // the order of rows that tie on the key is then the same on every node.
        config.options_mut().execution.sort_in_place_threshold_bytes = usize::MAX;
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    if at.is_some() {
        // Table functions (generate_series, range…) read no table and fold `now()` in their
        // arguments before the plan exists: not offered to a job.
        let names: Vec<String> = ctx.state().table_functions().keys().cloned().collect();
        for name in names {
            ctx.deregister_udtf(&name);
        }
    }
    // Functions whose output a caller sizes at will, outside the memory pool's accounting.
    for name in UNBOUNDED_FUNCTIONS {
        ctx.deregister_udf(name);
    }
    let mut known: Vec<&str> = Vec::new();
    let height = match at {
        Some(h) => Some(h),
        None => view.as_ref().and_then(|v| v.height),
    };
    if let Some(view) = view {
        for (t, def) in HISTORY.iter().enumerate() {
            let table = Arc::new(ChainTable {
                schema: def.schema(),
                files: view.files[t].clone(),
                tail: view.tail[t].clone(),
                ordered: at.is_some(),
            });
            let provider: Arc<dyn TableProvider> = match at {
                None => table,
                Some(h) => {
                    let h = i64::try_from(h)
                        .map_err(|_| Error::Plan(format!("height {h} is out of range")))?;
                    let view = ctx
                        .read_table(table)
                        .and_then(|f| {
                            f.filter(
                                datafusion::prelude::col("height")
                                    .lt_eq(datafusion::prelude::lit(h)),
                            )
                        })
                        .map_err(|e| Error::Internal(e.to_string()))?
                        .into_view();
                    Arc::new(CutTable { view })
                }
            };
            ctx.register_table(def.name, provider)
                .map_err(|e| Error::Internal(e.to_string()))?;
            known.push(def.name);
        }
    }
    for table in extra {
        let provider = ChainTable {
            schema: table.schema.clone(),
            files: table.files.clone(),
            tail: Vec::new(),
            ordered: at.is_some(),
        };
        ctx.register_table(table.name.as_str(), Arc::new(provider))
            .map_err(|e| Error::Internal(e.to_string()))?;
        known.push(&table.name);
    }
    if let Some(inner) = inner.filter(|_| at.is_none()) {
        for def in STATE {
            known.push(def.name);
            let table = StateTable {
                def,
                inner: inner.clone(),
            };
            ctx.register_table(def.name, Arc::new(table))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| planning_error(e, &known))?;
    let mut scans = 0usize;
    let mut tables: Vec<String> = Vec::new();
    let (mut explained, mut union) = (false, false);
    let mut unsettled: Option<String> = None;
    frame
        .logical_plan()
        .apply_with_subqueries(|node| {
            match node {
                LogicalPlan::TableScan(scan) => {
                    scans += 1;
                    tables.push(scan.table_name.table().to_string());
                }
                LogicalPlan::Union(_) if at.is_some() => union = true,
                LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => explained = true,
                _ => {}
            }
            if at.is_some() && unsettled.is_none() {
                node.apply_expressions(|e| {
                    e.apply(|e| {
                        if let Some(name) = unoffered_in_jobs(e) {
                            unsettled = Some(name);
                            return Ok(TreeNodeRecursion::Stop);
                        }
                        Ok(TreeNodeRecursion::Continue)
                    })
                })?;
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
    if scans > MAX_SCANS {
        return Err(Error::Plan(format!(
            "the query scans tables {scans} times; at most {MAX_SCANS}"
        )));
    }
    if at.is_some() {
        if explained {
            return Err(Error::Plan(
                "a job answers a query, not EXPLAIN: a plan differs between builds".into(),
            ));
        }
        if union {
            return Err(Error::Plan(
                "UNION is not offered in a job: its inputs are merged as they come, so the \
                 order of its rows differs between runs"
                    .into(),
            ));
        }
        if let Some(name) = unsettled {
            return Err(Error::Plan(format!(
                "{name}() is not offered in a job: a job offers only functions whose result is \
                 the same on every machine, so that a verifier can check it"
            )));
        }
    }
    if at.is_some() {
        tables.retain(|t| HISTORY.iter().any(|d| d.name == t.as_str()));
    }
    // Ordered when the rows come out of a sort: through projections, limits and aliases only.
    let mut top = frame.logical_plan();
    let sorted = loop {
        match top {
            LogicalPlan::Sort(_) => break true,
            LogicalPlan::Projection(p) => top = p.input.as_ref(),
            LogicalPlan::Limit(l) => top = l.input.as_ref(),
            LogicalPlan::SubqueryAlias(a) => top = a.input.as_ref(),
            _ => break false,
        }
    };
    Ok(Planned {
        frame,
        height,
        tables,
        sorted,
    })
}

impl Planned {
    /// Its result's columns.
    pub(crate) fn schema(&self) -> arrow::datatypes::Schema {
        self.frame.schema().as_arrow().clone()
    }
}

/// Runs a planned query within `limits`' row and memory caps.
pub(crate) async fn collect(planned: Planned, limits: QueryLimits) -> Result<QueryOutput> {
    let Planned { frame, height, .. } = planned;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame.execute_stream().await.map_err(execution_error)?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut held = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(execution_error)?;
        rows += batch.num_rows();
        held += batch.get_array_memory_size();
        if held > limits.memory_bytes {
            return Err(Error::MemoryCap(format!(
                "the result holds more than {} bytes",
                limits.memory_bytes
            )));
        }
        if rows > limits.max_rows {
            return Err(Error::RowCap {
                max: limits.max_rows,
            });
        }
        batches.push(batch);
    }
    Ok(QueryOutput {
        schema,
        batches,
        rows,
        height,
        elapsed: Duration::ZERO,
    })
}

fn planning_error(e: DataFusionError, known: &[&str]) -> Error {
    let message = e.to_string();
    if let Some(name) = UNBOUNDED_FUNCTIONS
        .iter()
        .find(|f| message.contains(&format!("Invalid function '{f}'")))
    {
        return Error::Plan(format!(
            "{name}() is not offered here: the size of what it builds is the caller's to pick"
        ));
    }
    if let Some(name) = unknown_table(&message) {
        return Error::UnknownTable {
            name,
            known: known.join(", "),
        };
    }
    match e.find_root() {
        DataFusionError::SQL(e, _) => Error::Syntax(e.to_string()),
        DataFusionError::ResourcesExhausted(m) => Error::MemoryCap(m.clone()),
        _ => Error::Plan(message),
    }
}

fn unknown_table(message: &str) -> Option<String> {
    // DataFusion says: "table 'datafusion.public.nope' not found".
    let rest = message.split("table '").nth(1)?;
    let (name, tail) = rest.split_once('\'')?;
    tail.trim_start()
        .starts_with("not found")
        .then(|| name.rsplit('.').next().unwrap_or(name).to_string())
}

fn execution_error(e: DataFusionError) -> Error {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(m) => Error::MemoryCap(m.clone()),
        _ => Error::Execution(e.to_string()),
    }
}

/// Follows the chain until stopped; a failure (a store read, a segment that cannot be written)
/// is retried with a growing pause, the tables serving what they hold meanwhile.
async fn follow(
    inner: std::sync::Weak<Inner>,
    mut blocks: broadcast::Receiver<Arc<CommittedBlock>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut pause = Duration::from_secs(1);
    loop {
        match follow_once(&inner, &mut blocks, &mut stop).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!("analytics tables: {e}; trying again in {pause:?}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Each committed block's rows go into the tables; a gap (a lagging subscription, blocks
/// committed before the start) is filled from the store.
async fn follow_once(
    inner: &std::sync::Weak<Inner>,
    blocks: &mut broadcast::Receiver<Arc<CommittedBlock>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let Some(strong) = inner.upgrade() else {
            return Ok(());
        };
        // Catch up with the store first (blocking reads, off the async workers).
        let caught_up = {
            let strong = strong.clone();
            tokio::task::spawn_blocking(move || catch_up(&strong))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
        };
        caught_up?;
        drop(strong);
        let received = tokio::select! {
            r = blocks.recv() => r,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let Some(strong) = inner.upgrade() else {
            return Ok(());
        };
        match received {
            Ok(block) => {
                let next = strong.lake.read().height().map_or(0, |h| h + 1);
                if block.block.header.height == next {
                    let strong2 = strong.clone();
                    tokio::task::spawn_blocking(move || add(&strong2, &block))
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))??;
                }
                // Older: already in; newer: the catch-up at the loop's top reads the gap.
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

fn add(inner: &Inner, block: &CommittedBlock) -> Result<()> {
    let mut lake = inner.lake.write();
    lake.add(&BlockData::new(
        &block.block,
        &block.hash,
        &block.results.receipts,
        &block.results.block_events,
    ))?;
    let height = lake.height();
    drop(lake);
    inner.indexed.send_replace(height);
    Ok(())
}

fn catch_up(inner: &Inner) -> Result<()> {
    loop {
        let next = inner.lake.read().height().map_or(0, |h| h + 1);
        let Some(block) = committed(&inner.node, next)? else {
            return Ok(());
        };
        add(inner, &block)?;
    }
}

/// A history table: its Parquet segments and its in-memory tail, scanned together.
#[derive(Debug)]
struct ChainTable {
    schema: SchemaRef,
    files: Vec<std::path::PathBuf>,
    tail: Vec<RecordBatch>,
    /// Segments then tail, one after the other in one partition (a job's scan), rather than
    /// side by side.
    ordered: bool,
}

#[async_trait]
impl TableProvider for ChainTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // The segments prune row groups by them; the filter itself still runs over all rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut plans = Vec::new();
        if !self.files.is_empty() {
            // From paths, never parsed: a `*` or `?` in the node's home is no glob.
            let urls = self
                .files
                .iter()
                .map(|p| {
                    let url = url::Url::from_file_path(p).map_err(|()| {
                        DataFusionError::Internal(format!("not an absolute path: {}", p.display()))
                    })?;
                    ListingTableUrl::try_new(url, None)
                })
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(self.schema.clone());
            let table = ListingTable::try_new(config)?;
            plans.push(table.scan(state, projection, filters, limit).await?);
        }
        let tail = MemTable::try_new(self.schema.clone(), vec![self.tail.clone()])?;
        plans.push(tail.scan(state, projection, filters, limit).await?);
        if self.ordered {
            let schema = plans[0].schema();
            return Ok(Arc::new(crate::concat::ConcatExec::new(schema, plans)));
        }
        if plans.len() == 1 {
            return Ok(plans.remove(0));
        }
        UnionExec::try_new(plans)
    }
}

/// A history table cut at a job's height: the view that filters it, its rows re-cut into
/// batches of one size after the filter, so that every operator above sees the same batches on
/// every node (a float sum adds a batch at a time; a sort sorts runs of batches).
#[derive(Debug)]
struct CutTable {
    view: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for CutTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Unsupported: a caller's predicate runs above the cut, on rows at or below the height
        // alone (below it, it would meet rows past the height, which differ between nodes).
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let plan = self.view.scan(state, projection, filters, limit).await?;
        let schema = plan.schema();
        Ok(Arc::new(crate::concat::ConcatExec::new(schema, vec![plan])))
    }
}

/// Functions a job may call: those whose result is the same on every machine (no clocks, no
/// randomness, no platform maths library, no approximations that depend on how rows are
/// batched).
const JOB_FUNCTIONS: &[&str] = &[
    // Scalars.
    "abs",
    "ceil",
    "floor",
    "round",
    "trunc",
    "signum",
    "sqrt",
    "gcd",
    "lcm",
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    "ifnull",
    "greatest",
    "least",
    "concat",
    "concat_ws",
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substr",
    "substring",
    "left",
    "right",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "starts_with",
    "ends_with",
    "strpos",
    "instr",
    "split_part",
    "reverse",
    "initcap",
    "to_hex",
    "ascii",
    "chr",
    "contains",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "regexp_count",
    "date_trunc",
    "date_part",
    "date_bin",
    "to_timestamp",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_timestamp_nanos",
    "to_timestamp_seconds",
    "to_unixtime",
    "from_unixtime",
    "make_date",
    "to_date",
    "to_char",
    "arrow_cast",
    "arrow_typeof",
    "get_field",
    "named_struct",
    "struct",
    "make_array",
    "array_length",
    "cardinality",
    "isnan",
    "iszero",
    "nanvl",
    // Aggregates.
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "array_agg",
    "string_agg",
    "first_value",
    "last_value",
    "nth_value",
    "median",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "var",
    "var_samp",
    "var_pop",
    "covar",
    "covar_samp",
    "covar_pop",
    "corr",
    "bit_and",
    "bit_or",
    "bit_xor",
    "grouping",
    // Windows.
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
];

/// The name of a function in `e` that a job does not offer, if any.
fn unoffered_in_jobs(e: &Expr) -> Option<String> {
    let name = match e {
        Expr::ScalarFunction(f) => f.func.name().to_string(),
        Expr::AggregateFunction(f) => f.func.name().to_string(),
        Expr::WindowFunction(w) => w.fun.name().to_string(),
        Expr::HigherOrderFunction(_) => return Some("a lambda function".into()),
        _ => return None,
    };
    (!JOB_FUNCTIONS.contains(&name.as_str())).then_some(name)
}

/// A state table, converted from the store when a query scans it (once per height).
struct StateTable {
    def: &'static TableDef,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTable")
            .field("table", &self.def.name)
            .finish()
    }
}

#[async_trait]
impl TableProvider for StateTable {
    fn schema(&self) -> SchemaRef {
        self.def.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let inner = self.inner.clone();
        let def = self.def;
        let batch = tokio::task::spawn_blocking(move || state_batch(&inner, def))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        MemTable::try_new(self.def.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

fn decode<T: borsh::BorshDeserialize>(key: &[u8], bytes: &[u8]) -> Result<T> {
    borsh::from_slice(bytes).map_err(|e| {
        Error::Store(format!(
            "cannot decode state key {}: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

/// The rows of a state table at the store's latest height (cached per height).
fn state_batch(inner: &Inner, def: &'static TableDef) -> Result<RecordBatch> {
    let _one_at_a_time = inner.converting.lock();
    let snapshot = inner
        .node
        .snapshot()
        .map_err(|e| Error::Store(e.to_string()))?;
    let height = snapshot
        .height()
        .map_err(|e| Error::Store(e.to_string()))?
        .unwrap_or(0);
    if let Some((h, batch)) = inner.state_cache.lock().get(def.name)
        && *h == height
    {
        return Ok(batch.clone());
    }
    let mut rows = TableBuilder::new(def);
    let scan = |prefix: &[u8]| -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let found = snapshot
            .scan_prefix(prefix, MAX_STATE_ROWS + 1)
            .map_err(|e| Error::Store(e.to_string()))?;
        if found.len() > MAX_STATE_ROWS {
            return Err(Error::Execution(format!(
                "the state table {} has more than {MAX_STATE_ROWS} rows",
                def.name
            )));
        }
        Ok(found)
    };
    let address = |key: &[u8], prefix: &[u8]| -> Result<Address> {
        let bytes: [u8; 20] = key[prefix.len()..]
            .try_into()
            .map_err(|_| Error::Store(format!("a malformed state key {key:?}")))?;
        Ok(Address(bytes))
    };
    match def.name {
        "accounts" => {
            for (key, value) in scan(b"acct/")? {
                let account: Account = decode(&key, &value)?;
                rows.push(account_row(&address(&key, b"acct/")?, &account));
            }
        }
        "providers" => {
            for (key, value) in scan(b"prov/")? {
                let provider: Provider = decode(&key, &value)?;
                rows.push(provider_row(&address(&key, b"prov/")?, &provider));
            }
        }
        "models" => {
            for (key, value) in scan(b"modl/")? {
                let model: ModelInfo = decode(&key, &value)?;
                let id: [u8; 32] = key[5..]
                    .try_into()
                    .map_err(|_| Error::Store(format!("a malformed model key {key:?}")))?;
                rows.push(model_row(&Hash(id), &model));
            }
        }
        "subnets" | "neurons" => {
            let index: SubnetIndex = match snapshot
                .get(&agora_state::subnet_index_key())
                .map_err(|e| Error::Store(e.to_string()))?
            {
                Some(bytes) => decode(b"snet", &bytes)?,
                None => SubnetIndex::default(),
            };
            for slot in &index.subnets {
                let key = agora_state::subnet_key(slot.netuid);
                let Some(bytes) = snapshot
                    .get(&key)
                    .map_err(|e| Error::Store(e.to_string()))?
                else {
                    continue;
                };
                let subnet: Subnet = decode(&key, &bytes)?;
                if def.name == "subnets" {
                    rows.push(subnet_row(&subnet));
                    continue;
                }
                for uid in 0..subnet.n {
                    let key = agora_state::neuron_key(subnet.netuid, uid);
                    if let Some(bytes) = snapshot
                        .get(&key)
                        .map_err(|e| Error::Store(e.to_string()))?
                    {
                        let neuron: Neuron = decode(&key, &bytes)?;
                        rows.push(neuron_row(subnet.netuid, uid, &neuron));
                    }
                }
            }
        }
        other => return Err(Error::Internal(format!("no state table {other}"))),
    }
    let batch = rows.finish();
    inner
        .state_cache
        .lock()
        .insert(def.name, (height, batch.clone()));
    Ok(batch)
}

/// The tables' definitions, for a schema browser.
pub fn catalog() -> Vec<&'static TableDef> {
    HISTORY.iter().chain(STATE).collect()
}

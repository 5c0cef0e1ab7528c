//! Queries and forecasts as network jobs (DESIGN.md §10): a model of the market,
//! [`MODEL_NAME`], whose answer at a stated height is the same on every node, so that a sampled
//! verifier re-runs it and compares.
//!
//! **What makes it the same everywhere.** The history tables are cut at the job's height; a
//! table's segments and tail are read one after the other in one partition, in height order,
//! and re-cut into batches of one size after the cut, whatever the node's segment boundaries
//! (float sums and sort runs go a batch at a time); the state tables (the current state, not a
//! history) are not offered; only functions on an allowlist of machine-independent ones may be
//! called, and table functions, recursive CTEs, `UNION` and `EXPLAIN` are refused. Integers
//! compare exactly, floats within a relative tolerance ([`SQL_TOLERANCE`]), and rows as a
//! multiset unless the plan ends in a sort.
//!
//! **What it costs.** A job is billed for the rows it reads — every row at or below its height
//! of each table it scans — as its input tokens, and for the rows it returns as its output
//! tokens: both counts a verifier recomputes.
//!
//! **Who could abuse what.** A client's query is bounded like any other (time, rows, memory)
//! and [`MAX_JOB_ROWS`] keeps a result small enough to be revealed to a verifier. A provider
//! that drops, adds, reorders or changes rows, or miscounts what it read, fails the check
//! (`wrong_result`, `wrong_count`). A verifier re-runs a job as [`Role::Verifier`], with more
//! time and memory than the provider had and a slot of its own; what still fails there fails
//! the check. Only a verifier that is busy or still indexing the height gives no verdict yet.

use crate::engine::{Planned, collect, plan};
use crate::predict::{ForecastOptions, Series};
use crate::{Analytics, Error, QueryLimits, Result};
use arrow::array::{Array, AsArray as _};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The model's name in the registry.
pub const MODEL_NAME: &str = "agora-analytics@1";
/// Most rows a job returns (its result is revealed to a verifier whole).
pub const MAX_JOB_ROWS: usize = 1_000;
/// Relative tolerance between a claimed number and the re-computed one in a query's result.
pub const SQL_TOLERANCE: f64 = 1e-9;
/// Relative tolerance between a claimed forecast and the re-computed one (a model fitted by
/// numerical optimisation).
pub const FORECAST_TOLERANCE: f64 = 1e-6;
/// How long a job waits for its height to be indexed here.
const HEIGHT_WAIT: Duration = Duration::from_secs(5);
/// Row counts kept for pricing (a few dozen bytes each).
const ROW_COUNTS_KEPT: usize = 4_096;
/// How long a provider's run may take.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a verifier's re-run may take: longer than a provider's, so that a slower verifier
/// does not fail a job that ran within its limit.
pub const VERIFIER_TIMEOUT: Duration = Duration::from_secs(25);
/// Most points in a forecast job's series (gaps filled included).
pub const MAX_FORECAST_POINTS: usize = 10_000;
/// Longest season of a forecast job, in steps.
pub const MAX_FORECAST_SEASON: usize = 1_000;
/// Most backtest windows of a forecast job.
pub const MAX_FORECAST_WINDOWS: usize = 20;

/// The model's id: blake3 of its name, the engine's version, every history table's columns and
/// the forecasting method, so that a change to any of them is another model.
pub fn model_id() -> agora_types::Hash {
    let mut text = format!(
        "agora analytics\n{MODEL_NAME}\ndatafusion {}\nforecast augurs-0.10 ets/mstl\n",
        datafusion::DATAFUSION_VERSION
    );
    for def in crate::tables::HISTORY {
        text.push_str(def.name);
        for c in def.columns {
            text.push_str(&format!(" {}:{:?}:{}", c.name, c.kind, c.nullable));
        }
        text.push('\n');
    }
    agora_types::Hash::digest(text.as_bytes())
}

/// One column of a job's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobColumn {
    /// Its name.
    pub name: String,
    /// Its Arrow type, as Arrow prints it.
    #[serde(rename = "type")]
    pub ty: String,
}

/// A query's answer as a job delivers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqlAnswer {
    /// The columns.
    pub columns: Vec<JobColumn>,
    /// The rows, each a JSON array in the columns' order: integers and floats as numbers,
    /// booleans as booleans, every other value (amounts, times, text) as its text.
    pub rows: Vec<Vec<Value>>,
    /// Rows read: every row at or below the height of each table scanned.
    pub scanned: u64,
    /// Whether the query orders its rows (otherwise they compare as a multiset).
    pub sorted: bool,
}

/// Who runs a job: its provider, or a verifier re-running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Within [`PROVIDER_TIMEOUT`] and 512 MiB.
    Provider,
    /// Within [`VERIFIER_TIMEOUT`] and 1 GiB: a verifier slower than the provider still
    /// finishes what the provider did.
    Verifier,
}

impl Role {
    /// Its time limit.
    pub fn timeout(self) -> Duration {
        match self {
            Role::Provider => PROVIDER_TIMEOUT,
            Role::Verifier => VERIFIER_TIMEOUT,
        }
    }

    /// Its memory limit.
    pub fn memory_bytes(self) -> usize {
        match self {
            Role::Provider => 512 << 20,
            Role::Verifier => 1 << 30,
        }
    }
}

/// A forecast job's parameters beside its query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForecastParams {
    /// Steps ahead (1 to [`crate::predict::MAX_HORIZON`]).
    pub horizon: usize,
    /// Steps per season.
    pub season: Option<usize>,
    /// The intervals' level in thousandths (950: 95 %).
    pub level_milli: u32,
    /// Backtest windows.
    pub windows: usize,
}

impl Analytics {
    /// Answers `sql` as a job at `height` (see the module's documentation), or with `run`
    /// false only counts the rows it would read (its price). Blocks the calling thread, which
    /// must not be an async runtime's.
    pub fn sql_job(&self, sql: &str, height: u64, run: bool) -> Result<SqlAnswer> {
        self.sql_job_as(sql, height, run, Role::Provider)
    }

    /// [`Analytics::sql_job`] in `role`: a verifier gets more time and memory, and a slot of
    /// its own.
    pub fn sql_job_as(&self, sql: &str, height: u64, run: bool, role: Role) -> Result<SqlAnswer> {
        if sql.len() > crate::MAX_SQL_BYTES {
            return Err(Error::Syntax(format!(
                "the query is {} bytes; at most {}",
                sql.len(),
                crate::MAX_SQL_BYTES
            )));
        }
        // A provider a block or two behind the gateway waits for its node to catch up.
        let start = std::time::Instant::now();
        loop {
            let tip = self.committed_height()?;
            if tip.is_some_and(|tip| height <= tip) {
                break;
            }
            if role == Role::Verifier || start.elapsed() >= HEIGHT_WAIT {
                return Err(Error::FutureHeight { height, tip });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let limits = QueryLimits {
            max_rows: MAX_JOB_ROWS,
            timeout: role.timeout(),
            memory_bytes: role.memory_bytes(),
        };
        let this = self.clone();
        let sql = sql.to_string();
        self.blocking(limits, role, async move {
            this.sql_job_in(&sql, height, limits, run).await
        })
    }

    /// A forecast job: `sql` (two columns: an integer time and a number) at `height`,
    /// forecast with `params`. Returns the answer's cost in rows read, and the forecast as JSON.
    pub fn forecast_job(
        &self,
        sql: &str,
        height: u64,
        params: ForecastParams,
        role: Role,
    ) -> Result<(SqlAnswer, Value)> {
        check_forecast(&params)?;
        let answer = self.sql_job_as(sql, height, true, role)?;
        let points = crate::predict::points_from_rows(&answer.rows)?;
        let series = Series::from_points(points)?;
        if series.values.len() > MAX_FORECAST_POINTS {
            return Err(Error::Forecast(format!(
                "the series has {} points with its gaps filled; a job forecasts at most {MAX_FORECAST_POINTS}",
                series.values.len()
            )));
        }
        let options = ForecastOptions {
            horizon: params.horizon,
            season: params.season,
            level: f64::from(params.level_milli) / 1000.0,
            backtest_windows: params.windows,
        };
        let forecast = crate::predict::forecast(&series, options)?;
        let value = serde_json::to_value(&forecast)
            .map_err(|e| Error::Internal(format!("a forecast as JSON: {e}")))?;
        Ok((answer, value))
    }

    async fn sql_job_in(
        &self,
        sql: &str,
        height: u64,
        limits: QueryLimits,
        run: bool,
    ) -> Result<SqlAnswer> {
        crate::engine::check_read_only(sql)?;
        if !self.wait_for(height, HEIGHT_WAIT).await {
            return Err(Error::NotIndexed {
                height,
                indexed: self.height(),
            });
        }
        let view = self.inner.lake.read().view();
        let planned = plan(Some(view.clone()), None, &[], sql, limits, Some(height)).await?;
        let sorted = planned.sorted;
        let mut scanned = 0u64;
        for table in &planned.tables {
            let key = (height, table.clone());
            if let Some(n) = self.inner.row_counts.lock().get(&key) {
                scanned = scanned.saturating_add(*n);
                continue;
            }
            let count = format!("SELECT count(*) FROM \"{table}\"");
            let counted: Planned =
                plan(Some(view.clone()), None, &[], &count, limits, Some(height)).await?;
            let out = collect(counted, limits).await?;
            let n = out
                .batches
                .first()
                .filter(|b| b.num_rows() == 1)
                .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>())
                .map(|a| a.value(0))
                .ok_or_else(|| Error::Internal(format!("counting {table}")))?;
            let n = u64::try_from(n).unwrap_or(0);
            let mut counts = self.inner.row_counts.lock();
            if counts.len() >= ROW_COUNTS_KEPT {
                // The lowest heights go first: jobs name recent ones.
                counts.pop_first();
            }
            counts.insert(key, n);
            drop(counts);
            scanned = scanned.saturating_add(n);
        }
        let columns = planned_columns(&planned);
        if !run {
            return Ok(SqlAnswer {
                columns,
                rows: Vec::new(),
                scanned,
                sorted,
            });
        }
        let out = collect(planned, limits).await?;
        Ok(SqlAnswer {
            columns,
            rows: json_rows(&out.batches),
            scanned,
            sorted,
        })
    }

    /// Runs `work` on the analytics runtime under a query slot and `limits`' time, waiting for
    /// it on this thread.
    fn blocking<T: Send + 'static>(
        &self,
        limits: QueryLimits,
        role: Role,
        work: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        // Slots of their own: free queries on the node's API never crowd paid jobs out, and
        // jobs never crowd out a verifier's re-runs.
        let (slots, max) = match role {
            Role::Provider => (&self.inner.job_permits, crate::engine::JOB_SLOTS),
            Role::Verifier => (&self.inner.verify_permits, 1),
        };
        let permit = slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy { max })?;
        // The wait for the height is not the query's time.
        let limit = limits.timeout + HEIGHT_WAIT;
        // A plain channel: this thread may be anything but a runtime's worker.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = self.inner.handle.spawn(async move {
            let r = match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    limit: limits.timeout,
                }),
            };
            // The slot is free before the answer is: the caller's next job finds it so.
            drop(permit);
            let _ = tx.send(r);
        });
        let r = rx.recv();
        task.abort();
        r.unwrap_or_else(|_| Err(Error::Internal("the job's task stopped".into())))
    }
}

/// A forecast job's parameters, checked before any work.
pub fn check_forecast(params: &ForecastParams) -> Result<()> {
    let bad = |m: String| Err(Error::Forecast(m));
    if params.horizon == 0 || params.horizon > crate::predict::MAX_HORIZON {
        return bad(format!(
            "the horizon must be 1 to {} steps, got {}",
            crate::predict::MAX_HORIZON,
            params.horizon
        ));
    }
    if params
        .season
        .is_some_and(|s| !(2..=MAX_FORECAST_SEASON).contains(&s))
    {
        return bad(format!(
            "a season is 2 to {MAX_FORECAST_SEASON} steps, got {:?}",
            params.season
        ));
    }
    if !(1..=999).contains(&params.level_milli) {
        return bad(format!(
            "the level is 1 to 999 thousandths, got {}",
            params.level_milli
        ));
    }
    if params.windows > MAX_FORECAST_WINDOWS {
        return bad(format!(
            "at most {MAX_FORECAST_WINDOWS} backtest windows, got {}",
            params.windows
        ));
    }
    Ok(())
}

fn planned_columns(planned: &Planned) -> Vec<JobColumn> {
    planned
        .schema()
        .fields()
        .iter()
        .map(|f| JobColumn {
            name: f.name().clone(),
            ty: f.data_type().to_string(),
        })
        .collect()
}

/// Rows as JSON arrays: integers and floats as numbers (a float that is not finite as its
/// text), booleans as booleans, nulls as null, anything else as Arrow prints it.
pub fn json_rows(batches: &[RecordBatch]) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    let options = arrow::util::display::FormatOptions::default();
    for batch in batches {
        let mut columns: Vec<Vec<Value>> = Vec::with_capacity(batch.num_columns());
        for array in batch.columns() {
            columns.push(json_column(array.as_ref(), &options));
        }
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    rows
}

fn json_column(array: &dyn Array, options: &arrow::util::display::FormatOptions<'_>) -> Vec<Value> {
    let n = array.len();
    let nulls = |f: &dyn Fn(usize) -> Value| -> Vec<Value> {
        (0..n)
            .map(|i| if array.is_null(i) { Value::Null } else { f(i) })
            .collect()
    };
    let dt = array.data_type();
    if *dt == DataType::Boolean {
        let a = array.as_boolean();
        return nulls(&|i| Value::Bool(a.value(i)));
    }
    if dt.is_signed_integer() {
        if let Ok(cast) = arrow::compute::cast(array, &DataType::Int64) {
            let a = cast.as_primitive::<Int64Type>();
            return nulls(&|i| Value::from(a.value(i)));
        }
    } else if dt.is_unsigned_integer() {
        if let Ok(cast) = arrow::compute::cast(array, &DataType::UInt64) {
            let a = cast.as_primitive::<UInt64Type>();
            return nulls(&|i| Value::from(a.value(i)));
        }
    } else if dt.is_floating()
        && let Ok(cast) = arrow::compute::cast(array, &DataType::Float64)
    {
        let a = cast.as_primitive::<Float64Type>();
        return nulls(&|i| {
            let x = a.value(i);
            serde_json::Number::from_f64(x)
                .map_or_else(|| Value::String(x.to_string()), Value::Number)
        });
    }
    match arrow::util::display::ArrayFormatter::try_new(array, options) {
        Ok(f) => nulls(&|i| Value::String(f.value(i).to_string())),
        Err(e) => nulls(&|_| Value::String(format!("unprintable: {e}"))),
    }
}

/// Whether two JSON values are the same, numbers within `tolerance` of each other (relative to
/// the larger).
pub fn same_value(a: &Value, b: &Value, tolerance: f64) -> bool {
    close(a, b, tolerance, 0.0)
}

/// Whether a claimed forecast is `expected`'s: every number within [`FORECAST_TOLERANCE`] of
/// the larger of the two and of the forecast's largest value (a bound near zero is as exact
/// as the series' scale allows, no more).
pub fn same_forecast(claimed: &Value, expected: &Value) -> bool {
    fn largest(v: &Value) -> f64 {
        match v {
            Value::Number(n) => n.as_f64().map_or(0.0, f64::abs),
            Value::Array(a) => a.iter().map(largest).fold(0.0, f64::max),
            Value::Object(o) => o.values().map(largest).fold(0.0, f64::max),
            _ => 0.0,
        }
    }
    close(claimed, expected, FORECAST_TOLERANCE, largest(expected))
}

fn close(a: &Value, b: &Value, tolerance: f64, floor: f64) -> bool {
    let same_value = |a: &Value, b: &Value, tolerance: f64| close(a, b, tolerance, floor);
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            // Integers are exact; only two floats may differ by rounding.
            if x.is_f64() && y.is_f64() {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                (x - y).abs() <= tolerance * x.abs().max(y.abs()).max(floor)
            } else {
                false
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b, tolerance))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w, tolerance)))
        }
        _ => a == b,
    }
}

/// Whether a claimed answer is `expected`'s: the same columns, the same rows (values within
/// [`SQL_TOLERANCE`]) in the same order, or in any order when the query orders nothing.
pub fn same_answer(claimed: &SqlAnswer, expected: &SqlAnswer) -> bool {
    if claimed.columns != expected.columns || claimed.rows.len() != expected.rows.len() {
        return false;
    }
    let same_rows = |a: &[Vec<Value>], b: &[Vec<Value>]| {
        a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| same_value(p, q, SQL_TOLERANCE))
        })
    };
    if same_rows(&claimed.rows, &expected.rows) {
        return true;
    }
    if expected.sorted {
        return false;
    }
    // A multiset: both sorted by their exact text (the batches are cut alike on every node,
    // so the same rows give the same values).
    let key = |row: &Vec<Value>| row.iter().map(Value::to_string).collect::<Vec<_>>();
    let mut a: Vec<&Vec<Value>> = claimed.rows.iter().collect();
    let mut b: Vec<&Vec<Value>> = expected.rows.iter().collect();
    a.sort_by_cached_key(|r| key(r));
    b.sort_by_cached_key(|r| key(r));
    a.iter().zip(&b).all(|(x, y)| {
        x.len() == y.len()
            && x.iter()
                .zip(y.iter())
                .all(|(p, q)| same_value(p, q, SQL_TOLERANCE))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(rows: Vec<Vec<Value>>, sorted: bool) -> SqlAnswer {
        SqlAnswer {
            columns: vec![
                JobColumn {
                    name: "k".into(),
                    ty: "Utf8".into(),
                },
                JobColumn {
                    name: "v".into(),
                    ty: "Float64".into(),
                },
            ],
            rows,
            scanned: 10,
            sorted,
        }
    }

    #[test]
    fn answers_compare_by_value_within_the_tolerance_and_as_multisets_when_unordered() {
        let a = answer(
            vec![vec![json!("x"), json!(1.0)], vec![json!("y"), json!(2.5)]],
            false,
        );
        let mut b = a.clone();
        b.rows[1][1] = json!(2.5 * (1.0 + 1e-12));
        assert!(same_answer(&b, &a), "rounding");
        b.rows[1][1] = json!(2.6);
        assert!(!same_answer(&b, &a), "a changed value");
        b.rows = vec![a.rows[1].clone(), a.rows[0].clone()];
        assert!(same_answer(&b, &a), "unordered: any order");
        let ordered = SqlAnswer {
            sorted: true,
            ..a.clone()
        };
        assert!(!same_answer(&b, &ordered), "ordered: the order counts");
        b.rows.pop();
        assert!(!same_answer(&b, &a), "a dropped row");
        let mut c = a.clone();
        c.rows[0][0] = json!("z");
        assert!(!same_answer(&c, &a), "a changed key");
        let mut d = a.clone();
        d.columns[1].name = "w".into();
        assert!(!same_answer(&d, &a), "a renamed column");
        assert!(!same_value(&json!(1), &json!(2), 0.5), "integers are exact");
        assert!(same_value(
            &json!({"a": [1.0, 2.0]}),
            &json!({"a": [1.0, 2.0000000001]}),
            1e-9
        ));
    }

    #[test]
    fn the_model_id_is_stable_and_names_the_engine() {
        assert_eq!(model_id(), model_id());
        assert_ne!(model_id(), agora_types::Hash::digest(MODEL_NAME.as_bytes()));
    }
}

//! `agora bench analytics`: how current the SQL tables stay, and how fast ten fixed analytical
//! queries run.
//!
//! - **Staying current**: a node with its analytics commits blocks of transfers; for each block,
//!   the time from its commit to its rows being queryable (p50, p99, the worst).
//! - **Queries**: ten ClickBench-style queries (counts, filters, distinct counts, group-bys,
//!   top-k, time buckets, a join) over generated transfer rows in Parquet files laid out like
//!   the node's segments (one file per height range, the chain's own column types, the node's
//!   writer settings), with DataFusion set as the node sets it for a free query; with
//!   `--duckdb-python`, DuckDB on the same files and the same threads, side by side.

use crate::yuma::Lcg;
use agora_analytics::datafusion::prelude::{ParquetReadOptions, SessionContext};
use agora_analytics::{Analytics, arrow};
use agora_chain::{Node, NodeConfig};
use agora_state::{Genesis, GenesisAccount, Params};
use agora_types::{AGR, Keypair, Message, Transaction};
use anyhow::{Context, Result, bail};
use arrow::array::{
    ArrayRef, Decimal128Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct AnalyticsBenchArgs {
    /// Generated transfer rows for the queries.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Blocks committed to measure how current the tables stay (0: skip).
    #[arg(long, default_value_t = 200)]
    pub blocks: u64,
    /// Transfers per block meanwhile.
    #[arg(long, default_value_t = 200)]
    pub per_block: usize,
    /// Times each query runs (the median is printed).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A Python with the `duckdb` package: DuckDB runs the same queries on the same files.
    #[arg(long)]
    pub duckdb_python: Option<PathBuf>,
    /// Threads for both engines (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the generated Parquet goes (default: a temporary folder, deleted after; kept
    /// and reused when given).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A DataFusion setting for the queries, `KEY=VALUE` (for example
    /// `datafusion.execution.batch_size=16384`); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Run only the queries whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
}

/// The ten queries: (name, SQL), the same text for both engines.
pub const QUERIES: &[(&str, &str)] = &[
    ("count", "SELECT count(*) FROM transfers"),
    (
        "filtered count",
        "SELECT count(*) FROM transfers WHERE amount > 5000000000000",
    ),
    (
        "aggregates",
        "SELECT sum(amount), min(height), max(height), count(DISTINCT height) FROM transfers",
    ),
    (
        "distinct senders",
        "SELECT count(DISTINCT \"from\") FROM transfers",
    ),
    (
        "top senders",
        "SELECT \"from\", count(*) AS n FROM transfers GROUP BY \"from\" ORDER BY n DESC, \"from\" LIMIT 10",
    ),
    (
        "top receivers by amount",
        "SELECT \"to\", sum(amount) AS s FROM transfers GROUP BY \"to\" ORDER BY s DESC, \"to\" LIMIT 10",
    ),
    (
        "per hour",
        "SELECT date_trunc('hour', time) AS h, count(*) AS n, sum(amount) AS s FROM transfers GROUP BY h ORDER BY h",
    ),
    (
        "height range buckets",
        "SELECT height - height % 1000 AS bucket, count(*) AS n FROM transfers WHERE height BETWEEN 100000 AND 300000 GROUP BY bucket ORDER BY bucket",
    ),
    (
        "top pairs",
        "SELECT \"from\", \"to\", count(*) AS n FROM transfers GROUP BY \"from\", \"to\" ORDER BY n DESC, \"from\", \"to\" LIMIT 10",
    ),
    (
        "join: what the top receivers send",
        "SELECT t.\"from\", count(*) AS n, sum(t.amount) AS s FROM transfers t JOIN \
         (SELECT \"to\" AS account FROM transfers GROUP BY \"to\" ORDER BY sum(amount) DESC, \"to\" LIMIT 100) leaders \
         ON t.\"from\" = leaders.account GROUP BY t.\"from\" ORDER BY n DESC, t.\"from\" LIMIT 10",
    ),
];

pub fn run(args: AnalyticsBenchArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    if args.blocks > 0 {
        staying_current(args.blocks, args.per_block)?;
    }
    if args.rows > 0 {
        let temp;
        let dir = match &args.dir {
            Some(d) => d.clone(),
            None => {
                temp = tempfile::tempdir()?;
                temp.path().to_path_buf()
            }
        };
        queries(&args, &dir, threads)?;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Commits `blocks` blocks of `per_block` transfers on a node with its analytics and measures,
/// for each, the time from its commit to its rows being queryable.
fn staying_current(blocks: u64, per_block: usize) -> Result<()> {
    let chain_id = "bench-analytics";
    let senders: Vec<Keypair> = (0..per_block)
        .map(|i| Keypair::from_seed_label(&format!("analytics-sender-{i}")))
        .collect();
    let genesis = Genesis::new(chain_id)
        .with_params(Params {
            min_fee: 1_000,
            unbonding_period: 10,
        })
        .with_accounts(senders.iter().map(|k| GenesisAccount {
            address: k.address(),
            balance: 1_000_000 * AGR,
            bonded: 0,
        }));
    let dir = tempfile::tempdir()?;
    let node = Arc::new(Node::open(
        &dir.path().join("bench.redb"),
        &genesis,
        Keypair::from_seed_label("analytics-validator"),
        NodeConfig::default(),
    )?);
    let analytics = Analytics::start(node.clone(), &dir.path().join("analytics"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let to = Keypair::from_seed_label("analytics-receiver").address();
    let mut lags = Vec::new();
    let mut with_block = Vec::new();
    for b in 0..blocks {
        let txs: Vec<Vec<u8>> = senders
            .iter()
            .map(|k| {
                Transaction {
                    chain_id: chain_id.into(),
                    sender: k.public(),
                    nonce: b,
                    fee: 1_000,
                    messages: vec![Message::Transfer { to, amount: 1 }],
                }
                .sign(k)
                .encode()
            })
            .collect();
        for r in node.submit_batch(txs) {
            r.map_err(|e| anyhow::anyhow!("submitting: {e}"))?;
        }
        let start = Instant::now();
        let block = node.produce_block(1_000 + b * 500)?;
        let committed = Instant::now();
        let height = block.block.header.height;
        if !rt.block_on(analytics.wait_for(height, Duration::from_secs(30))) {
            bail!("the tables did not reach block {height} within 30 s");
        }
        let done = Instant::now();
        lags.push(done - committed);
        with_block.push(done - start);
    }
    lags.sort();
    with_block.sort();
    let out = rt.block_on(analytics.query(
        "SELECT count(*) FROM transfers",
        agora_analytics::QueryLimits::default(),
    ))?;
    let counted = arrow::util::display::array_value_to_string(out.batches[0].column(0), 0)?;
    println!(
        "staying current: {blocks} blocks of {per_block} transfers; from a block's commit to its rows being queryable: p50 {:.1} ms, p99 {:.1} ms, worst {:.1} ms (block production included: p50 {:.1} ms); {counted} transfer rows, {} segments",
        ms(percentile(&lags, 50)),
        ms(percentile(&lags, 99)),
        ms(*lags.last().unwrap_or(&Duration::ZERO)),
        ms(percentile(&with_block, 50)),
        analytics.segments(),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Rows per generated file: like a segment of the node's.
const FILE_ROWS: usize = 1_000_000;
/// Accounts in the generated transfers (a tenth of them take most of the traffic).
const ACCOUNTS: u64 = 200_000;

fn account(i: u64) -> String {
    // Shaped like an address: a prefix and 38 characters.
    format!("agora1{:038x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn generate(dir: &Path, rows: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("height", DataType::Int64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("from", DataType::Utf8, false),
        Field::new("to", DataType::Utf8, false),
        Field::new("amount", DataType::Decimal128(38, 0), false),
    ]));
    let mut rng = Lcg(7);
    let pick = |rng: &mut Lcg| {
        if rng.next() % 10 < 7 {
            rng.next() % (ACCOUNTS / 10)
        } else {
            rng.next() % ACCOUNTS
        }
    };
    let mut written = 0;
    let mut file = 0;
    while written < rows {
        let n = FILE_ROWS.min(rows - written);
        let mut height = Int64Builder::with_capacity(n);
        let mut time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut from = StringBuilder::with_capacity(n, n * 44);
        let mut to = StringBuilder::with_capacity(n, n * 44);
        let mut amount = Decimal128Builder::with_capacity(n).with_precision_and_scale(38, 0)?;
        for i in 0..n {
            // 50 transfers a block, a block every 500 ms.
            let h = ((written + i) / 50) as i64;
            height.append_value(h);
            time.append_value(1_767_225_600_000 + h * 500);
            from.append_value(account(pick(&mut rng)));
            to.append_value(account(pick(&mut rng)));
            amount.append_value(i128::from(rng.next() % 10_000) * i128::from(AGR as u64));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(height.finish()),
            Arc::new(time.finish()),
            Arc::new(from.finish()),
            Arc::new(to.finish()),
            Arc::new(amount.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let path = dir.join(format!("transfers-{file:04}.parquet"));
        let mut writer = agora_analytics::datafusion::parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path)?,
            schema.clone(),
            Some(agora_analytics::segment_properties()),
        )?;
        writer.write(&batch)?;
        writer.close()?;
        written += n;
        file += 1;
    }
    Ok(())
}

fn queries(args: &AnalyticsBenchArgs, dir: &Path, threads: usize) -> Result<()> {
    let data = dir.join("transfers");
    let t = Instant::now();
    // Files of a finished earlier run with as many rows are reused.
    let marker = dir.join("rows");
    let reuse = args.dir.is_some()
        && std::fs::read_to_string(&marker).is_ok_and(|n| n.trim() == args.rows.to_string());
    if !reuse {
        let _ = std::fs::remove_file(&marker);
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        generate(&data, args.rows)?;
        std::fs::write(&marker, args.rows.to_string())?;
    }
    let selected: Vec<(&str, &str)> = QUERIES
        .iter()
        .filter(|(name, _)| args.only.as_ref().is_none_or(|o| name.contains(o.as_str())))
        .copied()
        .collect();
    let bytes: u64 = std::fs::read_dir(&data)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "queries: {} transfer rows in {} Parquet files ({:.0} MiB), generated in {:.1} s; {threads} threads; median of {} runs",
        args.rows,
        args.rows.div_ceil(FILE_ROWS),
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64(),
        args.runs
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    // The node's settings for a free query, then any given.
    let mut config = agora_analytics::free_query_config(threads);
    for setting in &args.settings {
        let (key, value) = setting
            .split_once('=')
            .with_context(|| format!("--set {setting}: expected KEY=VALUE"))?;
        config
            .options_mut()
            .set(key, value)
            .with_context(|| format!("--set {setting}"))?;
    }
    let ctx = SessionContext::new_with_config(config);
    rt.block_on(ctx.register_parquet(
        "transfers",
        data.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    ))?;
    let mut ours = Vec::new();
    let mut our_rows = Vec::new();
    for (name, sql) in &selected {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..args.runs.max(1) {
            let start = Instant::now();
            let batches = rt
                .block_on(async { ctx.sql(sql).await?.collect().await })
                .with_context(|| format!("query {name}"))?;
            times.push(start.elapsed());
            rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        }
        times.sort();
        ours.push(times[times.len() / 2]);
        our_rows.push(rows);
    }
    let duck = match &args.duckdb_python {
        Some(python) => Some(duckdb(python, &data, threads, args.runs, &selected)?),
        None => None,
    };
    println!(
        "{:<36} {:>14} {:>12} {:>8} {:>6}",
        "query", "DataFusion ms", "DuckDB ms", "ratio", "rows"
    );
    let mut total = (Duration::ZERO, 0.0);
    for (i, (name, _)) in selected.iter().enumerate() {
        total.0 += ours[i];
        let (d, ratio) = match &duck {
            Some((times, rows)) => {
                if rows[i] != our_rows[i] {
                    bail!(
                        "query {name}: DataFusion gave {} rows, DuckDB {}",
                        our_rows[i],
                        rows[i]
                    );
                }
                total.1 += times[i];
                (
                    format!("{:.1}", times[i]),
                    format!("{:.2}", ms(ours[i]) / times[i]),
                )
            }
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<36} {:>14.1} {:>12} {:>8} {:>6}",
            name,
            ms(ours[i]),
            d,
            ratio,
            our_rows[i]
        );
    }
    if duck.is_some() {
        println!(
            "{:<36} {:>14.1} {:>12.1} {:>8.2}",
            "all",
            ms(total.0),
            total.1,
            ms(total.0) / total.1
        );
    } else {
        println!("{:<36} {:>14.1}", "all", ms(total.0));
    }
    Ok(())
}

/// DuckDB's median time (ms) and row count per query, on the same files and threads.
fn duckdb(
    python: &Path,
    data: &Path,
    threads: usize,
    runs: usize,
    queries: &[(&str, &str)],
) -> Result<(Vec<f64>, Vec<usize>)> {
    let script = r#"
import duckdb, json, sys, time
spec = json.load(sys.stdin)
con = duckdb.connect()
con.execute(f"SET threads TO {spec['threads']}")
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW transfers AS SELECT * FROM read_parquet('{spec['glob']}')")
out = []
for sql in spec["queries"]:
    times = []
    rows = 0
    for _ in range(spec["runs"]):
        start = time.perf_counter()
        rows = len(con.execute(sql).fetchall())
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    out.append([times[len(times) // 2], rows])
print(json.dumps(out))
"#;
    let spec = serde_json::json!({
        "threads": threads,
        "glob": format!("{}/*.parquet", data.display()),
        "runs": runs.max(1),
        "queries": queries.iter().map(|(_, q)| *q).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().context("DuckDB's stdin")?;
        stdin.write_all(spec.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("DuckDB's run failed (is the duckdb package installed in that Python?)");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed: Vec<(f64, usize)> = text
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .with_context(|| format!("reading DuckDB's times from {text:?}"))?;
    Ok(parsed.into_iter().unzip())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_of_the_analytics_bench_completes() {
        let args = AnalyticsBenchArgs {
            rows: 30_000,
            blocks: 3,
            per_block: 4,
            runs: 1,
            duckdb_python: None,
            threads: Some(1),
            dir: None,
            settings: vec!["datafusion.execution.batch_size=4096".into()],
            only: None,
        };
        run(args).unwrap();
    }
}

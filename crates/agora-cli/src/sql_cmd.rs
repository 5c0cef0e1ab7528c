//! `agora sql`: read-only SQL over a node's analytics tables (`POST /v1/sql`).

use agora_analytics::format::{self, Format};
use agora_analytics::http::{SqlRequest, TableInfo};
use agora_node_api::NodeClient;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// One SELECT (or WITH … SELECT) statement; `-` reads it from standard input. The tables:
    /// `agora sql --tables`.
    #[arg(required_unless_present = "tables")]
    query: Option<String>,
    /// table, csv, json or parquet (parquet needs --out).
    #[arg(long, default_value = "table")]
    format: String,
    /// Write the result to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The node to ask.
    #[arg(long, env = "AGORA_NODE", default_value = crate::wallet_cmd::DEFAULT_NODE)]
    node: String,
    /// Most rows (the node allows at most 1,000,000).
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Seconds the query may take (the node allows at most 25).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// List the tables and their columns instead.
    #[arg(long)]
    tables: bool,
    /// Query the EVM tables ingested into this folder (`agora ingest evm`), here, instead of
    /// a node's.
    #[arg(long, value_name = "DIR")]
    evm: Option<PathBuf>,
}

/// `--evm DIR`: the query runs in this process over the ingested Parquet files.
fn sql_evm(args: &SqlArgs, dir: &std::path::Path, format: Format, query: &str) -> Result<()> {
    let tables = agora_evm::file_tables(dir)?;
    if args.tables {
        for t in &tables {
            println!("{} ({} files)", t.name, t.files.len());
            for f in t.schema.fields() {
                let null = if f.is_nullable() { ", nullable" } else { "" };
                println!("  {:<26} {}{null}", f.name(), f.data_type());
            }
        }
        return Ok(());
    }
    let limits = agora_analytics::QueryLimits {
        timeout: Duration::from_secs(args.timeout),
        max_rows: args.max_rows,
        ..agora_analytics::QueryLimits::default()
    };
    let (out, bytes) = agora_analytics::query_files(&tables, query, limits, format)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(&bytes)?,
    }
    if format == Format::Table {
        eprintln!("{} rows in {} ms", out.rows, out.elapsed.as_millis());
    }
    Ok(())
}

pub fn sql(args: SqlArgs) -> Result<()> {
    if let Some(dir) = args.evm.clone() {
        let format: Format = args
            .format
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        if format == Format::Parquet && args.out.is_none() {
            bail!("--format parquet writes a file: pass --out FILE");
        }
        let query = read_query(args.query.clone().unwrap_or_default())?;
        return sql_evm(&args, &dir, format, &query);
    }
    let client = NodeClient::with_timeout(&args.node, Duration::from_secs(args.timeout + 10));
    if args.tables {
        #[derive(serde::Deserialize)]
        struct Tables {
            height: Option<u64>,
            tables: Vec<TableInfo>,
        }
        let t: Tables = client.get("/v1/sql/tables")?;
        if args.format == "json" {
            println!("{}", serde_json::to_string_pretty(&t.tables)?);
            return Ok(());
        }
        for table in &t.tables {
            println!("{} ({}): {}", table.name, table.kind, table.doc);
            for c in &table.columns {
                let null = if c.nullable { ", nullable" } else { "" };
                println!("  {:<18} {}{null}: {}", c.name, c.kind, c.doc);
            }
        }
        if let Some(h) = t.height {
            println!("(history tables hold blocks up to {h})");
        }
        return Ok(());
    }
    let format: Format = args
        .format
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    if format == Format::Parquet && args.out.is_none() {
        bail!("--format parquet writes a file: pass --out FILE");
    }
    let query = read_query(args.query.unwrap_or_default())?;
    // A table is rendered here, from the Arrow stream; the other formats come ready-made.
    let wire = match format {
        Format::Table => "arrow",
        Format::Csv => "csv",
        Format::Json => "json",
        Format::Arrow => "arrow",
        Format::Parquet => "parquet",
    };
    let request = SqlRequest {
        sql: query,
        format: Some(wire.into()),
        max_rows: Some(args.max_rows),
        timeout_ms: Some(args.timeout.saturating_mul(1000)),
        memory_mb: None,
    };
    let answer = client
        .post_raw("/v1/sql", &request)
        .with_context(|| format!("asking {}", args.node))?;
    let bytes = if format == Format::Table {
        let (schema, batches) = format::read_arrow(&answer.body)?;
        format::write(Format::Table, &schema, &batches)?
    } else {
        answer.body.clone()
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(&bytes)?,
    }
    if format == Format::Table {
        let header = |name: &str| answer.header(name).unwrap_or("?").to_string();
        eprintln!(
            "{} rows in {} ms (tables at height {})",
            header("x-agora-rows"),
            header("x-agora-elapsed-ms"),
            header("x-agora-height")
        );
    }
    Ok(())
}

/// The query given, or standard input's for `-`.
fn read_query(mut query: String) -> Result<String> {
    if query == "-" {
        query.clear();
        std::io::stdin()
            .read_to_string(&mut query)
            .context("reading the query from standard input")?;
    }
    Ok(query)
}

/// Where rows come from: a node's tables, or a folder of ingested EVM tables.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// `POST /v1/sql` on this node.
    Node(String),
    /// `agora ingest evm`'s output folder, queried here.
    Evm(PathBuf),
}

/// The column names of `sql`'s result and its rows as JSON objects (at most 1,000,000; 25 s).
pub(crate) fn json_rows(
    source: &Source,
    sql: &str,
) -> Result<(Vec<String>, Vec<serde_json::Value>)> {
    let limits = agora_analytics::QueryLimits::MAX;
    let body = match source {
        Source::Node(node) => {
            let client = NodeClient::with_timeout(node, limits.timeout + Duration::from_secs(10));
            let request = SqlRequest {
                sql: sql.to_string(),
                format: Some("json".into()),
                max_rows: Some(limits.max_rows),
                timeout_ms: Some(limits.timeout.as_millis() as u64),
                memory_mb: None,
            };
            client
                .post_raw("/v1/sql", &request)
                .with_context(|| format!("asking {node}"))?
                .body
        }
        Source::Evm(dir) => {
            let tables = agora_evm::file_tables(dir)?;
            agora_analytics::query_files(&tables, sql, limits, Format::Json)?.1
        }
    };
    let mut v: serde_json::Value = serde_json::from_slice(&body).context("reading the rows")?;
    let columns = v["columns"]
        .as_array()
        .context("the answer has no columns")?
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    match v.get_mut("rows").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(rows)) => Ok((columns, rows)),
        _ => bail!("the answer has no rows"),
    }
}

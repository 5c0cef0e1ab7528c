//! `agora predict` (forecasts of a series taken from SQL) and `agora anomalies` (wash trading,
//! sybil clusters, provider drift, each with its evidence).

use crate::sql_cmd::{Source, json_rows};
use agora_analytics::anomaly::{
    self, DriftOptions, JobOutcome, SybilOptions, Transfer, WashOptions,
};
use agora_analytics::predict::{self, ForecastOptions, Series};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// What to forecast from a node's tables: transactions, fees (AGR), transfers, volume
    /// (AGR moved) or jobs, per --interval.
    #[arg(long, default_value = "transactions", conflicts_with = "sql")]
    metric: String,
    /// Seconds per step.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// A query of your own instead, of two columns: the time of each step (Unix ms, e.g.
    /// `CAST(time AS BIGINT) / 3600000 * 3600000`, or a height), then the value. Steps without
    /// a row count 0.
    #[arg(long)]
    sql: Option<String>,
    /// Steps ahead.
    #[arg(long, default_value_t = 12)]
    horizon: usize,
    /// Steps per season (e.g. 24 for hourly steps and a daily cycle); none by default.
    #[arg(long)]
    season: Option<usize>,
    /// The prediction intervals' level.
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    /// Backtest origins (0: none).
    #[arg(long, default_value_t = 4)]
    windows: usize,
    /// The node to ask.
    #[arg(long, env = "AGORA_NODE", default_value = crate::wallet_cmd::DEFAULT_NODE)]
    node: String,
    /// Query the EVM tables ingested into this folder instead (with --sql).
    #[arg(long, value_name = "DIR", requires = "sql")]
    evm: Option<PathBuf>,
    /// text or json.
    #[arg(long, default_value = "text")]
    format: String,
}

fn metric_sql(metric: &str, interval: u64) -> Result<String> {
    let (table, value) = match metric {
        "transactions" => ("transactions", "CAST(count(*) AS DOUBLE)"),
        "fees" => ("transactions", "CAST(sum(fee) AS DOUBLE) / 1e9"),
        "transfers" => ("transfers", "CAST(count(*) AS DOUBLE)"),
        "volume" => ("transfers", "CAST(sum(amount) AS DOUBLE) / 1e9"),
        "jobs" => ("jobs", "CAST(count(*) AS DOUBLE)"),
        other => bail!("unknown metric {other:?}: transactions, fees, transfers, volume or jobs"),
    };
    if interval == 0 {
        bail!("--interval must be at least 1 second");
    }
    let ms = interval
        .checked_mul(1000)
        .filter(|ms| *ms <= i64::MAX as u64)
        .context("--interval is too long")?;
    // Buckets in whole milliseconds (the time column holds Unix ms).
    Ok(format!(
        "SELECT CAST(time AS BIGINT) / {ms} * {ms} AS t, {value} AS v FROM {table} GROUP BY 1 ORDER BY 1"
    ))
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let (sql, step) = match &args.sql {
        Some(sql) => (sql.clone(), None),
        None => (
            metric_sql(&args.metric, args.interval)?,
            Some(args.interval.saturating_mul(1000) as i64),
        ),
    };
    let source = match &args.evm {
        Some(dir) => Source::Evm(dir.clone()),
        None => Source::Node(args.node.clone()),
    };
    let (columns, rows) = json_rows(&source, &sql)?;
    let [time, value] = columns.as_slice() else {
        bail!(
            "the query must give two columns, a time and a value; it gives {}: {}",
            columns.len(),
            columns.join(", ")
        );
    };
    let mut points = Vec::with_capacity(rows.len());
    for row in &rows {
        let (t, v) = (&row[time.as_str()], &row[value.as_str()]);
        let t = t
            .as_i64()
            .with_context(|| format!("the first column must be an integer time: {row}"))?;
        let v = v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .with_context(|| format!("the second column must be a number: {row}"))?;
        points.push((t, v));
    }
    let series = Series::from_points_with_step(points, step)?;
    let options = ForecastOptions {
        horizon: args.horizon,
        season: args.season,
        level: args.level,
        backtest_windows: args.windows,
    };
    let forecast = predict::forecast(&series, options)?;
    if args.format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"series": series, "forecast": forecast})
            )?
        );
        return Ok(());
    }
    let times_are_ms = series.start_ms > 1_000_000_000_000;
    println!(
        "{} points, one per {} {}; model: {}",
        series.values.len(),
        series.step_ms,
        if times_are_ms { "ms" } else { "units" },
        forecast.model
    );
    println!(
        "{:<20} {:>14} {:>14} {:>14}",
        "time",
        "forecast",
        format!("{:.0} % low", forecast.level * 100.0),
        "high"
    );
    for p in &forecast.points {
        let t = if times_are_ms {
            agora_web::utc_time(u64::try_from(p.time_ms).unwrap_or(0))
        } else {
            p.time_ms.to_string()
        };
        println!(
            "{t:<20} {:>14.3} {:>14.3} {:>14.3}",
            p.value, p.lower, p.upper
        );
    }
    match forecast.backtest {
        Some(b) => println!(
            "backtest, {} origins × {} steps: mean absolute error {:.3} against seasonal-naive {:.3} ({}); {:.0} % of actual values inside the intervals",
            b.windows,
            b.horizon,
            b.mae,
            b.naive_mae,
            if b.mae < b.naive_mae {
                format!(
                    "{:.2}× its error: better",
                    b.mae / b.naive_mae.max(f64::MIN_POSITIVE)
                )
            } else {
                "no better than the baseline".to_string()
            },
            b.coverage * 100.0
        ),
        None => println!("backtest: the series is too short"),
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct AnomaliesArgs {
    /// What to look for: all, wash, sybil or drift.
    #[arg(long, default_value = "all")]
    kind: String,
    /// First block.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Last block (default: all).
    #[arg(long, default_value_t = i64::MAX as u64)]
    to: u64,
    /// Longest a wash cycle may take, in seconds.
    #[arg(long, default_value_t = 600)]
    window: i64,
    /// How far a cycle's amounts may differ, in basis points.
    #[arg(long, default_value_t = 500)]
    tolerance_bp: u32,
    /// Fewest accounts acting in step for a sybil cluster.
    #[arg(long, default_value_t = 5)]
    min_cluster: usize,
    /// How close in time (seconds) their first transfers must be.
    #[arg(long, default_value_t = 60)]
    sync_window: i64,
    /// The node to ask.
    #[arg(long, env = "AGORA_NODE", default_value = crate::wallet_cmd::DEFAULT_NODE)]
    node: String,
    /// Look at an ERC-20's transfers in EVM tables ingested into this folder (with --token).
    #[arg(long, value_name = "DIR", requires = "token")]
    evm: Option<PathBuf>,
    /// The ERC-20 (its address) whose transfers to look at.
    #[arg(long, requires = "evm")]
    token: Option<String>,
    /// text or json.
    #[arg(long, default_value = "text")]
    format: String,
}

pub fn anomalies(args: AnomaliesArgs) -> Result<()> {
    let kinds: &[&str] = match args.kind.as_str() {
        "all" => &["wash", "sybil", "drift"],
        "wash" => &["wash"],
        "sybil" => &["sybil"],
        "drift" => &["drift"],
        other => bail!("unknown kind {other:?}: all, wash, sybil or drift"),
    };
    let range = |sql: &str| {
        sql.replace("{from}", &args.from.to_string())
            .replace("{to}", &args.to.min(i64::MAX as u64).to_string())
    };
    let (source, transfers_sql) = match (&args.evm, &args.token) {
        (Some(dir), Some(token)) => {
            let token = token.to_lowercase();
            if !(token.len() == 42
                && token.starts_with("0x")
                && token[2..].bytes().all(|b| b.is_ascii_hexdigit()))
            {
                bail!("--token must be a 0x address of 20 bytes, got {token:?}");
            }
            (
                Source::Evm(dir.clone()),
                range(anomaly::EVM_TRANSFERS_SQL).replace("{token}", &token),
            )
        }
        _ => (
            Source::Node(args.node.clone()),
            range(anomaly::TRANSFERS_SQL),
        ),
    };
    let mut findings = Vec::new();
    if kinds.iter().any(|k| *k == "wash" || *k == "sybil") {
        let transfers = json_rows(&source, &transfers_sql)?
            .1
            .iter()
            .map(Transfer::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if kinds.contains(&"wash") {
            findings.extend(anomaly::wash_trading(
                &transfers,
                WashOptions {
                    window_ms: args.window.saturating_mul(1000),
                    tolerance_bp: args.tolerance_bp,
                    ..WashOptions::default()
                },
            ));
        }
        if kinds.contains(&"sybil") {
            findings.extend(anomaly::sybil_clusters(
                &transfers,
                SybilOptions {
                    min_cluster: args.min_cluster,
                    sync_window_ms: args.sync_window.saturating_mul(1000),
                },
            ));
        }
    }
    if kinds.contains(&"drift") && !matches!(source, Source::Node(_)) && args.kind == "drift" {
        bail!("provider drift is about Agora's providers: ask a node, not --evm");
    }
    if kinds.contains(&"drift") && matches!(source, Source::Node(_)) {
        let jobs = json_rows(&source, &range(anomaly::JOBS_SQL))?
            .1
            .iter()
            .map(JobOutcome::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        findings.extend(anomaly::provider_drift(&jobs, DriftOptions::default()));
    }
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&findings)?);
        return Ok(());
    }
    if findings.is_empty() {
        println!("nothing found ({})", kinds.join(", "));
    }
    for f in &findings {
        println!("[{}] {}", f.kind, f.evidence);
    }
    Ok(())
}

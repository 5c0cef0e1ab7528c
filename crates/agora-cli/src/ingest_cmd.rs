//! `agora ingest evm`: an EVM chain's blocks, transactions, receipts, logs, token transfers
//! and contract creations, into Parquet tables that `agora sql --evm DIR` queries.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Fetch blocks `--from`..=`--to` over JSON-RPC, check each against its hash, and write
    /// them to `--out` in partitions of block ranges. Resumable: rerun the same command after a
    /// crash or Ctrl-C and only the missing blocks are fetched.
    Evm(EvmArgs),
}

#[derive(Debug, Args)]
pub struct EvmArgs {
    /// The node's JSON-RPC URL.
    #[arg(long)]
    rpc: String,
    /// The first block.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// The last block (default: the head less --confirmations).
    #[arg(long)]
    to: Option<u64>,
    /// The output folder.
    #[arg(long)]
    out: PathBuf,
    /// Refuse a node that serves another chain.
    #[arg(long)]
    chain_id: Option<u64>,
    /// Blocks fetched at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Blocks per Parquet partition.
    #[arg(long, default_value_t = 1000)]
    partition_blocks: u64,
    /// Blocks below the head left alone when --to is not given.
    #[arg(long, default_value_t = 12)]
    confirmations: u64,
    /// Seconds one call may take.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// Tries per call (with a growing pause between them).
    #[arg(long, default_value_t = 5)]
    tries: u32,
}

pub fn ingest(cmd: IngestCommand) -> Result<()> {
    let IngestCommand::Evm(args) = cmd;
    let options = agora_evm::Options {
        rpc: args.rpc,
        from: args.from,
        to: args.to,
        out: args.out,
        chain_id: args.chain_id,
        concurrency: args.concurrency.clamp(1, 256),
        partition_blocks: args.partition_blocks.max(1),
        confirmations: args.confirmations,
        timeout: Duration::from_secs(args.timeout.max(1)),
        tries: args.tries.max(1),
        refetches: 3,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} blocks, {per_sec}, {msg} (eta {eta})")
            .context("the progress bar's template")?,
    );
    let out = options.out.clone();
    let result = runtime.block_on(async {
        let run = agora_evm::ingest(&options, |p| {
            bar.set_length(p.total);
            bar.set_position(p.blocks);
            bar.set_message(format!("{} logs, {} already there", p.logs, p.skipped));
        });
        tokio::select! {
            r = run => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    bar.abandon();
    match result {
        None => {
            eprintln!(
                "stopped: every partition written so far is complete in {}; rerun the same command to go on",
                out.display()
            );
            std::process::exit(130);
        }
        Some(Err(e)) => Err(anyhow::Error::new(e)).context("ingesting"),
        Some(Ok(s)) => {
            let secs = s.elapsed.as_secs_f64().max(1e-3);
            println!(
                "chain {}: blocks {}-{} in {} ({} fetched now, {} already there) in {:.1} s: {:.0} blocks/s, {:.0} logs/s",
                s.chain_id,
                s.from,
                s.to,
                out.display(),
                s.progress.blocks,
                s.progress.skipped,
                secs,
                s.progress.blocks as f64 / secs,
                s.progress.logs as f64 / secs,
            );
            for (table, rows) in &s.rows {
                println!("  {table:<20} {rows} rows");
            }
            println!("query them: agora sql --evm {} \"SELECT …\"", out.display());
            Ok(())
        }
    }
}

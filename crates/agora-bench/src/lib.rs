//! `agora bench …`: whole-system figures, printed as tables. The benchmarks live here, not in
//! the binary: each is a library function over the crates it measures (ledger, market and
//! gateway, inference, verification, the auditor, a network of validators, the state machine's
//! adversarial runs), and `agora` only parses their arguments.

#![forbid(unsafe_code)]

pub mod analytics;
pub mod audit;
pub mod data;
pub mod evm;
pub mod infer;
pub mod inject;
mod ledger;
mod market;
pub mod network;
pub mod search;
pub mod serve;
pub mod verify;
pub mod web;
pub mod yuma;
pub mod zk;

use anyhow::{Result, bail};
use clap::Subcommand;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Signed transfers admitted (decode, signature check, mempool), executed and committed per
    /// second on a single node with on-disk storage.
    Ledger {
        /// Transfers to run.
        #[arg(long, default_value_t = 200_000)]
        txs: usize,
        /// Distinct sending accounts.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 10_000)]
        block_txs: usize,
        /// Admit a block's worth, then build the block, in turn, so that each stage's time is
        /// its own (by default they overlap, as in a running node).
        #[arg(long)]
        sequential: bool,
        /// Run the nodes without accounts' histories (`agora node --no-account-index`), to see
        /// the chain's own throughput without the index's share of the cores.
        #[arg(long)]
        no_account_index: bool,
    },
    /// Inference: prompt processing and generation speed of the chat model, time to first token,
    /// teacher-forced scoring against generation, embeddings per second, and peak memory.
    Infer(crate::infer::InferBenchArgs),
    /// The Solidity auditor on a labelled folder: recall, precision and F1 per category (a finding
    /// counts if it names a labelled line ±2 in the label's category), and contracts per second.
    Audit(crate::audit::AuditBenchArgs),
    /// A local multi-validator network (Malachite) under a stream of transfers: time to finality
    /// (mean, p50, p99) and committed transfers per second.
    Network(crate::network::NetworkBenchArgs),
    /// Verification: how often one check catches each cheating strategy, a cheater's chance of
    /// escaping after n jobs at the sampling rate, and a check's cost against generation.
    Verify(crate::verify::VerifyBenchArgs),
    /// Adversarial runs of the state machine: random blocks of every message type from actors
    /// playing every role, honest and not; every invariant (supply, escrow, stake and pool
    /// conservation, counters, windows) checked after every block, each run twice for
    /// determinism. Prints runs, blocks and blocks/s; fails with the shrunk failing run.
    Invariants {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seed of the first batch of runs (each batch of 64 takes the next).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The web app: each page's latency over HTTP on a devnet-sized chain (which bounds its
    /// render time on the server), and the explorer's live stream at 10 blocks a second (every
    /// block delivered, and how long after its commit).
    Web(web::WebArgs),
    /// One subnet epoch: Yuma Consensus alone and the whole epoch block on the state machine,
    /// the state a subnet takes, and how the time grows with UIDs and validators.
    Yuma(yuma::YumaArgs),
    /// Analytics: the lag from a block's commit to its rows being queryable, and ten analytical
    /// queries over generated transfer rows in Parquet (DataFusion, and DuckDB beside it with
    /// `--duckdb-python`).
    Analytics(analytics::AnalyticsBenchArgs),
    /// EVM ingestion from a local anvil node: blocks/s and logs/s of `agora ingest evm`, beside
    /// the node's own pace for the same calls.
    Evm(evm::EvmArgs),
    /// Search: nDCG@10 and recall@10 of BM25, vectors and the hybrid on the labelled queries,
    /// then documents indexed per second, query latency p50/p99 and memory at 100,000 documents.
    Search(search::SearchBenchArgs),
    /// The data market: near-duplicate recall and precision on a generated set with known
    /// near-duplicates, submissions pre-screened per second (embeddings included), and the
    /// blob store's throughput.
    Data(data::DataBenchArgs),
    /// Zero-knowledge proofs of inference: setup, proving time, proof size, verification time
    /// and memory for MLPs from 1 thousand to 1 million weights.
    Zk(zk::ZkBenchArgs),
    /// A provider under load through the gateway: generated tokens/s, latency and time to the
    /// first token (p50, p99) for 1, 4, 16 and 64 concurrent streamed clients, beside llama.cpp's
    /// server on the same GGUF with the same threads (`--llama-server`, `--llama-cpp-python`).
    Serve(serve::ServeBenchArgs),
    /// The compute market on-chain: client-signed jobs with provider-signed receipts settled
    /// (`SettleJobs`, every signature checked) and committed per second.
    Market {
        /// Jobs to settle.
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Distinct clients.
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        /// Also measure the gateway with the real chat model: overhead over calling the runtime
        /// directly, and requests/s with p50/p99 latency and failures at 1, 4, 16 and 64
        /// concurrent clients; then check that the chain charged the client exactly its answers'
        /// receipts.
        #[arg(long)]
        gateway: bool,
        /// Requests per client in the gateway measurement.
        #[arg(long, default_value_t = 8)]
        requests: usize,
        /// Output tokens per request in the gateway measurement.
        #[arg(long, default_value_t = 16)]
        max_tokens: u32,
    },
}

fn invariants(seconds: u64, seed: u64) -> Result<()> {
    println!("adversarial state-machine runs for {seconds} s from seed {seed}…");
    let start = Instant::now();
    let stats = match agora_state::sim::campaign(seconds, seed) {
        Ok(stats) => stats,
        Err(failure) => bail!("an invariant broke: {failure}"),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("| runs | blocks | seconds | blocks/s | invariants broken |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {secs:.1} | {:.0} | 0 |",
        stats.cases,
        stats.blocks,
        stats.blocks as f64 / secs
    );
    Ok(())
}

pub fn run(cmd: BenchCommand, models: &std::path::Path) -> Result<()> {
    match cmd {
        BenchCommand::Infer(args) => crate::infer::run(args, models),
        BenchCommand::Verify(args) => crate::verify::run(args, models),
        BenchCommand::Network(args) => crate::network::run(args),
        BenchCommand::Audit(args) => crate::audit::bench(args),
        BenchCommand::Web(args) => crate::web::run(args),
        BenchCommand::Yuma(args) => crate::yuma::run(args),
        BenchCommand::Analytics(args) => crate::analytics::run(args),
        BenchCommand::Evm(args) => crate::evm::run(args),
        BenchCommand::Search(args) => crate::search::run(args, models),
        BenchCommand::Data(args) => crate::data::run(args, models),
        BenchCommand::Zk(args) => crate::zk::run(args, models),
        BenchCommand::Serve(args) => crate::serve::run(args, models),
        BenchCommand::Invariants { seconds, seed } => invariants(seconds, seed),
        BenchCommand::Market {
            jobs,
            clients,
            gateway,
            requests,
            max_tokens,
        } => {
            market::market(jobs, clients)?;
            if gateway {
                market::market_gateway(models, requests, max_tokens)?;
            }
            Ok(())
        }
        BenchCommand::Ledger {
            txs,
            accounts,
            block_txs,
            sequential,
            no_account_index,
        } => ledger::ledger(txs, accounts, block_txs, sequential, !no_account_index),
    }
}

//! `agora`: one binary for every role. This crate only wires the library crates together.

#![forbid(unsafe_code)]
// A binary: `pub` marks what modules share with each other, nothing is exported.
#![allow(unreachable_pub)]

mod audit_cmd;
mod data_cmd;
use agora_daemons::{keystore, market as market_cmd, node as node_cmd};
mod infer_cmd;
mod ingest_cmd;
mod predict_cmd;
mod search_cmd;
mod sql_cmd;
mod subnet_cmd;
mod testnet_cmd;
mod wallet_cmd;
mod zk_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Agora: a decentralized AI network with its own ledger.
#[derive(Debug, Parser)]
#[command(name = "agora", version, about, propagate_version = true)]
struct Cli {
    /// Home directory: keys, genesis, chain data.
    #[arg(long, global = true, env = "AGORA_HOME")]
    home: Option<PathBuf>,
    /// Where fetched models live (default: `models` under the home directory, `~/.agora/models`).
    #[arg(long, global = true, env = "AGORA_MODELS")]
    models_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: a single-validator chain with a funded demo wallet, its
    /// HTTP API, a provider serving the pinned models, a verifier, and the OpenAI-compatible gateway.
    Devnet(node_cmd::DevnetArgs),
    /// Run a node: one validator of a network (Malachite BFT), or with `--dev` the single
    /// validator of a dev chain.
    Node(node_cmd::NodeArgs),
    /// Local multi-validator networks.
    #[command(subcommand)]
    Testnet(testnet_cmd::TestnetCommand),
    /// Sell inference: serve the pinned models to the market of a node's chain.
    Provider(market_cmd::ProviderArgs),
    /// The OpenAI-compatible API, paying providers from a wallet's compute escrow.
    Gateway(market_cmd::GatewayArgs),
    /// Check other providers' work for the chain: re-run jobs drawn for checking, post verdicts
    /// (staked; paid for checks, slashed for verdicts against the majority).
    Verifier(market_cmd::VerifierArgs),
    /// Make a genesis file.
    #[command(subcommand)]
    Genesis(node_cmd::GenesisCommand),
    /// Create and inspect encrypted wallets.
    #[command(subcommand)]
    Wallet(wallet_cmd::WalletCommand),
    /// Sign and submit transactions.
    #[command(subcommand)]
    Tx(wallet_cmd::TxCommand),
    /// Read chain state from a node.
    #[command(subcommand)]
    Query(wallet_cmd::QueryCommand),
    /// The model market: subnets where models compete, scored by validators and paid by Yuma
    /// Consensus.
    #[command(subcommand)]
    Subnet(subnet_cmd::SubnetCommand),
    /// The data market: post bounties, submit items, review them (pre-screen and vote), export
    /// datasets with their inclusion proofs, cite datasets and claim their royalties.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Zero-knowledge proofs of inference: provable models, proofs about a private input
    /// ("my risk score is below t"), attestations the chain verifies.
    #[command(subcommand)]
    Zk(zk_cmd::ZkCommand),
    /// Read-only SQL over a node's tables of its chain (blocks, transactions, transfers, jobs,
    /// checks, subnets, accounts…), as a table, CSV, JSON or Parquet.
    Sql(sql_cmd::SqlArgs),
    /// Search everything the node knows (accounts, transactions, providers, models, jobs,
    /// subnets, neurons, ingested articles): words and meaning fused, with filters; a hash or
    /// address typed in whole goes straight to its object.
    Search(search_cmd::SearchArgs),
    /// An account's feed, ranked by its on-chain activity, follows and likes, each item with
    /// the reasons it is there; `agora feed prefs --from WALLET` changes the follows and likes.
    Feed(search_cmd::FeedArgs),
    /// Forecast a series from the chain's tables (transactions, fees, transfers, jobs per
    /// interval, or your own SQL) with prediction intervals, backtested against seasonal-naive.
    Predict(predict_cmd::PredictArgs),
    /// Look for wash trading, sybil clusters and drifting providers; each finding with its
    /// evidence (transactions, amounts, timings).
    Anomalies(predict_cmd::AnomaliesArgs),
    /// Ingest another chain's data for SQL: `agora ingest evm --rpc URL --out DIR`.
    #[command(subcommand)]
    Ingest(ingest_cmd::IngestCommand),
    /// Fetch and list the pinned models.
    #[command(subcommand)]
    Models(infer_cmd::ModelsCommand),
    /// Run the models locally: chat and embeddings.
    #[command(subcommand)]
    Infer(infer_cmd::InferCommand),
    /// Audit Solidity contracts (no compiler needed): findings by line, category, severity.
    /// Exit code 0 when clean, 1 with findings, 2 when a file does not parse.
    Audit(audit_cmd::AuditArgs),
    /// Measure throughput and print figures.
    #[command(subcommand)]
    Bench(agora_bench::BenchCommand),
}

/// `--home`, or `~/.agora`.
fn default_home(home: Option<PathBuf>, leaf: Option<&str>) -> PathBuf {
    if let Some(h) = home {
        return h;
    }
    let base = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = base.join(".agora");
    match leaf {
        Some(l) => base.join(l),
        None => base,
    }
}

fn main() {
    let cli = Cli::parse();
    // Benchmarks print tables: only warnings interleave with them unless RUST_LOG asks for more.
    let default_level = match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `--models-dir`, or `models` under `--home` (or `~/.agora`).
fn models_dir(cli: &Cli) -> PathBuf {
    match &cli.models_dir {
        Some(dir) => dir.clone(),
        None => default_home(cli.home.clone(), None).join("models"),
    }
}

fn run(cli: Cli) -> Result<()> {
    let models = models_dir(&cli);
    match cli.command {
        Command::Devnet(args) => {
            node_cmd::devnet(default_home(cli.home, Some("devnet")), models, args)
        }
        Command::Node(args) => node_cmd::node(default_home(cli.home, None), models, args),
        Command::Provider(args) => market_cmd::provider(default_home(cli.home, None), models, args),
        Command::Gateway(args) => market_cmd::gateway(default_home(cli.home, None), args),
        Command::Verifier(args) => market_cmd::verifier(default_home(cli.home, None), models, args),
        Command::Testnet(cmd) => testnet_cmd::testnet(&default_home(cli.home, None), cmd),
        Command::Genesis(cmd) => node_cmd::genesis(default_home(cli.home, None), cmd),
        Command::Wallet(cmd) => wallet_cmd::wallet(default_home(cli.home, None), cmd),
        Command::Tx(cmd) => wallet_cmd::tx(default_home(cli.home, None), cmd),
        Command::Query(cmd) => wallet_cmd::query(cmd),
        Command::Sql(args) => sql_cmd::sql(args),
        Command::Search(args) => search_cmd::search(args),
        Command::Feed(args) => search_cmd::feed(&default_home(cli.home, None), args),
        Command::Ingest(cmd) => ingest_cmd::ingest(cmd),
        Command::Predict(args) => predict_cmd::predict(args),
        Command::Anomalies(args) => predict_cmd::anomalies(args),
        Command::Subnet(cmd) => subnet_cmd::subnet(default_home(cli.home, None), models, cmd),
        Command::Data(cmd) => data_cmd::data(default_home(cli.home, None), models, cmd),
        Command::Zk(cmd) => zk_cmd::zk(default_home(cli.home, None), cmd),
        Command::Models(cmd) => infer_cmd::models(&models, cmd),
        Command::Infer(cmd) => infer_cmd::infer(&models, cmd),
        Command::Bench(cmd) => agora_bench::run(cmd, &models),
        // 0 clean, 1 findings, 2 usage or parse errors.
        Command::Audit(args) => match audit_cmd::audit(args, &models) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
    }
}

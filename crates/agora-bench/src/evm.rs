//! `agora bench evm`: how fast `agora ingest evm` takes blocks and logs from a local EVM node,
//! beside the node's own pace (the same calls, at the same concurrency, neither checked nor
//! written).
//!
//! The node is anvil (its npm package): the benchmark deploys a contract that emits four logs
//! per call, sends `--txs-per-block` calls into each of `--busy-blocks` blocks, mines
//! `--empty-blocks` empty ones, and then ingests them all.

use agora_evm::Options;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct EvmArgs {
    /// The anvil binary (default: the one `.ci/run` installs under target/ci-node).
    #[arg(long)]
    pub anvil: Option<PathBuf>,
    /// Blocks with transactions.
    #[arg(long, default_value_t = 200)]
    pub busy_blocks: u64,
    /// Contract calls per busy block (four logs each).
    #[arg(long, default_value_t = 25)]
    pub txs_per_block: u64,
    /// Empty blocks after them.
    #[arg(long, default_value_t = 5_000)]
    pub empty_blocks: u64,
    /// Blocks fetched at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

/// Creation code of a contract whose every call emits four 32-byte `LOG0`s (hand-assembled:
/// the runtime is `PUSH1 32 PUSH1 0 LOG0` four times then `STOP`; the creation code stores it
/// in memory and returns it).
const EMITTER: &str = "7460206000a060206000a060206000a060206000a0006000526015600bf3";

struct Anvil(Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rpc(url: &str, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: Value = ureq::post(url)
        .send_json(&body)
        .with_context(|| method.to_string())?
        .body_mut()
        .read_json()?;
    if let Some(e) = v.get("error") {
        bail!("{method}: {e}");
    }
    Ok(v["result"].clone())
}

pub fn run(args: EvmArgs) -> Result<()> {
    let anvil = args.anvil.unwrap_or_else(|| {
        PathBuf::from("target/ci-node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
    });
    if !anvil.is_file() {
        bail!(
            "no anvil at {} (npm install --prefix target/ci-node @foundry-rs/anvil, or --anvil PATH)",
            anvil.display()
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _node = Anvil(
        Command::new(&anvil)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
                "--no-mining",
            ])
            .args(["--gas-limit", "1000000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting anvil")?,
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while rpc(&url, "eth_chainId", json!([])).is_err() {
        if Instant::now() > deadline {
            bail!("anvil did not answer in 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let accounts = rpc(&url, "eth_accounts", json!([]))?;
    let from = accounts[0].clone();
    let deploy = rpc(
        &url,
        "eth_sendTransaction",
        json!([{"from": from, "data": format!("0x{EMITTER}")}]),
    )?;
    rpc(&url, "evm_mine", json!([]))?;
    let emitter =
        rpc(&url, "eth_getTransactionReceipt", json!([deploy]))?["contractAddress"].clone();
    if emitter.is_null() {
        bail!("the emitter was not deployed");
    }
    let start = Instant::now();
    for _ in 0..args.busy_blocks {
        for _ in 0..args.txs_per_block {
            rpc(
                &url,
                "eth_sendTransaction",
                json!([{"from": from, "to": emitter, "gas": "0x30000"}]),
            )?;
        }
        rpc(&url, "evm_mine", json!([]))?;
    }
    if args.empty_blocks > 0 {
        rpc(
            &url,
            "anvil_mine",
            json!([format!("0x{:x}", args.empty_blocks)]),
        )?;
    }
    let head = rpc(&url, "eth_blockNumber", json!([]))?;
    let head = u64::from_str_radix(head.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)?;
    println!(
        "chain of {} blocks ({} with {} calls of 4 logs each) made in {:.1} s",
        head + 1,
        args.busy_blocks,
        args.txs_per_block,
        start.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let mut options = Options::new(url.clone(), dir.path().join("evm"));
    options.to = Some(head);
    options.concurrency = args.concurrency;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The busy blocks and the empty ones apart: logs/s is set by the first, blocks/s by the
    // second.
    let busy_to = args.busy_blocks + 1;
    println!(
        "| part | blocks | logs | node only (s) | blocks/s | logs/s | ingest (s) | blocks/s | logs/s | ingest / node |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, a, b) in [
        ("busy", 0, busy_to.min(head)),
        ("empty", busy_to.min(head) + 1, head),
    ] {
        if a > b {
            continue;
        }
        let t = Instant::now();
        let raw = runtime.block_on(agora_evm::fetch_only(&options, a, b))?;
        let node = t.elapsed().as_secs_f64();
        let mut o = options.clone();
        o.from = a;
        o.to = Some(b);
        let t = Instant::now();
        let s = runtime.block_on(agora_evm::ingest(&o, |_| {}))?;
        let ours = t.elapsed().as_secs_f64();
        if s.progress.blocks != raw.blocks || s.progress.logs != raw.logs {
            bail!(
                "ingested {} blocks and {} logs; the node gave {} and {}",
                s.progress.blocks,
                s.progress.logs,
                raw.blocks,
                raw.logs
            );
        }
        println!(
            "| {name} | {} | {} | {node:.2} | {:.0} | {:.0} | {ours:.2} | {:.0} | {:.0} | {:.2} |",
            raw.blocks,
            raw.logs,
            raw.blocks as f64 / node,
            raw.logs as f64 / node,
            raw.blocks as f64 / ours,
            raw.logs as f64 / ours,
            ours / node
        );
    }
    Ok(())
}
